#include <qtbox/base/log.hpp>
#include <qtbox/vsock/proxy_sandbox.hpp>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qtbox::vsock {

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
    // Reload: stat, make and remove hybrid socket files.
    "newfstatat", "fstat", "stat", "lstat", "statx",
    "mkdir", "mkdirat", "chmod", "fchmodat", "umask", "unlink", "unlinkat",
    // Memory (mmap and mprotect are restricted below).
    "brk", "munmap", "mremap", "madvise",
    // Time, randomness (DNS ids), identity for log lines.
    "clock_gettime", "gettimeofday", "getrandom", "getpid", "gettid",
    // Signals (signalfd is read with read()), abort(), exit; sigaltstack
    // is harmless and sanitizer runtimes call it on the way out.
    "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "sigaltstack", "restart_syscall",
    "futex", "exit", "exit_group",
};

// Opening for writing, creating or truncating is never needed after setup.
constexpr std::uint64_t WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | (O_TMPFILE & ~O_DIRECTORY);

void append_number(char* buffer, std::size_t& length, long value)
{
    char digits[24];
    std::size_t count = 0;
    unsigned long magnitude = value < 0 ? static_cast<unsigned long>(-value) : static_cast<unsigned long>(value);
    do {
        digits[count++] = static_cast<char>('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0 && count < sizeof(digits));
    if (value < 0)
        buffer[length++] = '-';
    while (count > 0)
        buffer[length++] = digits[--count];
}

// Async-signal-safe: no allocation, only write() and _exit().
void on_sigsys(int, siginfo_t* info, void*)
{
    char line[160];
    std::size_t length = 0;
    auto append = [&](std::string_view text) {
        for (char c : text)
            if (length < 120)
                line[length++] = c;
    };
    append(log::program());
    append(": seccomp: system call ");
    append_number(line, length, info->si_syscall);
    append(" is not allowed; exiting\n");
    ssize_t ignored = ::write(STDERR_FILENO, line, length);
    (void)ignored;
    _exit(SANDBOX_VIOLATION_EXIT);
}

class Filter {
public:
    Filter() : m_context(seccomp_init(SCMP_ACT_TRAP)) { }
    ~Filter()
    {
        if (m_context)
            seccomp_release(m_context);
    }
    Filter(Filter const&) = delete;
    Filter& operator=(Filter const&) = delete;

    scmp_filter_ctx get() const { return m_context; }

private:
    scmp_filter_ctx m_context;
};

ErrorOr<void> check(int rc, char const* what)
{
    if (rc < 0)
        return Error::from_errno(what, -rc);
    return {};
}

} // namespace

ErrorOr<void> enter_proxy_sandbox()
{
    struct sigaction action {};
    action.sa_sigaction = on_sigsys;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (::sigaction(SIGSYS, &action, nullptr) < 0)
        return Error::from_errno("sigaction SIGSYS");
    sigset_t sigsys;
    sigemptyset(&sigsys);
    sigaddset(&sigsys, SIGSYS);
    ::sigprocmask(SIG_UNBLOCK, &sigsys, nullptr);

    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return Error::from_errno("prctl PR_SET_NO_NEW_PRIVS");

    Filter filter;
    if (!filter.get())
        return Error::from_string("seccomp_init failed", ENOMEM);
    auto* context = filter.get();
    for (auto const* name : ALLOWED) {
        int number = seccomp_syscall_resolve_name(name);
        // Names this architecture does not have (open, stat... on arm64).
        if (number == __NR_SCMP_ERROR)
            continue;
        TRY(check(seccomp_rule_add(context, SCMP_ACT_ALLOW, number, 0), "seccomp_rule_add"));
    }
    for (int family : { AF_UNIX, AF_INET, AF_INET6, AF_VSOCK })
        TRY(check(seccomp_rule_add(context, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))), "seccomp_rule_add socket"));
    TRY(check(seccomp_rule_add(context, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)), "seccomp_rule_add mmap"));
    TRY(check(seccomp_rule_add(context, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)), "seccomp_rule_add mprotect"));
    TRY(check(seccomp_rule_add(context, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, WRITE_FLAGS, 0)), "seccomp_rule_add openat"));
    if (int open_number = seccomp_syscall_resolve_name("open"); open_number != __NR_SCMP_ERROR)
        TRY(check(seccomp_rule_add(context, SCMP_ACT_ALLOW, open_number, 1, SCMP_A1(SCMP_CMP_MASKED_EQ, WRITE_FLAGS, 0)), "seccomp_rule_add open"));
    // abort() signals its own thread; nothing else may be signalled.
    TRY(check(seccomp_rule_add(context, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid()))), "seccomp_rule_add tgkill"));
    TRY(check(seccomp_load(context), "seccomp_load"));
    return {};
}

} // namespace qtbox::vsock
