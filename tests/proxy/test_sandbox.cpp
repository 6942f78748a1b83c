#include "../support/child.hpp"

#include <qtbox/proxy/sandbox.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <fcntl.h>
#include <functional>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::proxy;

namespace {

// Runs `body` in a child that has entered the sandbox; `body` returns the
// child's exit status when it gets that far.
test::ChildOutcome in_sandbox(std::function<int()> const& body)
{
    return test::run_in_child([&] {
        if (enter_proxy_sandbox().is_error())
            return 100;
        return body();
    });
}

void expect_blocked(long number, std::function<int()> const& body)
{
    auto outcome = in_sandbox(body);
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
