#include "../support/tar_builder.hpp"
#include "../support/temp_dir.hpp"
#include "support.hpp"

#include <qtbox/image/cpio.hpp>

#include <sys/time.h>

using namespace qtbox;

namespace {

std::string write(image::FileTree const& tree, std::uint32_t mtime = 0)
{
    image::MemorySink sink;
    image::CpioOptions options;
    options.mtime = mtime;
    auto written = image::write_cpio(tree, sink, options);
    REQUIRE_MESSAGE(!written.is_error(), written.error().message());
    CHECK(written.value() == sink.bytes().size());
    return std::string(as_chars(sink.bytes()));
}

image::Node inline_node(image::FileTree& tree, std::string_view data, std::uint32_t mode, std::uint32_t uid = 0, std::uint32_t gid = 0)
{
    image::Node node;
    node.type = image::NodeType::Regular;
    node.mode = mode;
    node.uid = uid;
    node.gid = gid;
    node.size = data.size();
    node.content = { image::Content::Kind::Inline, tree.add_inline(to_bytes(data)), 0 };
    node.inode = tree.new_inode();
    return node;
}

struct Parsed {
    std::string name;
    unsigned long fields[13];
    std::string data;
};

// An independent newc parser for the checks below.
std::vector<Parsed> parse(std::string const& archive)
{
    std::vector<Parsed> entries;
    std::size_t offset = 0;
    while (offset < archive.size()) {
        REQUIRE(archive.compare(offset, 6, "070701") == 0);
        Parsed entry {};
        for (int i = 0; i < 13; ++i)
            entry.fields[i] = std::stoul(archive.substr(offset + 6 + 8 * i, 8), nullptr, 16);
        std::size_t name_size = entry.fields[11];
        entry.name = archive.substr(offset + 110, name_size - 1);
        offset = (offset + 110 + name_size + 3) / 4 * 4;
        entry.data = archive.substr(offset, entry.fields[6]);
        offset = (offset + entry.fields[6] + 3) / 4 * 4;
        entries.push_back(entry);
        if (entry.name == "TRAILER!!!")
            break;
    }
    CHECK(offset == archive.size());
    return entries;
}

} // namespace

TEST_CASE("cpio: exact newc bytes for a small tree")
{
    image::FileTree tree;
    REQUIRE(!tree.ensure_directory("d", 0755).is_error());
    REQUIRE(!tree.put("d/f", inline_node(tree, "hi", 0644, 1, 2)).is_error());
    std::string expected;
    expected += "070701" "00000001" "000041ED" "00000000" "00000000" "00000002" "00000007" "00000000"
                "00000000" "00000000" "00000000" "00000000" "00000002" "00000000" "d";
    expected += std::string(1, '\0');
    expected += "070701" "00000002" "000081A4" "00000001" "00000002" "00000001" "00000007" "00000002"
                "00000000" "00000000" "00000000" "00000000" "00000004" "00000000" "d/f";
    expected += std::string(3, '\0');
    expected += "hi";
    expected += std::string(2, '\0');
    expected += "070701" "00000000" "00000000" "00000000" "00000000" "00000001" "00000000" "00000000"
                "00000000" "00000000" "00000000" "00000000" "0000000B" "00000000" "TRAILER!!!";
    expected += std::string(4, '\0');
    auto actual = write(tree, 7);
    CHECK(hex_encode(as_bytes(actual)) == hex_encode(as_bytes(expected)));
}

TEST_CASE("cpio: inode numbers 1..N in order, hard links share one and carry data on the last link")
{
    auto layer = test::TarBuilder()
                     .file("bin/busybox", "BUSYBOX", 0755)
                     .hardlink("bin/ash", "bin/busybox")
                     .hardlink("sbin/init", "bin/busybox")
                     .symlink("bin/sh", "busybox")
                     .device("dev/console", '3', 5, 1)
                     .entry({ "run/fifo", '6', 0600 }, {})
                     .file("z", "last");
    image::FileTree tree;
    REQUIRE(!tree.ensure_directory("rootfs", 0755).is_error());
    REQUIRE(!image::apply_layer(tree, "rootfs", test::source_of(layer.finish())).is_error());
    auto entries = parse(write(tree));
    std::vector<std::string> names;
    for (auto const& entry : entries)
        names.push_back(entry.name);
    CHECK(names == std::vector<std::string> { "rootfs", "rootfs/bin", "rootfs/bin/ash", "rootfs/bin/busybox", "rootfs/bin/sh",
                       "rootfs/dev", "rootfs/dev/console", "rootfs/run", "rootfs/run/fifo", "rootfs/sbin", "rootfs/sbin/init",
                       "rootfs/z", "TRAILER!!!" });
    auto const& ash = entries[2];
    auto const& busybox = entries[3];
    auto const& init = entries[10];
    CHECK(ash.fields[0] == 3);
    CHECK(busybox.fields[0] == 3);
    CHECK(init.fields[0] == 3);
    CHECK(ash.fields[4] == 3); // nlink
    CHECK(ash.data.empty());
    CHECK(busybox.data.empty());
    CHECK(init.data == "BUSYBOX");
    CHECK(init.fields[1] == (0100000u | 0755u));
    // Inodes otherwise count up in path order.
    CHECK(entries[0].fields[0] == 1);
    CHECK(entries[1].fields[0] == 2);
    CHECK(entries[4].fields[0] == 4);
    CHECK(entries[4].data == "busybox");
    CHECK(entries[4].fields[1] == (0120000u | 0777u));
    CHECK(entries[6].fields[1] == (0020000u | 0600u));
    CHECK(entries[6].fields[9] == 5);
    CHECK(entries[6].fields[10] == 1);
    CHECK(entries[8].fields[1] == (0010000u | 0600u));
    CHECK(entries[11].fields[0] == 10);
    // Directories: nlink = 2 + subdirectories.
    CHECK(entries[0].fields[4] == 2 + 4);
    CHECK(entries[1].fields[4] == 2);
}

TEST_CASE("cpio: host files are streamed and must not change under the writer")
{
    test::TempDir dir;
    dir.write("root/a", "alpha");
    dir.write("root/sub/b", std::string(3 << 20, 'b'));
    ::symlink("/etc/passwd", (dir / "root/link").c_str());
    ::link((dir / "root/a").c_str(), (dir / "root/sub/a-again").c_str());
    ::mkfifo((dir / "root/fifo").c_str(), 0640);
    ::chmod((dir / "root").c_str(), 0750);
    image::FileTree tree;
    REQUIRE(!image::add_host_directory(tree, "rootfs", dir / "root").is_error());
    CHECK(tree.find("rootfs")->mode == 0750);
    CHECK(tree.find("rootfs/link")->link_target == "/etc/passwd");
    CHECK(tree.find("rootfs/fifo")->type == image::NodeType::Fifo);
    CHECK(tree.find("rootfs/a")->inode == tree.find("rootfs/sub/a-again")->inode);
    auto entries = parse(write(tree));
    REQUIRE(entries.size() == 8);
    CHECK(entries[1].name == "rootfs/a");
    CHECK(entries[1].data.empty());
    CHECK(entries[5].name == "rootfs/sub/a-again");
    CHECK(entries[5].data == "alpha");
    CHECK(entries[6].data == std::string(3 << 20, 'b'));

    // Grown, shrunk, or replaced between the walk and the write.
    dir.write("root/sub/b", "short");
    image::MemorySink sink;
    auto changed = image::write_cpio(tree, sink);
    REQUIRE(changed.is_error());
    CHECK(changed.error().is(image::ImageError::Changed));
    CHECK(changed.error().message().find("rootfs/sub/b") != std::string::npos);
    // A new file (a new inode) renamed over the old one, same size.
    dir.write("root/sub/b.new", std::string(3 << 20, 'b'));
    REQUIRE(::rename((dir / "root/sub/b.new").c_str(), (dir / "root/sub/b").c_str()) == 0);
    image::MemorySink sink2;
    auto replaced = image::write_cpio(tree, sink2);
    REQUIRE(replaced.is_error());
    CHECK(replaced.error().is(image::ImageError::Changed));
}

TEST_CASE("cpio: the same tree always gives the same bytes")
{
    test::TempDir dir;
    dir.write("r/x", "1");
    dir.write("r/y/z", "2");
    image::FileTree first;
    REQUIRE(!image::add_host_directory(first, "m", dir / "r").is_error());
    auto before = write(first, 1700000000);
    ::utimes((dir / "r/x").c_str(), nullptr);
    image::FileTree second;
    REQUIRE(!image::add_host_directory(second, "m", dir / "r").is_error());
    CHECK(write(second, 1700000000) == before);
}
