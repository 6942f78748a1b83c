// A minimal epoll loop: one thread, handlers called with the ready events.
// Objects that own an fd implement EventHandler and register themselves;
// the loop never owns the fds. A handler may be destroyed only between two
// calls to wait() (the proxy defers destruction to the end of a batch), so
// that an event already fetched for it never reaches freed memory.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>

#include <chrono>
#include <cstdint>
#include <sys/epoll.h>

namespace qtbox::net {

using Clock = std::chrono::steady_clock;

class EventHandler {
public:
    virtual void on_event(std::uint32_t events) = 0;

protected:
    ~EventHandler() = default;
};

class EventLoop {
public:
    // Events fetched per epoll_wait call.
    static constexpr int BATCH = 256;

    static ErrorOr<EventLoop> create();

    ErrorOr<void> add(int fd, std::uint32_t events, EventHandler* handler);
    ErrorOr<void> modify(int fd, std::uint32_t events, EventHandler* handler);
    // Closing an fd removes it too; this is for fds that stay open.
    void remove(int fd);
    // Waits up to timeout_ms (-1: no limit), dispatches what is ready and
    // returns how many events it handled. EINTR counts as zero events.
    ErrorOr<int> wait(int timeout_ms);

private:
    explicit EventLoop(UniqueFd fd) : m_fd(std::move(fd)) { }
    UniqueFd m_fd;
};

} // namespace qtbox::net
