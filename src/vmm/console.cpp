#include <qtbox/vmm/console.hpp>

#include <cerrno>
#include <unistd.h>

namespace qtbox::vmm {

void Console::write_byte(std::uint8_t byte)
{
    std::lock_guard lock(m_mutex);
    m_line.push_back(static_cast<char>(byte));
    if (byte == '\n' || m_line.size() >= LINE_LIMIT)
        end_line_locked();
}

void Console::try_flush()
{
    std::unique_lock lock(m_mutex, std::try_to_lock);
    if (lock.owns_lock())
        write_out_locked();
}

void Console::flush()
{
    std::lock_guard lock(m_mutex);
    write_out_locked();
}

std::optional<std::string> Console::panic_line() const
{
    std::lock_guard lock(m_mutex);
    return m_panic;
}

void Console::end_line_locked()
{
    write_out_locked();
    if (!m_panic) {
        auto at = m_line.find(PANIC_BANNER);
        if (at != std::string::npos) {
            std::string line = m_line.substr(at);
            while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
                line.pop_back();
            m_panic = std::move(line);
        }
    }
    m_line.clear();
    m_written = 0;
}

void Console::write_out_locked()
{
    if (m_fd < 0 || m_sink_broken) {
        m_written = m_line.size();
        return;
    }
    while (m_written < m_line.size()) {
        ssize_t n = ::write(m_fd, m_line.data() + m_written, m_line.size() - m_written);
        if (n < 0 && errno == EINTR && !m_abandoned.load())
            continue;
        if (n <= 0) {
            // A closed pipe, a full disk, or a stop while a reader stalls:
            // drop the console from here on (the banner scan goes on).
            m_sink_broken = true;
            m_written = m_line.size();
            return;
        }
        m_written += static_cast<std::size_t>(n);
    }
}

} // namespace qtbox::vmm
