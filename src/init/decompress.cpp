// Module decompression for kernels without CONFIG_MODULE_DECOMPRESS (Debian
// 6.1's among them): gzip through zlib, xz through liblzma, zstd through
// libzstd. Pure functions on memory; init.cpp hands the result to
// init_module(2).
#include <qtbox/init/init.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

namespace qtbox::init {

namespace {

// Grows `out` geometrically up to `limit` while a decoder fills it; each
// decoder's step() reports how many bytes it wrote and whether it is done.
class Sink {
public:
    Sink(std::size_t input_size, std::size_t limit)
        : m_limit(limit)
        , m_bytes(std::min<std::size_t>(input_size * 4 + 4096, limit))
    {
    }

    // Room to write into; empty when the limit is reached.
    std::span<std::uint8_t> room()
    {
        if (m_used == m_bytes.size() && m_bytes.size() < m_limit)
            m_bytes.resize(std::min(m_bytes.size() * 2, m_limit));
        return std::span<std::uint8_t>(m_bytes).subspan(m_used);
    }
    void wrote(std::size_t count) { m_used += count; }
    Bytes take() &&
    {
        m_bytes.resize(m_used);
        return std::move(m_bytes);
    }

private:
    std::size_t m_limit;
    Bytes m_bytes;
    std::size_t m_used { 0 };
};

Error too_large(std::size_t limit)
{
    auto size = limit % (1 << 20) == 0 ? fmt::format("{} MiB", limit >> 20) : fmt::format("{} bytes", limit);
    return Error::from_string(fmt::format("larger than {} once decompressed", size));
}

Error corrupt(std::string_view format, std::string_view detail = {})
{
    return Error::from_string(detail.empty() ? fmt::format("corrupt {} data", format)
                                             : fmt::format("corrupt {} data ({})", format, detail));
}

ErrorOr<Bytes> gunzip(ByteView input, std::size_t limit)
{
    z_stream stream {};
    if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK)
        return Error::from_string("zlib initialisation failed");
    Sink sink(input.size(), limit);
    stream.next_in = const_cast<Bytef*>(input.data());
    stream.avail_in = static_cast<uInt>(input.size());
    int rc = Z_OK;
    while (rc == Z_OK) {
        auto room = sink.room();
        if (room.empty())
            break;
        stream.next_out = room.data();
        stream.avail_out = static_cast<uInt>(room.size());
        rc = inflate(&stream, Z_NO_FLUSH);
        sink.wrote(room.size() - stream.avail_out);
        if (rc == Z_BUF_ERROR && stream.avail_in == 0)
            break; // truncated: needs input that is not there
    }
    bool trailing = stream.avail_in != 0;
    inflateEnd(&stream);
    if (rc == Z_STREAM_END && !trailing)
        return std::move(sink).take();
    if (rc == Z_OK)
        return too_large(limit);
    return corrupt("gzip", rc == Z_STREAM_END ? "bytes after the end of the stream" : (rc == Z_BUF_ERROR ? "truncated" : ""));
}

ErrorOr<Bytes> unxz(ByteView input, std::size_t limit)
{
    lzma_stream stream = LZMA_STREAM_INIT;
    // The decoder's own memory is bounded too (a crafted header can ask for
    // a huge dictionary); the kernel's xz modules use 1 MiB or less.
    if (lzma_stream_decoder(&stream, 256u << 20, 0) != LZMA_OK)
        return Error::from_string("liblzma initialisation failed");
    Sink sink(input.size(), limit);
    stream.next_in = input.data();
    stream.avail_in = input.size();
    lzma_ret rc = LZMA_OK;
    while (rc == LZMA_OK) {
        auto room = sink.room();
        if (room.empty())
            break;
        stream.next_out = room.data();
        stream.avail_out = room.size();
        rc = lzma_code(&stream, LZMA_FINISH);
        sink.wrote(room.size() - stream.avail_out);
    }
    bool trailing = stream.avail_in != 0;
    lzma_end(&stream);
    if (rc == LZMA_STREAM_END && !trailing)
        return std::move(sink).take();
    if (rc == LZMA_OK)
        return too_large(limit);
    switch (rc) {
    case LZMA_STREAM_END: return corrupt("xz", "bytes after the end of the stream");
    case LZMA_BUF_ERROR: return corrupt("xz", "truncated");
    case LZMA_MEMLIMIT_ERROR: return corrupt("xz", "needs more than 256 MiB to decode");
    case LZMA_FORMAT_ERROR: return corrupt("xz", "not an xz stream");
    case LZMA_DATA_ERROR: return corrupt("xz");
    default: return corrupt("xz", fmt::format("liblzma error {}", static_cast<int>(rc)));
    }
}

ErrorOr<Bytes> unzstd(ByteView input, std::size_t limit)
{
    ZSTD_DCtx* context = ZSTD_createDCtx();
    if (!context)
        return Error::from_string("zstd initialisation failed");
    // Bounded window, as for xz (zstd -19 uses 8 MiB).
    ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, 27);
    Sink sink(input.size(), limit);
    ZSTD_inBuffer in { input.data(), input.size(), 0 };
    std::size_t rc = 1; // bytes the frame still needs; 0 when it is complete
    bool full = false;
    while (rc != 0) {
        auto room = sink.room();
        if (room.empty()) {
            full = true;
            break;
        }
        ZSTD_outBuffer out { room.data(), room.size(), 0 };
        std::size_t before_in = in.pos;
        rc = ZSTD_decompressStream(context, &out, &in);
        sink.wrote(out.pos);
        if (ZSTD_isError(rc))
            break;
        if (rc != 0 && in.pos == in.size && before_in == in.pos && out.pos == 0)
            break; // truncated: the frame wants input that is not there
    }
    ZSTD_freeDCtx(context);
    if (ZSTD_isError(rc))
        return corrupt("zstd", ZSTD_getErrorName(rc));
    if (full)
        return too_large(limit);
    if (rc != 0)
        return corrupt("zstd", "truncated");
    if (in.pos != in.size)
        return corrupt("zstd", "bytes after the end of the frame");
    return std::move(sink).take();
}

} // namespace

ErrorOr<Bytes> decompress_module(ByteView compressed, Compression compression, std::size_t limit)
{
    switch (compression) {
    case Compression::Gzip: return gunzip(compressed, limit);
    case Compression::Xz: return unxz(compressed, limit);
    case Compression::Zstd: return unzstd(compressed, limit);
    case Compression::None: break;
    }
    return Bytes(compressed.begin(), compressed.end());
}

} // namespace qtbox::init
