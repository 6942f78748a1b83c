// Formats: POSIX.1-2001 pax (IEEE 1003.1 "pax" Interchange Format), ustar,
// and the GNU extensions documented in GNU tar's manual, "Basic Tar Format".
#include <qtbox/image/tar.hpp>

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cstring>

namespace qtbox::image {

namespace {

constexpr std::size_t BLOCK = 512;

// ustar header field offsets and sizes.
struct Field {
    std::size_t offset;
    std::size_t size;
};
constexpr Field NAME { 0, 100 };
constexpr Field MODE { 100, 8 };
constexpr Field UID { 108, 8 };
constexpr Field GID { 116, 8 };
constexpr Field SIZE { 124, 12 };
constexpr Field CHECKSUM { 148, 8 };
constexpr Field TYPEFLAG { 156, 1 };
constexpr Field LINKNAME { 157, 100 };
constexpr Field MAGIC { 257, 8 };
constexpr Field DEVMAJOR { 329, 8 };
constexpr Field DEVMINOR { 337, 8 };
constexpr Field PREFIX { 345, 155 };

using Block = std::array<std::uint8_t, BLOCK>;

std::string_view field_text(Block const& block, Field field)
{
    auto const* start = reinterpret_cast<char const*>(block.data() + field.offset);
    std::size_t length = strnlen(start, field.size);
    return { start, length };
}

// Numeric fields: octal digits padded with spaces/NULs, or GNU base-256
// (first byte 0x80, big-endian) for values that do not fit.
ErrorOr<std::uint64_t> parse_number(Block const& block, Field field, std::string_view name)
{
    auto const* bytes = block.data() + field.offset;
    if (bytes[0] & 0x80) {
        if (bytes[0] != 0x80)
            return Error::from_code(ImageError::Malformed, fmt::format("tar header field {}: negative or oversized base-256 number", name));
        std::uint64_t value = 0;
        for (std::size_t i = 1; i < field.size; ++i) {
            if (value >> 56)
                return Error::from_code(ImageError::Malformed, fmt::format("tar header field {}: number too large", name));
            value = (value << 8) | bytes[i];
        }
        return value;
    }
    std::size_t i = 0;
    while (i < field.size && bytes[i] == ' ')
        ++i;
    std::uint64_t value = 0;
    bool any = false;
    for (; i < field.size && bytes[i] >= '0' && bytes[i] <= '7'; ++i) {
        if (value >> 61)
            return Error::from_code(ImageError::Malformed, fmt::format("tar header field {}: number too large", name));
        value = value * 8 + static_cast<std::uint64_t>(bytes[i] - '0');
        any = true;
    }
    for (; i < field.size; ++i) {
        if (bytes[i] != ' ' && bytes[i] != '\0')
            return Error::from_code(ImageError::Malformed, fmt::format("tar header field {}: not an octal number", name));
    }
    if (!any)
        return std::uint64_t { 0 };
    return value;
}

bool is_zero_block(Block const& block)
{
    for (auto byte : block) {
        if (byte != 0)
            return false;
    }
    return true;
}

ErrorOr<void> verify_checksum(Block const& block, std::uint64_t offset)
{
    auto stored = TRY(parse_number(block, CHECKSUM, "chksum"));
    // The checksum field counts as eight spaces. Historic writers summed
    // signed chars; accept either sum.
    std::uint64_t unsigned_sum = 0;
    std::int64_t signed_sum = 0;
    for (std::size_t i = 0; i < BLOCK; ++i) {
        bool in_field = i >= CHECKSUM.offset && i < CHECKSUM.offset + CHECKSUM.size;
        std::uint8_t byte = in_field ? ' ' : block[i];
        unsigned_sum += byte;
        signed_sum += static_cast<std::int8_t>(byte);
    }
    if (stored != unsigned_sum && static_cast<std::int64_t>(stored) != signed_sum)
        return Error::from_code(ImageError::Malformed, fmt::format("tar header at offset {}: bad checksum (not a tar archive, or corrupt)", offset));
    return {};
}

std::uint64_t padded(std::uint64_t size)
{
    return (size + BLOCK - 1) / BLOCK * BLOCK;
}

ErrorOr<std::uint32_t> narrow32(std::uint64_t value, std::string_view name)
{
    if (value > 0xFFFF'FFFFu)
        return Error::from_code(ImageError::Malformed, fmt::format("tar header field {}: {} does not fit in 32 bits", name, value));
    return static_cast<std::uint32_t>(value);
}

ErrorOr<std::uint64_t> parse_decimal(std::string_view text, std::string_view key)
{
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        return Error::from_code(ImageError::Malformed, fmt::format("pax header {}: not a decimal number", key));
    return value;
}

struct PaxOverrides {
    std::optional<std::string> path;
    std::optional<std::string> link_target;
    std::optional<std::uint64_t> size;
    std::optional<std::uint64_t> uid;
    std::optional<std::uint64_t> gid;
};

// Records are "<length> <key>=<value>\n", length counting the whole record.
ErrorOr<void> parse_pax(std::string_view data, PaxOverrides& overrides)
{
    while (!data.empty()) {
        auto space = data.find(' ');
        if (space == std::string_view::npos)
            return Error::from_code(ImageError::Malformed, "pax header: record without a length");
        auto length = TRY(parse_decimal(data.substr(0, space), "record length"));
        if (length <= space + 1 || length > data.size())
            return Error::from_code(ImageError::Malformed, "pax header: record length out of range");
        auto record = data.substr(space + 1, length - space - 1);
        data.remove_prefix(length);
        if (record.empty() || record.back() != '\n')
            return Error::from_code(ImageError::Malformed, "pax header: record does not end with a newline");
        record.remove_suffix(1);
        auto equals = record.find('=');
        if (equals == std::string_view::npos)
            return Error::from_code(ImageError::Malformed, "pax header: record without '='");
        auto key = record.substr(0, equals);
        auto value = record.substr(equals + 1);
        if (key == "path")
            overrides.path = std::string(value);
        else if (key == "linkpath")
            overrides.link_target = std::string(value);
        else if (key == "size")
            overrides.size = TRY(parse_decimal(value, key));
        else if (key == "uid")
            overrides.uid = TRY(parse_decimal(value, key));
        else if (key == "gid")
            overrides.gid = TRY(parse_decimal(value, key));
        else if (key.starts_with("GNU.sparse."))
            return Error::from_code(ImageError::Unsupported, "GNU sparse files in tar archives are not supported");
        // Everything else (mtime, atime, uname, gname, SCHILY.xattr.*, ...)
        // has no place in a newc cpio archive: docs/FORMATS.md §3 fixes mtime, and newc
        // carries no extended attributes.
    }
    return {};
}

} // namespace

ErrorOr<std::string> TarReader::read_long_value(std::uint64_t offset, std::uint64_t size)
{
    if (size > MAX_PAX_HEADER_SIZE)
        return Error::from_code(ImageError::LimitExceeded,
            fmt::format("tar extended header at offset {} is {} bytes (limit {})", offset, size, MAX_PAX_HEADER_SIZE));
    if (offset > m_archive.size() || size > m_archive.size() - offset)
        return Error::from_code(ImageError::Truncated, fmt::format("truncated tar: extended header at offset {} runs past the end", offset));
    std::string value(static_cast<std::size_t>(size), '\0');
    TRY(m_archive.read_at(offset, std::span(reinterpret_cast<std::uint8_t*>(value.data()), value.size())));
    return value;
}

ErrorOr<std::optional<TarEntry>> TarReader::next()
{
    if (m_finished)
        return std::optional<TarEntry> {};
    PaxOverrides pax;
    std::optional<std::string> gnu_long_name;
    std::optional<std::string> gnu_long_link;
    for (;;) {
        std::uint64_t header_offset = m_offset;
        if (m_archive.size() - header_offset < BLOCK) {
            if (header_offset == m_archive.size())
                return Error::from_code(ImageError::Truncated, "truncated tar: the end-of-archive marker is missing");
            return Error::from_code(ImageError::Truncated, fmt::format("truncated tar: partial header at offset {}", header_offset));
        }
        Block block;
        TRY(m_archive.read_at(header_offset, block));
        if (is_zero_block(block)) {
            // POSIX asks for two zero blocks; some writers emit one. Either
            // way nothing after the first is part of the archive.
            if (pax.path || pax.size || gnu_long_name || gnu_long_link)
                return Error::from_code(ImageError::Malformed, "tar: extended header not followed by an entry");
            m_finished = true;
            return std::optional<TarEntry> {};
        }
        TRY(verify_checksum(block, header_offset));
        char type = static_cast<char>(block[TYPEFLAG.offset]);
        std::uint64_t size = TRY(parse_number(block, SIZE, "size"));
        std::uint64_t data_offset = header_offset + BLOCK;
        std::uint64_t available = m_archive.size() - data_offset;
        // pax may override the size of the entry that follows it.
        bool is_meta = type == 'x' || type == 'g' || type == 'L' || type == 'K';
        std::uint64_t effective_size = (!is_meta && pax.size) ? *pax.size : size;
        if (effective_size > available || padded(effective_size) > available)
            return Error::from_code(ImageError::Truncated,
                fmt::format("truncated tar: entry at offset {} declares {} bytes but only {} remain", header_offset, effective_size, available));
        m_offset = data_offset + padded(effective_size);

        switch (type) {
        case 'x': {
            auto text = TRY(read_long_value(data_offset, size));
            TRY(parse_pax(text, pax));
            continue;
        }
        case 'g': {
            // Global headers would apply to every later entry; keys that
            // matter here (path, size) make no sense globally, so validate
            // the syntax and go on.
            auto text = TRY(read_long_value(data_offset, size));
            PaxOverrides ignored;
            TRY(parse_pax(text, ignored));
            continue;
        }
        case 'L':
        case 'K': {
            auto text = TRY(read_long_value(data_offset, size));
            // GNU stores the name with a trailing NUL.
            text.resize(strnlen(text.data(), text.size()));
            (type == 'L' ? gnu_long_name : gnu_long_link) = std::move(text);
            continue;
        }
        case 'V':
            // A volume label names the archive, not a file.
            continue;
        case 'S':
            return Error::from_code(ImageError::Unsupported, "GNU sparse files in tar archives are not supported");
        case 'M':
            return Error::from_code(ImageError::Unsupported, "multi-volume tar archives are not supported");
        default:
            break;
        }

        TarEntry entry;
        switch (type) {
        case '0':
        case '\0':
        case '7':
            entry.type = TarEntry::Type::Regular;
            break;
        case '1':
            entry.type = TarEntry::Type::HardLink;
            break;
        case '2':
            entry.type = TarEntry::Type::Symlink;
            break;
        case '3':
            entry.type = TarEntry::Type::CharDevice;
            break;
        case '4':
            entry.type = TarEntry::Type::BlockDevice;
            break;
        case '5':
            entry.type = TarEntry::Type::Directory;
            break;
        case '6':
            entry.type = TarEntry::Type::Fifo;
            break;
        default: {
            bool printable = type > 0x20 && type < 0x7f;
            return Error::from_code(ImageError::Unsupported,
                printable ? fmt::format("tar entry at offset {}: unsupported type '{}'", header_offset, type)
                          : fmt::format("tar entry at offset {}: unsupported type 0x{:02x}", header_offset, static_cast<unsigned char>(type)));
        }
        }

        // Name: pax > GNU long name > ustar prefix/name.
        if (pax.path) {
            entry.path = std::move(*pax.path);
        } else if (gnu_long_name) {
            entry.path = std::move(*gnu_long_name);
        } else {
            bool posix = std::memcmp(block.data() + MAGIC.offset, "ustar\0", 6) == 0;
            auto name = field_text(block, NAME);
            auto prefix = posix ? field_text(block, PREFIX) : std::string_view {};
            entry.path = prefix.empty() ? std::string(name) : fmt::format("{}/{}", prefix, name);
        }
        if (entry.path.empty())
            return Error::from_code(ImageError::Malformed, fmt::format("tar entry at offset {} has an empty name", header_offset));
        if (entry.path.size() > MAX_PATH_LENGTH)
            return Error::from_code(ImageError::LimitExceeded, fmt::format("tar entry at offset {}: name longer than {} bytes", header_offset, MAX_PATH_LENGTH));
        if (entry.path.find('\0') != std::string::npos)
            return Error::from_code(ImageError::Malformed, fmt::format("tar entry at offset {}: name contains a NUL byte", header_offset));

        if (entry.type == TarEntry::Type::HardLink || entry.type == TarEntry::Type::Symlink) {
            if (pax.link_target)
                entry.link_target = std::move(*pax.link_target);
            else if (gnu_long_link)
                entry.link_target = std::move(*gnu_long_link);
            else
                entry.link_target = std::string(field_text(block, LINKNAME));
            if (entry.link_target.empty())
                return Error::from_code(ImageError::Malformed, fmt::format("tar entry {}: link with an empty target", entry.path));
            if (entry.link_target.size() > MAX_LINK_TARGET_LENGTH)
                return Error::from_code(ImageError::LimitExceeded, fmt::format("tar entry {}: link target longer than {} bytes", entry.path, MAX_LINK_TARGET_LENGTH));
            if (entry.link_target.find('\0') != std::string::npos)
                return Error::from_code(ImageError::Malformed, fmt::format("tar entry {}: link target contains a NUL byte", entry.path));
        }

        entry.mode = static_cast<std::uint32_t>(TRY(parse_number(block, MODE, "mode")) & 07777);
        std::uint64_t header_uid = TRY(parse_number(block, UID, "uid"));
        std::uint64_t header_gid = TRY(parse_number(block, GID, "gid"));
        entry.uid = TRY(narrow32(pax.uid.value_or(header_uid), "uid"));
        entry.gid = TRY(narrow32(pax.gid.value_or(header_gid), "gid"));
        if (entry.type == TarEntry::Type::CharDevice || entry.type == TarEntry::Type::BlockDevice) {
            std::uint64_t major_number = TRY(parse_number(block, DEVMAJOR, "devmajor"));
            std::uint64_t minor_number = TRY(parse_number(block, DEVMINOR, "devminor"));
            entry.device_major = TRY(narrow32(major_number, "devmajor"));
            entry.device_minor = TRY(narrow32(minor_number, "devminor"));
        }
        // Only regular files carry data; for the others the size is
        // skipped (GNU writes a hard link's size as 0, some tools do not).
        entry.size = entry.type == TarEntry::Type::Regular ? effective_size : 0;
        entry.data_offset = data_offset;
        return std::optional<TarEntry>(std::move(entry));
    }
}

} // namespace qtbox::image
