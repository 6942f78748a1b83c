// libFuzzer target: the newc cpio writer (image/cpio.hpp) as a round trip.
// The input is a script that builds a file tree under "rootfs": directories,
// regular files with inline contents, hard links to earlier files, symbolic
// links, devices, FIFOs and sockets, with fuzzed names, modes and owners.
// The tree is written out, and the archive is read back here, entry by
// entry (buffer-format.rst "newc").
// Properties checked: every entry of the tree comes back in order with its
// type, mode bits, owner, device numbers and the chosen mtime; a file's
// contents come back whole on the last of its links (size 0 on the others)
// and a symbolic link's target as its data; the links of one file share one
// inode number and carry their count, every other entry has an inode of its
// own; a directory's link count is 2 plus its subdirectories; the archive
// ends with TRAILER!!! exactly where write_cpio says.
#include "support.hpp"

#include <qtbox/image/cpio.hpp>
#include <qtbox/image/tree.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace qtbox;
using qtbox::fuzz::require;
using image::NodeType;

constexpr std::string_view ROOT = "rootfs";
constexpr std::size_t MAX_ENTRIES = 64;
constexpr std::size_t MAX_CONTENT = 512;

class Script {
public:
    explicit Script(ByteView bytes) : m_bytes(bytes) { }
    bool done() const { return m_at >= m_bytes.size(); }
    std::uint8_t byte() { return done() ? 0 : m_bytes[m_at++]; }
    std::uint32_t u16() { return byte() | (std::uint32_t(byte()) << 8); }
    std::uint32_t u32() { return u16() | (u16() << 16); }
    ByteView take(std::size_t size)
    {
        size = std::min(size, m_bytes.size() - std::min(m_at, m_bytes.size()));
        auto view = m_bytes.subspan(m_at, size);
        m_at += size;
        return view;
    }
    std::string name()
    {
        static constexpr std::string_view ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789._-~ \x01\x7f\xff";
        std::size_t length = 1 + byte() % 12;
        std::string text;
        for (std::size_t i = 0; i < length; ++i)
            text += ALPHABET[byte() % ALPHABET.size()];
        return text == "." || text == ".." ? text + "x" : text;
    }

private:
    ByteView m_bytes;
    std::size_t m_at { 0 };
};

std::uint32_t hex_field(ByteView bytes, std::size_t offset)
{
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < 8; ++i) {
        char c = static_cast<char>(bytes[offset + i]);
        require((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'));
        value = value * 16 + static_cast<std::uint32_t>(c <= '9' ? c - '0' : c - 'A' + 10);
    }
    return value;
}

std::uint32_t type_bits(NodeType type)
{
    switch (type) {
    case NodeType::Regular: return 0100000;
    case NodeType::Directory: return 0040000;
    case NodeType::Symlink: return 0120000;
    case NodeType::CharDevice: return 0020000;
    case NodeType::BlockDevice: return 0060000;
    case NodeType::Fifo: return 0010000;
    case NodeType::Socket: return 0140000;
    }
    return 0;
}

struct Entry {
    std::uint32_t inode, mode, uid, gid, nlink, mtime, rdev_major, rdev_minor;
    std::string name;
    Bytes data;
};

std::vector<Entry> read_archive(ByteView archive)
{
    constexpr std::size_t HEADER = 110;
    auto pad4 = [](std::size_t size) { return (size + 3) & ~std::size_t { 3 }; };
    std::vector<Entry> entries;
    std::size_t offset = 0;
    for (;;) {
        require(archive.size() - offset >= HEADER);
        require(std::string_view(reinterpret_cast<char const*>(archive.data() + offset), 6) == "070701");
        auto field = [&](int index) { return hex_field(archive, offset + 6 + std::size_t(index) * 8); };
        Entry entry { field(0), field(1), field(2), field(3), field(4), field(5), field(9), field(10), {}, {} };
        require(field(7) == 0 && field(8) == 0 && field(12) == 0); // devmajor, devminor, check
        std::uint32_t file_size = field(6);
        std::uint32_t name_size = field(11);
        require(name_size >= 1 && archive.size() - offset - HEADER >= name_size);
        entry.name.assign(reinterpret_cast<char const*>(archive.data() + offset + HEADER), name_size - 1);
        require(archive[offset + HEADER + name_size - 1] == 0);
        offset = pad4(offset + HEADER + name_size);
        require(offset <= archive.size() && archive.size() - offset >= file_size);
        entry.data.assign(archive.begin() + static_cast<long>(offset), archive.begin() + static_cast<long>(offset + file_size));
        offset = pad4(offset + file_size);
        require(offset <= archive.size());
        if (entry.name == "TRAILER!!!")
            break;
        entries.push_back(std::move(entry));
    }
    require(offset == archive.size());
    return entries;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    Script script(ByteView(data, size));
    image::FileTree tree;
    require(!tree.ensure_directory(std::string(ROOT), 0755).is_error());
    std::vector<std::string> directories { std::string(ROOT) };
    std::vector<std::string> files;
    std::map<std::uint32_t, Bytes> contents; // inline index -> bytes
    image::CpioOptions options;
    options.mtime = script.u32();

    for (std::size_t count = 0; count < MAX_ENTRIES && !script.done(); ++count) {
        std::uint8_t op = script.byte();
        std::string path = directories[script.byte() % directories.size()] + "/" + script.name();
        image::Node node;
        node.mode = script.u16() & 07777;
        node.uid = script.u16();
        node.gid = script.u16();
        switch (op % 7) {
        case 0:
            node.type = NodeType::Directory;
            break;
        case 1: {
            node.type = NodeType::Regular;
            auto bytes = script.take(script.u16() % MAX_CONTENT);
            node.size = bytes.size();
            node.content = { image::Content::Kind::Inline, tree.add_inline(Bytes(bytes.begin(), bytes.end())), 0 };
            contents[node.content.index] = Bytes(bytes.begin(), bytes.end());
            node.inode = tree.new_inode();
            break;
        }
        case 2: {
            // A hard link: the same file (inode, contents) under another name.
            if (files.empty())
                continue;
            auto const* target = tree.find(files[script.byte() % files.size()]);
            if (!target || target->type != NodeType::Regular)
                continue;
            node = *target;
            break;
        }
        case 3:
            node.type = NodeType::Symlink;
            node.link_target = script.name() + "/" + script.name();
            break;
        case 4:
            node.type = script.byte() & 1 ? NodeType::CharDevice : NodeType::BlockDevice;
            node.rdev_major = script.u16();
            node.rdev_minor = script.u16();
            break;
        case 5:
            node.type = NodeType::Fifo;
            break;
        default:
            node.type = NodeType::Socket;
            break;
        }
        auto normalized = image::normalize_path(path);
        if (normalized.is_error() || normalized.value() != path)
            continue;
        if (tree.put(path, node).is_error())
            continue;
        if (node.type == NodeType::Directory)
            directories.push_back(path);
        else if (node.type == NodeType::Regular)
            files.push_back(path);
    }

    image::MemorySink sink;
    auto written = image::write_cpio(tree, sink, options);
    require(!written.is_error());
    require(written.value() == sink.bytes().size());
    auto entries = read_archive(sink.bytes());

    // What the archive should say, from the tree.
    std::map<std::uint64_t, std::uint32_t> links; // tree inode -> links
    std::map<std::string, std::uint32_t> subdirectories;
    for (auto const& [path, node] : tree.nodes()) {
        if (node.type == NodeType::Regular)
            ++links[node.inode];
        else if (node.type == NodeType::Directory && path.find('/') != std::string::npos)
            ++subdirectories[path.substr(0, path.rfind('/'))];
    }
    require(entries.size() == tree.nodes().size());
    std::map<std::uint64_t, std::uint32_t> archive_inode; // tree inode -> cpio inode
    std::map<std::uint64_t, std::uint32_t> seen_links;
    std::set<std::uint32_t> used;
    std::size_t index = 0;
    for (auto const& [path, node] : tree.nodes()) {
        Entry const& entry = entries[index++];
        require(entry.name == path);
        require(entry.mode == (type_bits(node.type) | (node.mode & 07777)));
        require(entry.uid == node.uid && entry.gid == node.gid && entry.mtime == options.mtime);
        require(entry.rdev_major == node.rdev_major && entry.rdev_minor == node.rdev_minor);
        switch (node.type) {
        case NodeType::Regular: {
            std::uint32_t total = links[node.inode];
            require(entry.nlink == total);
            auto [it, first] = archive_inode.emplace(node.inode, entry.inode);
            require(it->second == entry.inode);
            if (first)
                require(used.insert(entry.inode).second);
            bool last = ++seen_links[node.inode] == total;
            require(node.content.kind == image::Content::Kind::Inline);
            require(entry.data == (last ? contents[node.content.index] : Bytes {}));
            break;
        }
        case NodeType::Directory:
            require(entry.nlink == 2 + subdirectories[path]);
            require(entry.data.empty() && used.insert(entry.inode).second);
            break;
        case NodeType::Symlink:
            require(std::string_view(reinterpret_cast<char const*>(entry.data.data()), entry.data.size()) == node.link_target);
            require(used.insert(entry.inode).second);
            break;
        default:
            require(entry.data.empty() && used.insert(entry.inode).second);
            break;
        }
    }
    return 0;
}
