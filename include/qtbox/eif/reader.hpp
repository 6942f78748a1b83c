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
//             optional visitor. The VMM uses the visitor to copy the kernel
//             and ramdisks into guest memory in the same pass, so what it
//             measured is what it loaded (no second read of the file).
//
// Signature checks (COSE, PCR0, certificate time) are in signature.hpp.
#pragma once

#include <qtbox/base/fd.hpp>
#include <qtbox/eif/format.hpp>
#include <qtbox/eif/pcr.hpp>

#include <functional>
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
};

class EifReader {
public:
    static ErrorOr<EifReader> open(std::string const& path);
    // Takes ownership of an open, seekable descriptor.
    static ErrorOr<EifReader> from_fd(UniqueFd fd, std::string name);

    Header const& header() const { return m_header; }
    std::vector<Section> const& sections() const { return m_sections; }
    std::uint64_t file_size() const { return m_file_size; }
    std::string const& name() const { return m_name; }
    int fd() const { return m_fd.get(); }

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
    // The cmdline as text (printable ASCII checked).
    ErrorOr<std::string> read_cmdline() const;

    // (section, offset within its data, bytes) for every chunk, in file order.
    // With `parallel_hashing`, PCR2's hash runs on a helper thread (pcr.hpp);
    // callers under a seccomp filter that forbids clone() leave it off.
    using Visitor = std::function<ErrorOr<void>(Section const&, std::uint64_t, ByteView)>;
    ErrorOr<Verification> verify(Visitor const& visitor = {}, bool parallel_hashing = false) const;

private:
    EifReader(UniqueFd fd, std::string name) : m_fd(std::move(fd)), m_name(std::move(name)) { }
    ErrorOr<void> parse();

    UniqueFd m_fd;
    std::string m_name;
    std::uint64_t m_file_size { 0 };
    Header m_header;
    std::vector<Section> m_sections;
};

} // namespace qtbox::eif
