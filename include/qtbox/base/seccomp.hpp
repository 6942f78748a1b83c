// One wrapper around libseccomp for every sandbox in qtbox (qtsm-server,
// qt-proxy, the VMM's threads). Each caller keeps only its policy, its
// allow-list and its few argument rules; building, loading and reporting a
// filter happen here once.
//
// A Filter starts from a default action for every system call that no rule
// allows:
//   - KillProcess (SECCOMP_RET_KILL_PROCESS): the kernel ends the process
//     with SIGSYS, nothing runs after the call;
//   - Trap (SECCOMP_RET_TRAP): the call is not executed and the kernel sends
//     SIGSYS to the thread. install_sigsys_reporter() sets a handler that
//     writes "<program>: seccomp: system call N is not allowed; exiting" and
//     exits with a chosen status, so an operator sees which call it was. If
//     SIGSYS is blocked or ignored at that moment, the kernel kills the
//     process instead.
//
// load() applies the filter to the calling thread only (no thread sync), so
// the VMM can give each thread its own list. libseccomp sets no_new_privs
// itself when loading (its default SCMP_FLTATR_CTL_NNP); set_no_new_privs()
// lets a caller do so explicitly and first.
#pragma once

#include <qtbox/base/error.hpp>

#include <seccomp.h>

#include <concepts>
#include <cstdint>
#include <optional>
#include <span>

namespace qtbox::seccomp {

enum class Action {
    KillProcess,
    Trap,
};

class Filter {
public:
    static ErrorOr<Filter> create(Action default_action);

    Filter(Filter&& other) noexcept;
    Filter& operator=(Filter&& other) noexcept;
    Filter(Filter const&) = delete;
    Filter& operator=(Filter const&) = delete;
    ~Filter();

    // Allows a system call whatever its arguments.
    ErrorOr<void> allow(int number);
    // Allows each named system call; names this architecture does not have
    // (open and stat on arm64, epoll_wait on riscv64) are skipped, so one
    // list serves every architecture. A name this libseccomp does not know is
    // skipped the same way, and that call then stays forbidden.
    ErrorOr<void> allow_names(std::span<char const* const> names);
    // Allows a system call only when every condition holds, e.g.
    // allow_if(SCMP_SYS(write), SCMP_A0(SCMP_CMP_EQ, fd)).
    template<std::same_as<scmp_arg_cmp>... Conditions>
        requires(sizeof...(Conditions) > 0)
    ErrorOr<void> allow_if(int number, Conditions... conditions)
    {
        scmp_arg_cmp const array[] = { conditions... };
        return add_rule(number, array);
    }
    // The call fails with `error` instead of being executed or trapped: for
    // clone3, whose flags live in memory a filter cannot read, so that
    // glibc falls back to clone(), whose flags it can (ENOSYS).
    ErrorOr<void> fail_with(int number, int error);
    // mmap and mprotect, as long as PROT_EXEC is not asked for: a sandboxed
    // process never makes memory executable.
    ErrorOr<void> allow_memory_without_exec();

    // Loads the filter into the calling thread, or with `all_threads` into
    // every thread of the process at once (SECCOMP_FILTER_FLAG_TSYNC; the
    // caller's no_new_privs goes with it), for a process that started its
    // threads before entering the sandbox.
    ErrorOr<void> load(bool all_threads = false);

private:
    explicit Filter(scmp_filter_ctx context) : m_context(context) { }
    ErrorOr<void> add_rule(int number, std::span<scmp_arg_cmp const> conditions, std::uint32_t action = SCMP_ACT_ALLOW);

    scmp_filter_ctx m_context { nullptr };
};

// The system call's number on this architecture, if it has one.
std::optional<int> syscall_number(char const* name);

// PR_SET_NO_NEW_PRIVS: no later exec can gain privileges, and an
// unprivileged process may then load a filter.
ErrorOr<void> set_no_new_privs();

// Installs the process-wide SIGSYS handler for Trap filters and unblocks
// SIGSYS in the calling thread. The handler is async-signal-safe (no
// allocation, one write() of the report line to report_fd() (program.hpp),
// then _exit(exit_code)). Every thread
// shares one exit code: the last call's.
ErrorOr<void> install_sigsys_reporter(int exit_code);

} // namespace qtbox::seccomp
