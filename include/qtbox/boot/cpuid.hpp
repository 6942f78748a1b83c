// CPUID for a vCPU: KVM_GET_SUPPORTED_CPUID with the fix-ups a VMM owes the
// guest (docs/PLATFORMS.md §V1.7, after Firecracker's normalize.rs): this vCPU's APIC
// ID and a topology of `count` single-threaded cores in one package, the
// hypervisor bit, TSC-deadline (the guest's timer under hardware-reduced
// ACPI), and no performance-monitoring or power-management leaves that a
// VM cannot honour. A pure transform of the entry list.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace qtbox::boot {

enum class CpuVendor { Intel, Amd, Other };

// From leaf 0's vendor string ("GenuineIntel", "AuthenticAMD"/"HygonGenuine").
CpuVendor cpu_vendor(std::vector<kvm_cpuid_entry2> const& entries);

struct CpuidTopology {
    std::uint32_t index { 0 }; // this vCPU, which is also its APIC ID
    std::uint32_t count { 1 }; // vCPUs in the VM
    bool tsc_deadline { false }; // KVM_CAP_TSC_DEADLINE_TIMER
};

// Leaf/bit positions touched (Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 E).
namespace cpuid {
constexpr std::uint32_t LEAF_FEATURES = 0x1;
constexpr std::uint32_t LEAF_CACHE = 0x4;
constexpr std::uint32_t LEAF_POWER = 0x6;
constexpr std::uint32_t LEAF_EXTENDED_FEATURES = 0x7;
constexpr std::uint32_t LEAF_PMU = 0xA;
constexpr std::uint32_t LEAF_TOPOLOGY = 0xB;
constexpr std::uint32_t LEAF_TOPOLOGY_V2 = 0x1F;
constexpr std::uint32_t LEAF_AMD_FEATURES = 0x80000001;
constexpr std::uint32_t LEAF_AMD_SIZES = 0x80000008;
constexpr std::uint32_t LEAF_AMD_TOPOLOGY = 0x8000001E;

constexpr std::uint32_t ECX_PDCM = 1u << 15;
constexpr std::uint32_t ECX_TSC_DEADLINE = 1u << 24;
constexpr std::uint32_t ECX_HYPERVISOR = 1u << 31;
constexpr std::uint32_t EDX_HTT = 1u << 28;
constexpr std::uint32_t POWER_EAX_TURBO = 1u << 1;
constexpr std::uint32_t POWER_ECX_EPB = 1u << 3;
constexpr std::uint32_t AMD_ECX_CMP_LEGACY = 1u << 1;
constexpr std::uint32_t AMD_ECX_TOPOEXT = 1u << 22;
constexpr std::uint32_t EXTENDED_EDX_ARCH_CAPABILITIES = 1u << 29;
} // namespace cpuid

void normalize_cpuid(std::vector<kvm_cpuid_entry2>& entries, CpuidTopology const& topology);

} // namespace qtbox::boot
