#include <qtbox/boot/cpu.hpp>

#include <cstring>

namespace qtbox::boot {

namespace {

constexpr std::uint32_t MSR_IA32_TSC = 0x10;
constexpr std::uint32_t MSR_IA32_SYSENTER_CS = 0x174;
constexpr std::uint32_t MSR_IA32_SYSENTER_ESP = 0x175;
constexpr std::uint32_t MSR_IA32_SYSENTER_EIP = 0x176;
constexpr std::uint32_t MSR_IA32_MISC_ENABLE = 0x1A0;
constexpr std::uint32_t MSR_MTRR_DEF_TYPE = 0x2FF;
constexpr std::uint32_t MSR_STAR = 0xC0000081;
constexpr std::uint32_t MSR_LSTAR = 0xC0000082;
constexpr std::uint32_t MSR_CSTAR = 0xC0000083;
constexpr std::uint32_t MSR_SYSCALL_MASK = 0xC0000084;
constexpr std::uint32_t MSR_KERNEL_GS_BASE = 0xC0000102;
constexpr std::uint64_t MISC_ENABLE_FAST_STRING = 1;
constexpr std::uint64_t MTRR_ENABLE = 1u << 11;
constexpr std::uint64_t MTRR_TYPE_WRITE_BACK = 6;

// LAPIC register offsets and LVT delivery modes (Intel SDM vol. 3 §11.5.1).
constexpr std::size_t APIC_LVT0 = 0x350;
constexpr std::size_t APIC_LVT1 = 0x360;
constexpr std::uint32_t DELIVERY_MODE_MASK = 0x700;
constexpr std::uint32_t DELIVERY_NMI = 4u << 8;
constexpr std::uint32_t DELIVERY_EXTINT = 7u << 8;

std::uint32_t lapic_read(kvm_lapic_state const& lapic, std::size_t offset)
{
    std::uint32_t value;
    std::memcpy(&value, lapic.regs + offset, sizeof(value));
    return value;
}

void lapic_write(kvm_lapic_state& lapic, std::size_t offset, std::uint32_t value)
{
    std::memcpy(lapic.regs + offset, &value, sizeof(value));
}

void append_le64(Bytes& bytes, std::uint64_t value)
{
    for (int i = 0; i < 8; ++i)
        bytes.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

} // namespace

Bytes identity_page_tables()
{
    Bytes tables;
    tables.reserve(PAGE_TABLES_SIZE);
    // PML4: entry 0 -> PDPT; the rest not present.
    append_le64(tables, PDPT_ADDRESS | PTE_PRESENT | PTE_WRITABLE);
    tables.resize(PAGE_SIZE, 0);
    // PDPT: entries 0..3 -> the four PDs, each covering 1 GiB.
    constexpr std::uint64_t DIRECTORIES = IDENTITY_MAPPED_BYTES / GIB;
    for (std::uint64_t i = 0; i < DIRECTORIES; ++i)
        append_le64(tables, (PD_ADDRESS + i * PAGE_SIZE) | PTE_PRESENT | PTE_WRITABLE);
    tables.resize(2 * PAGE_SIZE, 0);
    // PDs: 512 entries of 2 MiB pages each.
    for (std::uint64_t page = 0; page < DIRECTORIES * 512; ++page)
        append_le64(tables, (page << 21) | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE);
    return tables;
}

Bytes gdt_bytes()
{
    Bytes bytes;
    for (auto descriptor : BOOT_GDT)
        append_le64(bytes, descriptor);
    return bytes;
}

kvm_segment segment_from_descriptor(std::uint64_t descriptor, std::uint16_t selector)
{
    kvm_segment segment {};
    segment.base = ((descriptor >> 16) & 0xFFFFFF) | (((descriptor >> 56) & 0xFF) << 24);
    std::uint32_t limit = static_cast<std::uint32_t>((descriptor & 0xFFFF) | (((descriptor >> 48) & 0xF) << 16));
    segment.g = (descriptor >> 55) & 1;
    segment.limit = segment.g ? (limit << 12) | 0xFFF : limit;
    segment.selector = selector;
    segment.type = (descriptor >> 40) & 0xF;
    segment.s = (descriptor >> 44) & 1;
    segment.dpl = (descriptor >> 45) & 3;
    segment.present = (descriptor >> 47) & 1;
    segment.avl = (descriptor >> 52) & 1;
    segment.l = (descriptor >> 53) & 1;
    segment.db = (descriptor >> 54) & 1;
    segment.unusable = segment.present ? 0 : 1;
    return segment;
}

kvm_sregs long_mode_sregs(kvm_sregs sregs)
{
    sregs.gdt.base = GDT_ADDRESS;
    sregs.gdt.limit = static_cast<std::uint16_t>(BOOT_GDT.size() * 8 - 1);
    sregs.idt.base = IDT_ADDRESS;
    sregs.idt.limit = 7;

    sregs.cs = segment_from_descriptor(BOOT_GDT[CODE_SELECTOR / 8], CODE_SELECTOR);
    kvm_segment data = segment_from_descriptor(BOOT_GDT[DATA_SELECTOR / 8], DATA_SELECTOR);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_descriptor(BOOT_GDT[TSS_SELECTOR / 8], TSS_SELECTOR);

    sregs.cr3 = PML4_ADDRESS;
    sregs.cr4 = CR4_PAE;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
    return sregs;
}

kvm_regs boot_regs(std::uint64_t entry)
{
    kvm_regs regs {};
    regs.rflags = 0x2;
    regs.rip = entry;
    regs.rsp = BOOT_STACK_POINTER;
    regs.rbp = BOOT_STACK_POINTER;
    regs.rsi = ZERO_PAGE_ADDRESS;
    return regs;
}

kvm_fpu boot_fpu()
{
    kvm_fpu fpu {};
    fpu.fcw = 0x37F;
    fpu.mxcsr = 0x1F80;
    return fpu;
}

std::vector<std::pair<std::uint32_t, std::uint64_t>> boot_msrs()
{
    return {
        { MSR_IA32_SYSENTER_CS, 0 },
        { MSR_IA32_SYSENTER_ESP, 0 },
        { MSR_IA32_SYSENTER_EIP, 0 },
        { MSR_STAR, 0 },
        { MSR_CSTAR, 0 },
        { MSR_KERNEL_GS_BASE, 0 },
        { MSR_SYSCALL_MASK, 0 },
        { MSR_LSTAR, 0 },
        { MSR_IA32_TSC, 0 },
        { MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
        { MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRITE_BACK },
    };
}

kvm_lapic_state wire_lapic_lints(kvm_lapic_state lapic)
{
    lapic_write(lapic, APIC_LVT0, (lapic_read(lapic, APIC_LVT0) & ~DELIVERY_MODE_MASK) | DELIVERY_EXTINT);
    lapic_write(lapic, APIC_LVT1, (lapic_read(lapic, APIC_LVT1) & ~DELIVERY_MODE_MASK) | DELIVERY_NMI);
    return lapic;
}

} // namespace qtbox::boot
