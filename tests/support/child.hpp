// Runs a piece of a test in a forked child and collects how it ended and
// what it wrote to stderr: for code that cannot be undone in the test
// process itself (seccomp filters, no_new_privs, dropped capabilities and
// limits). Used by tests/base, tests/kvm and tests/proxy (the proxy's
// sandbox). Needs doctest (REQUIREs its set-up).
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace qtbox::test {

struct ChildOutcome {
    int exit_status { -1 }; // -1 unless the child exited
    int signal { 0 };       // the signal that ended the child, if one did
    std::string stderr_text;
};

// `body` runs in the child with stderr on a pipe; its return value is the
// child's exit status when it gets that far. The child never returns into
// the test runner.
inline ChildOutcome run_in_child(std::function<int()> const& body)
{
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::dup2(pipe_fds[1], STDERR_FILENO);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        ::_exit(body());
    }
    ::close(pipe_fds[1]);
    ChildOutcome outcome;
    char buffer[512];
    ssize_t n;
    while ((n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0)
        outcome.stderr_text.append(buffer, static_cast<std::size_t>(n));
    ::close(pipe_fds[0]);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    if (WIFEXITED(status))
        outcome.exit_status = WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        outcome.signal = WTERMSIG(status);
    return outcome;
}

} // namespace qtbox::test
