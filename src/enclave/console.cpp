#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/enclave/console.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <ctime>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

namespace qtbox::enclave {

namespace {

using Clock = std::chrono::steady_clock;

// Bytes read from the socket at a time.
constexpr std::size_t READ_SIZE = 64 * 1024;

enum class Wait { Ready, Stop, Timeout };

// Waits until `fd` has `events` or `stop_fd` is readable (or hung up); a
// stop wins over a ready fd. A negative timeout waits as long as it takes.
ErrorOr<Wait> wait_for(int fd, short events, int stop_fd, int timeout_ms)
{
    auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
    while (true) {
        int wait_ms = -1;
        if (timeout_ms >= 0) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
            wait_ms = static_cast<int>(std::max<std::int64_t>(left, 0));
        }
        pollfd fds[2] = { { fd, events, 0 }, { stop_fd, POLLIN, 0 } };
        int ready = ::poll(fds, stop_fd >= 0 ? 2 : 1, wait_ms);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return Error::from_errno("poll");
        }
        if (stop_fd >= 0 && fds[1].revents != 0)
            return Wait::Stop;
        if (fds[0].revents != 0)
            return Wait::Ready;
        if (ready == 0 && timeout_ms >= 0)
            return Wait::Timeout;
    }
}

enum class Written { All, Stop, ReaderGone };

// Writes `bytes` to `out_fd` a pipe-buffer at a time, each once the fd
// polls writable, so that a stop is seen even while the output stalls.
ErrorOr<Written> write_out(int out_fd, std::string_view bytes, int stop_fd)
{
    while (!bytes.empty()) {
        if (TRY(wait_for(out_fd, POLLOUT, stop_fd, -1)) == Wait::Stop)
            return Written::Stop;
        ssize_t n = ::write(out_fd, bytes.data(), std::min<std::size_t>(bytes.size(), PIPE_BUF));
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            if (errno == EPIPE)
                return Written::ReaderGone;
            return Error::from_errno("writing the console out");
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return Written::All;
}

// The VMM's first line, for messages: printable ASCII only.
std::string printable(std::string_view line)
{
    std::string text;
    for (char c : line)
        text.push_back(c >= 0x20 && c < 0x7F ? c : '?');
    return text;
}

// While it lives, a write to an output whose reader went away fails with
// EPIPE instead of killing the process; the SIGPIPE it raised is taken
// back before the thread's mask is restored.
class SigpipeBlocked {
public:
    SigpipeBlocked()
    {
        sigemptyset(&m_pipe);
        sigaddset(&m_pipe, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &m_pipe, &m_old);
    }
    ~SigpipeBlocked()
    {
        if (sigismember(&m_old, SIGPIPE))
            return;
        timespec now {};
        while (::sigtimedwait(&m_pipe, nullptr, &now) == SIGPIPE) { }
        ::pthread_sigmask(SIG_SETMASK, &m_old, nullptr);
    }
    SigpipeBlocked(SigpipeBlocked const&) = delete;
    SigpipeBlocked& operator=(SigpipeBlocked const&) = delete;

private:
    sigset_t m_pipe;
    sigset_t m_old;
};

Error no_console(std::string const& path, std::string_view why)
{
    return Error::from_code(ConsoleError::NoConsole, fmt::format("console socket {}: {}", path, why));
}

} // namespace

ErrorOr<void> follow_console(std::string const& socket_path, int out_fd, int stop_fd)
{
    auto connected = sys::unix_connect(socket_path);
    if (connected.is_error()) {
        if (connected.error().is_errno(ENOENT) || connected.error().is_errno(ECONNREFUSED))
            return no_console(socket_path, "nothing serves it (the enclave is not running, or not in debug mode)");
        return connected.release_error();
    }
    UniqueFd socket = connected.release_value();

    // docs/FORMATS.md §11: one line first, the stream after it.
    std::string received;
    auto deadline = Clock::now() + std::chrono::milliseconds(CONSOLE_GREETING_TIMEOUT_MS);
    std::size_t line_end;
    char buffer[READ_SIZE];
    while ((line_end = received.find('\n')) == std::string::npos) {
        if (received.size() > CONSOLE_GREETING_LIMIT)
            return Error::from_code(ConsoleError::Protocol,
                fmt::format("console socket {}: not a qtbox console (its first line is longer than {} bytes)",
                    socket_path, CONSOLE_GREETING_LIMIT));
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        auto waited = TRY(wait_for(socket.get(), POLLIN, stop_fd, static_cast<int>(std::max<std::int64_t>(left, 0))));
        if (waited == Wait::Stop)
            return {};
        if (waited == Wait::Timeout)
            return Error::from_code(ConsoleError::Protocol,
                fmt::format("console socket {}: no greeting within {} s", socket_path,
                    CONSOLE_GREETING_TIMEOUT_MS / 1000));
        ssize_t n = ::read(socket.get(), buffer, sizeof(buffer));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return no_console(socket_path, "closed before its greeting (the enclave is stopping)");
        if (n < 0)
            return Error::from_errno(fmt::format("reading console socket {}", socket_path));
        received.append(buffer, static_cast<std::size_t>(n));
    }
    std::string_view line = std::string_view(received).substr(0, line_end);
    if (line.starts_with(CONSOLE_BUSY_PREFIX))
        return Error::from_code(ConsoleError::Busy,
            fmt::format("console socket {}: another reader is attached (one reader at a time)", socket_path));
    if (line != CONSOLE_GREETING)
        return Error::from_code(ConsoleError::Protocol,
            fmt::format("console socket {}: not a qtbox console (it said \"{}\")", socket_path, printable(line)));

    std::string_view data = std::string_view(received).substr(line_end + 1);
    SigpipeBlocked quiet_pipe;
    while (true) {
        if (!data.empty()) {
            auto written = TRY(write_out(out_fd, data, stop_fd));
            if (written != Written::All)
                return {};
        }
        if (TRY(wait_for(socket.get(), POLLIN, stop_fd, -1)) == Wait::Stop)
            return {};
        ssize_t n = ::read(socket.get(), buffer, sizeof(buffer));
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            data = {};
            continue;
        }
        // The VMM closes the stream when the enclave ends (a reset: it died).
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return {};
        if (n < 0)
            return Error::from_errno(fmt::format("reading console socket {}", socket_path));
        data = std::string_view(buffer, static_cast<std::size_t>(n));
    }
}

} // namespace qtbox::enclave
