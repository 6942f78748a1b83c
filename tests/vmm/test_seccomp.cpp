// The VMM's three seccomp filters (vmm/seccomp.hpp), each entered in a forked
// child: what the filter is for still runs, and each forbidden call ends the
// process with EXIT_SECCOMP (128 + SIGSYS) and one line naming the call.
#include "../support/child.hpp"
#include "../support/sanitizers.hpp"

#include <qtbox/base/program.hpp>
#include <qtbox/vmm/seccomp.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <functional>
#include <linux/kvm.h>
#include <sched.h>
#include <string>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>

using namespace qtbox;

namespace {

std::string report_line(long number)
{
    return std::string(program_name()) + ": seccomp: system call " + std::to_string(number) + " is not allowed; exiting\n";
}

// `enter` puts the child under a filter; `body` then runs there.
void expect_trapped(long number, std::function<bool()> const& enter, std::function<void()> const& body)
{
    auto outcome = test::run_in_child([&]() -> int {
        if (!enter())
            return 100;
        body();
        return 0;
    });
    CHECK_MESSAGE(outcome.exit_status == vmm::EXIT_SECCOMP, "system call ", number, ": ", outcome.stderr_text);
    CHECK(outcome.stderr_text == report_line(number));
}

bool enter_setup() { return !vmm::install_setup_filter().is_error(); }

bool enter_event_loop()
{
    int const write_fds[] = { STDERR_FILENO };
    return !vmm::install_event_loop_filter(write_fds).is_error();
}

bool enter_vcpu()
{
    int const write_fds[] = { STDERR_FILENO };
    return !vmm::install_vcpu_filter(write_fds, {}).is_error();
}

} // namespace

TEST_CASE("vmm seccomp: the setup filter runs the set-up: reads, AF_UNIX sockets, event fds, threads" * doctest::skip(test::SANITIZED))
{
    auto outcome = test::run_in_child([]() -> int {
        if (!enter_setup())
            return 100;
        int file = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        int unix_socket = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int event = ::eventfd(0, EFD_CLOEXEC);
        bool thread_ran = false;
        std::thread thread([&] { thread_ran = true; }); // clone3 fails as absent; clone(CLONE_THREAD) runs
        thread.join();
        // A vCPU thread pins itself and enters its own filter on top.
        cpu_set_t cpus;
        bool affinity = ::sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && ::sched_setaffinity(0, sizeof(cpus), &cpus) == 0;
        // The QTSM's nonce thread lowers itself to SCHED_IDLE.
        bool idle = false;
        std::thread nonces([&] {
            sched_param param {};
            idle = ::sched_setscheduler(0, SCHED_IDLE, &param) == 0;
        });
        nonces.join();
        bool narrowed = enter_vcpu();
        return file >= 0 && unix_socket >= 0 && event >= 0 && thread_ran && affinity && idle && narrowed ? 0 : 1;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
    CHECK(outcome.stderr_text.empty());
}

TEST_CASE("vmm seccomp: the setup filter refuses exec, writable opens, network sockets, processes, signals to others, ptrace "
          "and ioctls outside KVM" * doctest::skip(test::SANITIZED))
{
    pid_t const runner = ::getpid(); // the test runner: another process to the child
    expect_trapped(SYS_execve, enter_setup, [] {
        char const* argv[] = { "/bin/true", nullptr };
        ::syscall(SYS_execve, "/bin/true", argv, nullptr);
    });
    expect_trapped(SYS_openat, enter_setup, [] { ::syscall(SYS_openat, AT_FDCWD, "/tmp/qtbox-vmm-setup-never", O_WRONLY | O_CREAT, 0600); });
    expect_trapped(SYS_openat, enter_setup, [] { ::syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDWR); });
    expect_trapped(SYS_socket, enter_setup, [] { ::syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); });
    expect_trapped(SYS_socket, enter_setup, [] { ::syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0); });
    expect_trapped(SYS_clone, enter_setup, [] { ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0); });
    expect_trapped(SYS_kill, enter_setup, [=] { ::syscall(SYS_kill, runner, 0); });
    expect_trapped(SYS_tgkill, enter_setup, [=] { ::syscall(SYS_tgkill, runner, runner, 0); });
    expect_trapped(SYS_ptrace, enter_setup, [] { ::syscall(SYS_ptrace, 0, 0, 0, 0); });
    expect_trapped(SYS_ioctl, enter_setup, [] { ::syscall(SYS_ioctl, STDERR_FILENO, TIOCSTI, "x"); });
    // Scheduling: SCHED_IDLE for the calling thread only, never a real-time
    // policy, never for another process.
    expect_trapped(SYS_sched_setscheduler, enter_setup, [] {
        sched_param param {};
        param.sched_priority = 1;
        ::syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, &param);
    });
    expect_trapped(SYS_sched_setscheduler, enter_setup, [=] {
        sched_param param {};
        ::syscall(SYS_sched_setscheduler, runner, SCHED_IDLE, &param);
    });
    expect_trapped(SYS_setuid, enter_setup, [] { ::syscall(SYS_setuid, 0); });
    expect_trapped(SYS_mmap, enter_setup, [] { ::syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); });
}

TEST_CASE("vmm seccomp: the setup filter lets KVM ioctls through to the kernel" * doctest::skip(test::SANITIZED))
{
    // KVM_GET_API_VERSION on a non-KVM fd: the filter lets it through, the
    // kernel answers ENOTTY; the process lives on.
    auto outcome = test::run_in_child([]() -> int {
        if (!enter_setup())
            return 100;
        int rc = ::ioctl(STDERR_FILENO, KVM_GET_API_VERSION, 0);
        return rc < 0 && errno == ENOTTY ? 0 : 1;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
}

TEST_CASE("vmm seccomp: the event loop signals its own threads only" * doctest::skip(test::SANITIZED))
{
    auto outcome = test::run_in_child([]() -> int {
        if (!enter_event_loop())
            return 100;
        // Signal 0: checked, nothing delivered.
        return ::syscall(SYS_tgkill, ::getpid(), ::gettid(), 0) == 0 ? 0 : 1;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
    // Any other process (here the test runner) is out of reach.
    pid_t const runner = ::getpid();
    expect_trapped(SYS_tgkill, enter_event_loop, [=] { ::syscall(SYS_tgkill, runner, runner, 0); });
    expect_trapped(SYS_kill, enter_event_loop, [=] { ::syscall(SYS_kill, runner, 0); });
    expect_trapped(SYS_socket, enter_event_loop, [] { ::syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); });
    expect_trapped(SYS_openat, enter_event_loop, [] { ::syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY); });
}

TEST_CASE("vmm seccomp: a vCPU thread may not open, signal, or write an fd outside its list" * doctest::skip(test::SANITIZED))
{
    expect_trapped(SYS_openat, enter_vcpu, [] { ::syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY); });
    expect_trapped(SYS_tgkill, enter_vcpu, [] { ::syscall(SYS_tgkill, ::getpid(), ::gettid(), 0); });
    expect_trapped(SYS_write, enter_vcpu, [] { ::syscall(SYS_write, STDOUT_FILENO, "x", 1); });
    expect_trapped(SYS_ioctl, enter_vcpu, [] { ::syscall(SYS_ioctl, STDERR_FILENO, KVM_CREATE_VM, 0); });
}
