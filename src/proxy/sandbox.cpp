#include <qtbox/base/seccomp.hpp>
#include <qtbox/proxy/sandbox.hpp>

#include <array>
#include <cstdint>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qtbox::proxy {

namespace {

constexpr std::array ALLOWED = {
    // I/O and the event loop.
    "read", "write", "readv", "writev", "close", "lseek",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl",
    "splice", "pipe2", "fcntl",
    // Sockets (socket() itself is restricted by family below).
    "accept", "accept4", "connect", "bind", "listen", "shutdown",
    "getsockname", "getpeername", "getsockopt", "setsockopt",
    "sendto", "recvfrom", "sendmsg", "recvmsg",
    // Reload: stat and make hybrid socket files (the umask gives their
    // mode); removing them is unlinkat on the socket directory, below.
    "newfstatat", "fstat", "stat", "lstat", "statx", "umask",
    // Memory (mmap and mprotect are restricted below).
    "brk", "munmap", "mremap", "madvise",
    // Time, randomness (DNS ids), identity for log lines.
    "clock_gettime", "gettimeofday", "getrandom", "getpid", "gettid",
    // Whether a new socket still needs giving to the service user (socket_dir.hpp).
    "geteuid",
    // Signals (signalfd is read with read()), abort(), exit; sigaltstack
    // is harmless and sanitizer runtimes call it on the way out.
    "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "sigaltstack", "restart_syscall",
    "futex", "exit", "exit_group",
};

// Opening for writing, creating or truncating is never needed after setup.
constexpr std::uint64_t WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | (O_TMPFILE & ~O_DIRECTORY);

} // namespace

ErrorOr<void> enter_proxy_sandbox(int socket_directory_fd)
{
    TRY(seccomp::install_sigsys_reporter(SANDBOX_VIOLATION_EXIT));
    TRY(seccomp::set_no_new_privs());

    auto filter = TRY(seccomp::Filter::create(seccomp::Action::Trap));
    TRY(filter.allow_names(ALLOWED));
    for (int family : { AF_UNIX, AF_INET, AF_INET6, AF_VSOCK })
        TRY(filter.allow_if(SCMP_SYS(socket), SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family), 0)));
    TRY(filter.allow_memory_without_exec());
    TRY(filter.allow_if(SCMP_SYS(openat), SCMP_A2(SCMP_CMP_MASKED_EQ, WRITE_FLAGS, 0)));
    // open() only where this architecture has it (not on arm64).
    if (auto open_number = seccomp::syscall_number("open"))
        TRY(filter.allow_if(*open_number, SCMP_A1(SCMP_CMP_MASKED_EQ, WRITE_FLAGS, 0)));
    // The socket directory's files only (proxy/socket_dir.hpp): no unlink,
    // rmdir, chmod or mkdir by path, and unlinkat on that directory's fd.
    if (socket_directory_fd >= 0)
        TRY(filter.allow_if(SCMP_SYS(unlinkat), SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(socket_directory_fd), 0),
            SCMP_A2(SCMP_CMP_EQ, 0, 0)));
    // abort() signals its own thread; nothing else may be signalled.
    TRY(filter.allow_if(SCMP_SYS(tgkill), SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid()), 0)));
    // The engine's worker threads exist already (Proxy::create): all of
    // them enter the sandbox together.
    return filter.load(true);
}

} // namespace qtbox::proxy
