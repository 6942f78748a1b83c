#include <qtbox/eif/format.hpp>

#include <algorithm>
#include <zlib.h>

namespace qtbox::eif {

namespace {

template<typename T>
void put_be(std::uint8_t* out, T value)
{
    for (std::size_t i = 0; i < sizeof(T); ++i)
        out[i] = static_cast<std::uint8_t>(value >> (8 * (sizeof(T) - 1 - i)));
}

template<typename T>
T get_be(std::uint8_t const* in)
{
    T value = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
        value = static_cast<T>((value << 8) | in[i]);
    return value;
}

} // namespace

std::string_view section_type_name(SectionType type)
{
    switch (type) {
    case SectionType::Invalid:
        return "invalid";
    case SectionType::Kernel:
        return "kernel";
    case SectionType::Cmdline:
        return "cmdline";
    case SectionType::Ramdisk:
        return "ramdisk";
    case SectionType::Signature:
        return "signature";
    case SectionType::Metadata:
        return "metadata";
    }
    return "unknown";
}

int section_order_rank(SectionType type)
{
    switch (type) {
    case SectionType::Kernel:
        return 0;
    case SectionType::Cmdline:
        return 1;
    case SectionType::Metadata:
        return 2;
    case SectionType::Ramdisk:
        return 3;
    case SectionType::Signature:
        return 4;
    case SectionType::Invalid:
        break;
    }
    return -1;
}

std::uint64_t section_size_limit(SectionType type)
{
    switch (type) {
    case SectionType::Kernel:
        return MAX_KERNEL_SIZE;
    case SectionType::Cmdline:
        return MAX_CMDLINE_SIZE;
    case SectionType::Metadata:
        return MAX_METADATA_SIZE;
    case SectionType::Signature:
        return MAX_SIGNATURE_SIZE;
    case SectionType::Ramdisk:
    case SectionType::Invalid:
        break;
    }
    return UINT64_MAX;
}

std::array<std::uint8_t, HEADER_SIZE> encode_header(Header const& header)
{
    std::array<std::uint8_t, HEADER_SIZE> bytes {};
    std::copy(MAGIC.begin(), MAGIC.end(), bytes.begin());
    put_be<std::uint16_t>(&bytes[4], header.version);
    put_be<std::uint16_t>(&bytes[6], header.flags);
    put_be<std::uint64_t>(&bytes[8], header.default_memory);
    put_be<std::uint64_t>(&bytes[16], header.default_cpus);
    put_be<std::uint16_t>(&bytes[24], header.reserved);
    put_be<std::uint16_t>(&bytes[26], header.num_sections);
    for (std::size_t i = 0; i < MAX_SECTIONS; ++i) {
        put_be<std::uint64_t>(&bytes[28 + 8 * i], header.section_offsets[i]);
        put_be<std::uint64_t>(&bytes[284 + 8 * i], header.section_sizes[i]);
    }
    put_be<std::uint32_t>(&bytes[540], header.unused);
    put_be<std::uint32_t>(&bytes[CRC_OFFSET], header.crc32);
    return bytes;
}

ErrorOr<Header> decode_header(ByteView bytes)
{
    if (bytes.size() < HEADER_SIZE)
        return Error::from_code(EifError::Truncated, "file is shorter than the 548-byte EIF header");
    if (!std::equal(MAGIC.begin(), MAGIC.end(), bytes.begin()))
        return Error::from_code(EifError::Malformed, "not an EIF file (bad magic)");
    Header header;
    header.version = get_be<std::uint16_t>(&bytes[4]);
    header.flags = get_be<std::uint16_t>(&bytes[6]);
    header.default_memory = get_be<std::uint64_t>(&bytes[8]);
    header.default_cpus = get_be<std::uint64_t>(&bytes[16]);
    header.reserved = get_be<std::uint16_t>(&bytes[24]);
    header.num_sections = get_be<std::uint16_t>(&bytes[26]);
    for (std::size_t i = 0; i < MAX_SECTIONS; ++i) {
        header.section_offsets[i] = get_be<std::uint64_t>(&bytes[28 + 8 * i]);
        header.section_sizes[i] = get_be<std::uint64_t>(&bytes[284 + 8 * i]);
    }
    header.unused = get_be<std::uint32_t>(&bytes[540]);
    header.crc32 = get_be<std::uint32_t>(&bytes[CRC_OFFSET]);
    return header;
}

std::array<std::uint8_t, SECTION_HEADER_SIZE> encode_section_header(SectionHeader const& header)
{
    std::array<std::uint8_t, SECTION_HEADER_SIZE> bytes {};
    put_be<std::uint16_t>(&bytes[0], static_cast<std::uint16_t>(header.type));
    put_be<std::uint16_t>(&bytes[2], header.flags);
    put_be<std::uint64_t>(&bytes[4], header.size);
    return bytes;
}

SectionHeader decode_section_header(ByteView bytes)
{
    SectionHeader header;
    header.type = static_cast<SectionType>(get_be<std::uint16_t>(&bytes[0]));
    header.flags = get_be<std::uint16_t>(&bytes[2]);
    header.size = get_be<std::uint64_t>(&bytes[4]);
    return header;
}

std::uint32_t crc32_update(std::uint32_t crc, ByteView bytes)
{
    // zlib takes uInt lengths: feed large views in pieces.
    while (!bytes.empty()) {
        auto take = std::min<std::size_t>(bytes.size(), 1u << 30);
        crc = static_cast<std::uint32_t>(::crc32(crc, bytes.data(), static_cast<uInt>(take)));
        bytes = bytes.subspan(take);
    }
    return crc;
}

std::uint32_t crc32_join(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t length_b)
{
    return static_cast<std::uint32_t>(::crc32_combine64(crc_a, crc_b, static_cast<z_off64_t>(length_b)));
}

std::uint64_t minimum_memory_mib(std::uint64_t image_bytes)
{
    constexpr std::uint64_t MIB = 1 << 20;
    std::uint64_t four_times = (image_bytes / MIB) * 4 + ((image_bytes % MIB) * 4 + MIB - 1) / MIB;
    return std::max<std::uint64_t>(MIN_ENCLAVE_MEMORY_MIB, four_times);
}

} // namespace qtbox::eif
