#include <qtbox/qtsm/sandbox.hpp>

#include <array>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>

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

class Filter {
public:
    Filter() : m_context(seccomp_init(SCMP_ACT_KILL_PROCESS)) { }
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

ErrorOr<void> enter_server_sandbox()
{
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return Error::from_errno("prctl PR_SET_NO_NEW_PRIVS");
    Filter filter;
    if (!filter.get())
        return Error::from_string("seccomp_init failed", ENOMEM);
    for (auto const* name : ALLOWED) {
        int number = seccomp_syscall_resolve_name(name);
        if (number == __NR_SCMP_ERROR)
            continue; // not on this architecture (e.g. epoll_wait on aarch64)
        TRY(check(seccomp_rule_add(filter.get(), SCMP_ACT_ALLOW, number, 0), "seccomp_rule_add"));
    }
    // Memory is never executable.
    TRY(check(seccomp_rule_add(filter.get(), SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                  SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
        "seccomp_rule_add mmap"));
    TRY(check(seccomp_rule_add(filter.get(), SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                  SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
        "seccomp_rule_add mprotect"));
    TRY(check(seccomp_load(filter.get()), "seccomp_load"));
    return {};
}

} // namespace qtbox::qtsm
