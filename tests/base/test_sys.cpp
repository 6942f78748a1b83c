#include "../support/temp_dir.hpp"

#include <qtbox/base/sys.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

using namespace qtbox;

namespace {

using test::TempDir;

// The entries of a directory, "." and ".." aside.
int entries(TempDir const& dir)
{
    int count = 0;
    DIR* stream = opendir(dir.path().c_str());
    while (auto* entry = readdir(stream))
        count += entry->d_name[0] != '.' || (entry->d_name[1] != '\0' && entry->d_name[1] != '.');
    closedir(stream);
    return count;
}

} // namespace

TEST_CASE("sys: AtomicFile appears only on commit, with the requested mode")
{
    TempDir dir;
    std::string target = dir.path() + "/out.bin";
    {
        auto file = sys::AtomicFile::create(target, 0600).release_value();
        REQUIRE_FALSE(file.write(as_bytes("hello")).is_error());
        CHECK(access(target.c_str(), F_OK) != 0);
        REQUIRE_FALSE(file.commit().is_error());
    }
    CHECK(as_chars(sys::read_file(target, 100).value()) == "hello");
    CHECK((sys::stat(target).value().st_mode & 0777) == 0600);
    CHECK(entries(dir) == 1);
}

TEST_CASE("sys: an abandoned AtomicFile leaves nothing behind")
{
    TempDir dir;
    {
        auto file = sys::AtomicFile::create(dir.path() + "/out.bin").release_value();
        REQUIRE_FALSE(file.write(as_bytes("partial")).is_error());
    }
    CHECK(entries(dir) == 0);
}

TEST_CASE("sys: read_file enforces its size limit")
{
    TempDir dir;
    std::string target = dir.path() + "/big";
    REQUIRE_FALSE(sys::write_file_atomic(target, Bytes(1000, 7)).is_error());
    CHECK(sys::read_file(target, 1000).value().size() == 1000);
    auto too_big = sys::read_file(target, 999);
    REQUIRE(too_big.is_error());
    CHECK(too_big.error().is(sys::SysError::TooLarge));
    CHECK(sys::read_file(dir.path() + "/missing", 10).error().is_errno(ENOENT));
}

TEST_CASE("sys: unix_listen makes a socket that is not world-accessible")
{
    TempDir dir;
    std::string path = dir.path() + "/s.sock";
    auto listener = sys::unix_listen(path, 0666).release_value();
    CHECK((sys::stat(path).value().st_mode & 0007) == 0);
    auto client = sys::unix_connect(path);
    CHECK_FALSE(client.is_error());
    // A stale socket file is replaced; a regular file is not.
    auto again = sys::unix_listen(path);
    CHECK_FALSE(again.is_error());
    REQUIRE_FALSE(sys::write_file_atomic(dir.path() + "/regular", as_bytes("x")).is_error());
    CHECK(sys::unix_listen(dir.path() + "/regular").is_error());
}

TEST_CASE("sys: mkdir_p creates nested directories and accepts existing ones")
{
    TempDir dir;
    std::string nested = dir.path() + "/a/b/c";
    CHECK_FALSE(sys::mkdir_p(nested, 0700).is_error());
    CHECK_FALSE(sys::mkdir_p(nested, 0700).is_error());
    CHECK(S_ISDIR(sys::stat(nested).value().st_mode));
}
