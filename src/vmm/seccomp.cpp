#include <qtbox/vmm/seccomp.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <linux/kvm.h>
#include <memory>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

namespace qtbox::vmm {

namespace {

void on_sigsys(int, siginfo_t* info, void*)
{
    // Async-signal-safe: format by hand, one write, _exit.
    char line[96] = "vmm: seccomp: blocked system call ";
    std::size_t length = std::strlen(line);
    int number = info ? info->si_syscall : -1;
    char digits[12];
    int count = 0;
    unsigned value = number < 0 ? 0u : static_cast<unsigned>(number);
    do {
        digits[count++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value && count < 11);
    while (count)
        line[length++] = digits[--count];
    line[length++] = '\n';
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, line, length);
    ::_exit(EXIT_SECCOMP);
}

struct ContextDeleter {
    void operator()(scmp_filter_ctx context) const { seccomp_release(context); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

ErrorOr<void> check(int rc, char const* what)
{
    if (rc < 0)
        return Error::from_errno(fmt::format("seccomp: {}", what), -rc);
    return {};
}

ErrorOr<void> allow(Context const& context, int syscall)
{
    return check(seccomp_rule_add(context.get(), SCMP_ACT_ALLOW, syscall, 0), "rule");
}

// What both thread kinds need: memory management without ever making
// memory executable, futexes, signal return, clocks and thread exit.
ErrorOr<Context> common(std::span<int const> write_fds)
{
    struct sigaction action {};
    action.sa_sigaction = on_sigsys;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (::sigaction(SIGSYS, &action, nullptr) < 0)
        return Error::from_errno("sigaction SIGSYS");

    Context context(seccomp_init(SCMP_ACT_TRAP));
    if (!context)
        return Error::from_string("seccomp: seccomp_init failed", ENOMEM);
    for (int syscall : { SCMP_SYS(futex), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(sched_yield),
             SCMP_SYS(clock_gettime), SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(exit), SCMP_SYS(exit_group),
             SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(mremap) })
        TRY(allow(context, syscall));
    TRY(check(seccomp_rule_add(context.get(), SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                  SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
        "mmap rule"));
    TRY(check(seccomp_rule_add(context.get(), SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                  SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)),
        "mprotect rule"));
    for (int fd : write_fds) {
        if (fd < 0)
            continue;
        TRY(check(seccomp_rule_add(context.get(), SCMP_ACT_ALLOW, SCMP_SYS(write), 1,
                      SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(fd))),
            "write rule"));
    }
    return context;
}

ErrorOr<void> load(Context const& context)
{
    return check(seccomp_load(context.get()), "load");
}

} // namespace

ErrorOr<void> install_vcpu_filter(std::span<int const> write_fds)
{
    auto context = TRY(common(write_fds));
    // KVM_RUN, and KVM_GET_REGS for the RIP in crash reports (read-only).
    for (unsigned long request : { static_cast<unsigned long>(KVM_RUN), static_cast<unsigned long>(KVM_GET_REGS) })
        TRY(check(seccomp_rule_add(context.get(), SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                      SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(request))),
            "ioctl rule"));
    return load(context);
}

ErrorOr<void> install_event_loop_filter(std::span<int const> write_fds)
{
    auto context = TRY(common(write_fds));
    for (int syscall : { SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(read), SCMP_SYS(close), SCMP_SYS(tgkill),
             SCMP_SYS(newfstatat), SCMP_SYS(fstat), SCMP_SYS(clock_nanosleep) })
        TRY(allow(context, syscall));
    return load(context);
}

} // namespace qtbox::vmm
