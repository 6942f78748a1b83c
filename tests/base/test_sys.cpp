#include "../support/child.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/base/sys.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <seccomp.h>

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

TEST_CASE("sys: unix_listen never changes a mode by path (chmod and fchmodat forbidden)")
{
    // A chmod by name after bind() follows whatever is at the path by then
    // (a symbolic link swapped in): the socket must be born with its mode.
    TempDir dir;
    std::string path = dir.path() + "/s.sock";
    auto outcome = test::run_in_child([&]() {
        ::umask(0);
        scmp_filter_ctx context = seccomp_init(SCMP_ACT_ALLOW);
        if (context == nullptr)
            return 90;
        for (char const* name : { "chmod", "fchmodat", "fchmodat2" }) {
            int number = seccomp_syscall_resolve_name(name);
            if (number != __NR_SCMP_ERROR && seccomp_rule_add(context, SCMP_ACT_ERRNO(EPERM), number, 0) < 0)
                return 91;
        }
        if (seccomp_load(context) < 0)
            return 92;
        auto listener = sys::unix_listen(path, 0640);
        if (listener.is_error()) {
            ::fprintf(stderr, "%s\n", listener.error().message().c_str());
            return 1;
        }
        struct stat st { };
        if (::lstat(path.c_str(), &st) < 0 || !S_ISSOCK(st.st_mode))
            return 2;
        return (st.st_mode & 07777) == 0640 ? 0 : 3;
    });
    INFO(outcome.stderr_text);
    CHECK(outcome.exit_status == 0);
}

TEST_CASE("sys: unix_listen refuses a socket directory others may write to or another user owns")
{
    TempDir dir;
    auto socket_directory = dir.path() + "/sockets";
    REQUIRE(::mkdir(socket_directory.c_str(), 0700) == 0);
    auto path = socket_directory + "/s.sock";
    auto refused = [&](mode_t mode, std::string const& expected) {
        REQUIRE(::chmod(socket_directory.c_str(), mode) == 0);
        auto result = sys::unix_listen(path);
        REQUIRE(result.is_error());
        CHECK(result.error().is(sys::SysError::UnsafeDirectory));
        CHECK(result.error().message() == expected);
        CHECK(::access(path.c_str(), F_OK) != 0);
    };
    refused(0777, fmt::format("socket directory {} is writable by everyone (mode 0777); make it 0755 or stricter", socket_directory));
    refused(01777, fmt::format("socket directory {} is writable by everyone (mode 1777); make it 0755 or stricter", socket_directory));
    refused(0770, fmt::format("socket directory {} is writable by its group (mode 0770); make it 0755 or stricter", socket_directory));
    REQUIRE(::chmod(socket_directory.c_str(), 0755) == 0);
    CHECK_FALSE(sys::unix_listen(path).is_error());
    if (::geteuid() == 0) {
        REQUIRE(::chown(socket_directory.c_str(), 4321, 4321) == 0);
        auto foreign = sys::unix_listen(path);
        REQUIRE(foreign.is_error());
        CHECK(foreign.error().is(sys::SysError::UnsafeDirectory));
        CHECK(foreign.error().message() == fmt::format("socket directory {} is owned by uid 4321, not by this user (uid 0) or root", socket_directory));
    }
    auto not_directory = sys::check_trusted_directory(dir.write("file", "x"), "socket directory");
    REQUIRE(not_directory.is_error());
    CHECK(not_directory.error().is(sys::SysError::NotADirectory));
}

TEST_CASE("sys: a socket directory's new parents are 0755 whatever the umask, and root gives it the service group")
{
    TempDir dir;
    std::string top = dir.path() + "/run";
    std::string leaf = top + "/a/vsock";
    mode_t old_umask = ::umask(0077);
    auto made = sys::make_socket_directory(leaf + "/", 0750);
    ::umask(old_umask);
    REQUIRE_MESSAGE(!made.is_error(), made.error().message());
    // The service account must pass through the parents: not 0700 (the
    // umask) nor 0750 (the last directory's mode, which mkdir_p gives them).
    CHECK((sys::stat(top).value().st_mode & 07777) == 0755);
    CHECK((sys::stat(top + "/a").value().st_mode & 07777) == 0755);
    CHECK((sys::stat(leaf).value().st_mode & 07777) == 0750);
    // Existing directories are left as they are.
    REQUIRE(::chmod(top.c_str(), 0700) == 0);
    CHECK_FALSE(sys::make_socket_directory(leaf, 0750).is_error());
    CHECK((sys::stat(top).value().st_mode & 07777) == 0700);
    REQUIRE(::chmod(top.c_str(), 0755) == 0);

    auto file = dir.write("run/a/file", "x");
    auto not_directory = sys::make_socket_directory(file, 0750);
    REQUIRE(not_directory.is_error());
    CHECK(not_directory.error().is(sys::SysError::NotADirectory));
    CHECK(sys::make_socket_directory("", 0750).error().is(sys::SysError::EmptyPath));

    if (::geteuid() != 0) {
        MESSAGE("not root: giving a directory a group cannot be tested here");
        return;
    }
    CHECK_FALSE(sys::make_socket_directory(leaf, 0750, 4321).is_error());
    CHECK(sys::stat(leaf).value().st_gid == 4321);
    CHECK(sys::stat(top + "/a").value().st_gid == 0);
    // Another owner's directory keeps its group.
    std::string foreign = top + "/foreign";
    REQUIRE(::mkdir(foreign.c_str(), 0750) == 0);
    REQUIRE(::chown(foreign.c_str(), 4322, 4322) == 0);
    CHECK_FALSE(sys::make_socket_directory(foreign, 0750, 4321).is_error());
    CHECK(sys::stat(foreign).value().st_gid == 4322);
    // A symbolic link in the last place is not followed to be given away.
    std::string link = top + "/link";
    REQUIRE(::symlink(foreign.c_str(), link.c_str()) == 0);
    CHECK(sys::make_socket_directory(link, 0750, 4321).is_error());
}

TEST_CASE("sys: mkdir_p creates nested directories and accepts existing ones")
{
    TempDir dir;
    std::string nested = dir.path() + "/a/b/c";
    CHECK_FALSE(sys::mkdir_p(nested, 0700).is_error());
    CHECK_FALSE(sys::mkdir_p(nested, 0700).is_error());
    CHECK(S_ISDIR(sys::stat(nested).value().st_mode));
}
