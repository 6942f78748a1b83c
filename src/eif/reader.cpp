#include <qtbox/eif/reader.hpp>
#include <qtbox/eif/signature.hpp>

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>

namespace qtbox::eif {

namespace {

constexpr std::size_t VERIFY_CHUNK = 1 << 20;

Error changed_while_read()
{
    return Error::from_code(EifError::Truncated, "the EIF file changed while it was being read");
}

} // namespace

ErrorOr<std::uint64_t> FileSource::size() const
{
    auto st = TRY(sys::fstat(m_fd.get()));
    if (!S_ISREG(st.st_mode))
        return Error::from_code(EifError::Malformed, "not a regular file");
    return static_cast<std::uint64_t>(st.st_size);
}

ErrorOr<void> FileSource::read_at(std::uint64_t offset, std::span<std::uint8_t> out) const
{
    return sys::pread_exact(m_fd.get(), out.data(), out.size(), offset);
}

ErrorOr<std::string> cmdline_text(ByteView bytes)
{
    if (bytes.size() > MAX_CMDLINE_SIZE)
        return Error::from_code(EifError::LimitExceeded,
            fmt::format("the cmdline section is {} bytes (limit {})", bytes.size(), MAX_CMDLINE_SIZE));
    for (auto byte : bytes) {
        if (byte < 0x20 || byte > 0x7e)
            return Error::from_code(EifError::Malformed, "the cmdline section holds a non-printable byte");
    }
    return std::string(as_chars(bytes));
}

ErrorOr<EifReader> EifReader::open(std::string const& path)
{
    auto fd = TRY(sys::open(path, O_RDONLY));
    return from_fd(std::move(fd), path);
}

ErrorOr<EifReader> EifReader::from_fd(UniqueFd fd, std::string name)
{
    return from_source(std::make_unique<FileSource>(std::move(fd)), std::move(name));
}

ErrorOr<EifReader> EifReader::from_source(std::unique_ptr<ByteSource> source, std::string name)
{
    VERIFY(source);
    EifReader reader(std::move(source), std::move(name));
    TRY(reader.parse());
    return reader;
}

ErrorOr<void> EifReader::parse()
{
    m_file_size = TRY(m_source->size());
    if (m_file_size < HEADER_SIZE)
        return Error::from_code(EifError::Truncated, fmt::format("truncated EIF: {} bytes, shorter than the {}-byte header", m_file_size, HEADER_SIZE));
    std::array<std::uint8_t, HEADER_SIZE> bytes {};
    TRY(m_source->read_at(0, bytes));
    m_header = TRY(decode_header(bytes));
    if (m_header.version != VERSION)
        return Error::from_code(EifError::UnsupportedVersion, fmt::format("EIF version {} is not supported (qtbox reads version {})", m_header.version, VERSION));
    if (m_header.flags & ~FLAG_ARCH_AARCH64)
        return Error::from_code(EifError::Malformed, fmt::format("unknown EIF header flags 0x{:04x}", m_header.flags));
    if (m_header.num_sections > MAX_SECTIONS)
        return Error::from_code(EifError::Malformed, fmt::format("the header claims {} sections (at most {})", m_header.num_sections, MAX_SECTIONS));

    // Walk the section headers; the offset table is only a cross-check.
    std::uint64_t offset = HEADER_SIZE;
    int last_rank = -1;
    while (offset < m_file_size) {
        std::size_t index = m_sections.size();
        if (index == MAX_SECTIONS)
            return Error::from_code(EifError::Malformed, fmt::format("more than {} sections", MAX_SECTIONS));
        if (m_file_size - offset < SECTION_HEADER_SIZE)
            return Error::from_code(EifError::Truncated, fmt::format("truncated EIF: section {} header at offset {} is cut short", index, offset));
        std::array<std::uint8_t, SECTION_HEADER_SIZE> raw {};
        TRY(m_source->read_at(offset, raw));
        auto section_header = decode_section_header(raw);
        int rank = section_order_rank(section_header.type);
        if (rank < 0)
            return Error::from_code(EifError::Malformed,
                fmt::format("section {} at offset {} has unknown type {}", index, offset, static_cast<unsigned>(section_header.type)));
        auto name = section_type_name(section_header.type);
        if (section_header.flags != 0)
            return Error::from_code(EifError::Malformed, fmt::format("section {} ({}) has unknown flags 0x{:04x}", index, name, section_header.flags));
        std::uint64_t available = m_file_size - offset - SECTION_HEADER_SIZE;
        if (section_header.size > available)
            return Error::from_code(EifError::Truncated,
                fmt::format("truncated EIF: section {} ({}) declares {} bytes at offset {} but only {} remain", index, name, section_header.size, offset, available));
        if (section_header.size > section_size_limit(section_header.type))
            return Error::from_code(EifError::LimitExceeded,
                fmt::format("section {} ({}) is {} bytes (limit {})", index, name, section_header.size, section_size_limit(section_header.type)));
        if (rank < last_rank || (rank == last_rank && section_header.type != SectionType::Ramdisk))
            return Error::from_code(EifError::Malformed,
                fmt::format("section {} ({}) is out of order (kernel, cmdline, metadata, ramdisks, signature)", index, name));
        last_rank = rank;
        m_sections.push_back({ index, section_header.type, offset, offset + SECTION_HEADER_SIZE, section_header.size });
        offset += SECTION_HEADER_SIZE + section_header.size;
    }

    auto count = [&](SectionType type) {
        return std::count_if(m_sections.begin(), m_sections.end(), [&](Section const& s) { return s.type == type; });
    };
    if (m_sections.empty() || m_sections[0].type != SectionType::Kernel)
        return Error::from_code(EifError::Malformed, "the first section is not a kernel");
    if (m_sections.size() < 2 || m_sections[1].type != SectionType::Cmdline)
        return Error::from_code(EifError::Malformed, "the second section is not a cmdline");
    if (count(SectionType::Ramdisk) == 0)
        return Error::from_code(EifError::Malformed, "the image has no ramdisk");

    if (m_header.num_sections != m_sections.size())
        return Error::from_code(EifError::Malformed,
            fmt::format("the header claims {} sections but the file holds {}", m_header.num_sections, m_sections.size()));
    for (std::size_t i = 0; i < MAX_SECTIONS; ++i) {
        std::uint64_t want_offset = i < m_sections.size() ? m_sections[i].header_offset : 0;
        std::uint64_t want_size = i < m_sections.size() ? m_sections[i].size : 0;
        if (m_header.section_offsets[i] != want_offset || m_header.section_sizes[i] != want_size)
            return Error::from_code(EifError::Malformed,
                fmt::format("the header's section table entry {} (offset {}, size {}) does not match the file (offset {}, size {})",
                    i, m_header.section_offsets[i], m_header.section_sizes[i], want_offset, want_size));
    }
    return {};
}

Section const* EifReader::metadata() const
{
    for (auto const& section : m_sections) {
        if (section.type == SectionType::Metadata)
            return &section;
    }
    return nullptr;
}

std::vector<Section const*> EifReader::ramdisks() const
{
    std::vector<Section const*> result;
    for (auto const& section : m_sections) {
        if (section.type == SectionType::Ramdisk)
            result.push_back(&section);
    }
    return result;
}

Section const* EifReader::signature() const
{
    return m_sections.back().type == SectionType::Signature ? &m_sections.back() : nullptr;
}

ErrorOr<void> EifReader::read(Section const& section, std::uint64_t offset, std::span<std::uint8_t> out) const
{
    if (offset > section.size || out.size() > section.size - offset)
        return Error::from_code(EifError::Malformed, fmt::format("read past the end of section {}", section.index));
    auto result = m_source->read_at(section.data_offset + offset, out);
    if (result.is_error() && result.error().is(sys::SysError::UnexpectedEnd))
        return Error::from_code(EifError::Truncated, "the EIF file shrank while it was being read");
    return result;
}

ErrorOr<Bytes> EifReader::read_section(Section const& section, std::uint64_t limit) const
{
    if (section.size > limit)
        return Error::from_code(EifError::LimitExceeded, fmt::format("section {} ({}) is {} bytes (limit {})", section.index, section_type_name(section.type), section.size, limit));
    Bytes bytes(static_cast<std::size_t>(section.size));
    TRY(read(section, 0, bytes));
    return bytes;
}

ErrorOr<std::string> EifReader::read_cmdline() const
{
    auto bytes = TRY(read_section(cmdline(), MAX_CMDLINE_SIZE));
    return cmdline_text(bytes);
}

ErrorOr<Verification> EifReader::verify(Visitor const& visitor, bool parallel_hashing) const
{
    Verification result;
    result.stored_crc = m_header.crc32;
    std::array<std::uint8_t, HEADER_SIZE> header_bytes {};
    if (m_source->read_at(0, header_bytes).is_error())
        return changed_while_read();
    // The header must still be the one open() checked.
    if (encode_header(m_header) != header_bytes)
        return changed_while_read();
    std::uint32_t crc = crc32_update(0, ByteView(header_bytes.data(), CRC_OFFSET));

    SectionHasher hasher(parallel_hashing);
    Bytes buffer(VERIFY_CHUNK);
    for (auto const& section : m_sections) {
        std::array<std::uint8_t, SECTION_HEADER_SIZE> raw {};
        if (m_source->read_at(section.header_offset, raw).is_error())
            return changed_while_read();
        auto reread = decode_section_header(raw);
        if (reread.type != section.type || reread.size != section.size)
            return changed_while_read();
        crc = crc32_update(crc, raw);
        hasher.begin_section(section.type);
        if (section.type == SectionType::Signature) {
            // parse() checked the same limit; the copy is made only under it.
            if (section.size > MAX_SIGNATURE_SIZE)
                return Error::from_code(EifError::LimitExceeded,
                    fmt::format("section {} (signature) is {} bytes (limit {})",
                        section.index, section.size, MAX_SIGNATURE_SIZE));
            result.signature.reserve(static_cast<std::size_t>(section.size));
        }
        std::uint64_t done = 0;
        while (done < section.size) {
            std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), section.size - done));
            std::span<std::uint8_t> chunk(buffer.data(), take);
            TRY(read(section, done, chunk));
            hasher.update(chunk);
            if (section.type == SectionType::Signature)
                result.signature.insert(result.signature.end(), chunk.begin(), chunk.end());
            if (visitor)
                TRY(visitor(section, done, chunk));
            done += take;
        }
        crc = crc32_join(crc, hasher.section_crc(), section.size);
    }
    result.computed_crc = crc;
    result.crc_ok = crc == m_header.crc32;
    result.measurements = hasher.finish();
    if (signature()) {
        auto der = signing_certificate_der(result.signature);
        if (der.is_error())
            return der.release_error();
        result.measurements.pcr8 = measure(der.value());
    }
    return result;
}

} // namespace qtbox::eif
