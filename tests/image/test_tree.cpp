#include "../support/tar_builder.hpp"
#include "support.hpp"

#include <qtbox/image/tree.hpp>

#include <fmt/format.h>

using namespace qtbox;
using qtbox::test::TarBuilder;

namespace {

image::FileTree tree_with_mount()
{
    image::FileTree tree;
    REQUIRE(!tree.ensure_directory("rootfs", 0755).is_error());
    return tree;
}

void apply(image::FileTree& tree, TarBuilder const& layer)
{
    auto result = image::apply_layer(tree, "rootfs", test::source_of(layer.finish()));
    REQUIRE_MESSAGE(!result.is_error(), result.error().message());
}

Error apply_error(image::FileTree& tree, TarBuilder const& layer)
{
    auto result = image::apply_layer(tree, "rootfs", test::source_of(layer.finish()));
    REQUIRE(result.is_error());
    return result.release_error();
}

std::vector<std::string> paths(image::FileTree const& tree)
{
    std::vector<std::string> result;
    for (auto const& [path, node] : tree.nodes())
        result.push_back(path);
    return result;
}

} // namespace

TEST_CASE("tree: paths are normalised and '..' is a path escape")
{
    CHECK(image::normalize_path("./etc//passwd").value() == "etc/passwd");
    CHECK(image::normalize_path("/usr/./bin/").value() == "usr/bin");
    CHECK(image::normalize_path("./").value() == "");
    CHECK(image::normalize_path("a/..b/c").value() == "a/..b/c");
    auto escape = image::normalize_path("a/../../etc/shadow");
    REQUIRE(escape.is_error());
    CHECK(escape.error().is(image::ImageError::PathEscape));
    CHECK(image::normalize_path("..").error().is(image::ImageError::PathEscape));
    CHECK(image::normalize_path(std::string(image::MAX_PATH_LENGTH + 1, 'a')).error().is(image::ImageError::LimitExceeded));
}

TEST_CASE("tree: a layer's entries land under the mount, parents created implicitly, sorted bytewise")
{
    auto tree = tree_with_mount();
    apply(tree, TarBuilder().directory("./", 0700, 5, 6).file("a/b/c", "x").file("a-b", "y").file("a/d", "z", 0600, 7, 8));
    CHECK(paths(tree) == std::vector<std::string> { "rootfs", "rootfs/a", "rootfs/a-b", "rootfs/a/b", "rootfs/a/b/c", "rootfs/a/d" });
    auto const* root = tree.find("rootfs");
    CHECK(root->mode == 0700);
    CHECK(root->uid == 5);
    auto const* implicit = tree.find("rootfs/a/b");
    CHECK(implicit->type == image::NodeType::Directory);
    CHECK(implicit->mode == 0755);
    auto const* file = tree.find("rootfs/a/d");
    CHECK(file->uid == 7);
    CHECK(file->gid == 8);
    CHECK(file->mode == 0600);
    CHECK(file->size == 1);
    CHECK(tree.content_bytes() == 3);
}

TEST_CASE("tree: whiteouts delete what lower layers added, not what the same layer adds")
{
    auto tree = tree_with_mount();
    apply(tree, TarBuilder().file("etc/a", "1").file("etc/b", "2").directory("var/cache").file("var/cache/x", "3"));
    apply(tree, TarBuilder().file("etc/.wh.a", "").file("var/.wh.cache", "").file("etc/c", "4").file("etc/.wh.c", ""));
    CHECK(tree.find("rootfs/etc/a") == nullptr);
    CHECK(tree.find("rootfs/etc/b") != nullptr);
    CHECK(tree.find("rootfs/var/cache") == nullptr);
    CHECK(tree.find("rootfs/var/cache/x") == nullptr);
    // The whiteout for c is in the same layer as c: c stays (OCI image spec).
    CHECK(tree.find("rootfs/etc/c") != nullptr);
    // Whiteout files themselves never appear.
    CHECK(tree.find("rootfs/etc/.wh.a") == nullptr);
}

TEST_CASE("tree: an opaque whiteout hides the lower layers' directory contents")
{
    auto tree = tree_with_mount();
    apply(tree, TarBuilder().file("opt/old1", "1").file("opt/sub/old2", "2").file("keep", "k"));
    apply(tree, TarBuilder().directory("opt", 0750).file("opt/.wh..wh..opq", "").file("opt/new", "n").file(".wh..wh.plnk/123", ""));
    CHECK(paths(tree) == std::vector<std::string> { "rootfs", "rootfs/keep", "rootfs/opt", "rootfs/opt/new" });
    CHECK(tree.find("rootfs/opt")->mode == 0750);
}

TEST_CASE("tree: replacing a directory by a file removes its subtree; a directory over a directory keeps it")
{
    auto tree = tree_with_mount();
    apply(tree, TarBuilder().file("d/x", "1").file("e/y", "2"));
    apply(tree, TarBuilder().file("d", "now a file").directory("e", 0711, 3, 3));
    CHECK(tree.find("rootfs/d")->type == image::NodeType::Regular);
    CHECK(tree.find("rootfs/d/x") == nullptr);
    CHECK(tree.find("rootfs/e/y") != nullptr);
    CHECK(tree.find("rootfs/e")->mode == 0711);
    CHECK(tree.find("rootfs/e")->uid == 3);
}

TEST_CASE("tree: nothing is written through a symbolic link, absolute or relative")
{
    auto tree = tree_with_mount();
    apply(tree, TarBuilder().symlink("evil", "/etc").symlink("rel", "../../..").directory("real"));
    auto through_absolute = apply_error(tree, TarBuilder().file("evil/passwd", "pwned"));
    CHECK(through_absolute.is(image::ImageError::PathEscape));
    CHECK(through_absolute.message().find("goes through the symbolic link 'rootfs/evil' -> '/etc'") != std::string::npos);
    CHECK(apply_error(tree, TarBuilder().file("rel/x", "")).is(image::ImageError::PathEscape));
    // Same layer: the link first, then a write through it.
    auto same_layer = tree_with_mount();
    CHECK(apply_error(same_layer, TarBuilder().symlink("l", "/").file("l/etc/shadow", "")).is(image::ImageError::PathEscape));
    // Hard links and whiteouts may not go through one either.
    CHECK(apply_error(tree, TarBuilder().hardlink("real/h", "evil/shadow")).is(image::ImageError::PathEscape));
    CHECK(apply_error(tree, TarBuilder().file("evil/.wh.passwd", "")).is(image::ImageError::PathEscape));
    CHECK(apply_error(tree, TarBuilder().file("x/../../y", "")).is(image::ImageError::PathEscape));
    // The symlink itself is kept verbatim.
    CHECK(tree.find("rootfs/evil")->link_target == "/etc");
}

TEST_CASE("tree: whiteouts must name a file inside their directory")
{
    auto tree = tree_with_mount();
    CHECK(apply_error(tree, TarBuilder().file("a/.wh.", "")).is(image::ImageError::PathEscape));
    CHECK(apply_error(tree, TarBuilder().file("a/.wh...", "")).is(image::ImageError::PathEscape));
}

TEST_CASE("tree: hard links share the target's inode and contents")
{
    auto tree = tree_with_mount();
    apply(tree, TarBuilder().file("bin/busybox", "BB", 0755).hardlink("bin/sh", "bin/busybox").hardlink("./bin/ls", "/bin/busybox"));
    auto const* target = tree.find("rootfs/bin/busybox");
    auto const* sh = tree.find("rootfs/bin/sh");
    auto const* ls = tree.find("rootfs/bin/ls");
    CHECK(sh->inode == target->inode);
    CHECK(ls->inode == target->inode);
    CHECK(sh->mode == 0755);
    CHECK(sh->size == 2);
    CHECK(tree.content_bytes() == 2);
    // A later layer replacing the target gives it a new inode; the links keep the old file.
    apply(tree, TarBuilder().file("bin/busybox", "new"));
    CHECK(tree.find("rootfs/bin/busybox")->inode != sh->inode);
    CHECK(tree.content_bytes() == 5);
}

TEST_CASE("tree: a hard link to a missing file or a directory is refused")
{
    auto tree = tree_with_mount();
    auto missing = apply_error(tree, TarBuilder().hardlink("a", "nowhere"));
    CHECK(missing.is(image::ImageError::NotFound));
    CHECK(apply_error(tree, TarBuilder().directory("d").hardlink("h", "d")).is(image::ImageError::Malformed));
}

TEST_CASE("tree: a layer root that is not a directory, or a file used as a directory, is refused")
{
    auto tree = tree_with_mount();
    CHECK(apply_error(tree, TarBuilder().file("./", "")).is(image::ImageError::Malformed));
    auto other = tree_with_mount();
    CHECK(apply_error(other, TarBuilder().file("f", "").file("f/g", "")).is(image::ImageError::Malformed));
}

TEST_CASE("tree: a path deeper than MAX_PATH_DEPTH components is refused, within PATH_MAX")
{
    // 300 one-letter components: 600 bytes, well inside MAX_PATH_LENGTH.
    std::string deep;
    for (int i = 0; i < 300; ++i)
        deep += "a/";
    deep += "f";
    REQUIRE(deep.size() < image::MAX_PATH_LENGTH);
    auto normalised = image::normalize_path(deep);
    REQUIRE(normalised.is_error());
    CHECK(normalised.error().is(image::ImageError::LimitExceeded));
    CHECK(normalised.error().message() == fmt::format("path deeper than {} components", image::MAX_PATH_DEPTH));

    auto tree = tree_with_mount();
    auto error = apply_error(tree, TarBuilder().pax({ { "path", deep } }).file("placeholder", "x"));
    CHECK(error.is(image::ImageError::LimitExceeded));
    CHECK(tree.size() == 1);

    std::string deepest;
    for (std::size_t i = 1; i < image::MAX_PATH_DEPTH; ++i)
        deepest += "a/";
    deepest += "f";
    CHECK(image::normalize_path(deepest).value() == deepest);
}

TEST_CASE("tree: the bytes of all paths in a tree are bounded")
{
    image::FileTree tree(image::TreeLimits { .entries = 1000, .name_bytes = 100 });
    REQUIRE(!tree.ensure_directory("rootfs", 0755).is_error());
    CHECK(tree.name_bytes() == 6);
    // rootfs/dir (10) + rootfs/dir/0123456789 (21) + rootfs/dir/abcdefghij (21) = 52 + 6.
    apply(tree, TarBuilder().file("dir/0123456789", "").file("dir/abcdefghij", ""));
    CHECK(tree.name_bytes() == 58);
    auto error = apply_error(tree, TarBuilder().file("dir/klmnopqrstuvwxyz0", "").file("dir/klmnopqrstuvwxyz1", ""));
    CHECK(error.is(image::ImageError::LimitExceeded));
    CHECK(error.message() == "the image's paths take more than 100 bytes in all");
    // Removing entries gives their bytes back.
    apply(tree, TarBuilder().file("dir/.wh.0123456789", "").file("dir/.wh.abcdefghij", "").file("dir/.wh.klmnopqrstuvwxyz0", ""));
    CHECK(tree.name_bytes() == 16);
}

TEST_CASE("tree: a layer's entry names are bounded before any is applied")
{
    image::FileTree tree(image::TreeLimits { .entries = 1000, .name_bytes = 40 });
    REQUIRE(!tree.ensure_directory("rootfs", 0755).is_error());
    auto error = apply_error(tree, TarBuilder().file("0123456789", "").file("abcdefghij", "").file("klmnopqrst", "").file("uvwxyz0123", "").file("z", ""));
    CHECK(error.is(image::ImageError::LimitExceeded));
    CHECK(error.message() == "a layer's paths take more than 40 bytes in all");
    CHECK(tree.size() == 1);
}

TEST_CASE("tree: parent checks skip what the previous entry checked, and still see a directory replaced by a link")
{
    auto tree = tree_with_mount();
    // Same layer: "a/b" becomes a symbolic link after entries below it.
    auto error = apply_error(tree, TarBuilder().file("a/b/c/one", "").file("a/b/c/two", "").symlink("a/b", "/etc").file("a/b/c/three", ""));
    CHECK(error.is(image::ImageError::PathEscape));
    CHECK(error.message().find("goes through the symbolic link 'rootfs/a/b' -> '/etc'") != std::string::npos);
    // Entries that share only part of their parents with the one before.
    auto other = tree_with_mount();
    apply(other, TarBuilder().file("x/yz/1", "").file("x/y/2", "").file("x/y", "").file("q", ""));
    CHECK(other.find("rootfs/x/y")->type == image::NodeType::Regular);
    CHECK(other.find("rootfs/x/y/2") == nullptr);
    CHECK(apply_error(other, TarBuilder().file("x/yz/3", "").file("x/y/4", "")).is(image::ImageError::Malformed));
}
