#include <qtbox/base/sys.hpp>
#include <qtbox/base/verify.hpp>
#include <qtbox/vmm/console.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <poll.h>
#include <unistd.h>

namespace qtbox::vmm {

ConsoleRing::ConsoleRing(std::size_t capacity)
    : m_capacity(capacity)
    , m_bytes(new std::uint8_t[capacity])
{
    VERIFY(capacity > 0);
}

void ConsoleRing::append(ByteView bytes)
{
    // Only the newest `capacity` bytes can survive this append; the others
    // still count in the positions.
    std::size_t skipped = bytes.size() > m_capacity ? bytes.size() - m_capacity : 0;
    bool any = !bytes.empty();
    bytes = bytes.subspan(skipped);
    int wake = -1;
    {
        std::lock_guard lock(m_mutex);
        m_end += skipped;
        std::size_t at = static_cast<std::size_t>(m_end % m_capacity);
        std::size_t first = std::min(bytes.size(), m_capacity - at);
        std::copy_n(bytes.begin(), first, m_bytes.get() + at);
        std::copy(bytes.begin() + static_cast<long>(first), bytes.end(), m_bytes.get());
        m_end += bytes.size();
        if (m_wake_armed && any) {
            m_wake_armed = false;
            wake = m_wake_fd;
        }
    }
    // Outside the lock: the reader's side takes it to copy out.
    if (wake >= 0)
        sys::signal_event(wake);
}

std::uint64_t ConsoleRing::end() const
{
    std::lock_guard lock(m_mutex);
    return m_end;
}

std::uint64_t ConsoleRing::begin() const
{
    std::lock_guard lock(m_mutex);
    return m_end > m_capacity ? m_end - m_capacity : 0;
}

ConsoleRing::Chunk ConsoleRing::read(std::uint64_t from, std::size_t max, Bytes& out)
{
    std::lock_guard lock(m_mutex);
    std::uint64_t oldest = m_end > m_capacity ? m_end - m_capacity : 0;
    Chunk chunk;
    if (from < oldest) {
        chunk.dropped = oldest - from;
        from = oldest;
    }
    std::size_t count = from < m_end ? static_cast<std::size_t>(std::min<std::uint64_t>(m_end - from, max)) : 0;
    std::size_t at = static_cast<std::size_t>(from % m_capacity);
    std::size_t first = std::min(count, m_capacity - at);
    out.insert(out.end(), m_bytes.get() + at, m_bytes.get() + at + first);
    out.insert(out.end(), m_bytes.get(), m_bytes.get() + (count - first));
    chunk.next = from + count;
    if (chunk.next >= m_end)
        m_wake_armed = true;
    return chunk;
}

void ConsoleRing::set_wake_fd(int fd)
{
    std::lock_guard lock(m_mutex);
    m_wake_fd = fd;
    m_wake_armed = false;
}

void Console::write_byte(std::uint8_t byte)
{
    m_ring.append(byte);
    std::lock_guard lock(m_mutex);
    m_line.push_back(static_cast<char>(byte));
    if (byte == '\n' || m_line.size() >= LINE_LIMIT)
        end_line_locked();
}

void Console::try_flush()
{
    std::unique_lock lock(m_mutex, std::try_to_lock);
    if (lock.owns_lock())
        write_ready_locked(0);
}

void Console::flush(int timeout_ms)
{
    std::lock_guard lock(m_mutex);
    write_ready_locked(timeout_ms);
}

std::optional<std::string> Console::panic_line() const
{
    std::lock_guard lock(m_panic_mutex);
    return m_panic;
}

void Console::end_line_locked()
{
    // Scanned before the write, which may wait long on a slow reader.
    if (!m_panic_seen) {
        auto at = m_line.find(PANIC_BANNER);
        if (at != std::string::npos) {
            std::string line = m_line.substr(at);
            while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
                line.pop_back();
            m_panic_seen = true;
            std::lock_guard panic_lock(m_panic_mutex);
            m_panic = std::move(line);
        }
    }
    write_out_locked();
    m_line.clear();
    m_written = 0;
}

void Console::write_out_locked()
{
    if (m_fd < 0 || m_sink_broken)
        return drop_sink_locked();
    while (m_written < m_line.size()) {
        ssize_t n = ::write(m_fd, m_line.data() + m_written, m_line.size() - m_written);
        if (n < 0 && errno == EINTR && !m_abandoned.load())
            continue;
        if (n <= 0) {
            // A closed pipe, a full disk, or a stop while a reader stalls:
            // drop the console from here on (the banner scan goes on).
            return drop_sink_locked();
        }
        m_written += static_cast<std::size_t>(n);
    }
}

void Console::write_ready_locked(int timeout_ms)
{
    if (m_fd < 0 || m_sink_broken)
        return drop_sink_locked();
    // Never a blocking write here: the event loop must go on serving
    // signals while a reader stalls. A sink that polls writable takes a
    // PIPE_BUF-sized write without blocking (a pipe has a free page then).
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (m_written < m_line.size()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd sink { m_fd, POLLOUT, 0 };
        int ready = ::poll(&sink, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return; // not now; the next round (or the vCPU's next line) writes it
        if (sink.revents & (POLLERR | POLLNVAL))
            return drop_sink_locked();
        std::size_t chunk = std::min<std::size_t>(m_line.size() - m_written, PIPE_BUF);
        ssize_t n = ::write(m_fd, m_line.data() + m_written, chunk);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return drop_sink_locked();
        m_written += static_cast<std::size_t>(n);
    }
}

void Console::drop_sink_locked()
{
    m_sink_broken = true;
    m_written = m_line.size();
}

} // namespace qtbox::vmm
