// The file tree of one ramdisk, built from image layers or a host directory,
// then written out as a deterministic cpio archive (cpio.hpp).
//
// Paths are keys relative to the ramdisk root ("rootfs/etc/passwd"), kept in
// a std::map so that iteration is the bytewise order docs/FORMATS.md §3 asks for (a
// parent always sorts before its children). Contents are never held in the
// tree: a node says where its bytes are (a range of a layer, a host file, or
// a small inline buffer such as /cmd).
//
// Layers are applied as the OCI image spec's "Applying Changesets" says:
// whiteouts (`.wh.NAME`, opaque `.wh..wh..opq`) first hide what lower
// layers put there, then the layer's entries are added. Entry paths are
// untrusted: `..` anywhere is refused, and no entry (or hard link target)
// may pass through a symbolic link or a non-directory already in the tree,
// so nothing can be written outside its directory, whatever a symlink says.
#pragma once

#include <qtbox/image/source.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::image {

enum class NodeType : std::uint8_t { Regular, Directory, Symlink, CharDevice, BlockDevice, Fifo, Socket };

struct Content {
    enum class Kind : std::uint8_t { None, Source, Host, Inline };
    Kind kind { Kind::None };
    std::uint32_t index { 0 };   // into the tree's sources / host paths / inline buffers
    std::uint64_t offset { 0 };  // within the source (Kind::Source)
};

struct Node {
    NodeType type { NodeType::Regular };
    std::uint32_t mode { 0 };    // 07777 bits; the type is `type`
    std::uint32_t uid { 0 };
    std::uint32_t gid { 0 };
    std::uint64_t size { 0 };    // regular: data bytes
    std::uint32_t rdev_major { 0 };
    std::uint32_t rdev_minor { 0 };
    std::string link_target;     // symlink
    Content content;
    // Regular files that share an inode are hard links of one file.
    std::uint64_t inode { 0 };
};

// A file of a host directory, with the identity it had when the tree was
// built: the writer refuses to copy anything else from that path.
struct HostFile {
    std::string path;
    std::uint64_t device { 0 };
    std::uint64_t inode { 0 };
};

// Splits an archive path into a canonical relative key: leading "/" and "./"
// go, empty and "." components go, and ".." anywhere is refused
// (ImageError::PathEscape). The root is "". More than MAX_PATH_LENGTH bytes
// or MAX_PATH_DEPTH components is ImageError::LimitExceeded.
ErrorOr<std::string> normalize_path(std::string_view path);

// What one tree may hold (ImageError::LimitExceeded past either); tests
// lower them.
struct TreeLimits {
    std::size_t entries { MAX_TREE_ENTRIES };
    std::size_t name_bytes { MAX_TREE_NAME_BYTES }; // the keys, all together
};

// Keys are compared as string_views too, so that looking up a parent does
// not copy its path.
using NodeMap = std::map<std::string, Node, std::less<>>;

class FileTree {
public:
    FileTree() = default;
    explicit FileTree(TreeLimits limits) : m_limits(limits) { }
    FileTree(FileTree&&) = default;
    FileTree& operator=(FileTree&&) = default;

    // Adds or replaces `path` (already normalised, not ""). Missing parents
    // are created as 0755 root-owned directories; a parent that exists and
    // is not a directory is refused. Replacing a directory with anything
    // else removes its subtree; a directory over a directory keeps the
    // children and takes the new owner and mode.
    ErrorOr<void> put(std::string path, Node node);
    // Adds a directory only if nothing is at `path` yet.
    ErrorOr<void> ensure_directory(std::string const& path, std::uint32_t mode, std::uint32_t uid = 0, std::uint32_t gid = 0);
    // Removes `path` and everything below it; absent paths are fine.
    void remove(std::string const& path);
    // Removes everything below `path`, keeping `path`.
    void remove_children(std::string const& path);
    // Fails unless every proper ancestor of `path` that exists is a
    // directory (a symbolic link there gives ImageError::PathEscape).
    ErrorOr<void> check_ancestors(std::string_view path) const;

    Node const* find(std::string_view path) const;
    NodeMap const& nodes() const { return m_nodes; }
    std::size_t size() const { return m_nodes.size(); }
    TreeLimits const& limits() const { return m_limits; }
    std::size_t name_bytes() const { return m_name_bytes; }

    std::uint32_t add_source(ByteSource source);
    std::uint32_t add_host_file(HostFile file);
    std::uint32_t add_inline(Bytes bytes);
    std::uint64_t new_inode() { return ++m_last_inode; }

    ByteSource const& source(std::uint32_t index) const { return m_sources.at(index); }
    HostFile const& host_file(std::uint32_t index) const { return m_host_files.at(index); }
    Bytes const& inline_bytes(std::uint32_t index) const { return m_inline.at(index); }

    // Sum of regular file sizes (each hard-linked file counted once): what
    // the cpio writer will copy, for progress reporting.
    std::uint64_t content_bytes() const;

private:
    ErrorOr<void> check_parents(std::string const& path);
    ErrorOr<void> insert(std::string path, Node node);
    NodeMap::iterator erase(NodeMap::iterator it);

    TreeLimits m_limits;
    NodeMap m_nodes;
    std::size_t m_name_bytes { 0 };
    // A path that is, with each of its ancestors, a directory in the tree:
    // entries of a layer mostly share their parents with the one before, so
    // check_parents looks up only the components past it. Cleared whenever
    // a node is removed or a directory replaced.
    std::string m_directory_chain;
    std::vector<ByteSource> m_sources;
    std::vector<HostFile> m_host_files;
    std::vector<Bytes> m_inline;
    std::uint64_t m_last_inode { 0 };
};

// The contents of the regular file at `path` (a key, as find() takes it),
// when it is at most `limit` bytes: nullopt when nothing is there; an error
// when it is not a regular file (a symbolic link is not followed) or larger
// (ImageError::LimitExceeded). For small files a build reads itself, such as
// the image's /etc/passwd.
ErrorOr<std::optional<Bytes>> read_small_file(FileTree const& tree, std::string const& path, std::size_t limit);

// Applies one uncompressed layer tar under `mount` (a directory already in
// the tree, e.g. "rootfs"). The tar's root entry ("./") sets the mount
// directory's owner and mode. `layer` must stay readable until the tree is
// written (the tree keeps a reference).
ErrorOr<void> apply_layer(FileTree& tree, std::string const& mount, ByteSource layer);

// Adds the host directory `directory` under `mount` (which it creates with
// the directory's own owner and mode), without following symbolic links.
// Contents are read at write time; a file that changes size in between is
// an error (ImageError::Changed).
ErrorOr<void> add_host_directory(FileTree& tree, std::string const& mount, std::string const& directory);

} // namespace qtbox::image
