// The CPU state at the 64-bit entry point (boot.rst "64-bit Boot
// Protocol"; docs/PLATFORMS.md §V1.5): identity page tables, a flat GDT, long mode
// segment registers, GPRs, FPU, the boot MSRs and the LAPIC LINT pins.
// All pure data: the VMM hands the results to KVM.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/boot/layout.hpp>

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace qtbox::boot {

// PML4 at PML4_ADDRESS, one PDPT, four PDs of 2 MiB pages: an identity map
// of [0, 4 GiB), present + writable. Returns PAGE_TABLES_SIZE bytes meant
// for PML4_ADDRESS.
Bytes identity_page_tables();

// Page-table entry bits.
constexpr std::uint64_t PTE_PRESENT = 1u << 0;
constexpr std::uint64_t PTE_WRITABLE = 1u << 1;
constexpr std::uint64_t PTE_HUGE = 1u << 7;

// GDT: null, 64-bit code (selector 0x08), data (0x10), busy 64-bit TSS
// (0x18). The decompressor loads its own GDT at once (head_64.S), so these
// selectors need not be boot.rst's __BOOT_CS/__BOOT_DS; VMX entry checks
// need a present, busy TSS in TR.
constexpr std::array<std::uint64_t, 4> BOOT_GDT = {
    0,
    0x00AF9B000000FFFF, // code: P, DPL 0, S, type 0xB (exec/read/accessed), L, G
    0x00CF93000000FFFF, // data: P, DPL 0, S, type 3 (read/write/accessed), D/B, G
    0x008F8B000000FFFF, // TSS: P, type 0xB (busy 64-bit TSS), G
};
constexpr std::uint16_t CODE_SELECTOR = 0x08;
constexpr std::uint16_t DATA_SELECTOR = 0x10;
constexpr std::uint16_t TSS_SELECTOR = 0x18;

// BOOT_GDT as bytes for GDT_ADDRESS, and an 8-byte null IDT for IDT_ADDRESS.
Bytes gdt_bytes();

// Decodes a GDT descriptor into KVM's segment form (unusable = !present,
// a granular limit scaled to bytes).
kvm_segment segment_from_descriptor(std::uint64_t descriptor, std::uint16_t selector);

constexpr std::uint64_t CR0_PE = 1u << 0;
constexpr std::uint64_t CR0_MP = 1u << 1;
constexpr std::uint64_t CR0_ET = 1u << 4;
constexpr std::uint64_t CR0_NE = 1u << 5;
constexpr std::uint64_t CR0_WP = 1u << 16;
constexpr std::uint64_t CR0_AM = 1u << 18;
constexpr std::uint64_t CR0_PG = 1u << 31;
constexpr std::uint64_t CR4_PAE = 1u << 5;
constexpr std::uint64_t EFER_LME = 1u << 8;
constexpr std::uint64_t EFER_LMA = 1u << 10;

// `base` is what KVM_GET_SREGS returned (it carries the APIC base and the
// interrupt bitmap). Long mode with paging: CR0 PE|MP|ET|NE|WP|AM|PG, CR4
// PAE, EFER LME|LMA (both: current KVM rejects LME+PG without LMA), CR3 the
// PML4, flat segments from BOOT_GDT, GDTR/IDTR at their addresses.
kvm_sregs long_mode_sregs(kvm_sregs base);

// RIP = entry, RSI = the zero page, RSP = RBP = the boot stack, RFLAGS
// bit 1 (reserved, always set); everything else zero.
kvm_regs boot_regs(std::uint64_t entry);

// x87 control word 0x37F and MXCSR 0x1F80: the power-on defaults.
kvm_fpu boot_fpu();

// Boot MSRs (docs/PLATFORMS.md §V1.5): SYSENTER and SYSCALL MSRs and TSC zeroed,
// IA32_MISC_ENABLE fast-strings, MTRRs on with write-back default (KVM
// emulates all of them on every host, as Firecracker relies on).
std::vector<std::pair<std::uint32_t, std::uint64_t>> boot_msrs();

// LAPIC LVT0 = ExtINT and LVT1 = NMI, the wiring every PC firmware sets.
kvm_lapic_state wire_lapic_lints(kvm_lapic_state lapic);

} // namespace qtbox::boot
