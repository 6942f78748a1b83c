// A pipe for one test, closed when it goes: fds[0] to read, fds[1] to
// write (O_CLOEXEC, plus `flags`). drain() takes what is readable now
// without waiting. Needs doctest (REQUIREs its set-up). Used by tests/vmm
// (console sinks) and tests/enclave (the console client's output).
#pragma once

#include <doctest/doctest.h>

#include <fcntl.h>
#include <string>
#include <unistd.h>

namespace qtbox::test {

struct Pipe {
    explicit Pipe(int flags = 0) { REQUIRE(::pipe2(fds, O_CLOEXEC | flags) == 0); }
    ~Pipe()
    {
        for (int fd : fds) {
            if (fd >= 0)
                ::close(fd);
        }
    }
    Pipe(Pipe const&) = delete;
    Pipe& operator=(Pipe const&) = delete;

    void close_write()
    {
        if (fds[1] >= 0)
            ::close(fds[1]);
        fds[1] = -1;
    }
    std::string drain()
    {
        int flags = ::fcntl(fds[0], F_GETFL);
        REQUIRE((flags >= 0 && ::fcntl(fds[0], F_SETFL, flags | O_NONBLOCK) == 0));
        std::string text;
        char buffer[4096];
        ssize_t n;
        while ((n = ::read(fds[0], buffer, sizeof(buffer))) > 0)
            text.append(buffer, static_cast<std::size_t>(n));
        return text;
    }

    int fds[2] { -1, -1 };
};

} // namespace qtbox::test
