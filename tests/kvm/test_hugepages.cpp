// Guest memory in hugetlb pages (`vmm --hugepages`). This machine may have
// no free hugepages: then the refusal is what is checked; with some (as
// after `qt env apply`), the mapping itself.
#include "support.hpp"

#include <qtbox/kvm/memory.hpp>
#include <qtbox/kvm/system.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <string>

using namespace qtbox;
using namespace qtbox::kvm;

namespace {

using qtbox::test::vm_flags;

constexpr std::uint64_t MIB = 1 << 20;

// free_hugepages of that size; 0 when the kernel has none of it.
std::uint64_t free_hugepages(std::uint32_t size_mib)
{
    std::ifstream file("/sys/kernel/mm/hugepages/hugepages-" + std::to_string(size_mib * 1024) + "kB/free_hugepages");
    std::uint64_t count = 0;
    return (file >> count) ? count : 0;
}


} // namespace

TEST_CASE("kvm memory: hugepage sizes are 2 and 1024 MiB, and regions are whole pages")
{
    auto odd = GuestMemory::create({ { 0, 4 * MIB } }, 4);
    REQUIRE(odd.is_error());
    CHECK(odd.error().message() == "guest memory: 4 MiB hugepages: the sizes are 2 and 1024 MiB");
    auto partial = GuestMemory::create({ { 0, 3 * MIB } }, 2);
    REQUIRE(partial.is_error());
    CHECK(
        partial.error().message() == "guest memory: region 0x0+0x300000 is not a multiple of the 2 MiB hugepage size");
    auto gigantic = GuestMemory::create({ { 0, 3072 * MIB }, { 4096 * MIB, 512 * MIB } }, 1024);
    REQUIRE(gigantic.is_error());
    CHECK(gigantic.error().message()
        == "guest memory: region 0x100000000+0x20000000 is not a multiple of the 1024 MiB hugepage size");
}

TEST_CASE("kvm memory: 2 MiB hugepages, or HugepagesUnavailable when too few are free")
{
    std::uint64_t pages = 4;
    std::uint64_t free_before = free_hugepages(2);
    bool enough = free_before >= pages;
    auto memory = GuestMemory::create({ { 0, pages * 2 * MIB } }, 2);
    if (!enough) {
        MESSAGE("fewer than 4 free 2 MiB hugepages here: checking the refusal only");
        REQUIRE(memory.is_error());
        CHECK(memory.error().is(KvmError::HugepagesUnavailable));
        CHECK(memory.error().message() == "mmap 8 MiB of guest memory in 2 MiB hugepages: Cannot allocate memory");
        return;
    }
    REQUIRE_MESSAGE(!memory.is_error(), (memory.is_error() ? memory.error().message() : ""));
    CHECK(memory.value().hugepage_size_mib() == 2);
    std::string flags = vm_flags(memory.value().host_base());
    CHECK(flags.find(" ht") != std::string::npos); // VM_HUGETLB
    CHECK(flags.find(" dd") != std::string::npos); // MADV_DONTDUMP
    CHECK(flags.find(" sh") == std::string::npos); // private
    // MAP_POPULATE: the pages are taken now, not when the guest touches them.
    CHECK(free_hugepages(2) + pages <= free_before);
    REQUIRE(!memory.value().write(2 * MIB + 5, ByteView(reinterpret_cast<std::uint8_t const*>("abc"), 3)).is_error());
    CHECK(memory.value().host_base()[2 * MIB + 6] == 'b');
}

TEST_CASE("kvm memory: 1 GiB hugepages that are not there are HugepagesUnavailable")
{
    if (free_hugepages(1024) >= 1) {
        MESSAGE("a free 1 GiB hugepage exists here: not taking it");
        return;
    }
    auto memory = GuestMemory::create({ { 0, 1024 * MIB } }, 1024);
    REQUIRE(memory.is_error());
    CHECK(memory.error().is(KvmError::HugepagesUnavailable));
}
