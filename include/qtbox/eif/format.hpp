// The Enclave Image File layout, byte-compatible with AWS Nitro EIF v4
// (docs/FORMATS.md §3; docs/PLATFORMS.md §N2). All integers are big-endian.
//
//   offset 0    header, 548 bytes:
//               magic ".eif" | u16 version (4) | u16 flags (bit 0 aarch64)
//               | u64 default_mem | u64 default_cpus | u16 reserved
//               | u16 num_sections | u64 section_offsets[32]
//               | u64 section_sizes[32] | u32 unused | u32 crc32
//   offset 548  sections back to back, each a 12-byte header
//               (u16 type | u16 flags | u64 data size) and its data:
//               kernel, cmdline, metadata, ramdisk x N, signature (if signed)
//
// section_offsets[i] is the file offset of section i's HEADER and
// section_sizes[i] the size of its DATA. The CRC-32 (zlib's) covers header
// bytes [0, 544) and then every section header and data in file order.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <array>
#include <cstdint>
#include <string_view>

namespace qtbox::eif {

constexpr std::array<std::uint8_t, 4> MAGIC { '.', 'e', 'i', 'f' };
constexpr std::uint16_t VERSION = 4;
constexpr std::size_t HEADER_SIZE = 548;
constexpr std::size_t CRC_OFFSET = 544;
constexpr std::size_t SECTION_HEADER_SIZE = 12;
constexpr std::size_t MAX_SECTIONS = 32;
constexpr std::uint16_t FLAG_ARCH_AARCH64 = 0x1;
// What Nitro's builder writes; neither is used to launch (docs/FORMATS.md §3's memory
// rule and the CLI decide).
constexpr std::uint64_t DEFAULT_MEMORY = 1ull << 30;
constexpr std::uint64_t DEFAULT_CPUS = 2;

// Named limits for untrusted EIFs.
constexpr std::uint64_t MAX_KERNEL_SIZE = 256ull << 20;
// x86 COMMAND_LINE_SIZE is 2048 including the NUL the loader adds.
constexpr std::uint64_t MAX_CMDLINE_SIZE = 2047;
constexpr std::uint64_t MAX_METADATA_SIZE = 1ull << 20;
constexpr std::uint64_t MAX_SIGNATURE_SIZE = 64ull << 10;
constexpr std::size_t MAX_RAMDISKS = MAX_SECTIONS - 4;

enum class SectionType : std::uint16_t {
    Invalid = 0,
    Kernel = 1,
    Cmdline = 2,
    Ramdisk = 3,
    Signature = 4,
    Metadata = 5,
};

// "kernel", "cmdline", "ramdisk", "signature", "metadata".
std::string_view section_type_name(SectionType type);

// docs/FORMATS.md §3's order: kernel 0, cmdline 1, metadata 2, ramdisk 3, signature 4;
// -1 for any other type. Ranks never decrease along a file and only
// ramdisks repeat (the writer enforces it, the reader checks it).
int section_order_rank(SectionType type);

// The largest section of this type the reader accepts (MAX_*_SIZE above);
// UINT64_MAX for ramdisks, which are bounded by the file size only.
std::uint64_t section_size_limit(SectionType type);

// docs/FORMATS.md §3: an enclave's memory is at least 128 MiB and at least
// 4 times its image (`image_bytes`), in whole MiB, rounded up.
constexpr std::uint64_t MIN_ENCLAVE_MEMORY_MIB = 128;
std::uint64_t minimum_memory_mib(std::uint64_t image_bytes);

// Causes that callers branch on (the VMM maps them to its own errors).
enum class EifError {
    Malformed = 1,     // structure, order, offsets, unknown section type
    Truncated,         // the file ends before a declared size
    UnsupportedVersion,
    LimitExceeded,
    BadCrc,
    BadSignature,      // the COSE signature or its structure
    Pcr0Mismatch,      // signed PCR0 differs from the image's
    CertificateTime,   // signing certificate not valid at the given time
    KeyMismatch,       // private key does not match the certificate
    MissingInput,      // kernel, modules, blobs
    BadInput,          // command, environment, cmdline given by the user or image
};

struct Header {
    std::uint16_t version { VERSION };
    std::uint16_t flags { 0 };
    std::uint64_t default_memory { DEFAULT_MEMORY };
    std::uint64_t default_cpus { DEFAULT_CPUS };
    std::uint16_t reserved { 0 };
    std::uint16_t num_sections { 0 };
    std::array<std::uint64_t, MAX_SECTIONS> section_offsets {};
    std::array<std::uint64_t, MAX_SECTIONS> section_sizes {};
    std::uint32_t unused { 0 };
    std::uint32_t crc32 { 0 };
};

struct SectionHeader {
    SectionType type { SectionType::Invalid };
    std::uint16_t flags { 0 };
    std::uint64_t size { 0 };
};

std::array<std::uint8_t, HEADER_SIZE> encode_header(Header const& header);
// Checks the magic only; the reader does the rest.
ErrorOr<Header> decode_header(ByteView bytes);
std::array<std::uint8_t, SECTION_HEADER_SIZE> encode_section_header(SectionHeader const& header);
SectionHeader decode_section_header(ByteView bytes);

// CRC-32 (ISO-HDLC, zlib's crc32) helpers for CRCs computed in pieces.
std::uint32_t crc32_update(std::uint32_t crc, ByteView bytes);
// CRC of A‖B from CRC(A), CRC(B) and |B| (zlib's crc32_combine64).
std::uint32_t crc32_join(std::uint32_t crc_a, std::uint32_t crc_b, std::uint64_t length_b);

} // namespace qtbox::eif
