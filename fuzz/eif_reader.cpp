// libFuzzer target: the EIF reader (docs/FORMATS.md §3) and `eif-build describe` /
// `qt enclave query-eif` (docs/FORMATS.md §7, §8) on arbitrary bytes given as a file:
// the section walk, the streaming CRC/PCR pass, the cmdline, metadata and
// signature sections (parse_signature_section, check_signature).
//
// Properties checked beyond "no crash, no hang, no leak":
//   - every section the reader accepts lies inside the file, the sections
//     tile it from offset 548 to the end in docs/FORMATS.md §3 order, each within its
//     named limit, and the header's table agrees with them;
//   - verify() hands out exactly the file's bytes of each section, and its
//     CRC is zlib's crc32 over [0, 544) and [548, end) (computed here
//     independently of crc32_join);
//   - describe_eif succeeds only on a file the reader accepts with a good
//     CRC, and then lists the same sections.
//
// A mutated file almost never keeps its section table and CRC right, which
// would stop every run at the first cross-check. So each input is also run
// once "repaired": the table, the section count and the CRC rewritten to
// match what the section headers say, which lets the fuzzer reach the
// metadata, cmdline and signature code with arbitrary contents.
#include "support.hpp"

#include <qtbox/eif/describe.hpp>
#include <qtbox/eif/reader.hpp>
#include <qtbox/eif/signature.hpp>

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <unistd.h>

namespace {

using namespace qtbox;
using fuzz::require;

// 2026-03-01T12:00:00Z: a fixed instant, so a run does not depend on the clock.
constexpr UnixMillis AT = 1772366400000;

std::uint32_t reference_crc(ByteView input)
{
    auto crc = crc32(0, input.data(), static_cast<uInt>(eif::CRC_OFFSET));
    crc = crc32(crc, input.data() + eif::HEADER_SIZE, static_cast<uInt>(input.size() - eif::HEADER_SIZE));
    return static_cast<std::uint32_t>(crc);
}

std::uint32_t stored_crc(ByteView input)
{
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < 4; ++i)
        value = (value << 8) | input[eif::CRC_OFFSET + i];
    return value;
}

void check_layout(eif::EifReader const& reader, ByteView input)
{
    auto const& sections = reader.sections();
    require(reader.file_size() == input.size());
    require(sections.size() >= 3 && sections.size() <= eif::MAX_SECTIONS);
    require(sections[0].type == eif::SectionType::Kernel && sections[1].type == eif::SectionType::Cmdline);
    require(!reader.ramdisks().empty());
    require(reader.header().num_sections == sections.size());
    std::uint64_t expected_offset = eif::HEADER_SIZE;
    int last_rank = -1;
    for (std::size_t i = 0; i < sections.size(); ++i) {
        auto const& section = sections[i];
        require(section.index == i);
        require(section.header_offset == expected_offset);
        require(section.data_offset == section.header_offset + eif::SECTION_HEADER_SIZE);
        require(section.data_offset <= input.size() && section.size <= input.size() - section.data_offset);
        require(section.size <= eif::section_size_limit(section.type));
        int rank = eif::section_order_rank(section.type);
        require(rank >= last_rank && (rank != last_rank || section.type == eif::SectionType::Ramdisk));
        last_rank = rank;
        require(reader.header().section_offsets[i] == section.header_offset);
        require(reader.header().section_sizes[i] == section.size);
        expected_offset = section.data_offset + section.size;
    }
    require(expected_offset == input.size());
}

void exercise(ByteView input)
{
    auto file = fuzz::memory_file(input);
    auto described = eif::describe_eif(fuzz::fd_path(file), AT);
    UniqueFd copy(::dup(file.get()));
    require(copy.get() >= 0);
    auto opened = eif::EifReader::from_fd(std::move(copy), "fuzz.eif");
    if (opened.is_error()) {
        require(described.is_error());
        return;
    }
    auto const& reader = opened.value();
    check_layout(reader, input);

    auto verification = reader.verify([&](eif::Section const& section, std::uint64_t offset, ByteView chunk) -> ErrorOr<void> {
        require(offset <= section.size && chunk.size() <= section.size - offset);
        require(std::memcmp(chunk.data(), input.data() + section.data_offset + offset, chunk.size()) == 0);
        return {};
    });
    if (verification.is_error()) {
        require(described.is_error());
    } else {
        auto const& result = verification.value();
        require(result.computed_crc == reference_crc(input));
        require(result.stored_crc == stored_crc(input));
        require(result.crc_ok == (result.computed_crc == result.stored_crc));
        require(result.measurements.pcr8.has_value() == reader.is_signed());
        if (!result.crc_ok)
            require(described.is_error());
    }

    auto cmdline = reader.read_cmdline();
    if (!cmdline.is_error()) {
        auto const& text = cmdline.value();
        require(text.size() == reader.cmdline().size && text.size() <= eif::MAX_CMDLINE_SIZE);
        require(std::memcmp(text.data(), input.data() + reader.cmdline().data_offset, text.size()) == 0);
    }
    if (auto const* metadata = reader.metadata())
        require(!reader.read_section(*metadata, eif::MAX_METADATA_SIZE).is_error());
    if (auto const* signature = reader.signature()) {
        auto bytes = reader.read_section(*signature, eif::MAX_SIGNATURE_SIZE);
        require(!bytes.is_error());
        auto entry = eif::parse_signature_section(bytes.value());
        eif::Pcr pcr0 {};
        if (!verification.is_error())
            pcr0 = verification.value().measurements.pcr0;
        auto check = eif::check_signature(bytes.value(), pcr0, AT);
        // check_signature parses the section first: it cannot accept what
        // parse_signature_section refuses.
        if (entry.is_error())
            require(check.is_error());
        if (!check.is_error())
            (void)eif::require_valid(check.value(), AT);
    }

    if (!described.is_error()) {
        require(!verification.is_error() && verification.value().crc_ok);
        auto const& json = described.value().json;
        require(json.at("Sections").size() == reader.sections().size());
        require(json.at("IsSigned").get<bool>() == reader.is_signed());
    }
}

// The input with its header's section table, section count and CRC made to
// agree with the section headers found by walking from offset 548; nullopt
// when there is no EIF header to repair.
std::optional<Bytes> repaired(ByteView input)
{
    if (input.size() < eif::HEADER_SIZE)
        return std::nullopt;
    auto header = eif::decode_header(input);
    if (header.is_error())
        return std::nullopt;
    eif::Header fixed = header.value();
    fixed.section_offsets.fill(0);
    fixed.section_sizes.fill(0);
    std::size_t count = 0;
    std::uint64_t offset = eif::HEADER_SIZE;
    while (count < eif::MAX_SECTIONS && input.size() - offset >= eif::SECTION_HEADER_SIZE) {
        auto section = eif::decode_section_header(input.subspan(offset, eif::SECTION_HEADER_SIZE));
        fixed.section_offsets[count] = offset;
        fixed.section_sizes[count] = section.size;
        ++count;
        std::uint64_t available = input.size() - offset - eif::SECTION_HEADER_SIZE;
        if (section.size > available)
            break;
        offset += eif::SECTION_HEADER_SIZE + section.size;
        if (offset == input.size())
            break;
    }
    fixed.num_sections = static_cast<std::uint16_t>(count);
    Bytes bytes(input.begin(), input.end());
    auto encoded = eif::encode_header(fixed);
    std::copy(encoded.begin(), encoded.end(), bytes.begin());
    fixed.crc32 = reference_crc(bytes);
    encoded = eif::encode_header(fixed);
    std::copy(encoded.begin(), encoded.end(), bytes.begin());
    return bytes;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    ByteView input(data, size);
    exercise(input);
    auto fixed = repaired(input);
    if (fixed && !std::equal(fixed->begin(), fixed->end(), input.begin(), input.end()))
        exercise(*fixed);
    return 0;
}
