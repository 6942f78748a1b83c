// Streams an EIF into a file descriptor (format.hpp), measuring while it
// writes: every byte of section data goes once through the CRC, the PCR
// hashes and write(2). Section sizes that are only known at the end (the
// ramdisks are cpio streams) are patched in with pwrite, and the CRC is put
// together with crc32_join, so the file is written front to back exactly
// once and never held in memory.
//
// Order (docs/FORMATS.md §3): kernel, cmdline, metadata, ramdisk x N, signature. The
// writer enforces it.
#pragma once

#include <qtbox/eif/format.hpp>
#include <qtbox/eif/pcr.hpp>
#include <qtbox/image/source.hpp>

#include <vector>

namespace qtbox::eif {

class EifWriter {
public:
    // `fd` must be a new, empty, seekable file (an AtomicFile's).
    static ErrorOr<EifWriter> create(int fd, std::uint16_t flags = 0, bool parallel_hashing = true);

    EifWriter(EifWriter&&) noexcept;
    EifWriter& operator=(EifWriter&&) = delete;
    ~EifWriter();

    // A section whose data is at hand.
    ErrorOr<void> write_section(SectionType type, ByteView data);
    // A streamed section: write into section_sink() until end_section().
    ErrorOr<void> begin_section(SectionType type);
    image::ByteSink& section_sink();
    ErrorOr<std::uint64_t> end_section();

    // PCR0/1/2 of what has been written; call after the last ramdisk.
    Measurements const& measurements();
    // Writes the header (offsets, sizes, CRC). Nothing may follow.
    ErrorOr<void> finish();

private:
    struct State;
    explicit EifWriter(std::unique_ptr<State> state);
    std::unique_ptr<State> m_state;
};

} // namespace qtbox::eif
