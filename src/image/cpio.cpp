#include <qtbox/image/cpio.hpp>

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unordered_map>

namespace qtbox::image {

namespace {

constexpr std::size_t HEADER_SIZE = 110;
constexpr std::string_view TRAILER = "TRAILER!!!";

std::uint32_t type_bits(NodeType type)
{
    switch (type) {
    case NodeType::Regular:
        return S_IFREG;
    case NodeType::Directory:
        return S_IFDIR;
    case NodeType::Symlink:
        return S_IFLNK;
    case NodeType::CharDevice:
        return S_IFCHR;
    case NodeType::BlockDevice:
        return S_IFBLK;
    case NodeType::Fifo:
        return S_IFIFO;
    case NodeType::Socket:
        return S_IFSOCK;
    }
    return 0;
}

struct HeaderFields {
    std::uint32_t inode { 0 };
    std::uint32_t mode { 0 };
    std::uint32_t uid { 0 };
    std::uint32_t gid { 0 };
    std::uint32_t nlink { 1 };
    std::uint32_t mtime { 0 };
    std::uint32_t file_size { 0 };
    std::uint32_t rdev_major { 0 };
    std::uint32_t rdev_minor { 0 };
};

class Writer {
public:
    Writer(FileTree const& tree, ByteSink& sink, CpioOptions const& options)
        : m_tree(tree), m_sink(sink), m_options(options) { }

    Writer(Writer const&) = delete;
    Writer& operator=(Writer const&) = delete;

    ErrorOr<std::uint64_t> run()
    {
        count_links();
        for (auto const& [path, node] : m_tree.nodes())
            TRY(write_entry(path, node));
        HeaderFields trailer;
        TRY(write_header(TRAILER, trailer));
        TRY(m_sink.flush());
        return m_written;
    }

private:
    void count_links()
    {
        for (auto const& [path, node] : m_tree.nodes()) {
            if (node.type == NodeType::Regular) {
                ++m_links[node.inode].total;
            } else if (node.type == NodeType::Directory) {
                auto slash = path.rfind('/');
                if (slash != std::string::npos)
                    ++m_subdirectories[path.substr(0, slash)];
            }
        }
    }

    ErrorOr<void> put(ByteView bytes)
    {
        TRY(m_sink.write(bytes));
        m_written += bytes.size();
        return {};
    }

    ErrorOr<void> pad()
    {
        static constexpr std::uint8_t zeros[4] {};
        std::size_t remainder = m_written % 4;
        if (remainder)
            TRY(put(ByteView(zeros, 4 - remainder)));
        return {};
    }

    ErrorOr<void> write_header(std::string_view name, HeaderFields const& fields)
    {
        if (name.size() + 1 > 0xFFFF'FFFFu)
            return Error::from_code(ImageError::LimitExceeded, "cpio name too long");
        char header[HEADER_SIZE + 1];
        // c_magic, then 13 fields of 8 hex digits: ino mode uid gid nlink
        // mtime filesize devmajor devminor rdevmajor rdevminor namesize check.
        std::snprintf(header, sizeof(header), "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
            fields.inode, fields.mode, fields.uid, fields.gid, fields.nlink, fields.mtime, fields.file_size, 0u, 0u,
            fields.rdev_major, fields.rdev_minor, static_cast<std::uint32_t>(name.size() + 1), 0u);
        TRY(put(ByteView(reinterpret_cast<std::uint8_t const*>(header), HEADER_SIZE)));
        TRY(put(as_bytes(name)));
        static constexpr std::uint8_t nul = 0;
        TRY(put(ByteView(&nul, 1)));
        return pad();
    }

    ErrorOr<void> write_entry(std::string const& path, Node const& node)
    {
        HeaderFields fields;
        fields.mode = type_bits(node.type) | (node.mode & 07777);
        fields.uid = node.uid;
        fields.gid = node.gid;
        fields.mtime = m_options.mtime;
        fields.rdev_major = node.rdev_major;
        fields.rdev_minor = node.rdev_minor;
        bool carries_data = false;
        switch (node.type) {
        case NodeType::Regular: {
            auto& group = m_links[node.inode];
            if (group.cpio_inode == 0)
                group.cpio_inode = ++m_last_inode;
            fields.inode = group.cpio_inode;
            fields.nlink = group.total;
            ++group.written;
            carries_data = group.written == group.total;
            if (node.size > MAX_FILE_SIZE)
                return Error::from_code(ImageError::LimitExceeded, fmt::format("'{}' is too large for newc cpio", path));
            fields.file_size = carries_data ? static_cast<std::uint32_t>(node.size) : 0;
            break;
        }
        case NodeType::Directory: {
            fields.inode = ++m_last_inode;
            auto it = m_subdirectories.find(path);
            fields.nlink = 2 + (it == m_subdirectories.end() ? 0 : it->second);
            break;
        }
        case NodeType::Symlink:
            fields.inode = ++m_last_inode;
            fields.file_size = static_cast<std::uint32_t>(node.link_target.size());
            break;
        default:
            fields.inode = ++m_last_inode;
            break;
        }
        TRY(write_header(path, fields));
        if (node.type == NodeType::Symlink) {
            TRY(put(as_bytes(node.link_target)));
            return pad();
        }
        if (carries_data) {
            auto copied = copy_contents(node);
            if (copied.is_error())
                return copied.release_error().context(path);
            m_copied += node.size;
            if (m_options.progress)
                m_options.progress(m_copied);
            return pad();
        }
        return {};
    }

    ErrorOr<void> copy_from_source(ByteSource const& source, std::uint64_t offset, std::uint64_t size)
    {
        while (size > 0) {
            auto room = TRY(m_sink.reserve());
            std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(room.size(), size));
            TRY(source.read_at(offset, room.subspan(0, take)));
            m_sink.commit(take);
            m_written += take;
            offset += take;
            size -= take;
        }
        return {};
    }

    ErrorOr<void> copy_from_host(HostFile const& file, std::uint64_t size)
    {
        auto fd = TRY(sys::open(file.path, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK));
        auto st = TRY(sys::fstat(fd.get()));
        if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_dev) != file.device
            || static_cast<std::uint64_t>(st.st_ino) != file.inode)
            return Error::from_code(ImageError::Changed, "replaced by another file during the build");
        if (static_cast<std::uint64_t>(st.st_size) != size)
            return Error::from_code(ImageError::Changed, fmt::format("changed size during the build ({} bytes, then {})", size, st.st_size));
        ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
        while (size > 0) {
            auto room = TRY(m_sink.reserve());
            std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(room.size(), size));
            std::size_t got = TRY(sys::read(fd.get(), room.data(), want));
            if (got == 0)
                return Error::from_code(ImageError::Changed, "shrank during the build");
            m_sink.commit(got);
            m_written += got;
            size -= got;
        }
        std::uint8_t probe = 0;
        if (TRY(sys::read(fd.get(), &probe, 1)) != 0)
            return Error::from_code(ImageError::Changed, "grew during the build");
        return {};
    }

    ErrorOr<void> copy_contents(Node const& node)
    {
        switch (node.content.kind) {
        case Content::Kind::Source:
            return copy_from_source(m_tree.source(node.content.index), node.content.offset, node.size);
        case Content::Kind::Host:
            return copy_from_host(m_tree.host_file(node.content.index), node.size);
        case Content::Kind::Inline: {
            auto const& bytes = m_tree.inline_bytes(node.content.index);
            if (bytes.size() != node.size)
                return Error::from_code(ImageError::Malformed, "inline contents do not match the recorded size");
            return put(bytes);
        }
        case Content::Kind::None:
            if (node.size != 0)
                return Error::from_code(ImageError::Malformed, "a file without contents has a non-zero size");
            return {};
        }
        return {};
    }

    struct LinkGroup {
        std::uint32_t total { 0 };
        std::uint32_t written { 0 };
        std::uint32_t cpio_inode { 0 };
    };

    FileTree const& m_tree;
    BufferedSink m_sink;
    CpioOptions const& m_options;
    std::unordered_map<std::uint64_t, LinkGroup> m_links;
    std::unordered_map<std::string, std::uint32_t> m_subdirectories;
    std::uint32_t m_last_inode { 0 };
    std::uint64_t m_written { 0 };
    std::uint64_t m_copied { 0 };
};

} // namespace

ErrorOr<std::uint64_t> write_cpio(FileTree const& tree, ByteSink& sink, CpioOptions const& options)
{
    Writer writer(tree, sink, options);
    return writer.run();
}

} // namespace qtbox::image
