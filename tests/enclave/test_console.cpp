#include "../support/pipe.hpp"
#include "../support/must.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/enclave/console.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <fmt/format.h>
#include <functional>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::enclave;
using qtbox::test::must;

namespace {

// A stand-in for the VMM's console socket (docs/FORMATS.md §11): accepts
// one connection and runs `serve` on it, in a thread of its own.
class FakeServer {
public:
    explicit FakeServer(std::function<void(int)> serve)
    {
        m_listener = must(sys::unix_listen(path, 0600, 4));
        m_thread = std::thread([this, serve = std::move(serve)] {
            UniqueFd client(::accept4(m_listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (client)
                serve(client.get());
        });
    }
    ~FakeServer() { m_thread.join(); }

    qtbox::test::TempDir dir;
    std::string path = dir / "console.sock";

private:
    UniqueFd m_listener;
    std::thread m_thread;
};

void say(int fd, std::string_view text) { REQUIRE(::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size())); }

// Waits until the client closes its end.
void until_closed(int fd)
{
    char buffer[64];
    while (::read(fd, buffer, sizeof(buffer)) > 0) { }
}

using test::Pipe;

} // namespace

TEST_CASE("enclave console: the greeting is checked, then everything is copied out until the stream ends")
{
    FakeServer server([](int fd) {
        // The greeting split across two reads, and the replay in the same
        // segment as its end.
        say(fd, "qtbox-con");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        say(fd, "sole 1\nreplayed line\n");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        say(fd, "live line\n");
    });
    Pipe out;
    must(follow_console(server.path, out.fds[1], -1));
    CHECK(out.drain() == "replayed line\nlive line\n");
}

TEST_CASE("enclave console: a busy console is ConsoleError::Busy and writes nothing")
{
    FakeServer server([](int fd) { say(fd, "busy: another reader is attached\n"); });
    Pipe out;
    auto followed = follow_console(server.path, out.fds[1], -1);
    REQUIRE(followed.is_error());
    CHECK(followed.error().is(ConsoleError::Busy));
    CHECK(followed.error().message() == fmt::format("console socket {}: another reader is attached (one reader at a time)", server.path));
    CHECK(out.drain().empty());
}

TEST_CASE("enclave console: no socket, a stale one, or one that closes before its greeting is ConsoleError::NoConsole")
{
    qtbox::test::TempDir dir;
    Pipe out;
    std::string missing = dir / "console.sock";
    auto followed = follow_console(missing, out.fds[1], -1);
    REQUIRE(followed.is_error());
    CHECK(followed.error().is(ConsoleError::NoConsole));
    CHECK(followed.error().message()
        == fmt::format("console socket {}: nothing serves it (the enclave is not running, or not in debug mode)", missing));

    {
        UniqueFd stale = must(sys::unix_listen(missing, 0600, 1)); // closed: the file stays, refusing
    }
    followed = follow_console(missing, out.fds[1], -1);
    REQUIRE(followed.is_error());
    CHECK(followed.error().is(ConsoleError::NoConsole));

    FakeServer closing([](int) { });
    followed = follow_console(closing.path, out.fds[1], -1);
    REQUIRE(followed.is_error());
    CHECK(followed.error().is(ConsoleError::NoConsole));
    CHECK(followed.error().message() == fmt::format("console socket {}: closed before its greeting (the enclave is stopping)", closing.path));
}

TEST_CASE("enclave console: anything but the greeting is ConsoleError::Protocol")
{
    Pipe out;
    {
        FakeServer server([](int fd) { say(fd, "qtbox-console 2\nfrom the future\n"); });
        auto followed = follow_console(server.path, out.fds[1], -1);
        REQUIRE(followed.is_error());
        CHECK(followed.error().is(ConsoleError::Protocol));
        CHECK(followed.error().message() == fmt::format("console socket {}: not a qtbox console (it said \"qtbox-console 2\")", server.path));
    }
    {
        FakeServer server([](int fd) { say(fd, "OK 8000\x01\n"); });
        auto followed = follow_console(server.path, out.fds[1], -1);
        REQUIRE(followed.is_error());
        CHECK(followed.error().is(ConsoleError::Protocol));
        CHECK(followed.error().message().ends_with("(it said \"OK 8000?\")"));
    }
    {
        FakeServer server([](int fd) {
            say(fd, std::string(CONSOLE_GREETING_LIMIT + 10, 'z'));
            until_closed(fd);
        });
        auto followed = follow_console(server.path, out.fds[1], -1);
        REQUIRE(followed.is_error());
        CHECK(followed.error().is(ConsoleError::Protocol));
    }
    CHECK(out.drain().empty());
}

TEST_CASE("enclave console: the stop fd detaches at once: before the greeting, while following, and while the output stalls")
{
    {
        // Connected, no greeting yet.
        FakeServer server([](int fd) { until_closed(fd); });
        Pipe out;
        Pipe stop;
        REQUIRE(::write(stop.fds[1], "x", 1) == 1);
        must(follow_console(server.path, out.fds[1], stop.fds[0]));
        CHECK(out.drain().empty());
    }
    {
        // Following, then Ctrl-C; a stop pipe whose writer closes counts too.
        FakeServer server([](int fd) {
            say(fd, "qtbox-console 1\nhello\n");
            until_closed(fd);
        });
        Pipe out;
        Pipe stop;
        std::thread control([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            stop.close_write();
        });
        must(follow_console(server.path, out.fds[1], stop.fds[0]));
        control.join();
        CHECK(out.drain() == "hello\n");
    }
    {
        // Nobody reads the output (a full pipe): the stop is still seen.
        FakeServer server([](int fd) {
            say(fd, "qtbox-console 1\n");
            std::string flood(65536, 'f');
            for (int i = 0; i < 8; ++i) {
                if (::send(fd, flood.data(), flood.size(), MSG_NOSIGNAL) < 0)
                    break;
            }
            until_closed(fd);
        });
        Pipe out;
        Pipe stop;
        std::thread control([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            REQUIRE(::write(stop.fds[1], "x", 1) == 1);
        });
        auto start = std::chrono::steady_clock::now();
        must(follow_console(server.path, out.fds[1], stop.fds[0]));
        control.join();
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    }
}

TEST_CASE("enclave console: an output whose reader went away ends the follow quietly, without SIGPIPE")
{
    // SIGPIPE at its default action: it would kill the test runner.
    ::signal(SIGPIPE, SIG_DFL);
    FakeServer server([](int fd) {
        say(fd, "qtbox-console 1\nto nobody\n");
        until_closed(fd);
    });
    Pipe out;
    ::close(out.fds[0]);
    out.fds[0] = -1;
    must(follow_console(server.path, out.fds[1], -1));
    sigset_t pending;
    REQUIRE(::sigpending(&pending) == 0);
    CHECK(!sigismember(&pending, SIGPIPE));
}
