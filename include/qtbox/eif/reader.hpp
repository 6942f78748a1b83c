// Reads an EIF defensively (docs/PLATFORMS.md §N2; Trail of Bits' advice not to trust
// describe-eif on untrusted files):
//
//   open()    reads the 548-byte header and walks the section headers from
//             offset 548 to the end of the file, bounds-checking every size
//             against the file and the named limits; refuses unknown section
//             types, non-zero section flags, a wrong order (kernel, cmdline,
//             metadata, ramdisk x N, signature), and a header offset/size
//             table that disagrees with the walk. No section data is read
//             except the small ones on demand.
//   verify()  one streaming pass over the whole file in order: the CRC-32
//             and PCR0/1/2 (and PCR8 from the signature section's
//             certificate), handing every chunk of section data to an
//             optional visitor. Each byte of section data is read exactly
//             once per pass, and the chunk the visitor gets is the chunk
//             that was measured; the result also holds the signature
//             section as measured. The VMM copies the kernel and the cmdline
//             out of its first pass and the ramdisks out of its second
//             (vmm/launch.hpp): everything it boots is bytes it measured,
//             never a later read of the file.
//
// The bytes come from a ByteSource: the file by default; a test hands in a
// source of its own (one whose bytes change between reads, one that counts
// them).
//
// Signature checks (COSE, PCR0, certificate time) are in signature.hpp.
#pragma once

#include <qtbox/base/fd.hpp>
#include <qtbox/eif/format.hpp>
#include <qtbox/eif/pcr.hpp>

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qtbox::eif {

struct Section {
    std::size_t index { 0 };          // position in the file, 0-based
    SectionType type { SectionType::Invalid };
    std::uint64_t header_offset { 0 };
    std::uint64_t data_offset { 0 };  // header_offset + 12
    std::uint64_t size { 0 };
};

struct Verification {
    bool crc_ok { false };
    std::uint32_t stored_crc { 0 };
    std::uint32_t computed_crc { 0 };
    Measurements measurements;        // pcr8 set when the image is signed
    Bytes signature;                  // the signature section as measured; empty when unsigned
};

// Where an EifReader's bytes come from. A source is read at arbitrary
// offsets, possibly from several passes; nothing requires it to return the
// same bytes twice, which is why verify() reads each byte once per pass.
class ByteSource {
public:
    virtual ~ByteSource() = default;
    // The size in bytes; EifReader asks once, when it opens. A source that
    // is not a regular file (or the like) refuses with EifError::Malformed.
    virtual ErrorOr<std::uint64_t> size() const = 0;
    // Exactly out.size() bytes at `offset`; sys::SysError::UnexpectedEnd when
    // the source ends first.
    virtual ErrorOr<void> read_at(std::uint64_t offset, std::span<std::uint8_t> out) const = 0;
};

// A regular file, read with pread(2) straight into the caller's buffer.
class FileSource final : public ByteSource {
public:
    explicit FileSource(UniqueFd fd) : m_fd(std::move(fd)) { }
    ErrorOr<std::uint64_t> size() const override;
    ErrorOr<void> read_at(std::uint64_t offset, std::span<std::uint8_t> out) const override;

private:
    UniqueFd m_fd;
};

// The cmdline section's data as text: at most MAX_CMDLINE_SIZE bytes
// (EifError::LimitExceeded), printable ASCII only (EifError::Malformed).
ErrorOr<std::string> cmdline_text(ByteView bytes);

class EifReader {
public:
    static ErrorOr<EifReader> open(std::string const& path);
    // Takes ownership of an open, seekable descriptor.
    static ErrorOr<EifReader> from_fd(UniqueFd fd, std::string name);
    // Reads through `source` (a FileSource for the two above).
    static ErrorOr<EifReader> from_source(std::unique_ptr<ByteSource> source, std::string name);

    Header const& header() const { return m_header; }
    std::vector<Section> const& sections() const { return m_sections; }
    std::uint64_t file_size() const { return m_file_size; }
    std::string const& name() const { return m_name; }

    Section const& kernel() const { return m_sections[0]; }
    Section const& cmdline() const { return m_sections[1]; }
    Section const* metadata() const;
    std::vector<Section const*> ramdisks() const;
    Section const* signature() const;
    bool is_signed() const { return signature() != nullptr; }

    // Exactly out.size() bytes at `offset` within the section's data.
    ErrorOr<void> read(Section const& section, std::uint64_t offset, std::span<std::uint8_t> out) const;
    // A whole section, refusing one larger than `limit`.
    ErrorOr<Bytes> read_section(Section const& section, std::uint64_t limit) const;
    // The cmdline as text (cmdline_text's checks). A caller that also
    // measures the image takes the cmdline from verify()'s visitor instead:
    // this reads the file again.
    ErrorOr<std::string> read_cmdline() const;

    // (section, offset within its data, bytes) for every chunk, in file order;
    // every byte of section data is read once, measured, then visited.
    // With `parallel_hashing`, PCR2's hash runs on a helper thread (pcr.hpp);
    // callers under a seccomp filter that forbids clone() leave it off.
    using Visitor = std::function<ErrorOr<void>(Section const&, std::uint64_t, ByteView)>;
    ErrorOr<Verification> verify(Visitor const& visitor = {}, bool parallel_hashing = false) const;

private:
    EifReader(std::unique_ptr<ByteSource> source, std::string name)
        : m_source(std::move(source))
        , m_name(std::move(name))
    {
    }
    ErrorOr<void> parse();

    std::unique_ptr<ByteSource> m_source;
    std::string m_name;
    std::uint64_t m_file_size { 0 };
    Header m_header;
    std::vector<Section> m_sections;
};

} // namespace qtbox::eif
