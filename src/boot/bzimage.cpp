#include <qtbox/boot/bzimage.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace qtbox::boot {

namespace {

template<typename T>
T load_le(ByteView bytes, std::size_t offset)
{
    T value {};
    std::memcpy(&value, bytes.data() + offset, sizeof(T));
    return value; // x86_64 only: the host is little-endian like the format
}

// Far above LOAD_PHYSICAL_ADDR of any real kernel (16 MiB on x86_64);
// keeps the layout arithmetic clear of overflow.
constexpr std::uint64_t MAX_PREFERRED_ADDRESS = 1ull << 40;

std::uint64_t align_up(std::uint64_t value, std::uint64_t alignment)
{
    if (alignment == 0)
        return value;
    return (value + alignment - 1) / alignment * alignment;
}

} // namespace

ErrorOr<BzImage> parse_bzimage(ByteView image)
{
    if (image.size() > MAX_KERNEL_SIZE)
        return Error::from_code(BootError::Unsupported,
            fmt::format("kernel is {} MiB, more than the {} MiB limit", image.size() >> 20, MAX_KERNEL_SIZE >> 20));
    if (image.size() < setup::HEADER_LIMIT)
        return Error::from_code(BootError::NotBzImage, "not a bzImage: the file is too small for a setup header");
    if (load_le<std::uint32_t>(image, setup::HEADER) != setup::HDRS_MAGIC)
        return Error::from_code(BootError::NotBzImage, "not a bzImage: no \"HdrS\" setup header at offset 0x202");

    BzImage result;
    result.version = load_le<std::uint16_t>(image, setup::VERSION);
    std::uint8_t loadflags = image[setup::LOADFLAGS];
    if (result.version < 0x0200 || !(loadflags & setup::LOADED_HIGH))
        return Error::from_code(BootError::NotBzImage, "not a bzImage: a zImage or an image that does not load high");
    if (result.version < setup::MIN_VERSION)
        return Error::from_code(BootError::Unsupported,
            fmt::format("boot protocol {}.{:02} is older than 2.12, which has the 64-bit entry point",
                result.version >> 8, result.version & 0xFF));
    result.xloadflags = load_le<std::uint16_t>(image, setup::XLOADFLAGS);
    if (!(result.xloadflags & setup::XLF_KERNEL_64))
        return Error::from_code(BootError::Unsupported, "the kernel has no 64-bit entry point (XLF_KERNEL_64 is clear)");

    std::size_t header_end = setup::HEADER + image[setup::JUMP + 1];
    if (header_end > setup::HEADER_LIMIT)
        return Error::from_code(BootError::NotBzImage, "setup header runs past its space in boot_params");
    result.setup_header = image.subspan(setup::SETUP_SECTS, header_end - setup::SETUP_SECTS);

    std::size_t setup_sects = image[setup::SETUP_SECTS];
    if (setup_sects == 0)
        setup_sects = 4; // boot.rst: "If this field is 0, the real value is 4."
    std::size_t kernel_offset = (setup_sects + 1) * 512;
    if (kernel_offset >= image.size())
        return Error::from_code(BootError::Truncated, "bzImage ends inside its setup code");
    result.kernel = image.subspan(kernel_offset);

    result.initrd_address_max = load_le<std::uint32_t>(image, setup::INITRD_ADDR_MAX);
    result.kernel_alignment = load_le<std::uint32_t>(image, setup::KERNEL_ALIGNMENT);
    result.relocatable = image[setup::RELOCATABLE_KERNEL] != 0;
    result.cmdline_size = load_le<std::uint32_t>(image, setup::CMDLINE_SIZE);
    result.preferred_address = load_le<std::uint64_t>(image, setup::PREF_ADDRESS);
    result.init_size = load_le<std::uint32_t>(image, setup::INIT_SIZE);
    if (result.kernel_alignment != 0 && (result.kernel_alignment & (result.kernel_alignment - 1)) != 0)
        return Error::from_code(BootError::NotBzImage, fmt::format("kernel_alignment {:#x} is not a power of two", result.kernel_alignment));
    if (result.preferred_address > MAX_PREFERRED_ADDRESS)
        return Error::from_code(BootError::NotBzImage, fmt::format("pref_address {:#x} is out of range", result.preferred_address));
    if (result.init_size < result.kernel.size())
        return Error::from_code(BootError::NotBzImage, "init_size is smaller than the kernel itself");
    return result;
}

std::uint64_t kernel_reserved_end(BzImage const& image, std::uint64_t load_address)
{
    std::uint64_t start = align_up(load_address, image.kernel_alignment);
    return std::max(start, image.preferred_address) + image.init_size;
}

} // namespace qtbox::boot
