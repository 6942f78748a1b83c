#include "../support/sanitizers.hpp"
#include "../support/child.hpp"
#include "../support/must.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/enclave/console.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/vmm/console.hpp>
#include <qtbox/vmm/console_server.hpp>
#include <qtbox/vmm/launch.hpp>
#include <qtbox/vmm/seccomp.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <fmt/format.h>
#include <functional>
#include <regex>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::vmm;
using qtbox::test::must;

namespace {

using Clock = std::chrono::steady_clock;

// A console server on its own event loop, driven by the test as the VMM's
// run loop drives it (wait, then settle).
struct Served {
    explicit Served(std::size_t capacity = CONSOLE_RING_SIZE)
        : ring(capacity)
        , loop(must(net::EventLoop::create()))
    {
        server = must(ConsoleServer::create(path, ring, loop));
    }

    void round(int timeout_ms = 0)
    {
        must(loop.wait(timeout_ms));
        server->settle();
    }
    // Runs rounds until `done`, for at most 10 s.
    bool run_until(std::function<bool()> const& done)
    {
        auto deadline = Clock::now() + std::chrono::seconds(10);
        while (!done()) {
            if (Clock::now() > deadline)
                return false;
            round(10);
        }
        return true;
    }

    qtbox::test::TempDir dir;
    std::string path = dir / "console.sock";
    ConsoleRing ring;
    net::EventLoop loop;
    std::unique_ptr<ConsoleServer> server;
};

UniqueFd connect_to(std::string const& path) { return must(sys::unix_connect(path)); }

// What the client can read now, without waiting; sets `closed` at end of file.
std::string take(int fd, bool* closed = nullptr)
{
    std::string text;
    char buffer[65536];
    while (true) {
        ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) {
            text.append(buffer, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0 && closed)
            *closed = true;
        return text;
    }
}

// Everything until end of file (blocking).
std::string read_to_end(int fd)
{
    std::string text;
    char buffer[65536];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof(buffer))) > 0)
        text.append(buffer, static_cast<std::size_t>(n));
    return text;
}

void append(ConsoleRing& ring, std::string_view text) { ring.append(as_bytes(text)); }

std::string const GREETING(ConsoleServer::GREETING);

} // namespace

TEST_CASE("console server: a reader gets the greeting, the ring's bytes, then live output as soon as it comes")
{
    Served served;
    append(served.ring, "earlier line\npartial");
    auto client = connect_to(served.path);
    std::string received;
    REQUIRE(served.run_until([&] {
        received += take(client.get());
        return received.size() >= GREETING.size() + 20;
    }));
    CHECK(received == GREETING + "earlier line\npartial");
    CHECK(served.server->has_reader());

    // Nothing left to send: the loop sleeps until the ring wakes it.
    append(served.ring, " and the rest\n");
    auto start = Clock::now();
    CHECK(must(served.loop.wait(5000)) > 0);
    CHECK(Clock::now() - start < std::chrono::seconds(2));
    REQUIRE(served.run_until([&] {
        received += take(client.get());
        return received.ends_with("rest\n");
    }));
    CHECK(received == GREETING + "earlier line\npartial and the rest\n");
}

TEST_CASE("console server: a second reader gets the busy line and end of file; the slot frees when the first goes")
{
    Served served;
    append(served.ring, "boot\n");
    auto first = connect_to(served.path);
    REQUIRE(served.run_until([&] { return served.server->has_reader(); }));

    auto second = connect_to(served.path);
    std::string refusal;
    bool closed = false;
    REQUIRE(served.run_until([&] {
        refusal += take(second.get(), &closed);
        return closed;
    }));
    CHECK(refusal == ConsoleServer::BUSY);
    CHECK(refusal == "busy: another reader is attached\n");
    CHECK(served.server->has_reader());

    // A reader that shuts only its sending side still follows.
    REQUIRE(::shutdown(first.get(), SHUT_WR) == 0);
    served.round(50);
    CHECK(served.server->has_reader());
    append(served.ring, "still here\n");
    std::string received;
    REQUIRE(served.run_until([&] {
        received += take(first.get());
        return received.ends_with("still here\n");
    }));

    first.reset();
    REQUIRE(served.run_until([&] { return !served.server->has_reader(); }));
    auto third = connect_to(served.path);
    std::string replay;
    REQUIRE(served.run_until([&] {
        replay += take(third.get());
        return replay.ends_with("still here\n");
    }));
    CHECK(replay == GREETING + "boot\nstill here\n");
}

TEST_CASE("console server: a stalled reader holds up nothing; it skips ahead past what the ring lost, with a marker line")
{
    Served served;
    auto client = connect_to(served.path);
    REQUIRE(served.run_until([&] { return served.server->has_reader(); }));

    // 4 MiB of numbered lines while the reader reads nothing: each append
    // and each round of the loop returns at once.
    std::string all;
    auto start = Clock::now();
    for (int line = 0; all.size() < 4 * CONSOLE_RING_SIZE; ++line) {
        std::string text = fmt::format("line {:08}\n", line);
        append(served.ring, text);
        all += text;
        if (line % 256 == 0)
            served.round(0);
    }
    CHECK(Clock::now() - start < std::chrono::seconds(20));

    // The reader wakes up and reads everything up to the end of the stream.
    std::string received;
    std::thread reader([&] { received = read_to_end(client.get()); });
    served.server->finish(10000);
    reader.join();
    CHECK(!served.server->has_reader());

    REQUIRE(received.starts_with(GREETING));
    std::string stream = received.substr(GREETING.size());
    std::smatch marker;
    std::regex pattern("\\[\\.\\.\\. ([0-9]+) bytes dropped \\.\\.\\.\\]\n");
    REQUIRE(std::regex_search(stream, marker, pattern));
    std::size_t at = static_cast<std::size_t>(marker.position(0));
    std::uint64_t dropped = std::stoull(marker[1].str());
    REQUIRE(at > 1);
    // What came before the marker is the stream's start (what the socket's
    // buffer held); the marker starts a line of its own, with a line end
    // of its own when that start ended mid-line.
    bool own_line_end = all.compare(0, at, stream, 0, at) != 0;
    std::size_t before = own_line_end ? at - 1 : at;
    CHECK(all.compare(0, before, stream, 0, before) == 0);
    CHECK(stream[at - 1] == '\n');
    if (own_line_end)
        CHECK(all[before - 1] != '\n');
    // Nothing lost but what the marker counts; then the whole ring, once.
    std::string after = stream.substr(at + static_cast<std::size_t>(marker.length(0)));
    CHECK(before + dropped + after.size() == all.size());
    CHECK(after.size() == CONSOLE_RING_SIZE);
    CHECK(after == all.substr(all.size() - after.size()));
    CHECK(after.find("dropped") == std::string::npos);
}

TEST_CASE("console server: the marker starts a line of its own when the bytes before it did not end one")
{
    Served served(1024);
    auto client = connect_to(served.path);
    REQUIRE(served.run_until([&] { return served.server->has_reader(); }));
    // Fill the socket's buffer with no line end, then lose more than the ring.
    std::string chunk(1000, 'x');
    std::size_t appended = 0;
    for (int i = 0; i < 2000; ++i) {
        append(served.ring, chunk);
        appended += chunk.size();
        served.round(0);
    }
    append(served.ring, std::string(5000, 'y'));
    std::string received;
    std::thread reader([&] { received = read_to_end(client.get()); });
    served.server->finish(10000);
    reader.join();
    auto at = received.find("[... ");
    REQUIRE(at != std::string::npos);
    CHECK(received.substr(at - 1, 1) == "\n");
    CHECK(received.ends_with(std::string(1024, 'y')));
    CHECK(received.find("x\n[... ") != std::string::npos);
    // Bytes were lost: fewer x's arrived than were appended.
    CHECK(static_cast<std::size_t>(std::count(received.begin(), received.end(), 'x')) < appended);
}

TEST_CASE("console server: finish sends the rest, ends the stream and removes the socket file")
{
    Served served;
    auto client = connect_to(served.path);
    REQUIRE(served.run_until([&] { return served.server->has_reader(); }));
    append(served.ring, "the last words");
    served.server->finish(1000);
    bool closed = false;
    CHECK(take(client.get(), &closed) == GREETING + "the last words");
    CHECK(closed);
    CHECK(::access(served.path.c_str(), F_OK) != 0);
    // Nobody listens any more.
    CHECK(sys::unix_connect(served.path).is_error());
}

TEST_CASE("console server: the socket file is 0600; a stale one is replaced, a live one refused, and only its own removed")
{
    qtbox::test::TempDir dir;
    std::string path = dir / "console.sock";
    ConsoleRing ring(64);
    auto loop = must(net::EventLoop::create());

    // A socket file left by a VMM that was killed: nobody accepts on it.
    {
        UniqueFd stale = must(sys::unix_listen(path, 0600, 1));
    }
    REQUIRE(::access(path.c_str(), F_OK) == 0);
    {
        auto server = must(ConsoleServer::create(path, ring, loop));
        struct stat st { };
        REQUIRE(::lstat(path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0600);

        // A second VMM on the same path: refused, and the first's file stays.
        ConsoleRing other_ring(64);
        auto other = ConsoleServer::create(path, other_ring, loop);
        REQUIRE(other.is_error());
        CHECK(other.error().is(ConsoleServerError::InUse));
        CHECK(other.error().message() == fmt::format("console socket {}: another process is serving it", path));
        CHECK(::access(path.c_str(), F_OK) == 0);
        CHECK(!sys::unix_connect(path).is_error());
    }
    CHECK(::access(path.c_str(), F_OK) != 0);

    // A file that is not a socket is never replaced.
    dir.write("console.sock", "a file");
    auto over_file = ConsoleServer::create(path, ring, loop);
    REQUIRE(over_file.is_error());
    CHECK(over_file.error().is_errno(EADDRINUSE));
    CHECK(over_file.error().message().starts_with(fmt::format("console socket {}: bind", path)));

    // The socket file was replaced by someone else's: the server leaves it.
    std::string moved = dir / "moved.sock";
    {
        auto server = must(ConsoleServer::create(moved, ring, loop));
        REQUIRE(::unlink(moved.c_str()) == 0);
        UniqueFd someone_else = must(sys::unix_listen(moved, 0600, 1));
        server.reset();
        CHECK(::access(moved.c_str(), F_OK) == 0);
    }
}

TEST_CASE("console server and client: follow_console replays, follows, is refused while attached, detaches, and ends with the stream")
{
    ::signal(SIGPIPE, SIG_IGN);
    Served served;
    std::atomic<bool> finishing { false };
    std::thread loop_thread([&] {
        while (!finishing.load())
            served.round(10);
        served.server->finish(2000);
    });
    append(served.ring, "boot line\n");

    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    int stop[2];
    REQUIRE(::pipe2(stop, O_CLOEXEC) == 0);
    ErrorOr<void> followed;
    std::thread follower([&] { followed = enclave::follow_console(served.path, out[1], stop[0]); });

    auto read_until = [&](std::string_view end) {
        std::string text;
        char buffer[4096];
        while (!text.ends_with(end)) {
            ssize_t n = ::read(out[0], buffer, sizeof(buffer));
            if (n <= 0)
                break;
            text.append(buffer, static_cast<std::size_t>(n));
        }
        return text;
    };
    CHECK(read_until("boot line\n") == "boot line\n");
    append(served.ring, "live line\n");
    CHECK(read_until("live line\n") == "live line\n");

    // A second reader while the first is attached.
    auto refused = enclave::follow_console(served.path, out[1], -1);
    REQUIRE(refused.is_error());
    CHECK(refused.error().is(enclave::ConsoleError::Busy));
    CHECK(refused.error().message() == fmt::format("console socket {}: another reader is attached (one reader at a time)", served.path));

    // Ctrl-C: the first detaches, and a new reader gets the replay.
    REQUIRE(::write(stop[1], "x", 1) == 1);
    follower.join();
    CHECK(!followed.is_error());
    ::close(stop[0]);
    ::close(stop[1]);

    std::thread second([&] {
        // Refused for as long as the server has not yet seen the first go.
        do
            followed = enclave::follow_console(served.path, out[1], -1);
        while (followed.is_error() && followed.error().is(enclave::ConsoleError::Busy));
    });
    CHECK(read_until("live line\n") == "boot line\nlive line\n");
    append(served.ring, "goodbye\n");
    CHECK(read_until("goodbye\n") == "goodbye\n");
    // The VM stops: the stream ends and the client returns success.
    finishing.store(true);
    loop_thread.join();
    second.join();
    CHECK_MESSAGE(!followed.is_error(), followed.error().message());
    ::close(out[0]);
    ::close(out[1]);

    auto gone = enclave::follow_console(served.path, STDOUT_FILENO, -1);
    REQUIRE(gone.is_error());
    CHECK(gone.error().is(enclave::ConsoleError::NoConsole));
}

TEST_CASE("console server: it serves under the event loop's seccomp filter" * doctest::skip(test::SANITIZED))
{
    // The VMM serves the socket on its event-loop thread, under that
    // thread's allow-list (vmm/seccomp.hpp), and finishes there too.
    Served served;
    append(served.ring, "before the filter\n");
    std::string received;
    std::thread reader([&] {
        auto client = connect_to(served.path); // queued until the child accepts
        received = read_to_end(client.get());
    });
    auto outcome = qtbox::test::run_in_child([&]() -> int {
        int const write_fds[] = { STDERR_FILENO, served.server->wake_fd() };
        if (vmm::install_event_loop_filter(write_fds).is_error())
            return 2;
        auto deadline = Clock::now() + std::chrono::seconds(10);
        while (!served.server->has_reader()) {
            if (Clock::now() > deadline || served.loop.wait(10).is_error())
                return 3;
            served.server->settle();
        }
        append(served.ring, "after the filter\n");
        for (int i = 0; i < 5; ++i) {
            if (served.loop.wait(10).is_error())
                return 4;
            served.server->settle();
        }
        served.server->finish(1000);
        return 0;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
    reader.join();
    CHECK(received == GREETING + "before the filter\nafter the filter\n");
}

TEST_CASE("launch: --console-socket is a usage error for a production enclave, allowed in debug mode (docs/FORMATS.md §11)")
{
    qtbox::test::TempDir dir;
    LaunchOptions options;
    options.eif = dir / "missing.eif";
    options.vsock_socket = dir / "vsock.sock";
    options.listener_dir = dir.path();
    options.console_socket = dir / "console.sock";
    auto production = prepare_launch(options);
    REQUIRE(production.is_error());
    CHECK(production.error().is(LaunchError::Usage));
    CHECK(production.error().message() == "--console-socket: a production enclave's console is never exposed; add --debug-mode to see it");

    // Past the check: the image is what fails now.
    options.debug_mode = true;
    auto debug = prepare_launch(options);
    REQUIRE(debug.is_error());
    CHECK(debug.error().is(LaunchError::BadImage));
}
