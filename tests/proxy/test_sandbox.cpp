#include "../support/child.hpp"
#include "../support/temp_dir.hpp"

#include "../../src/proxy/landlock.hpp"
#include "../../src/proxy/socket_dir.hpp"
#include <qtbox/net/socket.hpp>
#include <qtbox/proxy/sandbox.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <fcntl.h>
#include <functional>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::proxy;

namespace {

// Runs `body` in a child that has entered the sandbox; `body` returns the
// child's exit status when it gets that far.
test::ChildOutcome in_sandbox(std::function<int()> const& body, int socket_directory_fd = -1)
{
    return test::run_in_child([&] {
        if (enter_proxy_sandbox(socket_directory_fd).is_error())
            return 100;
        return body();
    });
}

void expect_blocked(long number, std::function<int()> const& body, int socket_directory_fd = -1)
{
    auto outcome = in_sandbox(body, socket_directory_fd);
    CHECK(outcome.exit_status == SANDBOX_VIOLATION_EXIT);
    CHECK(outcome.stderr_text == "qtbox: seccomp: system call " + std::to_string(number) + " is not allowed; exiting\n");
}

} // namespace

TEST_CASE("sandbox: what the proxy needs still works")
{
    auto outcome = in_sandbox([] {
        int tcp = static_cast<int>(::syscall(SYS_socket, AF_INET, SOCK_STREAM, 0));
        int unix_socket = static_cast<int>(::syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0));
        int udp = static_cast<int>(::syscall(SYS_socket, AF_INET6, SOCK_DGRAM, 0));
        int file = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC));
        void* memory = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        int fds[2];
        bool ok = tcp >= 0 && unix_socket >= 0 && udp >= 0 && file >= 0 && memory != MAP_FAILED && ::pipe2(fds, O_NONBLOCK) == 0;
        return ok ? 0 : 1;
    });
    CHECK(outcome.exit_status == 0);
    CHECK(outcome.stderr_text.empty());
}

TEST_CASE("sandbox: exec, writable opens, raw sockets, executable memory and ptrace are blocked")
{
    expect_blocked(SYS_execve, [] {
        char const* argv[] = { "/bin/true", nullptr };
        ::syscall(SYS_execve, "/bin/true", argv, nullptr);
        return 0;
    });
    expect_blocked(SYS_openat, [] {
        ::syscall(SYS_openat, AT_FDCWD, "/tmp/qtbox-sandbox-should-not-exist", O_WRONLY | O_CREAT, 0600);
        return 0;
    });
    expect_blocked(SYS_socket, [] {
        ::syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0);
        return 0;
    });
    expect_blocked(SYS_mmap, [] {
        ::syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return 0;
    });
    expect_blocked(SYS_ptrace, [] {
        ::syscall(SYS_ptrace, 0, 0, 0, 0);
        return 0;
    });
    expect_blocked(SYS_kill, [] {
        ::syscall(SYS_kill, 1, 0);
        return 0;
    });
}

TEST_CASE("sandbox: files change in the socket directory only, through its fd; unlink, chmod and mkdir by path are blocked")
{
    test::TempDir dir;
    dir.write("sockets/3_5000", "stale", 0600);
    dir.write("sockets/3_5001", "stale", 0600);
    dir.write("elsewhere/file", "keep", 0600);
    int sockets = ::open((dir / "sockets").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int elsewhere = ::open((dir / "elsewhere").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(sockets >= 0);
    REQUIRE(elsewhere >= 0);

    auto allowed = in_sandbox([&] { return ::unlinkat(sockets, "3_5000", 0) == 0 ? 0 : 1; }, sockets);
    CHECK(allowed.exit_status == 0);
    CHECK(allowed.stderr_text.empty());
    CHECK(::access((dir / "sockets/3_5000").c_str(), F_OK) != 0);

    std::string file = dir / "elsewhere/file";
    expect_blocked(SYS_unlinkat, [&] { return ::unlinkat(elsewhere, "file", 0); }, sockets);
    expect_blocked(SYS_unlinkat, [&] { return ::unlinkat(AT_FDCWD, file.c_str(), 0); }, sockets);
    // rmdir through the socket directory's fd (AT_REMOVEDIR) is no more allowed.
    expect_blocked(SYS_unlinkat, [&] { return ::unlinkat(sockets, "3_5001", AT_REMOVEDIR); }, sockets);
    expect_blocked(SYS_unlink, [&] { return static_cast<int>(::syscall(SYS_unlink, file.c_str())); }, sockets);
    expect_blocked(SYS_chmod, [&] { return static_cast<int>(::syscall(SYS_chmod, file.c_str(), 0777)); }, sockets);
    expect_blocked(SYS_fchmodat, [&] { return static_cast<int>(::syscall(SYS_fchmodat, sockets, "3_5001", 0777)); }, sockets);
    expect_blocked(SYS_mkdir, [&] { return static_cast<int>(::syscall(SYS_mkdir, (dir / "new").c_str(), 0755)); }, sockets);
    expect_blocked(SYS_mkdirat, [&] { return static_cast<int>(::syscall(SYS_mkdirat, sockets, "new", 0755)); }, sockets);
    CHECK(::access(file.c_str(), F_OK) == 0);
    CHECK(::access((dir / "sockets/3_5001").c_str(), F_OK) == 0);
    ::close(sockets);
    ::close(elsewhere);
}

TEST_CASE("socket directory: a listener is made with mode 0660 through the directory fd, a stale socket replaced, a live one refused")
{
    test::TempDir dir;
    auto opened = SocketDirectory::open(dir / "vsock", std::nullopt);
    REQUIRE_MESSAGE(!opened.is_error(), opened.error().message());
    auto& sockets = opened.value();
    struct stat identity { };
    auto first = sockets.listen("3_7000", 4, identity);
    REQUIRE_MESSAGE(!first.is_error(), first.error().message());
    struct stat on_disk { };
    REQUIRE(::lstat((dir / "vsock/3_7000").c_str(), &on_disk) == 0);
    CHECK(S_ISSOCK(on_disk.st_mode));
    CHECK((on_disk.st_mode & 07777) == 0660);
    CHECK(on_disk.st_ino == identity.st_ino);

    struct stat again { };
    auto live = sockets.listen("3_7000", 4, again);
    REQUIRE(live.is_error());
    CHECK(live.error().is(net::SocketError::AddressInUse));

    first.value().reset(); // the file stays, nobody accepts: stale
    auto replaced = sockets.listen("3_7000", 4, again);
    REQUIRE_MESSAGE(!replaced.is_error(), replaced.error().message());
    struct stat other = again;
    other.st_ino += 1;
    sockets.remove("3_7000", other); // not the file we made: kept
    CHECK(::access((dir / "vsock/3_7000").c_str(), F_OK) == 0);
    sockets.remove("3_7000", again);
    CHECK(::access((dir / "vsock/3_7000").c_str(), F_OK) != 0);

    auto bad = sockets.listen("../3_7000", 4, again);
    REQUIRE(bad.is_error());
}

TEST_CASE("landlock: sockets only in the socket directory, reads only in the named files' directories")
{
    test::TempDir dir;
    dir.write("etc/proxy.toml", "x", 0600);
    dir.write("other/secret", "y", 0600);
    REQUIRE(::mkdir((dir / "vsock").c_str(), 0750) == 0);
    auto outcome = test::run_in_child([&]() -> int {
        FilesystemScope scope;
        scope.socket_directory = dir / "vsock";
        scope.read_files = { dir / "etc/proxy.toml" };
        auto state = restrict_filesystem(scope);
        if (state.is_error())
            return 10;
        if (state.value() == LandlockState::Unavailable)
            return 77;
        auto bind_at = [](std::string const& path) {
            int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un address {};
            address.sun_family = AF_UNIX;
            path.copy(address.sun_path, sizeof(address.sun_path) - 1);
            int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
            int code = rc == 0 ? 0 : errno;
            ::close(fd);
            return code;
        };
        if (bind_at(dir / "vsock/3_1") != 0)
            return 11;
        if (::unlink((dir / "vsock/3_1").c_str()) != 0)
            return 12;
        if (bind_at(dir / "other/3_1") != EACCES)
            return 13;
        int config = ::open((dir / "etc/proxy.toml").c_str(), O_RDONLY);
        if (config < 0)
            return 14;
        ::close(config);
        if (::open((dir / "other/secret").c_str(), O_RDONLY) >= 0 || errno != EACCES)
            return 15;
        if (::open((dir / "etc/new").c_str(), O_WRONLY | O_CREAT, 0600) >= 0 || errno != EACCES)
            return 16;
        if (::unlink((dir / "other/secret").c_str()) == 0 || errno != EACCES)
            return 17;
        return 0;
    });
    if (outcome.exit_status == 77) {
        MESSAGE("this kernel has no Landlock: the rules cannot be checked here");
        return;
    }
    CHECK(outcome.exit_status == 0);
    CHECK(::access((dir / "other/secret").c_str(), F_OK) == 0);
}
