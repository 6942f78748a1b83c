// The ACPI tables that describe an enclave to an unmodified distribution
// kernel (docs/ARCHITECTURE.md "Boot path" 3; docs/PLATFORMS.md §V2): RSDP → XSDT → FADT
// (hardware-reduced) → DSDT, and MADT. No MP table and no PCI: with Debian's
// X86_MPPARSE=n ACPI is the only way the kernel learns about CPUs, the
// IOAPIC, COM1 and virtio-mmio devices, and a bad checksum fails silently,
// so every table is unit tested.
//
// See: ACPI 6.5 §5.2 (tables), §5.2.9 (FADT), §5.2.12 (MADT);
// Linux arch/x86/kernel/acpi/boot.c.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstdint>
#include <vector>

namespace qtbox::boot {

struct VirtioMmioDevice {
    std::uint64_t base { 0 };
    std::uint32_t size { 0 };
    std::uint32_t gsi { 0 };
};

struct AcpiConfig {
    std::uint32_t vcpu_count { 1 };
    std::vector<VirtioMmioDevice> virtio_devices;
    // Where the SDTs go (they are laid out back to back, 8-byte aligned)
    // and where the RSDP goes.
    std::uint64_t tables_address { 0 };
    std::uint64_t rsdp_address { 0 };
    // Space available at tables_address.
    std::uint64_t tables_space { 0 };
};

struct AcpiTables {
    Bytes tables; // for tables_address
    Bytes rsdp;   // 36 bytes for rsdp_address
    // Offsets of each table inside `tables` (for tests and logs).
    std::uint64_t dsdt_offset { 0 };
    std::uint64_t fadt_offset { 0 };
    std::uint64_t madt_offset { 0 };
    std::uint64_t xsdt_offset { 0 };
};

// The xAPIC MADT entry holds an 8-bit APIC ID and 0xFF means broadcast.
constexpr std::uint32_t MAX_ACPI_VCPUS = 254;
// The DSDT names virtio devices V000..V999.
constexpr std::size_t MAX_VIRTIO_DEVICES = 1000;

namespace acpi {
constexpr std::size_t HEADER_SIZE = 36;
constexpr std::size_t RSDP_SIZE = 36;
constexpr std::size_t FADT_SIZE = 276;
constexpr std::size_t CHECKSUM_OFFSET = 9;
constexpr std::size_t RSDP_CHECKSUM_OFFSET = 8;
constexpr std::size_t RSDP_EXTENDED_CHECKSUM_OFFSET = 32;
constexpr std::size_t FADT_IAPC_BOOT_ARCH = 109;
constexpr std::size_t FADT_FLAGS = 112;
constexpr std::size_t FADT_MINOR_VERSION = 131;
constexpr std::size_t FADT_X_DSDT = 140;
constexpr std::size_t FADT_HYPERVISOR_VENDOR = 268;
// FADT flags (§5.2.9 table 5.10) and IA-PC boot architecture flags (table 5.11).
constexpr std::uint32_t FLAG_PWR_BUTTON = 1u << 4;
constexpr std::uint32_t FLAG_SLP_BUTTON = 1u << 5;
constexpr std::uint32_t FLAG_HW_REDUCED_ACPI = 1u << 20;
constexpr std::uint16_t IAPC_VGA_NOT_PRESENT = 1u << 2;
constexpr std::uint16_t IAPC_CMOS_RTC_NOT_PRESENT = 1u << 5;
constexpr char OEM_ID[] = "QTBOX ";         // 6 bytes
constexpr char OEM_TABLE_ID[] = "QTBOXVMM"; // 8 bytes
constexpr char CREATOR_ID[] = "QTBX";       // 4 bytes
constexpr char HYPERVISOR_VENDOR[] = "QTBOXKVM";
} // namespace acpi

// Sum of all bytes mod 256 (a valid table sums to 0).
std::uint8_t acpi_sum(ByteView bytes);

// DSDT AML body parts, exposed for the byte-exact tests.
ErrorOr<Bytes> com1_aml();
ErrorOr<Bytes> virtio_mmio_aml(std::size_t index, VirtioMmioDevice const& device);

ErrorOr<AcpiTables> build_acpi_tables(AcpiConfig const& config);

} // namespace qtbox::boot
