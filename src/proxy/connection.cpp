#include "connection.hpp"

#include <qtbox/vsock/address.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qtbox::proxy {

namespace {

using net::finish_connect;
using net::start_connect;
using vsock::MAX_HANDSHAKE_LINE;

constexpr std::uint32_t INPUT_EVENTS = EPOLLIN | EPOLLRDHUP | EPOLLET;

} // namespace

ProxyConnection::ProxyConnection(ConnectionOwner& owner, std::uint64_t id, std::shared_ptr<Route const> route, UniqueFd client, bool client_tcp, std::string peer)
    : m_owner(owner), m_id(id), m_route(std::move(route)), m_client(*this, true), m_target(*this, false), m_peer(std::move(peer))
{
    m_client.fd = std::move(client);
    m_client.tcp = client_tcp;
    m_up.from = &m_client;
    m_up.to = &m_target;
    m_down.from = &m_target;
    m_down.to = &m_client;
    m_started = Clock::now();
    m_last_activity = m_started;
    m_connect_deadline = m_started + std::chrono::milliseconds(owner.limits().connect_timeout_ms);
}

void ProxyConnection::start()
{
    // A fresh socket has room to write; EPOLLOUT comes when it is full.
    m_client.writable = true;
    if (m_owner.loop().add(m_client.fd.get(), INPUT_EVENTS, &m_client).is_error()) {
        finish(CloseReason::ClientError, "epoll_ctl failed", true);
        return;
    }
    auto const& target = m_route->target;
    switch (target.kind) {
    case TargetKind::Tcp: {
        auto now = m_owner.resolver().lookup_now(target.host, target.family, Clock::now());
        if (now) {
            on_resolved(std::move(*now));
            return;
        }
        m_phase = Phase::Resolving;
        m_lookup = m_owner.resolver().start(target.host, target.family,
            [this](ErrorOr<Addresses> result) {
                m_lookup.reset();
                on_resolved(std::move(result));
            },
            Clock::now());
        return;
    }
    case TargetKind::Fixed:
        m_candidates.push_back({ target.address, false });
        break;
    case TargetKind::Enclave: {
        auto path = SocketAddress::unix_path(target.enclave_socket);
        if (path.is_error()) {
            finish(CloseReason::ConnectFailed, path.error().message(), true);
            return;
        }
        m_candidates.push_back({ path.release_value(), true });
        if (target.vsock_cid)
            m_candidates.push_back({ SocketAddress::vsock(*target.vsock_cid, target.vsock_port), false });
        break;
    }
    }
    connect_next();
}

void ProxyConnection::on_resolved(ErrorOr<Addresses> result)
{
    if (m_phase == Phase::Closed)
        return;
    if (result.is_error()) {
        finish(CloseReason::ResolveFailed, result.error().message(), true);
        return;
    }
    for (auto const& address : result.value())
        m_candidates.push_back({ SocketAddress::ip(address, m_route->target.port), false });
    connect_next();
}

// Tries the remaining candidates in order; each gets an equal share of
// what is left of the connect timeout.
void ProxyConnection::connect_next()
{
    while (m_next_candidate < m_candidates.size()) {
        auto const& candidate = m_candidates[m_next_candidate++];
        auto now = Clock::now();
        auto remaining = static_cast<long>(m_candidates.size() - m_next_candidate + 1);
        m_attempt_deadline = now + (m_connect_deadline > now ? (m_connect_deadline - now) / remaining : Clock::duration::zero());
        m_address = candidate.address.to_string();
        m_handshake = candidate.handshake;
        m_target.fd.reset();
        m_target.readable = m_target.writable = m_target.hung_up = false;
        auto pending = start_connect(candidate.address);
        if (pending.is_error()) {
            m_last_error = pending.error().message();
            continue;
        }
        m_target.fd = std::move(pending.value().fd);
        m_target.tcp = candidate.address.family() == AF_INET || candidate.address.family() == AF_INET6;
        // EPOLLOUT tells when a non-blocking connect is done.
        m_target.out_watched = true;
        if (m_owner.loop().add(m_target.fd.get(), INPUT_EVENTS | EPOLLOUT, &m_target).is_error()) {
            m_last_error = "epoll_ctl failed";
            continue;
        }
        if (pending.value().in_progress) {
            m_phase = Phase::Connecting;
            return;
        }
        on_connected();
        return;
    }
    m_target.fd.reset();
    finish(CloseReason::ConnectFailed, m_last_error.empty() ? std::string("no address to connect to") : m_last_error, true);
}

void ProxyConnection::on_connected()
{
    if (m_target.tcp) {
        int on = 1;
        ::setsockopt(m_target.fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }
    m_target.writable = true;
    if (!m_owner.loop().modify(m_target.fd.get(), INPUT_EVENTS, &m_target).is_error())
        m_target.out_watched = false;
    if (!m_handshake) {
        open({});
        return;
    }
    m_phase = Phase::Handshake;
    m_request = vsock::connect_request(m_route->target.vsock_port);
    m_request_sent = 0;
    m_reply.clear();
    handshake();
}

void ProxyConnection::handshake()
{
    if (m_request_sent < m_request.size() && m_target.writable) {
        ssize_t n = ::send(m_target.fd.get(), m_request.data() + m_request_sent, m_request.size() - m_request_sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            finish(CloseReason::HandshakeFailed, Error::from_errno("send CONNECT").message(), true);
            return;
        }
        if (n < 0 && errno == EAGAIN)
            blocked(m_target);
        if (n > 0)
            m_request_sent += static_cast<std::size_t>(n);
    }
    if (m_request_sent < m_request.size() || !m_target.readable)
        return;
    char buffer[MAX_HANDSHAKE_LINE];
    ssize_t n = ::recv(m_target.fd.get(), buffer, MAX_HANDSHAKE_LINE - m_reply.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        m_target.readable = errno != EAGAIN;
        return;
    }
    if (n <= 0) {
        finish(CloseReason::HandshakeFailed,
            n == 0 ? std::string("the enclave closed the connection before answering CONNECT") : Error::from_errno("recv").message(),
            true);
        return;
    }
    m_reply.append(buffer, static_cast<std::size_t>(n));
    auto line = vsock::parse_connect_reply(m_reply);
    if (line.is_error()) {
        auto shown = m_reply.substr(0, m_reply.find('\n'));
        finish(CloseReason::HandshakeFailed, fmt::format("the enclave answered '{}' to CONNECT {}: {}", shown, m_route->target.vsock_port, line.error().message()), true);
        return;
    }
    if (!line.value())
        return;
    open(std::string_view(m_reply).substr(line.value()->length));
}

// Both ends are connected: give each direction a pipe (or a buffer)
// and start moving bytes. `early` is what the target sent right after
// its handshake line; it goes to the client first.
void ProxyConnection::open(std::string_view early)
{
    m_phase = Phase::Open;
    m_last_activity = Clock::now();
    if (!early.empty()) {
        // At most MAX_HANDSHAKE_LINE bytes: they fit the small buffer.
        m_down.buffer = std::make_unique<std::uint8_t[]>(m_down.buffer_size);
        std::memcpy(m_down.buffer.get(), early.data(), early.size());
        m_down.tail = early.size();
        m_down.pending = early.size();
    }
    if (pump(m_up))
        pump(m_down);
}

void ProxyConnection::on_side_event(Side& side, std::uint32_t events)
{
    if (m_phase == Phase::Closed)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        side.readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        side.hung_up = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        side.writable = true;
    if (&side == &m_target && m_phase == Phase::Connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        auto result = finish_connect(m_target.fd.get());
        if (result.is_error()) {
            m_last_error = fmt::format("{}: {}", m_address, result.error().message());
            connect_next();
            return;
        }
        // An event left over from an earlier candidate's fd can reach
        // this Side; only a socket with a peer has really connected.
        sockaddr_storage peer {};
        socklen_t length = sizeof(peer);
        if (::getpeername(m_target.fd.get(), reinterpret_cast<sockaddr*>(&peer), &length) < 0)
            return;
        on_connected();
        return;
    }
    if (m_phase == Phase::Handshake) {
        if (&side == &m_target)
            handshake();
        return;
    }
    if (m_phase != Phase::Open)
        return;
    if (pump(m_up))
        pump(m_down);
}

void ProxyConnection::blocked(Side& side)
{
    side.writable = false;
    if (side.out_watched)
        return;
    // If room appeared since the write, epoll reports it at once. (Should
    // the change fail, ENOMEM, the side waits for the idle timeout.)
    if (!m_owner.loop().modify(side.fd.get(), INPUT_EVENTS | EPOLLOUT, &side).is_error())
        side.out_watched = true;
}

// Moves what it can in one direction. Returns false once the
// connection has closed.
bool ProxyConnection::pump(Flow& flow)
{
    for (;;) {
        bool progress = false;
        if (flow.pending > 0 && flow.to->writable) {
            ssize_t n;
            if (flow.pipe)
                n = ::splice(flow.pipe->read.get(), nullptr, flow.to->fd.get(), nullptr, flow.pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            else
                n = ::send(flow.to->fd.get(), flow.buffer.get() + flow.head, flow.tail - flow.head, MSG_NOSIGNAL);
            if (n > 0) {
                flow.pending -= static_cast<std::size_t>(n);
                flow.bytes += static_cast<std::uint64_t>(n);
                if (!flow.pipe) {
                    flow.head += static_cast<std::size_t>(n);
                    if (flow.head == flow.tail)
                        flow.head = flow.tail = 0;
                }
                m_last_activity = Clock::now();
                progress = true;
            } else if (n < 0 && errno == EAGAIN) {
                blocked(*flow.to);
            } else if (!(n < 0 && errno == EINTR)) {
                fail_side(*flow.to, "send");
                return false;
            }
        }
        if (flow.pending == 0 && !flow.pipe) {
            // An empty buffer is given back (idle connections hold no
            // user memory); bulk traffic moves on to splice here.
            flow.buffer.reset();
            flow.head = flow.tail = 0;
            if (flow.bulk) {
                flow.bulk = false;
                flow.pipe = m_owner.take_pipe();
                if (!flow.pipe)
                    flow.buffer_size = Proxy::COPY_BUFFER_SIZE;
            }
        }
        if (flow.eof && flow.pending == 0 && !flow.shut) {
            // Everything before the EOF is delivered: pass the EOF on.
            ::shutdown(flow.to->fd.get(), SHUT_WR);
            flow.shut = true;
            if (m_up.shut && m_down.shut) {
                finish(CloseReason::Done, {}, false);
                return false;
            }
        }
        if (!flow.eof && flow.from->readable && flow.pending < flow.capacity()) {
            ssize_t n;
            std::size_t wanted = flow.capacity() - flow.pending;
            if (flow.pipe) {
                n = ::splice(flow.from->fd.get(), nullptr, flow.pipe->write.get(), nullptr, wanted, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            } else {
                if (!flow.buffer)
                    flow.buffer = std::make_unique<std::uint8_t[]>(flow.buffer_size);
                if (flow.tail == flow.buffer_size) {
                    std::memmove(flow.buffer.get(), flow.buffer.get() + flow.head, flow.tail - flow.head);
                    flow.tail -= flow.head;
                    flow.head = 0;
                }
                wanted = flow.buffer_size - flow.tail;
                n = ::recv(flow.from->fd.get(), flow.buffer.get() + flow.tail, wanted, 0);
                if (n > 0) {
                    flow.tail += static_cast<std::size_t>(n);
                    if (static_cast<std::size_t>(n) == flow.buffer_size)
                        flow.bulk = true;
                    // A short read from a stream socket means it is
                    // drained; new data brings a new edge. Not after
                    // RDHUP: the EOF that follows brings none.
                    if (static_cast<std::size_t>(n) < wanted && !flow.from->hung_up)
                        flow.from->readable = false;
                }
            }
            if (n > 0) {
                flow.pending += static_cast<std::size_t>(n);
                m_last_activity = Clock::now();
                progress = true;
            } else if (n == 0) {
                flow.eof = true;
                progress = true;
            } else if (errno == EAGAIN) {
                // With bytes in the pipe, EAGAIN may mean the pipe ran out
                // of slots rather than the socket out of data: keep the
                // side readable and try again after the next drain.
                if (flow.pending == 0 || !flow.pipe)
                    flow.from->readable = false;
            } else if (errno == EINTR) {
                progress = true;
            } else {
                fail_side(*flow.from, "receive");
                return false;
            }
        }
        if (!progress)
            return true;
    }
}

void ProxyConnection::fail_side(Side& side, std::string_view what)
{
    auto why = Error::from_errno(what).message();
    finish(side.is_client ? CloseReason::ClientError : CloseReason::TargetError, why, true);
}

// Called every sweep; may close the connection.
void ProxyConnection::check_timeouts(Clock::time_point now)
{
    if (m_phase == Phase::Open) {
        auto idle = m_owner.limits().idle_timeout_ms;
        if (idle > 0 && now - m_last_activity >= std::chrono::milliseconds(idle))
            finish(CloseReason::IdleTimeout, {}, false);
        return;
    }
    if (now >= m_connect_deadline) {
        finish(CloseReason::ConnectTimeout, m_last_error, true);
        return;
    }
    if (m_phase == Phase::Connecting && now >= m_attempt_deadline) {
        m_last_error = fmt::format("{}: timed out", m_address);
        connect_next();
    }
}

void ProxyConnection::finish(CloseReason reason, std::string_view detail, bool abort)
{
    if (m_phase == Phase::Closed)
        return;
    m_phase = Phase::Closed;
    if (m_lookup)
        m_owner.resolver().cancel(*m_lookup);
    for (auto* side : { &m_client, &m_target }) {
        if (abort && side->tcp && side->fd) {
            // A reset, not a FIN: the peer must not take a cut-off
            // stream for a complete one.
            linger hard { 1, 0 };
            ::setsockopt(side->fd.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
        }
        side->fd.reset();
    }
    for (auto* flow : { &m_up, &m_down }) {
        if (flow->pipe && flow->pending == 0)
            m_owner.give_pipe(std::move(*flow->pipe));
        flow->pipe.reset();
        flow->buffer.reset();
    }
    m_route->counter->active.fetch_sub(1, std::memory_order_relaxed);
    auto milliseconds = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - m_started).count();
    m_owner.report(ConnectionClosed {
        .id = m_id,
        .rule = m_route->name,
        .peer = m_peer,
        .target = m_route->target.text,
        .address = m_address,
        .up = m_up.bytes,
        .down = m_down.bytes,
        .milliseconds = milliseconds,
        .reason = reason,
        .detail = std::string(detail),
    });
    m_owner.retire(*this);
}

} // namespace qtbox::proxy
