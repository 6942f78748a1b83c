#include <qtbox/base/program.hpp>
#include <qtbox/base/seccomp.hpp>

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <utility>

namespace qtbox::seccomp {

namespace {

// Read by the SIGSYS handler: must be lock-free to be async-signal-safe.
std::atomic<int> g_violation_exit_code { 1 };
static_assert(std::atomic<int>::is_always_lock_free);

// The program name is ours (program.hpp), but bound it anyway so the rest
// of the line always fits.
constexpr std::size_t MAX_PROGRAM_IN_REPORT = 128;

// Async-signal-safe: no allocation, no locks; one write() and exit_group.
void on_sigsys(int, siginfo_t* info, void*)
{
    char line[256];
    std::size_t length = 0;
    auto append = [&](std::string_view text) {
        for (char c : text) {
            if (length == sizeof(line))
                return;
            line[length++] = c;
        }
    };
    append(program_name().substr(0, MAX_PROGRAM_IN_REPORT));
    append(": seccomp: system call ");
    char digits[16];
    auto converted = std::to_chars(digits, digits + sizeof(digits), info ? info->si_syscall : -1);
    append(std::string_view(digits, static_cast<std::size_t>(converted.ptr - digits)));
    append(" is not allowed; exiting\n");
    if (int fd = report_fd(); fd >= 0)
        [[maybe_unused]] auto written = ::write(fd, line, length);
    // exit_group directly rather than _exit(): sanitizer runtimes intercept
    // _exit() and make further system calls (sigaltstack) on the way out,
    // which the filter that brought us here may not allow.
    ::syscall(SYS_exit_group, g_violation_exit_code.load(std::memory_order_relaxed));
    __builtin_unreachable();
}

std::string syscall_name(int number)
{
    char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);
    if (!name)
        return fmt::format("system call {}", number);
    std::string result(name);
    std::free(name);
    return result;
}

} // namespace

ErrorOr<Filter> Filter::create(Action default_action)
{
    std::uint32_t action = default_action == Action::KillProcess ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_TRAP;
    scmp_filter_ctx context = seccomp_init(action);
    if (!context)
        return Error::from_string("seccomp_init failed");
    return Filter(context);
}

Filter::Filter(Filter&& other) noexcept : m_context(std::exchange(other.m_context, nullptr)) { }

Filter& Filter::operator=(Filter&& other) noexcept
{
    if (this != &other) {
        if (m_context)
            seccomp_release(m_context);
        m_context = std::exchange(other.m_context, nullptr);
    }
    return *this;
}

Filter::~Filter()
{
    if (m_context)
        seccomp_release(m_context);
}

ErrorOr<void> Filter::allow(int number)
{
    return add_rule(number, {});
}

ErrorOr<void> Filter::allow_names(std::span<char const* const> names)
{
    for (auto const* name : names) {
        if (auto number = syscall_number(name))
            TRY(allow(*number));
    }
    return {};
}

ErrorOr<void> Filter::allow_memory_without_exec()
{
    TRY(allow_if(SCMP_SYS(mmap), SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)));
    TRY(allow_if(SCMP_SYS(mprotect), SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)));
    return {};
}

ErrorOr<void> Filter::fail_with(int number, int error)
{
    return add_rule(number, {}, SCMP_ACT_ERRNO(static_cast<std::uint32_t>(error)));
}

ErrorOr<void> Filter::add_rule(int number, std::span<scmp_arg_cmp const> conditions, std::uint32_t action)
{
    int rc = seccomp_rule_add_array(m_context, action, number, static_cast<unsigned>(conditions.size()),
        conditions.empty() ? nullptr : conditions.data());
    if (rc < 0)
        return Error::from_errno(fmt::format("seccomp_rule_add {}", syscall_name(number)), -rc);
    return {};
}

ErrorOr<void> Filter::load(bool all_threads)
{
    if (all_threads) {
        if (int rc = seccomp_attr_set(m_context, SCMP_FLTATR_CTL_TSYNC, 1); rc < 0)
            return Error::from_errno("seccomp thread sync", -rc);
    }
    if (int rc = seccomp_load(m_context); rc < 0)
        return Error::from_errno("seccomp_load", -rc);
    return {};
}

std::optional<int> syscall_number(char const* name)
{
    int number = seccomp_syscall_resolve_name(name);
    if (number == __NR_SCMP_ERROR)
        return std::nullopt;
    return number;
}

ErrorOr<void> set_no_new_privs()
{
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return Error::from_errno("prctl PR_SET_NO_NEW_PRIVS");
    return {};
}

ErrorOr<void> install_sigsys_reporter(int exit_code)
{
    g_violation_exit_code.store(exit_code, std::memory_order_relaxed);
    struct sigaction action {};
    action.sa_sigaction = on_sigsys;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (::sigaction(SIGSYS, &action, nullptr) < 0)
        return Error::from_errno("sigaction SIGSYS");
    // A blocked SIGSYS would turn the report into a plain kill.
    sigset_t sigsys;
    sigemptyset(&sigsys);
    sigaddset(&sigsys, SIGSYS);
    if (int rc = ::pthread_sigmask(SIG_UNBLOCK, &sigsys, nullptr); rc != 0)
        return Error::from_errno("pthread_sigmask SIGSYS", rc);
    return {};
}

} // namespace qtbox::seccomp
