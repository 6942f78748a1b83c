#include <qtbox/boot/cpuid.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>

namespace qtbox::boot {

namespace {

// Bits needed to number `count` things (0 for one).
std::uint32_t id_bits(std::uint32_t count)
{
    return count <= 1 ? 0 : static_cast<std::uint32_t>(std::bit_width(count - 1));
}

void set_field(std::uint32_t& reg, unsigned low, unsigned width, std::uint32_t value)
{
    std::uint32_t mask = (width >= 32 ? 0xFFFFFFFFu : ((1u << width) - 1)) << low;
    reg = (reg & ~mask) | ((value << low) & mask);
}

void set_bit(std::uint32_t& reg, std::uint32_t bit, bool on)
{
    reg = on ? (reg | bit) : (reg & ~bit);
}

// Intel SDM leaf 0xB/0x1F level types.
constexpr std::uint32_t LEVEL_SMT = 1;
constexpr std::uint32_t LEVEL_CORE = 2;

} // namespace

CpuVendor cpu_vendor(std::vector<kvm_cpuid_entry2> const& entries)
{
    for (auto const& entry : entries) {
        if (entry.function != 0)
            continue;
        char vendor[12];
        std::memcpy(vendor, &entry.ebx, 4);
        std::memcpy(vendor + 4, &entry.edx, 4);
        std::memcpy(vendor + 8, &entry.ecx, 4);
        std::string_view name(vendor, sizeof(vendor));
        if (name == "GenuineIntel")
            return CpuVendor::Intel;
        if (name == "AuthenticAMD" || name == "HygonGenuine")
            return CpuVendor::Amd;
    }
    return CpuVendor::Other;
}

void normalize_cpuid(std::vector<kvm_cpuid_entry2>& entries, CpuidTopology const& topology)
{
    using namespace cpuid;
    CpuVendor vendor = cpu_vendor(entries);
    std::uint32_t const apic_id = topology.index;
    std::uint32_t const count = topology.count;
    std::uint32_t const addressable = std::bit_ceil(count);

    for (auto& entry : entries) {
        switch (entry.function) {
        case LEAF_FEATURES:
            set_field(entry.ebx, 8, 8, 8);           // CLFLUSH line: 8 x 8 bytes
            set_field(entry.ebx, 16, 8, addressable); // logical processors per package
            set_field(entry.ebx, 24, 8, apic_id);    // initial APIC ID
            set_bit(entry.ecx, ECX_PDCM, false);     // no perf-capabilities MSR
            set_bit(entry.ecx, ECX_TSC_DEADLINE, topology.tsc_deadline);
            set_bit(entry.ecx, ECX_HYPERVISOR, true);
            set_bit(entry.edx, EDX_HTT, count > 1);
            break;
        case LEAF_CACHE:
            if (vendor == CpuVendor::Intel && (entry.eax & 0x1F) != 0) {
                std::uint32_t level = (entry.eax >> 5) & 7;
                // Threads sharing this cache: one per core below L3, all above.
                set_field(entry.eax, 14, 12, level >= 3 ? addressable - 1 : 0);
                set_field(entry.eax, 26, 6, std::min<std::uint32_t>(addressable, 64) - 1);
            }
            break;
        case LEAF_POWER:
            if (vendor == CpuVendor::Intel) {
                set_bit(entry.eax, POWER_EAX_TURBO, false);
                set_bit(entry.ecx, POWER_ECX_EPB, false);
            }
            break;
        case LEAF_EXTENDED_FEATURES:
            if (vendor == CpuVendor::Amd && entry.index == 0)
                set_bit(entry.edx, EXTENDED_EDX_ARCH_CAPABILITIES, false);
            break;
        case LEAF_PMU:
            // No virtual PMU: performance counters are a side channel and
            // an enclave has no use for them.
            entry.eax = entry.ebx = entry.ecx = entry.edx = 0;
            break;
        case LEAF_TOPOLOGY:
        case LEAF_TOPOLOGY_V2:
            // One thread per core, `count` cores, x2APIC ID = index.
            entry.edx = apic_id;
            if (entry.index == 0) {
                entry.eax = 0; // no SMT bits
                entry.ebx = 1;
                entry.ecx = (LEVEL_SMT << 8) | 0;
            } else if (entry.index == 1) {
                entry.eax = id_bits(count);
                entry.ebx = count;
                entry.ecx = (LEVEL_CORE << 8) | 1;
            } else {
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = entry.index; // level type 0: invalid, end of list
            }
            break;
        case LEAF_AMD_FEATURES:
            if (vendor == CpuVendor::Amd) {
                // Without TOPOEXT Linux reads the core count from
                // 0x80000008 below instead of 0x8000001E/0x8000001D.
                set_bit(entry.ecx, AMD_ECX_TOPOEXT, false);
                set_bit(entry.ecx, AMD_ECX_CMP_LEGACY, count > 1);
            }
            break;
        case LEAF_AMD_SIZES:
            if (vendor == CpuVendor::Amd) {
                set_field(entry.ecx, 0, 8, count - 1);        // NC: cores - 1
                set_field(entry.ecx, 12, 4, id_bits(count)); // ApicIdCoreIdSize
            }
            break;
        case LEAF_AMD_TOPOLOGY:
            if (vendor == CpuVendor::Amd)
                entry.eax = entry.ebx = entry.ecx = entry.edx = 0;
            break;
        default:
            break;
        }
    }
}

} // namespace qtbox::boot
