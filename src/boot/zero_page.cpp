#include <qtbox/boot/layout.hpp>
#include <qtbox/boot/zero_page.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace qtbox::boot {

namespace {

template<typename T>
void store_le(std::span<std::uint8_t> bytes, std::size_t offset, T value)
{
    std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

} // namespace

std::vector<E820Entry> e820_map(std::span<kvm::MemoryRegion const> ram)
{
    std::vector<E820Entry> map;
    map.push_back({ 0, EBDA_START, E820Type::Ram });
    map.push_back({ EBDA_START, HIGH_MEMORY_START - EBDA_START, E820Type::Reserved });
    for (auto const& region : ram) {
        std::uint64_t start = std::max(region.guest_address, HIGH_MEMORY_START);
        std::uint64_t end = region.guest_address + region.size;
        if (end > start)
            map.push_back({ start, end - start, E820Type::Ram });
    }
    return map;
}

ErrorOr<std::array<std::uint8_t, zero_page::SIZE>> build_zero_page(BzImage const& image,
    ZeroPageParameters const& parameters)
{
    if (parameters.e820.size() > E820_MAX_ENTRIES)
        return Error::from_code(BootError::TooMany, fmt::format("{} e820 entries, the zero page holds {}", parameters.e820.size(), E820_MAX_ENTRIES));
    // Everything below 4 GiB lets the ext_* high halves stay zero; the
    // layout never puts these above 4 GiB.
    for (std::uint64_t address : { parameters.cmdline_address, parameters.initrd_address, parameters.load_address,
             parameters.initrd_address + parameters.initrd_size }) {
        if (address > 0xFFFFFFFFull)
            return Error::from_code(BootError::NoRoom, fmt::format("boot address {:#x} is above 4 GiB", address));
    }

    std::array<std::uint8_t, zero_page::SIZE> page {};
    std::span<std::uint8_t> bytes(page);
    std::memcpy(page.data() + setup::SETUP_SECTS, image.setup_header.data(), image.setup_header.size());
    store_le<std::uint16_t>(bytes, setup::BOOT_FLAG, 0xAA55);
    store_le<std::uint32_t>(bytes, setup::HEADER, setup::HDRS_MAGIC);
    page[setup::TYPE_OF_LOADER] = zero_page::LOADER_UNDEFINED;
    store_le<std::uint32_t>(bytes, setup::CODE32_START, static_cast<std::uint32_t>(parameters.load_address));
    store_le<std::uint32_t>(bytes, setup::RAMDISK_IMAGE, static_cast<std::uint32_t>(parameters.initrd_address));
    store_le<std::uint32_t>(bytes, setup::RAMDISK_SIZE, static_cast<std::uint32_t>(parameters.initrd_size));
    store_le<std::uint32_t>(bytes, setup::CMD_LINE_PTR, static_cast<std::uint32_t>(parameters.cmdline_address));
    store_le<std::uint64_t>(bytes, zero_page::ACPI_RSDP_ADDR, parameters.rsdp_address);
    page[zero_page::SENTINEL] = 0;
    page[zero_page::E820_ENTRIES] = static_cast<std::uint8_t>(parameters.e820.size());
    for (std::size_t i = 0; i < parameters.e820.size(); ++i) {
        std::size_t offset = zero_page::E820_TABLE + i * zero_page::E820_ENTRY_SIZE;
        store_le<std::uint64_t>(bytes, offset, parameters.e820[i].address);
        store_le<std::uint64_t>(bytes, offset + 8, parameters.e820[i].size);
        store_le<std::uint32_t>(bytes, offset + 16, static_cast<std::uint32_t>(parameters.e820[i].type));
    }
    return page;
}

ErrorOr<Bytes> command_line_bytes(BzImage const& image, std::string_view cmdline)
{
    std::uint64_t limit = std::min<std::uint64_t>(image.cmdline_size, CMDLINE_MAX_SIZE - 1);
    if (cmdline.size() > limit)
        return Error::from_code(BootError::CommandLineTooLong,
            fmt::format("kernel command line is {} bytes; this kernel accepts at most {}", cmdline.size(), limit));
    if (cmdline.find('\0') != std::string_view::npos)
        return Error::from_code(BootError::CommandLineTooLong, "kernel command line contains a NUL byte");
    Bytes bytes = to_bytes(cmdline);
    bytes.push_back(0);
    return bytes;
}

ErrorOr<std::uint64_t> place_initrd(BzImage const& image, std::span<kvm::MemoryRegion const> ram,
    std::uint64_t load_address, std::uint64_t initrd_size)
{
    if (ram.empty())
        return Error::from_code(BootError::NoRoom, "no guest RAM");
    // The first region always starts at 0 and ends at or below the hole.
    std::uint64_t top = ram.front().guest_address + ram.front().size;
    if (!(image.xloadflags & setup::XLF_CAN_BE_LOADED_ABOVE_4G))
        top = std::min<std::uint64_t>(top, static_cast<std::uint64_t>(image.initrd_address_max) + 1);
    std::uint64_t floor = kernel_reserved_end(image, load_address);
    std::uint64_t needed = (initrd_size + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
    if (top < floor || top - floor < needed)
        return Error::from_code(BootError::NoRoom,
            fmt::format("the initrd ({} MiB) does not fit between the kernel's {} MiB working area and the end of low memory at {} MiB",
                (initrd_size + MIB - 1) / MIB, (floor + MIB - 1) / MIB, top / MIB));
    return (top - needed) / PAGE_SIZE * PAGE_SIZE;
}

} // namespace qtbox::boot
