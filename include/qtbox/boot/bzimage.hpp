// bzImage parsing for the 64-bit boot protocol (Linux boot.rst): find the
// setup header, check that the image has a 64-bit entry point, and say
// where the protected-mode kernel goes and how much memory it needs before
// it reads the e820 map.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstdint>

namespace qtbox::boot {

// Causes a caller may branch on (Error::is()).
enum class BootError {
    NotBzImage = 1,     // no "HdrS" / not a bzImage (LOADED_HIGH clear)
    Unsupported,        // protocol < 2.12 or no 64-bit entry point
    Truncated,          // the file ends before what its header promises
    CommandLineTooLong, // longer than the image accepts
    NoRoom,             // the initrd, tables or kernel do not fit in RAM
    TooMany,            // more vCPUs, devices or e820 entries than the layout holds
};

// Setup header offsets (boot.rst "The Real-Mode Kernel Header"), relative to
// the start of the file, which is also their offset inside boot_params.
namespace setup {
constexpr std::size_t SETUP_SECTS = 0x1F1;
constexpr std::size_t BOOT_FLAG = 0x1FE;
constexpr std::size_t JUMP = 0x200;
constexpr std::size_t HEADER = 0x202;
constexpr std::size_t VERSION = 0x206;
constexpr std::size_t TYPE_OF_LOADER = 0x210;
constexpr std::size_t LOADFLAGS = 0x211;
constexpr std::size_t CODE32_START = 0x214;
constexpr std::size_t RAMDISK_IMAGE = 0x218;
constexpr std::size_t RAMDISK_SIZE = 0x21C;
constexpr std::size_t CMD_LINE_PTR = 0x228;
constexpr std::size_t INITRD_ADDR_MAX = 0x22C;
constexpr std::size_t KERNEL_ALIGNMENT = 0x230;
constexpr std::size_t RELOCATABLE_KERNEL = 0x234;
constexpr std::size_t XLOADFLAGS = 0x236;
constexpr std::size_t CMDLINE_SIZE = 0x238;
constexpr std::size_t PREF_ADDRESS = 0x258;
constexpr std::size_t INIT_SIZE = 0x260;
// The setup header ends at 0x202 + byte[0x201]; boot_params reserves up to
// 0x290 for it (edd_mbr_sig_buffer follows), which bounds what we copy.
constexpr std::size_t HEADER_LIMIT = 0x290;

constexpr std::uint32_t HDRS_MAGIC = 0x53726448; // "HdrS"
constexpr std::uint16_t MIN_VERSION = 0x020C;    // 2.12: xloadflags exists
constexpr std::uint8_t LOADED_HIGH = 0x01;
constexpr std::uint16_t XLF_KERNEL_64 = 0x01;
constexpr std::uint16_t XLF_CAN_BE_LOADED_ABOVE_4G = 0x02;
// "64-bit kernel entry point ... start address of loaded 64-bit kernel
// plus 0x200" (boot.rst).
constexpr std::uint64_t ENTRY_64_OFFSET = 0x200;
} // namespace setup

// The largest image we accept: far above any distribution kernel (Debian's
// cloud kernel is 14 MiB) and small enough to hold in memory.
constexpr std::size_t MAX_KERNEL_SIZE = 256 * 1024 * 1024;

struct BzImage {
    ByteView setup_header;    // file bytes [0x1F1, end of header)
    ByteView kernel;          // the protected-mode part, loaded at load_address
    std::uint16_t version { 0 };
    std::uint16_t xloadflags { 0 };
    std::uint32_t initrd_address_max { 0 };
    std::uint32_t kernel_alignment { 0 };
    bool relocatable { false };
    std::uint32_t cmdline_size { 0 }; // longest command line, NUL excluded
    std::uint64_t preferred_address { 0 };
    std::uint32_t init_size { 0 };
};

// `image` must outlive the result (it holds views into it).
ErrorOr<BzImage> parse_bzimage(ByteView image);

// Where the protected-mode kernel is copied (code32_start default).
constexpr std::uint64_t KERNEL_LOAD_ADDRESS = 0x100000;

// The end of the memory the kernel may use before it has read the e820
// map: the decompressor runs at max(align_up(load, kernel_alignment),
// pref_address) and needs init_size bytes there (boot.rst "init_size";
// arch/x86/boot/compressed/head_64.S never goes below LOAD_PHYSICAL_ADDR,
// which is pref_address).
std::uint64_t kernel_reserved_end(BzImage const& image, std::uint64_t load_address);

} // namespace qtbox::boot
