// The guest physical memory map qtbox gives every enclave, and the pure
// functions of the x86_64 64-bit Linux boot protocol that fill it (docs/ARCHITECTURE.md
// "Source layout": no ioctls, no I/O: bytes in, bytes out, all unit tested).
//
//   0x00500  boot GDT (4 entries)        0x00520  boot IDT (empty, limit 7)
//   0x07000  zero page (boot_params)     0x08FF0  initial stack pointer
//   0x09000  PML4, 0x0A000 PDPT, 0x0B000-0x0EFFF four PDs (identity map of 4 GiB)
//   0x20000  kernel command line
//   0x9FC00-0xFFFFF  reserved: ACPI tables from 0x9FC00, RSDP at 0xE0000
//   0x100000 bzImage protected-mode kernel (the decompressor)
//   top of RAM below 3 GiB: initrds, page aligned, highest first
//   0xC0000000-4 GiB  MMIO hole: virtio-mmio slots from 0xC0001000, IOAPIC,
//                     LAPIC, KVM's TSS and identity-map pages
//   4 GiB+   the rest of RAM when the enclave has more than 3 GiB
//
// See: Linux Documentation/arch/x86/boot.rst, zero-page.rst;
// docs/PLATFORMS.md §V1.3 (Firecracker's layout, which this follows).
#pragma once

#include <qtbox/kvm/memory.hpp>

#include <cstdint>
#include <vector>

namespace qtbox::boot {

constexpr std::uint64_t KIB = 1024;
constexpr std::uint64_t MIB = 1024 * KIB;
constexpr std::uint64_t GIB = 1024 * MIB;
constexpr std::uint64_t PAGE_SIZE = 4096;

constexpr std::uint64_t GDT_ADDRESS = 0x500;
constexpr std::uint64_t IDT_ADDRESS = 0x520;
constexpr std::uint64_t ZERO_PAGE_ADDRESS = 0x7000;
constexpr std::uint64_t BOOT_STACK_POINTER = 0x8FF0;
constexpr std::uint64_t PML4_ADDRESS = 0x9000;
constexpr std::uint64_t PDPT_ADDRESS = 0xA000;
constexpr std::uint64_t PD_ADDRESS = 0xB000;
// Four page directories of 2 MiB pages cover [0, 4 GiB).
constexpr std::uint64_t IDENTITY_MAPPED_BYTES = 4 * GIB;
constexpr std::uint64_t PAGE_TABLES_SIZE = 6 * PAGE_SIZE;
constexpr std::uint64_t CMDLINE_ADDRESS = 0x20000;
// x86 COMMAND_LINE_SIZE; the image's own cmdline_size may be smaller.
constexpr std::uint64_t CMDLINE_MAX_SIZE = 2048;
constexpr std::uint64_t EBDA_START = 0x9FC00;
constexpr std::uint64_t ACPI_TABLES_ADDRESS = EBDA_START;
constexpr std::uint64_t RSDP_ADDRESS = 0xE0000;
constexpr std::uint64_t HIGH_MEMORY_START = 0x100000;

constexpr std::uint64_t MMIO_HOLE_START = 3 * GIB;
constexpr std::uint64_t MMIO_HOLE_END = 4 * GIB;
constexpr std::uint64_t VIRTIO_MMIO_BASE = MMIO_HOLE_START + 0x1000;
constexpr std::uint64_t VIRTIO_MMIO_SIZE = 0x1000;
constexpr std::uint64_t IOAPIC_ADDRESS = 0xFEC00000;
constexpr std::uint64_t LAPIC_ADDRESS = 0xFEE00000;
// KVM needs three pages for the real-mode TSS and one for the EPT identity
// map, inside the MMIO hole and clear of every device (api.rst).
constexpr std::uint64_t KVM_TSS_ADDRESS = 0xFFFBD000;
constexpr std::uint64_t KVM_IDENTITY_MAP_ADDRESS = 0xFFFBC000;

// Legacy I/O and their GSIs (identity-routed by KVM's default routing).
constexpr std::uint16_t COM1_PORT = 0x3F8;
constexpr std::uint32_t COM1_GSI = 4;
constexpr std::uint16_t I8042_DATA_PORT = 0x60;
constexpr std::uint16_t I8042_COMMAND_PORT = 0x64;
// The first virtio-mmio device gets GSI 5, the next 6, ... (docs/PLATFORMS.md §V1.3).
constexpr std::uint32_t VIRTIO_FIRST_GSI = 5;

// Enclave memory bounds: docs/FORMATS.md §3 sets the floor; the ceiling keeps the
// layout arithmetic far from overflow and above any realistic enclave.
constexpr std::uint64_t MIN_MEMORY = 128 * MIB;
constexpr std::uint64_t MAX_MEMORY = 1024 * GIB;

// RAM regions for `memory_size` bytes (a multiple of 2 MiB, within the
// bounds above): [0, min(size, 3 GiB)) and, beyond 3 GiB, the remainder
// from 4 GiB up.
std::vector<kvm::MemoryRegion> ram_regions(std::uint64_t memory_size);

} // namespace qtbox::boot
