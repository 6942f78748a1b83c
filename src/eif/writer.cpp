#include <qtbox/eif/writer.hpp>

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <optional>

namespace qtbox::eif {

namespace {

constexpr std::uint64_t WRITEBACK_CHUNK = 8ull << 20;

} // namespace

struct EifWriter::State final : image::ByteSink {
    State(int file, std::uint16_t header_flags, bool parallel) : fd(file), hasher(parallel) { header.flags = header_flags; }

    ErrorOr<void> write(ByteView bytes) override
    {
        if (!open_section)
            return Error::from_string("EIF writer: data outside a section");
        hasher.update(bytes);
        TRY(sys::write_all(fd, bytes));
        data_size += bytes.size();
        start_writeback();
        return {};
    }

    // Hands written pages to the disk as the image grows: dirty memory stays
    // bounded however large the image (a 100 GiB EIF is not unheard of), and
    // disk writes overlap hashing instead of all waiting for the fsync at
    // commit (AtomicFile). Advisory: where sync_file_range does nothing, the
    // fsync does it all.
    void start_writeback()
    {
        std::uint64_t end = offset + SECTION_HEADER_SIZE + data_size;
        if (end - writeback_start < WRITEBACK_CHUNK)
            return;
        ::sync_file_range(fd, static_cast<off_t>(writeback_start), static_cast<off_t>(end - writeback_start), SYNC_FILE_RANGE_WRITE);
        writeback_start = end;
    }

    ErrorOr<void> begin(SectionType type)
    {
        if (open_section)
            return Error::from_string("EIF writer: a section is already open");
        if (finished || (measured && type != SectionType::Signature))
            return Error::from_string("EIF writer: the measured sections are already complete");
        int rank = section_order_rank(type);
        if (rank < 0 || rank < last_rank || (rank == last_rank && type != SectionType::Ramdisk))
            return Error::from_code(EifError::Malformed, fmt::format("EIF writer: a {} section cannot come here", section_type_name(type)));
        if (header.num_sections == MAX_SECTIONS)
            return Error::from_code(EifError::LimitExceeded, fmt::format("an EIF holds at most {} sections", MAX_SECTIONS));
        last_rank = rank;
        section_type = type;
        section_offset = offset;
        // Placeholder header; the real one is written by end() once the size is known.
        std::array<std::uint8_t, SECTION_HEADER_SIZE> placeholder {};
        TRY(sys::write_all(fd, ByteView(placeholder)));
        hasher.begin_section(type);
        data_size = 0;
        open_section = true;
        return {};
    }

    ErrorOr<std::uint64_t> end()
    {
        if (!open_section)
            return Error::from_string("EIF writer: no open section");
        auto section_header = encode_section_header({ section_type, 0, data_size });
        if (::pwrite(fd, section_header.data(), section_header.size(), static_cast<off_t>(section_offset)) != static_cast<ssize_t>(section_header.size()))
            return Error::from_errno("pwrite EIF section header");
        body_crc = crc32_join(body_crc, crc32_update(0, section_header), SECTION_HEADER_SIZE);
        body_crc = crc32_join(body_crc, hasher.section_crc(), data_size);
        body_size += SECTION_HEADER_SIZE + data_size;
        header.section_offsets[header.num_sections] = section_offset;
        header.section_sizes[header.num_sections] = data_size;
        ++header.num_sections;
        offset += SECTION_HEADER_SIZE + data_size;
        open_section = false;
        return data_size;
    }

    int fd;
    Header header;
    SectionHasher hasher;
    std::optional<Measurements> measurements;
    bool measured { false };
    bool open_section { false };
    bool finished { false };
    int last_rank { -1 };
    SectionType section_type { SectionType::Invalid };
    std::uint64_t offset { HEADER_SIZE };
    std::uint64_t section_offset { 0 };
    std::uint64_t data_size { 0 };
    std::uint32_t body_crc { 0 };
    std::uint64_t body_size { 0 };
    std::uint64_t writeback_start { 0 };
};

EifWriter::EifWriter(std::unique_ptr<State> state) : m_state(std::move(state)) { }
EifWriter::EifWriter(EifWriter&&) noexcept = default;
EifWriter::~EifWriter() = default;

ErrorOr<EifWriter> EifWriter::create(int fd, std::uint16_t flags, bool parallel_hashing)
{
    auto state = std::make_unique<State>(fd, flags, parallel_hashing);
    // Room for the header, written last.
    std::array<std::uint8_t, HEADER_SIZE> placeholder {};
    TRY(sys::write_all(fd, ByteView(placeholder)));
    return EifWriter(std::move(state));
}

ErrorOr<void> EifWriter::write_section(SectionType type, ByteView data)
{
    TRY(m_state->begin(type));
    TRY(m_state->write(data));
    TRY(m_state->end());
    return {};
}

ErrorOr<void> EifWriter::begin_section(SectionType type)
{
    return m_state->begin(type);
}

image::ByteSink& EifWriter::section_sink()
{
    return *m_state;
}

ErrorOr<std::uint64_t> EifWriter::end_section()
{
    return m_state->end();
}

Measurements const& EifWriter::measurements()
{
    if (!m_state->measurements) {
        m_state->measurements = m_state->hasher.finish();
        m_state->measured = true;
    }
    return *m_state->measurements;
}

ErrorOr<void> EifWriter::finish()
{
    auto& state = *m_state;
    if (state.open_section)
        return Error::from_string("EIF writer: a section is still open");
    if (state.finished)
        return Error::from_string("EIF writer: already finished");
    auto header = encode_header(state.header);
    std::uint32_t crc = crc32_update(0, ByteView(header.data(), CRC_OFFSET));
    crc = crc32_join(crc, state.body_crc, state.body_size);
    state.header.crc32 = crc;
    header = encode_header(state.header);
    if (::pwrite(state.fd, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size()))
        return Error::from_errno("pwrite EIF header");
    state.finished = true;
    return {};
}

} // namespace qtbox::eif
