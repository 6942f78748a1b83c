#include "../support/tar_builder.hpp"
#include "support.hpp"

#include <qtbox/image/tar.hpp>

using namespace qtbox;
using qtbox::test::TarBuilder;

namespace {

std::vector<image::TarEntry> read_all(Bytes const& bytes)
{
    image::TarReader reader(test::source_of(bytes));
    std::vector<image::TarEntry> entries;
    for (;;) {
        auto entry = reader.next();
        REQUIRE_MESSAGE(!entry.is_error(), entry.error().message());
        if (!entry.value())
            return entries;
        entries.push_back(*entry.value());
    }
}

Error first_error(Bytes const& bytes)
{
    image::TarReader reader(test::source_of(bytes));
    for (int i = 0; i < 100; ++i) {
        auto entry = reader.next();
        if (entry.is_error())
            return entry.release_error();
        if (!entry.value())
            break;
    }
    FAIL("no error");
    return Error::from_string("unreachable");
}

} // namespace

TEST_CASE("tar: reads ustar entries of every type with their metadata and data offsets")
{
    auto bytes = TarBuilder()
                     .directory("etc/", 0755, 0, 0)
                     .file("etc/passwd", "root:x:0:0\n", 0644, 1000, 1001)
                     .symlink("bin", "usr/bin")
                     .hardlink("etc/passwd2", "etc/passwd")
                     .device("dev/null", '3', 1, 3)
                     .device("dev/sda", '4', 8, 0)
                     .entry({ "fifo", '6', 0600 }, {})
                     .finish();
    auto entries = read_all(bytes);
    REQUIRE(entries.size() == 7);
    CHECK(entries[0].path == "etc/");
    CHECK(entries[0].type == image::TarEntry::Type::Directory);
    CHECK(entries[0].mode == 0755);
    CHECK(entries[1].path == "etc/passwd");
    CHECK(entries[1].type == image::TarEntry::Type::Regular);
    CHECK(entries[1].size == 11);
    CHECK(entries[1].uid == 1000);
    CHECK(entries[1].gid == 1001);
    CHECK(entries[1].data_offset == 1024);
    CHECK(std::string(bytes.begin() + 1024, bytes.begin() + 1035) == "root:x:0:0\n");
    CHECK(entries[2].type == image::TarEntry::Type::Symlink);
    CHECK(entries[2].link_target == "usr/bin");
    CHECK(entries[3].type == image::TarEntry::Type::HardLink);
    CHECK(entries[3].link_target == "etc/passwd");
    CHECK(entries[4].type == image::TarEntry::Type::CharDevice);
    CHECK(entries[4].device_major == 1);
    CHECK(entries[4].device_minor == 3);
    CHECK(entries[5].type == image::TarEntry::Type::BlockDevice);
    CHECK(entries[5].device_major == 8);
    CHECK(entries[6].type == image::TarEntry::Type::Fifo);
}

TEST_CASE("tar: pax records override path, link target, size and owners")
{
    std::string long_path(300, 'a');
    long_path += "/file";
    auto bytes = TarBuilder()
                     .pax({ { "path", long_path }, { "uid", "70000" }, { "gid", "80000" }, { "mtime", "1.5" }, { "SCHILY.xattr.user.x", "y" } })
                     .file("short", "hello")
                     .pax({ { "linkpath", std::string(200, 'b') } })
                     .symlink("link", "ignored")
                     .finish();
    auto entries = read_all(bytes);
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].path == long_path);
    CHECK(entries[0].uid == 70000);
    CHECK(entries[0].gid == 80000);
    CHECK(entries[0].size == 5);
    CHECK(entries[1].link_target == std::string(200, 'b'));
}

TEST_CASE("tar: GNU long names and ustar prefixes")
{
    std::string long_name = std::string(150, 'x') + "/" + std::string(120, 'y');
    auto bytes = TarBuilder().gnu_long_name(long_name).file("truncated-name", "data").finish();
    auto entries = read_all(bytes);
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].path == long_name);

    // ustar prefix field (offset 345) joins with '/'.
    auto prefixed = TarBuilder().file("name", "z").finish();
    std::memcpy(prefixed.data() + 345, "some/prefix", 11);
    TarBuilder::fix_checksum(prefixed.data());
    auto with_prefix = read_all(prefixed);
    REQUIRE(with_prefix.size() == 1);
    CHECK(with_prefix[0].path == "some/prefix/name");
}

TEST_CASE("tar: base-256 numeric fields")
{
    auto bytes = TarBuilder().file("f", "abc", 0644, 0, 0).finish();
    // uid as base-256: 0x80 then big-endian 0x01000000.
    std::uint8_t uid[8] { 0x80, 0, 0, 0, 0x01, 0, 0, 0 };
    std::memcpy(bytes.data() + 108, uid, 8);
    TarBuilder::fix_checksum(bytes.data());
    auto entries = read_all(bytes);
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].uid == 0x01000000u);
}

TEST_CASE("tar: a bad header checksum is refused")
{
    auto bytes = TarBuilder().file("f", "abc").finish();
    bytes[0] = 'g';
    auto error = first_error(bytes);
    CHECK(error.is(image::ImageError::Malformed));
    CHECK(error.message().find("bad checksum") != std::string::npos);
}

TEST_CASE("tar: truncated archives are refused, wherever they are cut")
{
    auto whole = TarBuilder().file("a", std::string(1000, 'x')).file("b", "y").finish();
    // Inside the first file's data.
    Bytes cut(whole.begin(), whole.begin() + 700);
    auto error = first_error(cut);
    CHECK(error.is(image::ImageError::Truncated));
    CHECK(error.message().find("truncated tar") != std::string::npos);
    // Inside a header.
    Bytes cut_header(whole.begin(), whole.begin() + 1536 + 100);
    CHECK(first_error(cut_header).is(image::ImageError::Truncated));
    // At an entry boundary, without the end-of-archive marker.
    Bytes no_marker(whole.begin(), whole.end() - 1024);
    auto marker_error = first_error(no_marker);
    CHECK(marker_error.is(image::ImageError::Truncated));
    CHECK(marker_error.message().find("end-of-archive") != std::string::npos);
}

TEST_CASE("tar: a declared size far beyond the archive fails at once (tar bomb)")
{
    TarBuilder builder;
    builder.entry({ "bomb", '0' }, "tiny", 077777777777ll);
    auto error = first_error(builder.finish());
    CHECK(error.is(image::ImageError::Truncated));
    CHECK(error.message().find("declares 8589934591 bytes") != std::string::npos);
}

TEST_CASE("tar: oversized extended headers, sparse files and unknown types are refused")
{
    TarBuilder huge;
    huge.entry({ "PaxHeader", 'x' }, std::string(image::MAX_PAX_HEADER_SIZE + 1, 'a'));
    huge.file("f", "");
    CHECK(first_error(huge.finish()).is(image::ImageError::LimitExceeded));

    TarBuilder sparse;
    sparse.entry({ "s", 'S' }, "");
    CHECK(first_error(sparse.finish()).is(image::ImageError::Unsupported));

    TarBuilder pax_sparse;
    pax_sparse.pax({ { "GNU.sparse.major", "1" } }).file("f", "");
    CHECK(first_error(pax_sparse.finish()).is(image::ImageError::Unsupported));

    TarBuilder unknown;
    unknown.entry({ "u", 'Q' }, "");
    auto error = first_error(unknown.finish());
    CHECK(error.is(image::ImageError::Unsupported));
    CHECK(error.message().find("unsupported type 'Q'") != std::string::npos);
}

TEST_CASE("tar: malformed pax records are refused")
{
    TarBuilder bad_length;
    bad_length.entry({ "PaxHeader", 'x' }, "99 path=x\n");
    bad_length.file("f", "");
    CHECK(first_error(bad_length.finish()).is(image::ImageError::Malformed));

    TarBuilder no_equals;
    no_equals.entry({ "PaxHeader", 'x' }, "9 pathx\n\n");
    no_equals.file("f", "");
    CHECK(first_error(no_equals.finish()).is(image::ImageError::Malformed));

    TarBuilder bad_number;
    bad_number.pax({ { "size", "12x" } }).file("f", "");
    CHECK(first_error(bad_number.finish()).is(image::ImageError::Malformed));
}

TEST_CASE("tar: links need a target and names may not hold NUL")
{
    TarBuilder empty_link;
    empty_link.symlink("l", "");
    CHECK(first_error(empty_link.finish()).is(image::ImageError::Malformed));

    TarBuilder nul_name;
    nul_name.pax({ { "path", std::string("a\0b", 3) } }).file("f", "");
    CHECK(first_error(nul_name.finish()).is(image::ImageError::Malformed));
}

TEST_CASE("tar: random corruption of a layer gives an entry list or an error, never a crash")
{
    auto pristine = TarBuilder()
                        .pax({ { "path", "long/" + std::string(120, 'p') } })
                        .file("ignored", "pax data")
                        .gnu_long_name(std::string(130, 'g'))
                        .file("x", "gnu data")
                        .directory("d/")
                        .file("d/f", std::string(700, 'f'))
                        .symlink("d/l", "/etc")
                        .hardlink("d/h", "d/f")
                        .finish();
    std::uint32_t state = 777;
    auto next = [&] {
        state = state * 1664525u + 1013904223u;
        return state >> 8;
    };
    int errors = 0;
    for (int round = 0; round < 3000; ++round) {
        auto bytes = pristine;
        for (int flips = 1 + static_cast<int>(next() % 3); flips > 0; --flips)
            bytes[next() % bytes.size()] ^= static_cast<std::uint8_t>(1 + next() % 255);
        if (next() % 4 == 0)
            bytes.resize(next() % bytes.size());
        image::TarReader reader(test::source_of(bytes));
        for (int i = 0; i < 64; ++i) {
            auto entry = reader.next();
            if (entry.is_error()) {
                ++errors;
                break;
            }
            if (!entry.value())
                break;
            CHECK(entry.value()->data_offset + entry.value()->size <= bytes.size());
        }
    }
    CHECK(errors > 0);
}
