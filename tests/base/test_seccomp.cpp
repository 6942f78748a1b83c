#include "../support/child.hpp"

#include <qtbox/base/program.hpp>
#include <qtbox/base/seccomp.hpp>

#include <doctest/doctest.h>

#include <array>
#include <csignal>
#include <fcntl.h>
#include <functional>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace qtbox;

namespace {

constexpr int VIOLATION_EXIT = 42;
constexpr int SETUP_FAILED_EXIT = 100;

// What a sandboxed child needs to be reported: write (the report),
// rt_sigreturn, exit and exit_group.
constexpr std::array MINIMAL = { "write", "rt_sigreturn", "exit", "exit_group" };
// What a child that returns normally also needs: the sanitizers' _exit()
// calls sigaltstack on the way out (the reporter does not use _exit()).
constexpr std::array NORMAL_EXIT = { "sigaltstack" };

// A Trap filter allowing MINIMAL plus what `policy` adds, with the reporter.
bool enter_trap_filter(std::function<ErrorOr<void>(seccomp::Filter&)> const& policy)
{
    if (seccomp::install_sigsys_reporter(VIOLATION_EXIT).is_error())
        return false;
    auto filter = seccomp::Filter::create(seccomp::Action::Trap);
    if (filter.is_error() || filter.value().allow_names(MINIMAL).is_error() || policy(filter.value()).is_error())
        return false;
    return !filter.value().load().is_error();
}

std::string report_line(std::string_view program, long number)
{
    return std::string(program) + ": seccomp: system call " + std::to_string(number) + " is not allowed; exiting\n";
}

} // namespace

TEST_CASE("seccomp: a trapped system call is reported by number and ends the process with the chosen status")
{
    auto outcome = test::run_in_child([] {
        set_program_name("sandboxed");
        if (!enter_trap_filter([](seccomp::Filter&) -> ErrorOr<void> { return {}; }))
            return SETUP_FAILED_EXIT;
        ::syscall(SYS_getppid); // harmless, and not on the list
        return 0;
    });
    CHECK(outcome.exit_status == VIOLATION_EXIT);
    CHECK(outcome.stderr_text == report_line("sandboxed", SYS_getppid));
}

TEST_CASE("seccomp: listed calls run; names this architecture or libseccomp lacks are skipped")
{
    CHECK(seccomp::syscall_number("getppid") == SYS_getppid);
    CHECK_FALSE(seccomp::syscall_number("no_such_system_call").has_value());

    pid_t parent = ::getpid();
    auto outcome = test::run_in_child([parent] {
        constexpr std::array names = { "getppid", "no_such_system_call" };
        if (!enter_trap_filter([&](seccomp::Filter& filter) -> ErrorOr<void> {
                TRY(filter.allow_names(NORMAL_EXIT));
                return filter.allow_names(names);
            }))
            return SETUP_FAILED_EXIT;
        return ::syscall(SYS_getppid) == parent ? 0 : 1;
    });
    CHECK(outcome.exit_status == 0);
    CHECK(outcome.stderr_text.empty());
}

TEST_CASE("seccomp: allow by number")
{
    auto outcome = test::run_in_child([] {
        if (!enter_trap_filter([](seccomp::Filter& filter) { return filter.allow(SCMP_SYS(getppid)); }))
            return SETUP_FAILED_EXIT;
        ::syscall(SYS_getppid);
        ::syscall(SYS_getpid);
        return 0;
    });
    CHECK(outcome.exit_status == VIOLATION_EXIT);
    CHECK(outcome.stderr_text == report_line("qtbox", SYS_getpid));
}

TEST_CASE("seccomp: allow_if allows a call only when its arguments match")
{
    auto outcome = test::run_in_child([] {
        int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null_fd < 0)
            return SETUP_FAILED_EXIT;
        // Writes only to stderr (MINIMAL is not used: it allows any write).
        if (seccomp::install_sigsys_reporter(VIOLATION_EXIT).is_error())
            return SETUP_FAILED_EXIT;
        auto filter = seccomp::Filter::create(seccomp::Action::Trap);
        if (filter.is_error())
            return SETUP_FAILED_EXIT;
        constexpr std::array names = { "rt_sigreturn", "exit", "exit_group" };
        if (filter.value().allow_names(names).is_error()
            || filter.value().allow_if(SCMP_SYS(write), SCMP_A0(SCMP_CMP_EQ, STDERR_FILENO, 0)).is_error()
            || filter.value().load().is_error())
            return SETUP_FAILED_EXIT;
        if (::write(STDERR_FILENO, "to stderr\n", 10) != 10)
            return 1;
        (void)::write(null_fd, "x", 1);
        return 0;
    });
    CHECK(outcome.exit_status == VIOLATION_EXIT);
    CHECK(outcome.stderr_text == "to stderr\n" + report_line("qtbox", SYS_write));
}

TEST_CASE("seccomp: memory may be mapped and protected, never executable")
{
    auto allow_memory = [](seccomp::Filter& filter) { return filter.allow_memory_without_exec(); };

    auto writable = test::run_in_child([&] {
        if (!enter_trap_filter([&](seccomp::Filter& filter) -> ErrorOr<void> {
                TRY(filter.allow_names(NORMAL_EXIT));
                return allow_memory(filter);
            }))
            return SETUP_FAILED_EXIT;
        void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED || ::mprotect(page, 4096, PROT_READ) != 0)
            return 1;
        return 0;
    });
    CHECK(writable.exit_status == 0);
    CHECK(writable.stderr_text.empty());

    auto mapped_executable = test::run_in_child([&] {
        if (!enter_trap_filter(allow_memory))
            return SETUP_FAILED_EXIT;
        ::syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return 0;
    });
    CHECK(mapped_executable.exit_status == VIOLATION_EXIT);
    CHECK(mapped_executable.stderr_text == report_line("qtbox", SYS_mmap));

    auto made_executable = test::run_in_child([&] {
        void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED || !enter_trap_filter(allow_memory))
            return SETUP_FAILED_EXIT;
        ::syscall(SYS_mprotect, page, 4096, PROT_READ | PROT_EXEC);
        return 0;
    });
    CHECK(made_executable.exit_status == VIOLATION_EXIT);
    CHECK(made_executable.stderr_text == report_line("qtbox", SYS_mprotect));
}

TEST_CASE("seccomp: a KillProcess filter ends the process with SIGSYS and no report")
{
    auto outcome = test::run_in_child([] {
        // No core file from the test run.
        rlimit no_core {};
        if (::setrlimit(RLIMIT_CORE, &no_core) != 0 || ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
            return SETUP_FAILED_EXIT;
        auto filter = seccomp::Filter::create(seccomp::Action::KillProcess);
        if (filter.is_error() || filter.value().allow_names(MINIMAL).is_error() || filter.value().load().is_error())
            return SETUP_FAILED_EXIT;
        ::syscall(SYS_getppid);
        return 0;
    });
    CHECK(outcome.exit_status == -1);
    CHECK(outcome.signal == SIGSYS);
    CHECK(outcome.stderr_text.empty());
}

TEST_CASE("seccomp: set_no_new_privs sets the flag")
{
    auto outcome = test::run_in_child([] {
        if (seccomp::set_no_new_privs().is_error())
            return SETUP_FAILED_EXIT;
        return ::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : 1;
    });
    CHECK(outcome.exit_status == 0);
}

TEST_CASE("seccomp: a rule libseccomp refuses is an error naming the system call")
{
    auto filter = seccomp::Filter::create(seccomp::Action::Trap);
    REQUIRE_FALSE(filter.is_error());
    // System calls take six arguments: index 6 does not exist.
    auto refused = filter.value().allow_if(SCMP_SYS(write), SCMP_CMP(6, SCMP_CMP_EQ, 0, 0));
    REQUIRE(refused.is_error());
    CHECK(refused.error().is_errno());
    CHECK(refused.error().is_errno(EINVAL));
    CHECK(refused.error().message() == "seccomp_rule_add write: Invalid argument");
}

TEST_CASE("seccomp: a moved-from filter releases nothing twice")
{
    auto created = seccomp::Filter::create(seccomp::Action::Trap);
    REQUIRE_FALSE(created.is_error());
    seccomp::Filter first = created.release_value();
    seccomp::Filter second = std::move(first);
    CHECK_FALSE(second.allow(SCMP_SYS(getpid)).is_error());
    first = std::move(second);
    CHECK_FALSE(first.allow(SCMP_SYS(getppid)).is_error());
}
