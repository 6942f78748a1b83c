// A tar reader for image layers and docker-archives: POSIX ustar, pax
// extended headers (POSIX.1-2001 `x`; global `g` headers are validated and
// ignored) and GNU long names/links (`L`/`K`). It walks a ByteSource by
// position and never reads an entry's data: TarEntry says where it lies, so
// the cpio writer can stream it later.
//
// Untrusted input: every header checksum is verified, every declared size is
// checked against the bytes that are really there (a "tar bomb" that declares
// a terabyte fails at once), extended headers are bounded by
// MAX_PAX_HEADER_SIZE, and names by MAX_PATH_LENGTH. GNU sparse files and
// multi-volume archives are refused, not misread. The archive must end with
// the end-of-archive zero block; without it, it was cut short.
#pragma once

#include <qtbox/image/source.hpp>

#include <optional>
#include <string>

namespace qtbox::image {

struct TarEntry {
    enum class Type { Regular, HardLink, Symlink, CharDevice, BlockDevice, Directory, Fifo };
    std::string path;         // as stored (pax/GNU long name applied), not normalised
    Type type { Type::Regular };
    std::uint32_t mode { 0 }; // permission bits and set-id/sticky (07777)
    std::uint32_t uid { 0 };
    std::uint32_t gid { 0 };
    std::uint64_t size { 0 };         // data bytes (0 unless Regular)
    std::uint64_t data_offset { 0 };  // within the archive's ByteSource
    std::string link_target;          // HardLink and Symlink
    std::uint32_t device_major { 0 };
    std::uint32_t device_minor { 0 };
};

class TarReader {
public:
    explicit TarReader(ByteSource archive) : m_archive(std::move(archive)) { }

    // The next entry, or nullopt at the end-of-archive marker.
    ErrorOr<std::optional<TarEntry>> next();

private:
    ErrorOr<std::string> read_long_value(std::uint64_t offset, std::uint64_t size);

    ByteSource m_archive;
    std::uint64_t m_offset { 0 };
    bool m_finished { false };
};

} // namespace qtbox::image
