// libFuzzer target: an image layer, i.e. arbitrary bytes as an uncompressed
// tar stream (ustar, pax `x`/`g`, GNU `L`/`K`), read by TarReader, applied
// twice to a file tree under "rootfs" (whiteouts, hard links and the
// path-escape checks, the second time over the first's entries), and the
// tree written out as the ramdisk's newc cpio archive.
//
// Properties checked beyond "no crash, no hang, no leak":
//   - every entry's data lies inside the archive, block-aligned, after its
//     header; names and link targets are non-empty, NUL-free and within
//     MAX_PATH_LENGTH / MAX_LINK_TARGET_LENGTH; only regular files carry data;
//   - apply_layer refuses what the reader refuses;
//   - after apply_layer, every path is under "rootfs", canonical (no "..",
//     ".", or empty component) and every proper ancestor is a directory in
//     the tree, so nothing can land outside its directory or behind a link;
//   - the cpio archive lists exactly the tree's paths in order, carries
//     content_bytes() of regular file data, ends with TRAILER!!!, and its size is the
//     count write_cpio returns.
#include "support.hpp"

#include <qtbox/image/cpio.hpp>
#include <qtbox/image/tar.hpp>
#include <qtbox/image/tree.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace qtbox;
using fuzz::require;

constexpr std::string_view MOUNT = "rootfs";
constexpr std::size_t BLOCK = 512;

// Reads the whole archive; returns whether the reader accepted it.
bool read_entries(image::ByteSource const& source)
{
    image::TarReader reader(source);
    std::uint64_t previous_data = 0;
    for (;;) {
        auto next = reader.next();
        if (next.is_error())
            return false;
        if (!next.value())
            return true;
        auto const& entry = *next.value();
        require(entry.data_offset >= BLOCK && entry.data_offset % BLOCK == 0 && entry.data_offset > previous_data);
        require(entry.data_offset <= source.size() && entry.size <= source.size() - entry.data_offset);
        require(!entry.path.empty() && entry.path.size() <= image::MAX_PATH_LENGTH);
        require(entry.path.find('\0') == std::string::npos);
        require(entry.mode <= 07777);
        bool link = entry.type == image::TarEntry::Type::HardLink || entry.type == image::TarEntry::Type::Symlink;
        if (link) {
            require(!entry.link_target.empty() && entry.link_target.size() <= image::MAX_LINK_TARGET_LENGTH);
            require(entry.link_target.find('\0') == std::string::npos);
        } else {
            require(entry.link_target.empty());
        }
        if (entry.type != image::TarEntry::Type::Regular)
            require(entry.size == 0);
        previous_data = entry.data_offset;
    }
}

void check_tree(image::FileTree const& tree, std::uint64_t archive_size)
{
    std::string mount(MOUNT);
    for (auto const& [path, node] : tree.nodes()) {
        require(path == mount || path.starts_with(mount + "/"));
        auto canonical = image::normalize_path(path);
        require(!canonical.is_error() && canonical.value() == path);
        for (auto slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1)) {
            auto const* ancestor = tree.find(path.substr(0, slash));
            require(ancestor && ancestor->type == image::NodeType::Directory);
        }
        if (node.type == image::NodeType::Regular && node.content.kind == image::Content::Kind::Source) {
            auto const& source = tree.source(node.content.index);
            require(source.size() == archive_size);
            require(node.content.offset <= archive_size && node.size <= archive_size - node.content.offset);
        }
    }
}

std::uint32_t hex_field(ByteView bytes, std::size_t offset)
{
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < 8; ++i) {
        char c = static_cast<char>(bytes[offset + i]);
        require((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
        value = value * 16 + static_cast<std::uint32_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return value;
}

std::size_t pad4(std::size_t size)
{
    return (size + 3) & ~std::size_t { 3 };
}

// Walks a newc archive (buffer-format.rst) and compares it with the tree.
void check_cpio(image::FileTree const& tree, ByteView archive)
{
    constexpr std::size_t HEADER = 110;
    std::vector<std::string> names;
    std::uint64_t data_bytes = 0;
    std::size_t offset = 0;
    for (;;) {
        require(archive.size() - offset >= HEADER);
        require(std::string_view(reinterpret_cast<char const*>(archive.data() + offset), 6) == "070701");
        std::uint32_t mode = hex_field(archive, offset + 6 + 1 * 8);
        std::uint32_t file_size = hex_field(archive, offset + 6 + 6 * 8);
        std::uint32_t name_size = hex_field(archive, offset + 6 + 11 * 8);
        require(name_size >= 1 && archive.size() - offset - HEADER >= name_size);
        std::string name(reinterpret_cast<char const*>(archive.data() + offset + HEADER), name_size - 1);
        require(archive[offset + HEADER + name_size - 1] == 0);
        offset = pad4(offset + HEADER + name_size);
        require(offset <= archive.size() && archive.size() - offset >= file_size);
        offset = pad4(offset + file_size);
        require(offset <= archive.size());
        if (name == "TRAILER!!!")
            break;
        names.push_back(std::move(name));
        // A symbolic link's data is its target; only files' data counts.
        if ((mode & 0170000) == 0100000)
            data_bytes += file_size;
    }
    require(offset == archive.size());
    std::vector<std::string> expected;
    for (auto const& [path, node] : tree.nodes())
        expected.push_back(path);
    require(names == expected);
    require(data_bytes == tree.content_bytes());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    ByteView input(data, size);
    auto fd = std::make_shared<UniqueFd const>(fuzz::memory_file(input));
    image::ByteSource source(fd, 0, size);
    bool readable = read_entries(source);

    image::FileTree tree;
    require(!tree.ensure_directory(std::string(MOUNT), 0755).is_error());
    auto applied = image::apply_layer(tree, std::string(MOUNT), source);
    if (!readable)
        require(applied.is_error());
    if (applied.is_error())
        return 0;
    check_tree(tree, size);
    // The same layer again over its own entries: whiteouts and opaque
    // directories now hide something, and every replacement rule runs.
    if (image::apply_layer(tree, std::string(MOUNT), source).is_error())
        return 0;
    check_tree(tree, size);

    image::MemorySink sink;
    auto written = image::write_cpio(tree, sink);
    if (written.is_error())
        return 0;
    require(written.value() == sink.bytes().size());
    check_cpio(tree, sink.bytes());
    return 0;
}
