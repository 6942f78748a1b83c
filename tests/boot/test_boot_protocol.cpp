#include <qtbox/boot/bzimage.hpp>
#include <qtbox/boot/cpu.hpp>
#include <qtbox/boot/layout.hpp>
#include <qtbox/boot/zero_page.hpp>

#include <doctest/doctest.h>

#include <cstring>

using namespace qtbox;
using namespace qtbox::boot;

namespace {

void put(Bytes& bytes, std::size_t offset, std::uint64_t value, int width)
{
    for (int i = 0; i < width; ++i)
        bytes[offset + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value >> (8 * i));
}

std::uint64_t get(ByteView bytes, std::size_t offset, int width)
{
    std::uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i)
        value = (value << 8) | bytes[offset + static_cast<std::size_t>(i)];
    return value;
}

struct ImageSpec {
    std::uint16_t version = 0x020F;
    std::uint8_t loadflags = 0x01;
    std::uint16_t xloadflags = 0x7F;
    std::uint8_t setup_sects = 3;
    std::size_t kernel_size = 8192;
    std::uint32_t init_size = 0x3378000;
    std::uint32_t alignment = 0x200000;
    std::uint64_t preferred = 0x1000000;
    std::uint32_t cmdline_size = 2047;
};

// The fields of Debian's 6.1 cloud kernel (header ends at 0x26C).
Bytes make_image(ImageSpec const& spec = {})
{
    std::size_t setup = (spec.setup_sects == 0 ? 4u : spec.setup_sects) + 1u;
    Bytes image(setup * 512 + spec.kernel_size, 0);
    image[0x1F1] = spec.setup_sects;
    put(image, 0x1FE, 0xAA55, 2);
    image[0x200] = 0xEB;
    image[0x201] = 0x6A;
    put(image, 0x202, 0x53726448, 4);
    put(image, 0x206, spec.version, 2);
    image[0x211] = spec.loadflags;
    put(image, 0x214, 0x100000, 4);
    put(image, 0x22C, 0x7FFFFFFF, 4);
    put(image, 0x230, spec.alignment, 4);
    image[0x234] = 1;
    put(image, 0x236, spec.xloadflags, 2);
    put(image, 0x238, spec.cmdline_size, 4);
    put(image, 0x258, spec.preferred, 8);
    put(image, 0x260, spec.init_size, 4);
    image[setup * 512] = 0xCC; // first kernel byte
    return image;
}

BzImage parse(Bytes const& image)
{
    auto result = parse_bzimage(image);
    REQUIRE_MESSAGE(!result.is_error(), (result.is_error() ? result.error().message() : ""));
    return result.value();
}

} // namespace

TEST_CASE("bzimage: the header fields and the protected-mode kernel are found")
{
    Bytes image = make_image();
    BzImage parsed = parse(image);
    CHECK(parsed.version == 0x020F);
    CHECK(parsed.setup_header.size() == 0x26C - 0x1F1);
    CHECK(parsed.setup_header.data() == image.data() + 0x1F1);
    CHECK(parsed.kernel.size() == 8192);
    CHECK(parsed.kernel[0] == 0xCC);
    CHECK(parsed.kernel.data() == image.data() + 4 * 512);
    CHECK(parsed.init_size == 0x3378000);
    CHECK(parsed.kernel_alignment == 0x200000);
    CHECK(parsed.preferred_address == 0x1000000);
    CHECK(parsed.cmdline_size == 2047);
    CHECK(parsed.relocatable);
    // The decompressor works at max(align_up(1 MiB, 2 MiB), 16 MiB) for init_size.
    CHECK(kernel_reserved_end(parsed, KERNEL_LOAD_ADDRESS) == 0x1000000 + 0x3378000);
}

TEST_CASE("bzimage: setup_sects 0 means 4")
{
    ImageSpec spec;
    spec.setup_sects = 0;
    Bytes image = make_image(spec);
    CHECK(parse(image).kernel.data() == image.data() + 5 * 512);
}

TEST_CASE("bzimage: images that cannot take the 64-bit entry are refused with their cause")
{
    auto failure_of = [](Bytes const& image) {
        auto result = parse_bzimage(image);
        REQUIRE(result.is_error());
        return result.error();
    };
    Bytes elf = make_image();
    put(elf, 0x202, 0x464C457F, 4);
    CHECK(failure_of(elf).is(BootError::NotBzImage));

    ImageSpec old;
    old.version = 0x020B;
    CHECK(failure_of(make_image(old)).is(BootError::Unsupported));

    ImageSpec zimage;
    zimage.loadflags = 0;
    CHECK(failure_of(make_image(zimage)).is(BootError::NotBzImage));

    ImageSpec thirty_two;
    thirty_two.xloadflags = 0x7E;
    CHECK(failure_of(make_image(thirty_two)).is(BootError::Unsupported));

    Bytes truncated = make_image();
    truncated.resize(4 * 512);
    CHECK(failure_of(truncated).is(BootError::Truncated));

    CHECK(failure_of(Bytes(100, 0)).is(BootError::NotBzImage));

    Bytes long_header = make_image();
    long_header[0x201] = 0x90; // header would end at 0x292
    CHECK(failure_of(long_header).is(BootError::NotBzImage));

    ImageSpec odd_alignment;
    odd_alignment.alignment = 0x300000;
    CHECK(failure_of(make_image(odd_alignment)).is(BootError::NotBzImage));

    ImageSpec tiny_init;
    tiny_init.init_size = 100;
    CHECK(failure_of(make_image(tiny_init)).is(BootError::NotBzImage));
}

TEST_CASE("layout: RAM below the 3 GiB hole, the rest from 4 GiB")
{
    auto small = ram_regions(256 * MIB);
    REQUIRE(small.size() == 1);
    CHECK(small[0].guest_address == 0);
    CHECK(small[0].size == 256 * MIB);
    auto exact = ram_regions(3 * GIB);
    REQUIRE(exact.size() == 1);
    auto big = ram_regions(5 * GIB);
    REQUIRE(big.size() == 2);
    CHECK(big[0].size == 3 * GIB);
    CHECK(big[1].guest_address == 4 * GIB);
    CHECK(big[1].size == 2 * GIB);
}

TEST_CASE("e820: low RAM, the reserved EBDA-to-1-MiB window, then RAM from 1 MiB")
{
    auto regions = ram_regions(256 * MIB);
    std::vector<E820Entry> expected = {
        { 0, 0x9FC00, E820Type::Ram },
        { 0x9FC00, 0x100000 - 0x9FC00, E820Type::Reserved },
        { 0x100000, 256 * MIB - 0x100000, E820Type::Ram },
    };
    CHECK(e820_map(regions) == expected);

    auto big = ram_regions(5 * GIB);
    auto map = e820_map(big);
    REQUIRE(map.size() == 4);
    CHECK(map[2] == E820Entry { 0x100000, 3 * GIB - 0x100000, E820Type::Ram });
    CHECK(map[3] == E820Entry { 4 * GIB, 2 * GIB, E820Type::Ram });
}

TEST_CASE("zero page: header copied, loader fields patched, e820 table filled")
{
    Bytes image = make_image();
    BzImage parsed = parse(image);
    auto regions = ram_regions(256 * MIB);
    auto map = e820_map(regions);
    ZeroPageParameters parameters;
    parameters.cmdline_address = CMDLINE_ADDRESS;
    parameters.initrd_address = 0xF000000;
    parameters.initrd_size = 0x123456;
    parameters.rsdp_address = RSDP_ADDRESS;
    parameters.e820 = map;
    auto built = build_zero_page(parsed, parameters);
    REQUIRE(!built.is_error());
    auto const& page = built.value();
    ByteView bytes(page);

    CHECK(bytes[0x1F1] == 3);                     // setup_sects, copied
    CHECK(get(bytes, 0x1FE, 2) == 0xAA55);
    CHECK(get(bytes, 0x202, 4) == 0x53726448);
    CHECK(get(bytes, 0x206, 2) == 0x020F);
    CHECK(bytes[0x210] == 0xFF);                  // type_of_loader
    CHECK(bytes[0x211] == 0x01);                  // loadflags untouched
    CHECK(get(bytes, 0x214, 4) == 0x100000);      // code32_start
    CHECK(get(bytes, 0x218, 4) == 0xF000000);     // ramdisk_image
    CHECK(get(bytes, 0x21C, 4) == 0x123456);      // ramdisk_size
    CHECK(get(bytes, 0x228, 4) == 0x20000);       // cmd_line_ptr
    CHECK(get(bytes, 0x260, 4) == 0x3378000);     // init_size, copied
    CHECK(get(bytes, 0x070, 8) == 0xE0000);       // acpi_rsdp_addr
    CHECK(bytes[0x1EF] == 0);                     // sentinel
    CHECK(get(bytes, 0x0C0, 4) == 0);             // ext_ramdisk_image
    CHECK(get(bytes, 0x0C8, 4) == 0);             // ext_cmd_line_ptr
    CHECK(bytes[0x1E8] == 3);                     // e820_entries
    CHECK(get(bytes, 0x2D0, 8) == 0);
    CHECK(get(bytes, 0x2D8, 8) == 0x9FC00);
    CHECK(get(bytes, 0x2E0, 4) == 1);
    CHECK(get(bytes, 0x2E4, 8) == 0x9FC00);
    CHECK(get(bytes, 0x2EC, 8) == 0x60400);
    CHECK(get(bytes, 0x2F4, 4) == 2);
    CHECK(get(bytes, 0x2F8, 8) == 0x100000);
    CHECK(get(bytes, 0x300, 8) == 256 * MIB - 0x100000);
    CHECK(get(bytes, 0x308, 4) == 1);
    // Nothing else was written: the header window ends at 0x26C, and past
    // the e820 table the page is zero.
    for (std::size_t offset = 0x26C; offset < 0x2D0; ++offset)
        CHECK(bytes[offset] == 0);
    for (std::size_t offset = 0x30C; offset < 4096; ++offset)
        REQUIRE(bytes[offset] == 0);
}

TEST_CASE("zero page: more than 128 e820 entries or addresses above 4 GiB are refused")
{
    Bytes image = make_image();
    BzImage parsed = parse(image);
    std::vector<E820Entry> map(129, E820Entry { 0, 4096, E820Type::Ram });
    ZeroPageParameters parameters;
    parameters.e820 = map;
    auto many = build_zero_page(parsed, parameters);
    REQUIRE(many.is_error());
    CHECK(many.error().is(BootError::TooMany));
    parameters.e820 = {};
    parameters.initrd_address = 0x100000000ull;
    auto high = build_zero_page(parsed, parameters);
    REQUIRE(high.is_error());
    CHECK(high.error().is(BootError::NoRoom));
}

TEST_CASE("command line: NUL-terminated, limited by the image's cmdline_size")
{
    ImageSpec spec;
    spec.cmdline_size = 10;
    Bytes image = make_image(spec);
    BzImage parsed = parse(image);
    auto ok = command_line_bytes(parsed, "console=S0");
    REQUIRE(!ok.is_error());
    CHECK(ok.value() == Bytes { 'c', 'o', 'n', 's', 'o', 'l', 'e', '=', 'S', '0', 0 });
    auto long_line = command_line_bytes(parsed, "console=S01");
    REQUIRE(long_line.is_error());
    CHECK(long_line.error().is(BootError::CommandLineTooLong));
    auto nul = command_line_bytes(parsed, std::string_view("a\0b", 3));
    REQUIRE(nul.is_error());
    // Our own 2 KiB buffer bounds images that claim more.
    ImageSpec huge;
    huge.cmdline_size = 1u << 20;
    Bytes huge_image = make_image(huge);
    CHECK(command_line_bytes(parse(huge_image), std::string(2047, 'x')).is_error() == false);
    CHECK(command_line_bytes(parse(huge_image), std::string(2048, 'x')).is_error());
}

TEST_CASE("initrd: top of low RAM, page aligned, clear of the kernel's working area")
{
    Bytes image = make_image();
    BzImage parsed = parse(image);
    auto regions = ram_regions(256 * MIB);
    auto placed = place_initrd(parsed, regions, KERNEL_LOAD_ADDRESS, 10 * MIB + 1);
    REQUIRE(!placed.is_error());
    CHECK(placed.value() == 256 * MIB - 10 * MIB - PAGE_SIZE);
    CHECK(placed.value() % PAGE_SIZE == 0);

    // 128 MiB RAM: the kernel needs up to 16 MiB + 51.5 MiB.
    auto small = ram_regions(128 * MIB);
    std::uint64_t room = 128 * MIB - (0x1000000 + 0x3378000);
    CHECK(!place_initrd(parsed, small, KERNEL_LOAD_ADDRESS, room).is_error());
    auto too_big = place_initrd(parsed, small, KERNEL_LOAD_ADDRESS, room + 1);
    REQUIRE(too_big.is_error());
    CHECK(too_big.error().is(BootError::NoRoom));

    // Above 3 GiB of RAM the initrd still lands below the hole, and below
    // initrd_addr_max when the kernel cannot take it higher.
    auto big = ram_regions(8 * GIB);
    CHECK(place_initrd(parsed, big, KERNEL_LOAD_ADDRESS, MIB).value() == 3 * GIB - MIB);
    ImageSpec low_only;
    low_only.xloadflags = 0x01;
    Bytes low_image = make_image(low_only);
    CHECK(place_initrd(parse(low_image), big, KERNEL_LOAD_ADDRESS, MIB).value() == 0x80000000ull - MIB);
}

TEST_CASE("page tables: identity map of 4 GiB with 2 MiB pages")
{
    Bytes tables = identity_page_tables();
    REQUIRE(tables.size() == PAGE_TABLES_SIZE);
    CHECK(get(tables, 0, 8) == (0xA000 | 3));
    for (std::size_t i = 1; i < 512; ++i)
        REQUIRE(get(tables, i * 8, 8) == 0);
    for (std::size_t i = 0; i < 4; ++i)
        CHECK(get(tables, 4096 + i * 8, 8) == ((0xB000 + i * 4096) | 3));
    for (std::size_t i = 4; i < 512; ++i)
        REQUIRE(get(tables, 4096 + i * 8, 8) == 0);
    for (std::uint64_t page = 0; page < 2048; ++page)
        REQUIRE(get(tables, 8192 + page * 8, 8) == ((page << 21) | 0x83));
    CHECK(get(tables, 8192 + 2047 * 8, 8) == 0xFFE00083);
}

TEST_CASE("gdt: flat code, data and busy TSS descriptors decode to KVM segments")
{
    Bytes gdt = gdt_bytes();
    REQUIRE(gdt.size() == 32);
    CHECK(get(gdt, 8, 8) == 0x00AF9B000000FFFF);

    kvm_segment code = segment_from_descriptor(BOOT_GDT[1], 0x08);
    CHECK(code.base == 0);
    CHECK(code.limit == 0xFFFFFFFF);
    CHECK(code.selector == 0x08);
    CHECK(code.type == 0xB);
    CHECK(code.present == 1);
    CHECK(code.dpl == 0);
    CHECK(code.s == 1);
    CHECK(code.l == 1);
    CHECK(code.db == 0);
    CHECK(code.g == 1);
    CHECK(code.unusable == 0);

    kvm_segment data = segment_from_descriptor(BOOT_GDT[2], 0x10);
    CHECK(data.type == 3);
    CHECK(data.db == 1);
    CHECK(data.l == 0);
    CHECK(data.limit == 0xFFFFFFFF);

    kvm_segment tss = segment_from_descriptor(BOOT_GDT[3], 0x18);
    CHECK(tss.type == 0xB);
    CHECK(tss.s == 0);
    CHECK(tss.present == 1);

    kvm_segment null = segment_from_descriptor(0, 0);
    CHECK(null.unusable == 1);
    CHECK(null.present == 0);

    kvm_segment based = segment_from_descriptor(0x12CF93345678FFFFull, 0x10);
    CHECK(based.base == 0x12345678);
}

TEST_CASE("cpu: long-mode sregs, boot registers, FPU, MSRs and LAPIC LINTs")
{
    kvm_sregs base {};
    base.apic_base = 0xFEE00900;
    base.cr0 = 0x60000010;
    kvm_sregs sregs = long_mode_sregs(base);
    CHECK(sregs.apic_base == 0xFEE00900);
    CHECK(sregs.cr0 == 0x80050033);
    CHECK(sregs.cr3 == 0x9000);
    CHECK(sregs.cr4 == 0x20);
    CHECK(sregs.efer == 0x500);
    CHECK(sregs.gdt.base == 0x500);
    CHECK(sregs.gdt.limit == 31);
    CHECK(sregs.idt.base == 0x520);
    CHECK(sregs.idt.limit == 7);
    CHECK(sregs.cs.selector == 0x08);
    CHECK(sregs.cs.l == 1);
    CHECK(sregs.ss.selector == 0x10);
    CHECK(sregs.ds.selector == 0x10);
    CHECK(sregs.tr.selector == 0x18);

    kvm_regs regs = boot_regs(0x100200);
    CHECK(regs.rip == 0x100200);
    CHECK(regs.rsi == 0x7000);
    CHECK(regs.rsp == 0x8FF0);
    CHECK(regs.rbp == 0x8FF0);
    CHECK(regs.rflags == 2);
    CHECK(regs.rax == 0);

    kvm_fpu fpu = boot_fpu();
    CHECK(fpu.fcw == 0x37F);
    CHECK(fpu.mxcsr == 0x1F80);

    auto msrs = boot_msrs();
    CHECK(msrs.size() == 11);
    auto value_of = [&](std::uint32_t index) -> std::int64_t {
        for (auto const& msr : msrs)
            if (msr.first == index)
                return static_cast<std::int64_t>(msr.second);
        return -1;
    };
    CHECK(value_of(0x1A0) == 1);
    CHECK(value_of(0x2FF) == 0x806);
    CHECK(value_of(0xC0000082) == 0);
    CHECK(value_of(0x10) == 0);

    kvm_lapic_state lapic {};
    std::uint32_t lvt0 = 0x00010700 | 0x400; // masked, some mode bits set
    std::memcpy(lapic.regs + 0x350, &lvt0, 4);
    kvm_lapic_state wired = wire_lapic_lints(lapic);
    std::uint32_t out0, out1;
    std::memcpy(&out0, wired.regs + 0x350, 4);
    std::memcpy(&out1, wired.regs + 0x360, 4);
    CHECK(out0 == 0x00010700);
    CHECK(out1 == 0x400);
}
