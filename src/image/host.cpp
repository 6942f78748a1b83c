// A host directory as an image root (eif-build --rootfs). The walk never
// follows symbolic links: every entry is looked at with fstatat(...,
// AT_SYMLINK_NOFOLLOW) and every directory is opened with O_NOFOLLOW
// relative to its parent's descriptor.
#include <qtbox/image/tree.hpp>

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace qtbox::image {

namespace {

// Each level holds one descriptor open.
constexpr int MAX_DIRECTORY_DEPTH = 256;

struct DirectoryStream {
    explicit DirectoryStream(DIR* stream) : handle(stream) { }
    ~DirectoryStream()
    {
        if (handle)
            closedir(handle);
    }
    DirectoryStream(DirectoryStream const&) = delete;
    DirectoryStream& operator=(DirectoryStream const&) = delete;
    DIR* handle;
};

class Walker {
public:
    explicit Walker(FileTree& tree) : m_tree(tree) { }

    ErrorOr<void> walk(int directory_fd, std::string const& host_path, std::string const& key, int depth)
    {
        if (depth > MAX_DIRECTORY_DEPTH)
            return Error::from_code(ImageError::LimitExceeded, fmt::format("{}: directories nest deeper than {}", host_path, MAX_DIRECTORY_DEPTH));
        int stream_fd = ::dup(directory_fd);
        if (stream_fd < 0)
            return Error::from_errno("dup");
        DirectoryStream stream(::fdopendir(stream_fd));
        if (!stream.handle) {
            ::close(stream_fd);
            return Error::from_errno(fmt::format("opendir {}", host_path));
        }
        std::vector<std::string> names;
        for (;;) {
            errno = 0;
            auto* entry = ::readdir(stream.handle);
            if (!entry) {
                if (errno != 0)
                    return Error::from_errno(fmt::format("readdir {}", host_path));
                break;
            }
            std::string_view name = entry->d_name;
            if (name == "." || name == "..")
                continue;
            names.emplace_back(name);
        }
        for (auto const& name : names)
            TRY(add_entry(directory_fd, host_path + "/" + name, key + "/" + name, name, depth));
        return {};
    }

    static Node directory_node(struct stat const& st)
    {
        Node node;
        node.type = NodeType::Directory;
        node.mode = st.st_mode & 07777;
        node.uid = st.st_uid;
        node.gid = st.st_gid;
        return node;
    }

private:
    ErrorOr<void> add_entry(int directory_fd, std::string const& host_path, std::string const& key, std::string const& name, int depth)
    {
        if (key.size() > MAX_PATH_LENGTH)
            return Error::from_code(ImageError::LimitExceeded, fmt::format("{}: path longer than {} bytes", host_path, MAX_PATH_LENGTH));
        struct stat st { };
        if (::fstatat(directory_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
            return Error::from_errno(fmt::format("stat {}", host_path));
        Node node;
        node.mode = st.st_mode & 07777;
        node.uid = st.st_uid;
        node.gid = st.st_gid;
        switch (st.st_mode & S_IFMT) {
        case S_IFDIR: {
            TRY(m_tree.put(key, directory_node(st)));
            int child = ::openat(directory_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (child < 0)
                return Error::from_errno(fmt::format("open {}", host_path));
            UniqueFd child_fd(child);
            return walk(child_fd.get(), host_path, key, depth + 1);
        }
        case S_IFREG: {
            if (static_cast<std::uint64_t>(st.st_size) > MAX_FILE_SIZE)
                return Error::from_code(ImageError::LimitExceeded,
                    fmt::format("{} is {} bytes; newc cpio holds files up to {} bytes", host_path, st.st_size, MAX_FILE_SIZE));
            node.type = NodeType::Regular;
            node.size = static_cast<std::uint64_t>(st.st_size);
            node.content = { Content::Kind::Host,
                m_tree.add_host_file({ host_path, static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino) }), 0 };
            if (st.st_nlink > 1) {
                auto [it, inserted] = m_links.try_emplace({ st.st_dev, st.st_ino }, 0);
                if (inserted)
                    it->second = m_tree.new_inode();
                node.inode = it->second;
            } else {
                node.inode = m_tree.new_inode();
            }
            break;
        }
        case S_IFLNK: {
            std::string target(MAX_LINK_TARGET_LENGTH + 1, '\0');
            auto length = ::readlinkat(directory_fd, name.c_str(), target.data(), target.size());
            if (length < 0)
                return Error::from_errno(fmt::format("readlink {}", host_path));
            if (static_cast<std::size_t>(length) > MAX_LINK_TARGET_LENGTH)
                return Error::from_code(ImageError::LimitExceeded, fmt::format("{}: link target longer than {} bytes", host_path, MAX_LINK_TARGET_LENGTH));
            target.resize(static_cast<std::size_t>(length));
            node.type = NodeType::Symlink;
            node.size = target.size();
            node.link_target = std::move(target);
            break;
        }
        case S_IFCHR:
        case S_IFBLK:
            node.type = S_ISCHR(st.st_mode) ? NodeType::CharDevice : NodeType::BlockDevice;
            node.rdev_major = major(st.st_rdev);
            node.rdev_minor = minor(st.st_rdev);
            break;
        case S_IFIFO:
            node.type = NodeType::Fifo;
            break;
        case S_IFSOCK:
            node.type = NodeType::Socket;
            break;
        default:
            return Error::from_code(ImageError::Unsupported, fmt::format("{}: unsupported file type", host_path));
        }
        return m_tree.put(key, std::move(node));
    }

    FileTree& m_tree;
    std::map<std::pair<dev_t, ino_t>, std::uint64_t> m_links;
};

} // namespace

ErrorOr<void> add_host_directory(FileTree& tree, std::string const& mount, std::string const& directory)
{
    int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return Error::from_errno(fmt::format("open {}", directory));
    UniqueFd root(fd);
    auto st = TRY(sys::fstat(root.get()));
    TRY(tree.put(mount, Walker::directory_node(st)));
    Walker walker(tree);
    std::string base = directory;
    while (base.size() > 1 && base.back() == '/')
        base.pop_back();
    return walker.walk(root.get(), base, mount, 0);
}

} // namespace qtbox::image
