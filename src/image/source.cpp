#include <qtbox/image/source.hpp>

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

namespace qtbox::image {

namespace {

constexpr std::size_t HASH_CHUNK = 1 << 20;
constexpr std::size_t INFLATE_CHUNK = 256 << 10;

} // namespace

ErrorOr<ByteSource> ByteSource::open_file(std::string const& path)
{
    auto fd = TRY(sys::open(path, O_RDONLY));
    auto st = TRY(sys::fstat(fd.get()));
    if (!S_ISREG(st.st_mode))
        return Error::from_code(ImageError::Malformed, fmt::format("{}: not a regular file", path));
    return ByteSource(std::make_shared<UniqueFd const>(std::move(fd)), 0, static_cast<std::uint64_t>(st.st_size));
}

ErrorOr<void> ByteSource::read_at(std::uint64_t offset, std::span<std::uint8_t> out) const
{
    if (offset > m_size || out.size() > m_size - offset)
        return Error::from_code(ImageError::Truncated,
            fmt::format("read of {} bytes at {} is past the end ({} bytes)", out.size(), offset, m_size));
    if (out.empty())
        return {};
    auto result = sys::pread_exact(fd(), out.data(), out.size(), m_offset + offset);
    if (result.is_error()) {
        // A short read means the file shrank under us.
        if (result.error().is(sys::SysError::UnexpectedEnd))
            return Error::from_code(ImageError::Changed, "the input file shrank while it was being read");
        return result.release_error();
    }
    return {};
}

ErrorOr<ByteSource> ByteSource::slice(std::uint64_t offset, std::uint64_t size) const
{
    if (offset > m_size || size > m_size - offset)
        return Error::from_code(ImageError::Truncated,
            fmt::format("{} bytes at {} lie past the end ({} bytes)", size, offset, m_size));
    return ByteSource(m_fd, m_offset + offset, size);
}

BufferedSink::BufferedSink(ByteSink& next, std::size_t capacity) : m_next(next), m_buffer(capacity) { }

ErrorOr<void> BufferedSink::flush()
{
    if (m_used == 0)
        return {};
    auto used = m_used;
    m_used = 0;
    return m_next.write(ByteView(m_buffer.data(), used));
}

ErrorOr<void> BufferedSink::write(ByteView bytes)
{
    while (!bytes.empty()) {
        if (m_used == 0 && bytes.size() >= m_buffer.size())
            return m_next.write(bytes);
        std::size_t take = std::min(bytes.size(), m_buffer.size() - m_used);
        std::memcpy(m_buffer.data() + m_used, bytes.data(), take);
        m_used += take;
        bytes = bytes.subspan(take);
        if (m_used == m_buffer.size())
            TRY(flush());
    }
    return {};
}

ErrorOr<std::span<std::uint8_t>> BufferedSink::reserve()
{
    if (m_used == m_buffer.size())
        TRY(flush());
    return std::span<std::uint8_t>(m_buffer.data() + m_used, m_buffer.size() - m_used);
}

ErrorOr<UniqueFd> create_temporary_file()
{
    char const* tmpdir = std::getenv("TMPDIR");
    std::string directory = (tmpdir && *tmpdir) ? tmpdir : "/tmp";
    int fd = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return UniqueFd(fd);
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        return Error::from_errno(fmt::format("create a temporary file in {}", directory));
    std::string pattern = directory + "/qtbox-eif.XXXXXX";
    fd = ::mkostemp(pattern.data(), O_CLOEXEC);
    if (fd < 0)
        return Error::from_errno(fmt::format("create a temporary file in {}", directory));
    ::unlink(pattern.c_str());
    return UniqueFd(fd);
}

ErrorOr<crypto::Sha256Digest> sha256_of(ByteSource const& source)
{
    crypto::Sha256 hasher;
    Bytes buffer(std::min<std::uint64_t>(HASH_CHUNK, std::max<std::uint64_t>(source.size(), 1)));
    std::uint64_t offset = 0;
    while (offset < source.size()) {
        std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), source.size() - offset));
        TRY(source.read_at(offset, std::span(buffer.data(), take)));
        hasher.update(ByteView(buffer.data(), take));
        offset += take;
    }
    return hasher.finish();
}

ErrorOr<Compression> sniff_compression(ByteSource const& source)
{
    std::uint8_t magic[6] {};
    std::size_t have = static_cast<std::size_t>(std::min<std::uint64_t>(sizeof(magic), source.size()));
    TRY(source.read_at(0, std::span(magic, have)));
    if (have >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
        return Compression::Gzip;
    if (have >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
        return Compression::Zstd;
    if (have >= 3 && magic[0] == 'B' && magic[1] == 'Z' && magic[2] == 'h')
        return Compression::Bzip2;
    if (have >= 6 && std::memcmp(magic, "\xfd" "7zXZ\0", 6) == 0)
        return Compression::Xz;
    return Compression::None;
}

namespace {

// zlib's z_stream with its end call bound to scope.
struct Inflater {
    Inflater() = default;
    ~Inflater()
    {
        if (initialised)
            inflateEnd(&stream);
    }
    Inflater(Inflater const&) = delete;
    Inflater& operator=(Inflater const&) = delete;
    z_stream stream {};
    bool initialised { false };
};

ErrorOr<OpenedLayer> inflate_to_temporary(ByteSource const& stored, std::uint64_t& unpacked_budget)
{
    auto spool = TRY(create_temporary_file());
    Inflater inflater;
    // 15 + 16: gzip wrapper only (RFC 1952), the largest window.
    if (inflateInit2(&inflater.stream, 15 + 16) != Z_OK)
        return Error::from_string("inflateInit2 failed");
    inflater.initialised = true;

    crypto::Sha256 stored_hasher;
    crypto::Sha256 content_hasher;
    Bytes input(INFLATE_CHUNK);
    Bytes output(INFLATE_CHUNK);
    std::uint64_t read_offset = 0;
    std::uint64_t written = 0;
    bool member_done = false;
    for (;;) {
        if (inflater.stream.avail_in == 0) {
            if (read_offset == stored.size())
                break;
            std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(input.size(), stored.size() - read_offset));
            TRY(stored.read_at(read_offset, std::span(input.data(), take)));
            stored_hasher.update(ByteView(input.data(), take));
            read_offset += take;
            inflater.stream.next_in = input.data();
            inflater.stream.avail_in = static_cast<uInt>(take);
        }
        if (member_done) {
            // RFC 1952 §2.2: a gzip file may hold several members, back to back.
            if (inflateReset(&inflater.stream) != Z_OK)
                return Error::from_string("inflateReset failed");
            member_done = false;
        }
        inflater.stream.next_out = output.data();
        inflater.stream.avail_out = static_cast<uInt>(output.size());
        int rc = inflate(&inflater.stream, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return Error::from_code(ImageError::Malformed,
                fmt::format("corrupt gzip data: {}", inflater.stream.msg ? inflater.stream.msg : "inflate failed"));
        std::size_t produced = output.size() - inflater.stream.avail_out;
        if (produced > 0) {
            if (produced > unpacked_budget)
                return Error::from_code(ImageError::LimitExceeded,
                    fmt::format("decompressed layers exceed the limit of {} bytes (a compression bomb?)", MAX_UNPACKED_BYTES));
            unpacked_budget -= produced;
            content_hasher.update(ByteView(output.data(), produced));
            TRY(sys::write_all(spool.get(), ByteView(output.data(), produced)));
            written += produced;
        }
        if (rc == Z_STREAM_END)
            member_done = true;
        else if (rc == Z_BUF_ERROR && inflater.stream.avail_in == 0 && read_offset == stored.size())
            break;
    }
    if (!member_done)
        return Error::from_code(ImageError::Truncated, "gzip data ends in the middle of a stream");
    OpenedLayer layer;
    layer.blob_digest = stored_hasher.finish();
    layer.content_digest = content_hasher.finish();
    layer.content = ByteSource(std::make_shared<UniqueFd const>(std::move(spool)), 0, written);
    return layer;
}

} // namespace

ErrorOr<OpenedLayer> open_layer(ByteSource const& stored, std::uint64_t& unpacked_budget)
{
    switch (TRY(sniff_compression(stored))) {
    case Compression::None: {
        OpenedLayer layer;
        layer.blob_digest = TRY(sha256_of(stored));
        layer.content_digest = layer.blob_digest;
        layer.content = stored;
        return layer;
    }
    case Compression::Gzip:
        return inflate_to_temporary(stored, unpacked_budget);
    case Compression::Zstd:
        return Error::from_code(ImageError::Unsupported, "zstd-compressed layers are not supported (recompress with gzip or store uncompressed)");
    case Compression::Bzip2:
    case Compression::Xz:
        return Error::from_code(ImageError::Unsupported, "bzip2/xz-compressed layers are not supported (OCI layers are tar, tar+gzip or tar+zstd)");
    }
    return Error::from_code(ImageError::Malformed, "unknown compression");
}

} // namespace qtbox::image
