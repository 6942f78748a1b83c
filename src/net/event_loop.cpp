#include <qtbox/net/event_loop.hpp>

#include <cerrno>
#include <unistd.h>

namespace qtbox::net {

ErrorOr<EventLoop> EventLoop::create()
{
    UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
    if (!fd)
        return Error::from_errno("epoll_create1");
    return EventLoop(std::move(fd));
}

ErrorOr<void> EventLoop::add(int fd, std::uint32_t events, EventHandler* handler)
{
    epoll_event event {};
    event.events = events;
    event.data.ptr = handler;
    if (::epoll_ctl(m_fd.get(), EPOLL_CTL_ADD, fd, &event) < 0)
        return Error::from_errno("epoll_ctl add");
    return {};
}

ErrorOr<void> EventLoop::modify(int fd, std::uint32_t events, EventHandler* handler)
{
    epoll_event event {};
    event.events = events;
    event.data.ptr = handler;
    if (::epoll_ctl(m_fd.get(), EPOLL_CTL_MOD, fd, &event) < 0)
        return Error::from_errno("epoll_ctl modify");
    return {};
}

void EventLoop::remove(int fd)
{
    ::epoll_ctl(m_fd.get(), EPOLL_CTL_DEL, fd, nullptr);
}

ErrorOr<int> EventLoop::wait(int timeout_ms)
{
    epoll_event events[BATCH];
    int count = ::epoll_wait(m_fd.get(), events, BATCH, timeout_ms);
    if (count < 0) {
        if (errno == EINTR)
            return 0;
        return Error::from_errno("epoll_wait");
    }
    for (int i = 0; i < count; ++i)
        static_cast<EventHandler*>(events[i].data.ptr)->on_event(events[i].events);
    return count;
}

} // namespace qtbox::net
