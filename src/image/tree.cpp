#include <qtbox/image/tree.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/image/tar.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <unordered_set>

namespace qtbox::image {

namespace {

constexpr std::uint32_t IMPLICIT_DIRECTORY_MODE = 0755;

// OCI image spec, "Whiteouts".
constexpr std::string_view WHITEOUT_PREFIX = ".wh.";
constexpr std::string_view OPAQUE_WHITEOUT = ".wh..wh..opq";
constexpr std::string_view AUFS_META_PREFIX = ".wh..wh.";

std::string join(std::string const& mount, std::string_view relative)
{
    if (relative.empty())
        return mount;
    std::string key;
    key.reserve(mount.size() + 1 + relative.size());
    key.append(mount).append("/").append(relative);
    return key;
}

std::pair<std::string_view, std::string_view> split_last(std::string_view path)
{
    auto slash = path.rfind('/');
    if (slash == std::string_view::npos)
        return { {}, path };
    return { path.substr(0, slash), path.substr(slash + 1) };
}

bool is_descendant_key(std::string_view key, std::string_view prefix_with_slash)
{
    return key.substr(0, prefix_with_slash.size()) == prefix_with_slash;
}

} // namespace

ErrorOr<std::string> normalize_path(std::string_view path)
{
    if (path.size() > MAX_PATH_LENGTH)
        return Error::from_code(ImageError::LimitExceeded, fmt::format("path longer than {} bytes", MAX_PATH_LENGTH));
    std::string result;
    result.reserve(path.size());
    std::size_t position = 0;
    std::size_t depth = 0;
    while (position <= path.size()) {
        auto slash = path.find('/', position);
        auto end = slash == std::string_view::npos ? path.size() : slash;
        auto component = path.substr(position, end - position);
        position = end + 1;
        if (component.empty() || component == ".")
            continue;
        if (component == "..")
            return Error::from_code(ImageError::PathEscape, fmt::format("path escape: '{}' contains '..'", path));
        if (++depth > MAX_PATH_DEPTH)
            return Error::from_code(ImageError::LimitExceeded, fmt::format("path deeper than {} components", MAX_PATH_DEPTH));
        if (!result.empty())
            result += '/';
        result.append(component);
    }
    return result;
}

ErrorOr<void> FileTree::check_ancestors(std::string_view path) const
{
    std::size_t slash = 0;
    while ((slash = path.find('/', slash + 1)) != std::string_view::npos) {
        auto it = m_nodes.find(path.substr(0, slash));
        if (it == m_nodes.end())
            return {};
        if (it->second.type == NodeType::Symlink)
            return Error::from_code(ImageError::PathEscape,
                fmt::format("path escape: '{}' goes through the symbolic link '{}' -> '{}'", path, it->first, it->second.link_target));
        if (it->second.type != NodeType::Directory)
            return Error::from_code(ImageError::Malformed, fmt::format("'{}': '{}' is not a directory", path, it->first));
    }
    return {};
}

ErrorOr<void> FileTree::insert(std::string path, Node node)
{
    if (m_nodes.size() >= m_limits.entries)
        return Error::from_code(ImageError::LimitExceeded, fmt::format("the image has more than {} entries", m_limits.entries));
    if (path.size() > m_limits.name_bytes - m_name_bytes)
        return Error::from_code(ImageError::LimitExceeded, fmt::format("the image's paths take more than {} bytes in all", m_limits.name_bytes));
    m_name_bytes += path.size();
    m_nodes.emplace(std::move(path), std::move(node));
    return {};
}

NodeMap::iterator FileTree::erase(NodeMap::iterator it)
{
    m_name_bytes -= it->first.size();
    return m_nodes.erase(it);
}

ErrorOr<void> FileTree::check_parents(std::string const& path)
{
    auto last_slash = path.rfind('/');
    if (last_slash == std::string::npos || last_slash == 0)
        return {};
    // The ancestors `path` shares with m_directory_chain are directories
    // already: start after the longest shared prefix that ends at a
    // component boundary of both.
    std::string_view chain = m_directory_chain;
    std::size_t common = 0;
    while (common < chain.size() && common < last_slash && chain[common] == path[common])
        ++common;
    std::size_t known = 0;
    for (std::size_t end = common; end > 0; --end) {
        if ((end == chain.size() || chain[end] == '/') && path[end] == '/') {
            known = end;
            break;
        }
    }
    std::size_t slash = known;
    bool creating = false;
    while ((slash = path.find('/', slash + 1)) != std::string::npos) {
        std::string_view parent(path.data(), slash);
        if (!creating) {
            auto it = m_nodes.find(parent);
            if (it != m_nodes.end()) {
                if (it->second.type == NodeType::Symlink)
                    return Error::from_code(ImageError::PathEscape,
                        fmt::format("path escape: '{}' goes through the symbolic link '{}' -> '{}'", path, it->first, it->second.link_target));
                if (it->second.type != NodeType::Directory)
                    return Error::from_code(ImageError::Malformed, fmt::format("'{}': '{}' is not a directory", path, it->first));
                continue;
            }
            // A missing directory has no descendants in the tree.
            creating = true;
        }
        Node directory;
        directory.type = NodeType::Directory;
        directory.mode = IMPLICIT_DIRECTORY_MODE;
        TRY(insert(std::string(parent), std::move(directory)));
    }
    m_directory_chain.assign(path, 0, last_slash);
    return {};
}

ErrorOr<void> FileTree::put(std::string path, Node node)
{
    if (path.empty())
        return Error::from_code(ImageError::Malformed, "cannot replace the archive root");
    TRY(check_parents(path));
    auto it = m_nodes.find(path);
    if (it != m_nodes.end()) {
        if (it->second.type == NodeType::Directory && node.type == NodeType::Directory) {
            it->second.mode = node.mode;
            it->second.uid = node.uid;
            it->second.gid = node.gid;
            return {};
        }
        if (it->second.type == NodeType::Directory)
            remove_children(path);
        it->second = std::move(node);
        return {};
    }
    return insert(std::move(path), std::move(node));
}

ErrorOr<void> FileTree::ensure_directory(std::string const& path, std::uint32_t mode, std::uint32_t uid, std::uint32_t gid)
{
    if (auto const* existing = find(path)) {
        if (existing->type != NodeType::Directory)
            return Error::from_code(ImageError::Malformed, fmt::format("'{}' exists and is not a directory", path));
        return {};
    }
    Node directory;
    directory.type = NodeType::Directory;
    directory.mode = mode;
    directory.uid = uid;
    directory.gid = gid;
    return put(path, std::move(directory));
}

void FileTree::remove_children(std::string const& path)
{
    m_directory_chain.clear();
    std::string prefix = path + "/";
    auto it = m_nodes.lower_bound(prefix);
    while (it != m_nodes.end() && is_descendant_key(it->first, prefix))
        it = erase(it);
}

void FileTree::remove(std::string const& path)
{
    if (path.empty())
        return;
    remove_children(path);
    if (auto it = m_nodes.find(path); it != m_nodes.end())
        erase(it);
}

Node const* FileTree::find(std::string_view path) const
{
    auto it = m_nodes.find(path);
    return it == m_nodes.end() ? nullptr : &it->second;
}

std::uint32_t FileTree::add_source(ByteSource source)
{
    m_sources.push_back(std::move(source));
    return static_cast<std::uint32_t>(m_sources.size() - 1);
}

std::uint32_t FileTree::add_host_file(HostFile file)
{
    m_host_files.push_back(std::move(file));
    return static_cast<std::uint32_t>(m_host_files.size() - 1);
}

std::uint32_t FileTree::add_inline(Bytes bytes)
{
    m_inline.push_back(std::move(bytes));
    return static_cast<std::uint32_t>(m_inline.size() - 1);
}

std::uint64_t FileTree::content_bytes() const
{
    std::uint64_t total = 0;
    std::unordered_set<std::uint64_t> seen;
    for (auto const& [path, node] : m_nodes) {
        if (node.type != NodeType::Regular)
            continue;
        if (seen.insert(node.inode).second)
            total += node.size;
    }
    return total;
}

ErrorOr<std::optional<Bytes>> read_small_file(FileTree const& tree, std::string const& path, std::size_t limit)
{
    TRY(tree.check_ancestors(path));
    auto const* node = tree.find(path);
    if (node == nullptr)
        return std::optional<Bytes> {};
    if (node->type != NodeType::Regular)
        return Error::from_code(ImageError::Unsupported, fmt::format("'{}' is not a regular file", path));
    if (node->size > limit)
        return Error::from_code(ImageError::LimitExceeded, fmt::format("'{}' is {} bytes (at most {} are read)", path, node->size, limit));
    Bytes bytes(static_cast<std::size_t>(node->size));
    switch (node->content.kind) {
    case Content::Kind::Source:
        TRY(tree.source(node->content.index).read_at(node->content.offset, bytes));
        break;
    case Content::Kind::Inline:
        bytes = tree.inline_bytes(node->content.index);
        break;
    case Content::Kind::Host: {
        auto const& host = tree.host_file(node->content.index);
        auto fd = TRY(sys::open(host.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        auto st = TRY(sys::fstat(fd.get()));
        if (st.st_dev != host.device || st.st_ino != host.inode)
            return Error::from_code(ImageError::Changed, fmt::format("{} changed during the build", host.path));
        bytes = TRY(sys::read_fd(fd.get(), limit));
        break;
    }
    case Content::Kind::None:
        break;
    }
    if (bytes.size() != node->size)
        return Error::from_code(ImageError::Changed, fmt::format("'{}' changed size during the build", path));
    return std::optional<Bytes>(std::move(bytes));
}

ErrorOr<void> apply_layer(FileTree& tree, std::string const& mount, ByteSource layer)
{
    auto const* mount_node = tree.find(mount);
    if (mount.empty() || !mount_node || mount_node->type != NodeType::Directory)
        return Error::from_code(ImageError::Malformed, fmt::format("layer mount point '{}' is not a directory", mount));

    // Read every header first: OCI whiteouts apply to lower layers only,
    // before any of this layer's own entries.
    struct Pending {
        TarEntry entry;
        std::string relative;
    };
    // Names are held once: the entry's own path is dropped once normalised,
    // and all of them together are bounded like the tree's keys.
    std::vector<Pending> pending;
    std::size_t name_bytes = 0;
    TarReader reader(layer);
    while (auto entry = TRY(reader.next())) {
        if (pending.size() >= tree.limits().entries)
            return Error::from_code(ImageError::LimitExceeded, fmt::format("a layer has more than {} entries", tree.limits().entries));
        auto relative = normalize_path(entry->path);
        if (relative.is_error())
            return relative.release_error().context("layer entry");
        name_bytes += relative.value().size() + entry->link_target.size();
        if (name_bytes > tree.limits().name_bytes)
            return Error::from_code(ImageError::LimitExceeded, fmt::format("a layer's paths take more than {} bytes in all", tree.limits().name_bytes));
        entry->path = std::string();
        pending.push_back({ std::move(*entry), relative.release_value() });
    }

    std::vector<Pending*> additions;
    additions.reserve(pending.size());
    for (auto& item : pending) {
        auto [parent, base] = split_last(item.relative);
        // aufs bookkeeping (.wh..wh.plnk/..., .wh..wh.aufs): not part of the image.
        if (parent.starts_with(AUFS_META_PREFIX) || parent.find(fmt::format("/{}", AUFS_META_PREFIX)) != std::string_view::npos)
            continue;
        if (!base.starts_with(WHITEOUT_PREFIX)) {
            additions.push_back(&item);
            continue;
        }
        if (base == OPAQUE_WHITEOUT) {
            auto directory = join(mount, parent);
            TRY(tree.check_ancestors(directory));
            auto const* node = tree.find(directory);
            if (node && node->type == NodeType::Directory)
                tree.remove_children(directory);
            continue;
        }
        if (base.starts_with(AUFS_META_PREFIX))
            continue;
        auto name = base.substr(WHITEOUT_PREFIX.size());
        if (name.empty() || name == "." || name == "..")
            return Error::from_code(ImageError::PathEscape, fmt::format("path escape: whiteout '{}' names no file in its directory", item.relative));
        auto target = join(mount, parent.empty() ? std::string(name) : fmt::format("{}/{}", parent, name));
        TRY(tree.check_ancestors(target));
        tree.remove(target);
    }

    std::uint32_t source_index = tree.add_source(std::move(layer));
    for (auto* item : additions) {
        auto const& entry = item->entry;
        auto key = join(mount, item->relative);
        Node node;
        node.mode = entry.mode;
        node.uid = entry.uid;
        node.gid = entry.gid;
        switch (entry.type) {
        case TarEntry::Type::Directory:
            node.type = NodeType::Directory;
            break;
        case TarEntry::Type::Regular:
            if (entry.size > MAX_FILE_SIZE)
                return Error::from_code(ImageError::LimitExceeded,
                    fmt::format("'{}' is {} bytes; newc cpio holds files up to {} bytes", item->relative, entry.size, MAX_FILE_SIZE));
            node.type = NodeType::Regular;
            node.size = entry.size;
            node.content = { Content::Kind::Source, source_index, entry.data_offset };
            node.inode = tree.new_inode();
            break;
        case TarEntry::Type::Symlink:
            node.type = NodeType::Symlink;
            node.link_target = entry.link_target;
            node.size = entry.link_target.size();
            break;
        case TarEntry::Type::CharDevice:
        case TarEntry::Type::BlockDevice:
            node.type = entry.type == TarEntry::Type::CharDevice ? NodeType::CharDevice : NodeType::BlockDevice;
            node.rdev_major = entry.device_major;
            node.rdev_minor = entry.device_minor;
            break;
        case TarEntry::Type::Fifo:
            node.type = NodeType::Fifo;
            break;
        case TarEntry::Type::HardLink: {
            auto target_relative = normalize_path(entry.link_target);
            if (target_relative.is_error())
                return target_relative.release_error().context(fmt::format("hard link '{}'", item->relative));
            auto target = join(mount, target_relative.value());
            TRY(tree.check_ancestors(target));
            auto const* linked = tree.find(target);
            if (!linked)
                return Error::from_code(ImageError::NotFound,
                    fmt::format("hard link '{}' points to '{}', which is not in the image", item->relative, entry.link_target));
            if (linked->type == NodeType::Directory)
                return Error::from_code(ImageError::Malformed, fmt::format("hard link '{}' points to a directory", item->relative));
            node = *linked;
            // newc can only share regular files' data (the kernel's
            // initramfs links S_ISREG entries only); other types are copied.
            if (node.type != NodeType::Regular)
                node.inode = 0;
            break;
        }
        }
        if (item->relative.empty()) {
            if (node.type != NodeType::Directory)
                return Error::from_code(ImageError::Malformed, "the layer's root entry is not a directory");
            TRY(tree.put(mount, std::move(node)));
            continue;
        }
        TRY(tree.put(std::move(key), std::move(node)));
    }
    return {};
}

} // namespace qtbox::image
