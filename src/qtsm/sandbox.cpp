#include <qtbox/base/seccomp.hpp>
#include <qtbox/qtsm/sandbox.hpp>

#include <array>

namespace qtbox::qtsm {

namespace {

constexpr std::array ALLOWED = {
    // The event loop and its descriptors.
    "read", "write", "writev", "close", "epoll_wait", "epoll_pwait", "epoll_ctl",
    "accept", "accept4", "sendto", "recvfrom", "getsockopt",
    // Memory (mmap/mprotect are restricted below), time, threads' futexes.
    "brk", "munmap", "mremap", "madvise", "clock_gettime", "gettimeofday", "futex",
    // Signals' return path, exit.
    "rt_sigreturn", "rt_sigprocmask", "restart_syscall", "exit", "exit_group",
};

} // namespace

ErrorOr<void> enter_server_sandbox()
{
    TRY(seccomp::set_no_new_privs());
    auto filter = TRY(seccomp::Filter::create(seccomp::Action::KillProcess));
    TRY(filter.allow_names(ALLOWED));
    // Memory is never executable.
    TRY(filter.allow_memory_without_exec());
    return filter.load();
}

} // namespace qtbox::qtsm
