// The zero page (struct boot_params) and its e820 map (Linux
// Documentation/arch/x86/zero-page.rst, boot.rst; docs/PLATFORMS.md §V1.2, §V1.4).
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/boot/bzimage.hpp>
#include <qtbox/kvm/memory.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace qtbox::boot {

enum class E820Type : std::uint32_t {
    Ram = 1,
    Reserved = 2,
};

struct E820Entry {
    std::uint64_t address { 0 };
    std::uint64_t size { 0 };
    E820Type type { E820Type::Ram };
    bool operator==(E820Entry const&) const = default;
};

// boot_params holds at most 128 entries (E820_MAX_ENTRIES_ZEROPAGE).
constexpr std::size_t E820_MAX_ENTRIES = 128;

// [0, EBDA) RAM; [EBDA, 1 MiB) reserved (ACPI tables and RSDP live there,
// the legacy VGA/ROM area needs no entry of its own); then every RAM region
// from 1 MiB up.
std::vector<E820Entry> e820_map(std::span<kvm::MemoryRegion const> ram);

// zero-page.rst offsets used below.
namespace zero_page {
constexpr std::size_t SIZE = 4096;
constexpr std::size_t ACPI_RSDP_ADDR = 0x070;
constexpr std::size_t EXT_RAMDISK_IMAGE = 0x0C0;
constexpr std::size_t EXT_RAMDISK_SIZE = 0x0C4;
constexpr std::size_t EXT_CMD_LINE_PTR = 0x0C8;
constexpr std::size_t E820_ENTRIES = 0x1E8;
constexpr std::size_t SENTINEL = 0x1EF;
constexpr std::size_t E820_TABLE = 0x2D0;
constexpr std::size_t E820_ENTRY_SIZE = 20;
// "undefined" boot loader id: we are not one of the registered loaders.
constexpr std::uint8_t LOADER_UNDEFINED = 0xFF;
} // namespace zero_page

struct ZeroPageParameters {
    std::uint64_t load_address { KERNEL_LOAD_ADDRESS };
    std::uint64_t cmdline_address { 0 };
    std::uint64_t initrd_address { 0 };
    std::uint64_t initrd_size { 0 };
    std::uint64_t rsdp_address { 0 };
    std::span<E820Entry const> e820;
};

// The image's setup header copied to 0x1F1, then the loader's fields
// patched in: boot_flag, type_of_loader, code32_start, ramdisk, cmd_line_ptr,
// acpi_rsdp_addr and the e820 table. Everything else stays zero (the
// sentinel at 0x1EF included, or the kernel would wipe our fields).
ErrorOr<std::array<std::uint8_t, zero_page::SIZE>> build_zero_page(BzImage const& image,
    ZeroPageParameters const& parameters);

// Checks a command line against the image's limit and returns it with its
// terminating NUL, ready to copy to CMDLINE_ADDRESS.
ErrorOr<Bytes> command_line_bytes(BzImage const& image, std::string_view cmdline);

// Where the initrd goes: as high as possible in the RAM below the MMIO
// hole (and below initrd_addr_max unless the kernel can take it above
// 4 GiB), page aligned, and clear of [load_address, kernel_reserved_end).
// Several initrds are concatenated there (newc archives may be
// concatenated: the kernel unpacks one after the other).
ErrorOr<std::uint64_t> place_initrd(BzImage const& image, std::span<kvm::MemoryRegion const> ram,
    std::uint64_t load_address, std::uint64_t initrd_size);

} // namespace qtbox::boot
