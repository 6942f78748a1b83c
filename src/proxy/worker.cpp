#include <qtbox/base/event.hpp>
#include <qtbox/net/socket.hpp>

#include "impl.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace qtbox::proxy {

ConnectionClosed unserved(std::uint64_t id, Route const& route, std::string peer, CloseReason reason)
{
    return ConnectionClosed {
        .id = id,
        .rule = route.name,
        .peer = std::move(peer),
        .target = route.target.text,
        .address = {},
        .up = 0,
        .down = 0,
        .milliseconds = 0,
        .reason = reason,
        .detail = {},
    };
}

void Proxy::Impl::Worker::main()
{
    m_core.worker_started();
    auto next_sweep = Clock::now() + std::chrono::milliseconds(SWEEP_INTERVAL_MS);
    while (!m_stopping) {
        int timeout = -1;
        if (!m_connections.empty() || m_resolver.busy() || m_paused) {
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_sweep - Clock::now()).count();
            timeout = static_cast<int>(std::clamp<long>(wait, 0, SWEEP_INTERVAL_MS));
        }
        auto waited = m_loop.wait(timeout);
        if (waited.is_error()) {
            m_core.worker_failed(waited.release_error());
            break;
        }
        auto now = Clock::now();
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + std::chrono::milliseconds(SWEEP_INTERVAL_MS);
        }
        // Only now, with no event of this batch left to reach them, may
        // connections and registrations go (a listener's fd with its last
        // registration); then the new listener set counts as taken.
        m_retired_connections.clear();
        m_retired_registrations.clear();
        m_resolver.collect_garbage();
        if (m_taken_generation) {
            m_core.acknowledge(m_index, *m_taken_generation);
            m_taken_generation.reset();
        }
    }
    close_everything();
    m_core.acknowledge(m_index, TAKEN_ALL);
}

void Proxy::Impl::Worker::on_event(std::uint32_t)
{
    char commands[16];
    ssize_t n;
    while ((n = ::read(m_wake_read.get(), commands, sizeof(commands))) > 0) {
        for (ssize_t i = 0; i < n; ++i) {
            if (commands[i] == COMMAND_STOP)
                m_stopping = true;
            else if (commands[i] == COMMAND_SYNC)
                sync();
            else if (commands[i] == COMMAND_ADOPT)
                take_inbox();
        }
    }
}

void Proxy::Impl::Worker::sync()
{
    auto published = m_core.published();
    m_limits = published.limits;
    std::map<Listener*, std::shared_ptr<Listener>> wanted;
    for (auto& listener : published.listeners)
        wanted.emplace(listener.get(), listener);
    for (auto it = m_registrations.begin(); it != m_registrations.end();) {
        if (wanted.contains(it->first)) {
            ++it;
            continue;
        }
        if (!m_paused)
            m_loop.remove(it->first->fd());
        m_retired_registrations.push_back(std::move(it->second));
        it = m_registrations.erase(it);
    }
    for (auto& [raw, listener] : wanted) {
        if (m_registrations.contains(raw))
            continue;
        auto registration = std::make_unique<Registration>(*this, listener);
        if (!m_paused)
            watch(*registration);
        m_registrations.emplace(raw, std::move(registration));
    }
    m_taken_generation = published.generation;
}

void Proxy::Impl::Worker::watch(Registration& registration)
{
    // EPOLLEXCLUSIVE: a connection wakes one waiting worker, not all.
    auto added = m_loop.add(registration.listener->fd(), EPOLLIN | EPOLLEXCLUSIVE, &registration);
    if (added.is_error())
        m_core.notify(Severity::Warning,
            fmt::format("worker {}: cannot wait on {}: {}", m_index, registration.listener->spec().key, added.error().message()));
}

void Proxy::Impl::Worker::pause()
{
    // EPOLLEXCLUSIVE registrations cannot be modified, only removed.
    for (auto& [raw, registration] : m_registrations)
        m_loop.remove(raw->fd());
    m_paused = true;
}

void Proxy::Impl::Worker::sweep(Clock::time_point now)
{
    m_resolver.tick(now);
    std::vector<ProxyConnection*> open;
    open.reserve(m_connections.size());
    for (auto& [id, connection] : m_connections)
        open.push_back(connection.get());
    for (auto* connection : open)
        connection->check_timeouts(now);
    if (m_paused && m_core.connection_count() < m_limits.max_connections) {
        m_paused = false;
        for (auto& [raw, registration] : m_registrations)
            watch(*registration);
    }
}

void Proxy::Impl::Worker::take_inbox()
{
    std::vector<Handoff> arrived;
    {
        std::lock_guard lock(m_inbox_mutex);
        arrived.swap(m_inbox);
    }
    for (auto& handoff : arrived)
        serve(std::move(handoff));
}

void Proxy::Impl::Worker::serve(Handoff handoff)
{
    auto connection = std::make_unique<ProxyConnection>(*this, handoff.id, std::move(handoff.route), std::move(handoff.client),
        handoff.tcp, std::move(handoff.peer));
    auto* raw = connection.get();
    m_connections.emplace(handoff.id, std::move(connection));
    raw->start();
}

void Proxy::Impl::Worker::drop_inbox()
{
    std::vector<Handoff> late;
    {
        std::lock_guard lock(m_inbox_mutex);
        late.swap(m_inbox);
    }
    for (auto& handoff : late) {
        m_core.report(unserved(handoff.id, *handoff.route, std::move(handoff.peer), CloseReason::Shutdown));
        handoff.route->counter->active.fetch_sub(1, std::memory_order_relaxed);
        m_load.fetch_sub(1, std::memory_order_relaxed);
        m_core.connection_closed();
    }
}

void Proxy::Impl::Worker::close_everything()
{
    take_inbox();
    std::vector<ProxyConnection*> open;
    for (auto& [id, connection] : m_connections)
        open.push_back(connection.get());
    for (auto* connection : open)
        connection->finish(CloseReason::Shutdown, {}, false);
    m_retired_connections.clear();
    m_registrations.clear();
    m_retired_registrations.clear();
    m_resolver.collect_garbage();
}

std::optional<Pipe> Proxy::Impl::Worker::take_pipe()
{
    if (!m_pipe_pool.empty()) {
        auto pipe = std::move(m_pipe_pool.back());
        m_pipe_pool.pop_back();
        return pipe;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return std::nullopt;
    Pipe pipe { UniqueFd(fds[0]), UniqueFd(fds[1]), 0 };
    // Larger pipes move more per splice: about a quarter less CPU per byte
    // than the default 64 KiB. Best effort: past the per-user pipe quota
    // (fs.pipe-user-pages-soft) the kernel refuses, and the default stays.
    ::fcntl(fds[0], F_SETPIPE_SZ, static_cast<int>(PIPE_SIZE));
    int size = ::fcntl(fds[0], F_GETPIPE_SZ);
    if (size <= 0)
        return std::nullopt;
    pipe.capacity = static_cast<std::size_t>(size);
    return pipe;
}

void Proxy::Impl::Worker::give_pipe(Pipe pipe)
{
    if (m_pipe_pool.size() < m_pipe_pool_limit)
        m_pipe_pool.push_back(std::move(pipe));
}

void Proxy::Impl::Worker::retire(ProxyConnection& connection)
{
    auto it = m_connections.find(connection.id());
    if (it == m_connections.end())
        return;
    m_retired_connections.push_back(std::move(it->second));
    m_connections.erase(it);
    m_load.fetch_sub(1, std::memory_order_relaxed);
    m_core.connection_closed();
}

namespace {

std::string describe_peer(ListenerSpec::Kind kind, int fd, sockaddr_storage const& address, socklen_t length)
{
    if (kind == ListenerSpec::Kind::Unix) {
        ucred credentials {};
        socklen_t size = sizeof(credentials);
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0)
            return fmt::format("unix:pid={},uid={}", credentials.pid, credentials.uid);
        return "unix";
    }
    return net::SocketAddress::from_raw(reinterpret_cast<sockaddr const*>(&address), length).to_string();
}

} // namespace

void Proxy::Impl::Worker::accept_from(Listener& listener)
{
    auto const& spec = listener.spec();
    for (int i = 0; i < MAX_ACCEPTS_PER_EVENT; ++i) {
        sockaddr_storage address {};
        socklen_t length = sizeof(address);
        int fd = ::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&address), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN)
                return;
            // Out of descriptors or memory: the listener would stay readable
            // and spin the loop. Pause this worker's listeners until its
            // next sweep.
            if (!m_accept_warned)
                m_core.notify(Severity::Warning, fmt::format("accept on {}: {}; pausing new connections", spec.key, std::strerror(errno)));
            m_accept_warned = true;
            pause();
            return;
        }
        UniqueFd client(fd);
        m_accept_warned = false;
        auto id = m_core.next_id();
        auto route = listener.route();
        auto peer = describe_peer(spec.kind, fd, address, length);
        auto refuse = [&](CloseReason reason) { m_core.report(unserved(id, *route, peer, reason)); };
        if (!m_core.try_open_connection(m_limits.max_connections)) {
            refuse(CloseReason::Limit);
            continue;
        }
        if (route->max_connections && !try_acquire(route->counter->active, *route->max_connections)) {
            m_core.connection_closed();
            refuse(CloseReason::RuleLimit);
            continue;
        }
        if (!route->max_connections)
            route->counter->active.fetch_add(1, std::memory_order_relaxed);
        bool tcp = spec.kind == ListenerSpec::Kind::Tcp;
        if (tcp) {
            int on = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        }
        // Whichever worker woke up, the connection goes to the one with the
        // fewest (this one on a tie): a burst spreads over the workers.
        Handoff handoff { std::move(client), std::move(route), tcp, std::move(peer), id };
        auto& target = m_core.least_loaded(*this);
        target.count_in();
        if (&target == this)
            serve(std::move(handoff));
        else
            target.adopt(std::move(handoff));
    }
}

} // namespace qtbox::proxy
