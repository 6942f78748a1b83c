#include <qtbox/boot/cpuid.hpp>

#include <doctest/doctest.h>

#include <cstring>

using namespace qtbox::boot;

namespace {

kvm_cpuid_entry2 entry(std::uint32_t function, std::uint32_t index, std::uint32_t eax, std::uint32_t ebx,
    std::uint32_t ecx, std::uint32_t edx)
{
    kvm_cpuid_entry2 e {};
    e.function = function;
    e.index = index;
    e.eax = eax;
    e.ebx = ebx;
    e.ecx = ecx;
    e.edx = edx;
    return e;
}

kvm_cpuid_entry2 vendor_leaf(char const (&name)[13])
{
    kvm_cpuid_entry2 e = entry(0, 0, 0x10, 0, 0, 0);
    std::memcpy(&e.ebx, name, 4);
    std::memcpy(&e.edx, name + 4, 4);
    std::memcpy(&e.ecx, name + 8, 4);
    return e;
}

kvm_cpuid_entry2 const& find(std::vector<kvm_cpuid_entry2> const& entries, std::uint32_t function, std::uint32_t index = 0)
{
    for (auto const& e : entries)
        if (e.function == function && e.index == index)
            return e;
    FAIL("leaf not found");
    return entries.front();
}

} // namespace

TEST_CASE("cpuid: vendor strings are recognised")
{
    CHECK(cpu_vendor({ vendor_leaf("GenuineIntel") }) == CpuVendor::Intel);
    CHECK(cpu_vendor({ vendor_leaf("AuthenticAMD") }) == CpuVendor::Amd);
    CHECK(cpu_vendor({ vendor_leaf("HygonGenuine") }) == CpuVendor::Amd);
    CHECK(cpu_vendor({ vendor_leaf("VIA VIA VIA ") }) == CpuVendor::Other);
    CHECK(cpu_vendor({}) == CpuVendor::Other);
}

TEST_CASE("cpuid: leaf 1 gets this vCPU's APIC ID, the count, hypervisor and TSC-deadline bits")
{
    std::vector<kvm_cpuid_entry2> entries = {
        vendor_leaf("GenuineIntel"),
        entry(1, 0, 0x000806EC, 0xFFFFFFFF, 0x0000FFFF, 0x0FFFFFFF),
    };
    normalize_cpuid(entries, { 2, 3, true });
    auto const& leaf = find(entries, 1);
    CHECK(leaf.eax == 0x000806EC);
    CHECK(leaf.ebx == 0x020408FF); // APIC ID 2, 4 addressable, CLFLUSH 8, brand byte kept
    CHECK(leaf.ecx == (0x00007FFFu | (1u << 24) | (1u << 31)));
    CHECK(leaf.edx == 0x1FFFFFFF);

    std::vector<kvm_cpuid_entry2> single = { vendor_leaf("GenuineIntel"), entry(1, 0, 0, 0, 1u << 24, 1u << 28) };
    normalize_cpuid(single, { 0, 1, false });
    CHECK(find(single, 1).ebx == 0x00010800);
    CHECK(find(single, 1).ecx == (1u << 31));
    CHECK(find(single, 1).edx == 0);
}

TEST_CASE("cpuid: leaf 0xB describes count single-thread cores with x2APIC ID = index")
{
    std::vector<kvm_cpuid_entry2> entries = {
        vendor_leaf("GenuineIntel"),
        entry(0xB, 0, 1, 2, 0x100, 7),
        entry(0xB, 1, 4, 16, 0x201, 7),
        entry(0xB, 2, 0, 0, 2, 7),
    };
    normalize_cpuid(entries, { 4, 5, true });
    auto const& smt = find(entries, 0xB, 0);
    CHECK(smt.eax == 0);
    CHECK(smt.ebx == 1);
    CHECK(smt.ecx == 0x100);
    CHECK(smt.edx == 4);
    auto const& core = find(entries, 0xB, 1);
    CHECK(core.eax == 3); // 5 vCPUs need 3 ID bits
    CHECK(core.ebx == 5);
    CHECK(core.ecx == 0x201);
    CHECK(core.edx == 4);
    auto const& end = find(entries, 0xB, 2);
    CHECK(end.eax == 0);
    CHECK(end.ebx == 0);
    CHECK(end.ecx == 2);
}

TEST_CASE("cpuid: Intel cache, power and PMU leaves are adjusted")
{
    std::vector<kvm_cpuid_entry2> entries = {
        vendor_leaf("GenuineIntel"),
        entry(4, 0, (1u << 5) | 1 | (0x3Fu << 26) | (0xFFFu << 14), 0, 0, 0), // L1 data
        entry(4, 3, (3u << 5) | 3, 0, 0, 0),                                 // L3 unified
        entry(4, 4, 0, 0, 0, 0),                                             // end of list
        entry(6, 0, 0x77, 0, 0x9, 0),
        entry(0xA, 0, 0x07300805, 0, 0, 0x603),
    };
    normalize_cpuid(entries, { 0, 4, true });
    CHECK(find(entries, 4, 0).eax == ((1u << 5) | 1 | (3u << 26)));
    CHECK(find(entries, 4, 3).eax == ((3u << 5) | 3 | (3u << 14) | (3u << 26)));
    CHECK(find(entries, 4, 4).eax == 0);
    CHECK(find(entries, 6).eax == 0x75);
    CHECK(find(entries, 6).ecx == 0x1);
    auto const& pmu = find(entries, 0xA);
    CHECK(pmu.eax == 0);
    CHECK(pmu.edx == 0);
}

TEST_CASE("cpuid: AMD topology comes from 0x80000008 with TOPOEXT off")
{
    std::vector<kvm_cpuid_entry2> entries = {
        vendor_leaf("AuthenticAMD"),
        entry(7, 0, 0, 0, 0, (1u << 29) | 1),
        entry(0x80000001, 0, 0, 0, (1u << 22) | 1, 0),
        entry(0x80000008, 0, 0x3030, 0, 0x0003F00F, 0),
        entry(0x8000001E, 0, 5, 0x100, 0, 0),
    };
    normalize_cpuid(entries, { 1, 2, true });
    CHECK(find(entries, 7).edx == 1);
    CHECK(find(entries, 0x80000001).ecx == 0x3);
    CHECK(find(entries, 0x80000008).ecx == 0x00031001);
    CHECK(find(entries, 0x80000008).eax == 0x3030);
    CHECK(find(entries, 0x8000001E).eax == 0);
    CHECK(find(entries, 0x8000001E).ebx == 0);

    std::vector<kvm_cpuid_entry2> single = { vendor_leaf("AuthenticAMD"), entry(0x80000001, 0, 2, 0, 2, 0) };
    normalize_cpuid(single, { 0, 1, true });
    CHECK(find(single, 0x80000001).ecx == 0);
}

TEST_CASE("cpuid: Intel entries are not touched by the AMD rules")
{
    std::vector<kvm_cpuid_entry2> entries = {
        vendor_leaf("GenuineIntel"),
        entry(0x80000001, 0, 0, 0, (1u << 22) | 1, 0),
        entry(7, 0, 0, 0, 0, 1u << 29),
    };
    normalize_cpuid(entries, { 0, 2, true });
    CHECK(find(entries, 0x80000001).ecx == ((1u << 22) | 1));
    CHECK(find(entries, 7).edx == (1u << 29));
}
