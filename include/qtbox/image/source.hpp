// Byte sources and sinks for building images without holding them in memory.
//
// A ByteSource is a read-only window onto an open file: a whole file, a
// member of a tar archive (a docker-archive's layer), or a spooled
// decompressed layer. Reads are positional (pread), so many sources can share
// one descriptor and an entry's contents can be re-read at emission time.
// Every read is bounds-checked against the window.
//
// A ByteSink receives a stream of bytes (the cpio writer writes into one; the
// EIF writer's section stream is one). BufferedSink batches small writes so
// that the layer below sees few, large chunks.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/crypto/hash.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace qtbox::image {

// Causes callers (and tests) branch on; the message says the rest.
enum class ImageError {
    Malformed = 1,   // not a valid tar/JSON/manifest/layout
    Truncated,       // the input ends before a declared size
    PathEscape,      // `..`, or a write through a symbolic link
    DigestMismatch,  // a blob or layer does not hash to its declared digest
    NotFound,        // a tag, blob, layer or file named by the image is absent
    Unsupported,     // valid but outside what qtbox builds (zstd, sparse, arm64)
    LimitExceeded,   // a named size or count limit
    Changed,         // a file changed while it was being read
};

// Named limits for untrusted images (docs/ARCHITECTURE.md "Conventions": every outside size is checked).
constexpr std::size_t MAX_PATH_LENGTH = 4096;          // PATH_MAX
constexpr std::size_t MAX_LINK_TARGET_LENGTH = 4096;
constexpr std::size_t MAX_PAX_HEADER_SIZE = 1 << 20;   // extended headers are read into memory
constexpr std::size_t MAX_JSON_SIZE = 4 << 20;         // manifest, index, config
constexpr std::size_t MAX_LAYERS = 256;
// Descriptors read from an OCI layout's index.json and the indexes nested in
// it, all together: bounds the walk by its work, whatever the indexes find.
constexpr std::size_t MAX_INDEX_DESCRIPTORS = 4096;
constexpr std::size_t MAX_TREE_ENTRIES = 1'000'000;
// Components in one path: PATH_MAX allows 2048 ("a/a/..."), which makes
// every parent check of every entry walk 2048 prefixes.
constexpr std::size_t MAX_PATH_DEPTH = 256;
// The bytes of all paths held at once: the tree's keys, and a layer's
// entry names while it is applied. A million entries of 256-byte paths.
constexpr std::size_t MAX_TREE_NAME_BYTES = 256 << 20;
constexpr std::uint64_t MAX_FILE_SIZE = 0xFFFF'FFFFu;  // newc's 8 hex digits
// Total bytes decompressed from gzip layers into temporary files: bounds a
// compression bomb to this much disk, whatever the archive declares. The
// ramdisk is held in guest memory twice while it boots (the initrd and the
// unpacked initramfs), so an image near this size cannot run in any enclave
// a parent instance offers; more would only let a bomb fill $TMPDIR.
constexpr std::uint64_t MAX_UNPACKED_BYTES = 16ull << 30;

class ByteSource {
public:
    ByteSource() = default;
    ByteSource(std::shared_ptr<UniqueFd const> fd, std::uint64_t offset, std::uint64_t size)
        : m_fd(std::move(fd)), m_offset(offset), m_size(size) { }

    // The whole of a regular file (refuses anything else).
    static ErrorOr<ByteSource> open_file(std::string const& path);

    std::uint64_t size() const { return m_size; }
    int fd() const { return m_fd ? m_fd->get() : -1; }
    std::uint64_t file_offset() const { return m_offset; }

    // Reads exactly out.size() bytes at `offset` within the window.
    ErrorOr<void> read_at(std::uint64_t offset, std::span<std::uint8_t> out) const;
    ErrorOr<ByteSource> slice(std::uint64_t offset, std::uint64_t size) const;

private:
    std::shared_ptr<UniqueFd const> m_fd;
    std::uint64_t m_offset { 0 };
    std::uint64_t m_size { 0 };
};

class ByteSink {
public:
    virtual ~ByteSink() = default;
    virtual ErrorOr<void> write(ByteView bytes) = 0;
};

// Collects small writes into a fixed buffer; writes of at least a buffer's
// size go straight through once the buffer is drained. flush() at the end.
class BufferedSink final : public ByteSink {
public:
    static constexpr std::size_t DEFAULT_CAPACITY = 1 << 20;
    explicit BufferedSink(ByteSink& next, std::size_t capacity = DEFAULT_CAPACITY);
    ErrorOr<void> write(ByteView bytes) override;
    ErrorOr<void> flush();
    // Room to read directly into (avoids a copy for file contents): fill up
    // to `span.size()` bytes, then commit(n).
    ErrorOr<std::span<std::uint8_t>> reserve();
    void commit(std::size_t count) { m_used += count; }

private:
    ByteSink& m_next;
    Bytes m_buffer;
    std::size_t m_used { 0 };
};

// Collects everything in memory (tests, small sections such as metadata).
class MemorySink final : public ByteSink {
public:
    ErrorOr<void> write(ByteView bytes) override
    {
        m_bytes.insert(m_bytes.end(), bytes.begin(), bytes.end());
        return {};
    }
    Bytes const& bytes() const { return m_bytes; }

private:
    Bytes m_bytes;
};

// An anonymous temporary file in $TMPDIR (O_TMPFILE where supported, else
// created and unlinked at once): nothing is left behind on any exit path.
ErrorOr<UniqueFd> create_temporary_file();

// Hashes a source's bytes with SHA-256 (layer and blob digests).
ErrorOr<crypto::Sha256Digest> sha256_of(ByteSource const& source);

enum class Compression { None, Gzip, Zstd, Bzip2, Xz };
ErrorOr<Compression> sniff_compression(ByteSource const& source);

struct OpenedLayer {
    ByteSource content;                    // the uncompressed tar
    crypto::Sha256Digest blob_digest {};   // SHA-256 of the stored bytes
    crypto::Sha256Digest content_digest {};// SHA-256 of the uncompressed tar (the diff_id)
};

// Hashes a stored layer and, when it is gzip-compressed, inflates it into a
// temporary file while hashing both forms. `unpacked_budget` is what is
// left of MAX_UNPACKED_BYTES; it is reduced by what was spooled.
ErrorOr<OpenedLayer> open_layer(ByteSource const& stored, std::uint64_t& unpacked_budget);

} // namespace qtbox::image
