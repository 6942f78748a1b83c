#include <qtbox/base/log.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/vsock/address.hpp>
#include <qtbox/vsock/proxy.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <map>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>

namespace qtbox::vsock {

namespace {

enum class TargetKind {
    // A rule's host:port, resolved per connection.
    Tcp,
    // A fixed socket address (enclave mode: CID 3, or <vsock-dir>/3_<port>).
    Fixed,
    // An enclave's vsock.sock with the CONNECT handshake, then AF_VSOCK.
    Enclave,
};

struct Target {
    TargetKind kind { TargetKind::Tcp };
    std::string host;
    std::uint16_t port { 0 };
    Family family { Family::Any };
    SocketAddress address;
    std::string enclave_socket;
    std::optional<std::uint32_t> vsock_cid;
    std::uint32_t vsock_port { 0 };
    // For the log line.
    std::string text;
};

struct Counter {
    std::size_t active { 0 };
};

struct Route {
    std::string name;
    Target target;
    std::optional<std::uint32_t> max_connections;
    std::shared_ptr<Counter> counter;
};

struct ListenerSpec {
    std::string key;
    enum class Kind { Unix, Vsock, Tcp } kind { Kind::Tcp };
    std::string path;
    std::uint32_t vsock_port { 0 };
    SocketAddress address;
    std::shared_ptr<Route const> route;
};

struct Candidate {
    SocketAddress address;
    bool handshake { false };
};

// A log field value: quoted, with quotes, backslashes and bytes outside
// printable ASCII replaced, so that a peer's text can never forge a field
// or a line.
std::string quoted(std::string_view text)
{
    std::string result = "\"";
    for (char c : text.substr(0, 200)) {
        auto byte = static_cast<unsigned char>(c);
        result += (c == '"' || c == '\\' || byte < 0x20 || byte >= 0x7F) ? '?' : c;
    }
    return result + "\"";
}

bool set_nonblocking(int fd)
{
    int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) >= 0;
}

} // namespace

class Proxy::Impl {
public:
    class Listener;
    class Connection;

    struct Pipe {
        UniqueFd read;
        UniqueFd write;
        std::size_t capacity { 0 };
    };

    Impl(ProxyOptions options, EventLoop loop)
        : m_options(std::move(options)), m_loop(std::move(loop)), m_resolver(m_loop, m_options.resolver)
    {
    }
    ~Impl();

    ErrorOr<void> setup(ProxyConfig config);
    ErrorOr<void> reconfigure(ProxyConfig config);
    ErrorOr<void> run(ConfigLoader const& reload);
    void send_command(char command);

    static constexpr char COMMAND_STOP = 'S';
    static constexpr char COMMAND_RELOAD = 'R';

    std::size_t connection_count() const { return m_connections.size(); }
    std::size_t listener_count() const { return m_listeners.size(); }
    std::uint32_t max_connections() const { return m_limits.max_connections; }

    void accept_from(Listener& listener);
    void retire(Connection& connection);
    std::optional<Pipe> take_pipe();
    void give_pipe(Pipe pipe);

    EventLoop& loop() { return m_loop; }
    Resolver& resolver() { return m_resolver; }
    ProxyLimits const& limits() const { return m_limits; }

private:
    class Wakeup;

    ErrorOr<std::vector<ListenerSpec>> build_specs(ProxyConfig const& config);
    ErrorOr<std::unique_ptr<Listener>> open_listener(ListenerSpec const& spec);
    void clamp_limits(ProxyLimits& limits);
    void sweep(Clock::time_point now);
    void reload(ConfigLoader const& loader);
    void close_everything();
    void on_signal();
    void on_wakeup();

    ProxyOptions m_options;
    EventLoop m_loop;
    Resolver m_resolver;
    ProxyLimits m_limits;
    bool m_vsock_available { false };
    std::size_t m_fd_limit { 1024 };
    std::map<std::string, std::unique_ptr<Listener>> m_listeners;
    std::vector<std::unique_ptr<Listener>> m_retired_listeners;
    std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> m_connections;
    std::vector<std::unique_ptr<Connection>> m_retired_connections;
    std::vector<Pipe> m_pipe_pool;
    std::uint64_t m_next_id { 1 };
    bool m_stopping { false };
    bool m_listeners_paused { false };
    // One warning per episode of failing accepts, not one per retry.
    bool m_accept_warned { false };
    UniqueFd m_signal_fd;
    // stop() and request_reload() come from other threads through a pipe.
    UniqueFd m_command_read;
    UniqueFd m_command_write;
    std::unique_ptr<Wakeup> m_signal_handler;
    std::unique_ptr<Wakeup> m_wakeup_handler;
    ConfigLoader const* m_loader { nullptr };
};

class Proxy::Impl::Wakeup final : public EventHandler {
public:
    Wakeup(Impl& impl, bool signals) : m_impl(impl), m_signals(signals) { }
    void on_event(std::uint32_t) override
    {
        if (m_signals)
            m_impl.on_signal();
        else
            m_impl.on_wakeup();
    }

private:
    Impl& m_impl;
    bool m_signals;
};

class Proxy::Impl::Listener final : public EventHandler {
public:
    Listener(Impl& impl, ListenerSpec spec, UniqueFd fd, struct stat identity)
        : m_impl(impl), m_spec(std::move(spec)), m_fd(std::move(fd)), m_identity(identity)
    {
    }
    ~Listener() { close(); }

    void on_event(std::uint32_t) override
    {
        if (m_fd)
            m_impl.accept_from(*this);
    }

    // Stops listening and removes the socket file (if it still is ours).
    void close()
    {
        if (!m_fd)
            return;
        m_fd.reset();
        if (m_spec.kind == ListenerSpec::Kind::Unix)
            remove_socket_file(m_spec.path, m_identity);
    }

    int fd() const { return m_fd.get(); }
    ListenerSpec const& spec() const { return m_spec; }
    std::shared_ptr<Route const> const& route() const { return m_spec.route; }
    void set_route(std::shared_ptr<Route const> route) { m_spec.route = std::move(route); }

private:
    Impl& m_impl;
    ListenerSpec m_spec;
    UniqueFd m_fd;
    struct stat m_identity;
};

class Proxy::Impl::Connection {
public:
    enum class Phase {
        Resolving,
        Connecting,
        Handshake,
        Open,
        Closed,
    };

    struct Side final : EventHandler {
        Side(Connection& connection, bool client) : owner(connection), is_client(client) { }
        void on_event(std::uint32_t events) override { owner.on_side_event(*this, events); }

        Connection& owner;
        bool is_client;
        UniqueFd fd;
        bool readable { false };
        bool writable { false };
        // The peer's EOF (or an error) is known: read until recv says 0.
        bool hung_up { false };
        bool tcp { false };
    };

    // One direction: bytes read from `from` wait in a buffer or a pipe
    // until `to` takes them.
    //
    // A direction starts in copy mode (recv/send through a small buffer):
    // for request/response traffic that is the fewest system calls, since a
    // short read proves the socket drained. A read that fills the whole
    // buffer shows bulk traffic; once the buffer is empty the direction
    // moves to a pipe and splice(2), which never copies the bytes through
    // user space. Without a pipe (descriptor limits) it stays in copy mode
    // with a larger buffer.
    struct Flow {
        Side* from { nullptr };
        Side* to { nullptr };
        std::optional<Pipe> pipe;
        std::unique_ptr<std::uint8_t[]> buffer;
        std::size_t buffer_size { SMALL_BUFFER_SIZE };
        std::size_t head { 0 };
        std::size_t tail { 0 };
        std::size_t pending { 0 };
        bool bulk { false };
        bool eof { false };
        bool shut { false };
        std::uint64_t bytes { 0 };

        std::size_t capacity() const { return pipe ? pipe->capacity : buffer_size; }
    };

    Connection(Impl& impl, std::uint64_t id, std::shared_ptr<Route const> route, UniqueFd client, bool client_tcp, std::string peer)
        : m_impl(impl), m_id(id), m_route(std::move(route)), m_client(*this, true), m_target(*this, false), m_peer(std::move(peer))
    {
        m_client.fd = std::move(client);
        m_client.tcp = client_tcp;
        m_up.from = &m_client;
        m_up.to = &m_target;
        m_down.from = &m_target;
        m_down.to = &m_client;
        m_started = Clock::now();
        m_last_activity = m_started;
        m_connect_deadline = m_started + std::chrono::milliseconds(impl.limits().connect_timeout_ms);
        ++m_route->counter->active;
    }

    std::uint64_t id() const { return m_id; }
    Phase phase() const { return m_phase; }

    void start()
    {
        if (m_impl.loop().add(m_client.fd.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &m_client).is_error()) {
            finish("client_error", "epoll_ctl failed", true);
            return;
        }
        auto const& target = m_route->target;
        switch (target.kind) {
        case TargetKind::Tcp: {
            auto now = m_impl.resolver().lookup_now(target.host, target.family, Clock::now());
            if (now) {
                on_resolved(std::move(*now));
                return;
            }
            m_phase = Phase::Resolving;
            m_lookup = m_impl.resolver().start(target.host, target.family,
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
                finish("connect_failed", path.error().message(), true);
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

    void on_resolved(ErrorOr<Addresses> result)
    {
        if (m_phase == Phase::Closed)
            return;
        if (result.is_error()) {
            finish("resolve_failed", result.error().message(), true);
            return;
        }
        for (auto const& address : result.value())
            m_candidates.push_back({ SocketAddress::ip(address, m_route->target.port), false });
        connect_next();
    }

    // Tries the remaining candidates in order; each gets an equal share of
    // what is left of the connect timeout.
    void connect_next()
    {
        while (m_next_candidate < m_candidates.size()) {
            auto const& candidate = m_candidates[m_next_candidate++];
            auto now = Clock::now();
            auto remaining = static_cast<long>(m_candidates.size() - m_next_candidate + 1);
            m_attempt_deadline = now + (m_connect_deadline > now ? (m_connect_deadline - now) / remaining : Clock::duration::zero());
            m_address = candidate.address.to_string();
            m_handshake = candidate.handshake;
            m_target.fd.reset();
            m_target.readable = m_target.writable = false;
            auto pending = start_connect(candidate.address);
            if (pending.is_error()) {
                m_last_error = pending.error().message();
                continue;
            }
            m_target.fd = std::move(pending.value().fd);
            m_target.tcp = candidate.address.family() == AF_INET || candidate.address.family() == AF_INET6;
            if (m_impl.loop().add(m_target.fd.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &m_target).is_error()) {
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
        finish("connect_failed", m_last_error.empty() ? std::string("no address to connect to") : m_last_error, true);
    }

    void on_connected()
    {
        if (m_target.tcp) {
            int on = 1;
            ::setsockopt(m_target.fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        }
        m_target.writable = true;
        if (!m_handshake) {
            open({});
            return;
        }
        m_phase = Phase::Handshake;
        m_request = connect_request(m_route->target.vsock_port);
        m_request_sent = 0;
        m_reply.clear();
        handshake();
    }

    void handshake()
    {
        if (m_request_sent < m_request.size() && m_target.writable) {
            ssize_t n = ::send(m_target.fd.get(), m_request.data() + m_request_sent, m_request.size() - m_request_sent, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                finish("handshake_failed", Error::from_errno("send CONNECT").message(), true);
                return;
            }
            if (n < 0 && errno == EAGAIN)
                m_target.writable = false;
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
            finish("handshake_failed", n == 0 ? std::string("the enclave closed the connection before answering CONNECT")
                                              : Error::from_errno("recv").message(), true);
            return;
        }
        m_reply.append(buffer, static_cast<std::size_t>(n));
        auto line = parse_connect_reply(m_reply);
        if (line.is_error()) {
            auto shown = m_reply.substr(0, m_reply.find('\n'));
            finish("handshake_failed", fmt::format("the enclave answered '{}' to CONNECT {}: {}", shown, m_route->target.vsock_port, line.error().message()), true);
            return;
        }
        if (!line.value())
            return;
        open(std::string_view(m_reply).substr(line.value()->length));
    }

    // Both ends are connected: give each direction a pipe (or a buffer)
    // and start moving bytes. `early` is what the target sent right after
    // its handshake line; it goes to the client first.
    void open(std::string_view early)
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

    void on_side_event(Side& side, std::uint32_t events)
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

    // Moves what it can in one direction. Returns false once the
    // connection has closed.
    bool pump(Flow& flow)
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
                    flow.to->writable = false;
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
                    flow.pipe = m_impl.take_pipe();
                    if (!flow.pipe)
                        flow.buffer_size = COPY_BUFFER_SIZE;
                }
            }
            if (flow.eof && flow.pending == 0 && !flow.shut) {
                // Everything before the EOF is delivered: pass the EOF on.
                ::shutdown(flow.to->fd.get(), SHUT_WR);
                flow.shut = true;
                if (m_up.shut && m_down.shut) {
                    finish("done", {}, false);
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

    void fail_side(Side& side, std::string_view what)
    {
        auto why = Error::from_errno(what).message();
        finish(side.is_client ? "client_error" : "target_error", why, true);
    }

    // Called every sweep; may close the connection.
    void check_timeouts(Clock::time_point now)
    {
        if (m_phase == Phase::Open) {
            auto idle = m_impl.limits().idle_timeout_ms;
            if (idle > 0 && now - m_last_activity >= std::chrono::milliseconds(idle))
                finish("idle_timeout", {}, false);
            return;
        }
        if (now >= m_connect_deadline) {
            finish("connect_timeout", m_last_error, true);
            return;
        }
        if (m_phase == Phase::Connecting && now >= m_attempt_deadline) {
            m_last_error = fmt::format("{}: timed out", m_address);
            connect_next();
        }
    }

    void finish(std::string_view reason, std::string_view detail, bool abort)
    {
        if (m_phase == Phase::Closed)
            return;
        m_phase = Phase::Closed;
        if (m_lookup)
            m_impl.resolver().cancel(*m_lookup);
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
                m_impl.give_pipe(std::move(*flow->pipe));
            flow->pipe.reset();
            flow->buffer.reset();
        }
        --m_route->counter->active;
        auto milliseconds = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - m_started).count();
        std::string address = m_address.empty() ? std::string() : fmt::format(" addr={}", m_address);
        std::string error = detail.empty() ? std::string() : fmt::format(" error={}", quoted(detail));
        log::info("conn={} rule={} peer={} target={}{} up={} down={} ms={} close={}{}", m_id, m_route->name, m_peer,
            m_route->target.text, address, m_up.bytes, m_down.bytes, milliseconds, reason, error);
        m_impl.retire(*this);
    }

private:
    Impl& m_impl;
    std::uint64_t m_id;
    std::shared_ptr<Route const> m_route;
    Side m_client;
    Side m_target;
    Flow m_up;
    Flow m_down;
    Phase m_phase { Phase::Resolving };
    std::string m_peer;
    std::string m_address;
    std::string m_last_error;
    std::vector<Candidate> m_candidates;
    std::size_t m_next_candidate { 0 };
    bool m_handshake { false };
    std::string m_request;
    std::size_t m_request_sent { 0 };
    std::string m_reply;
    std::optional<std::uint64_t> m_lookup;
    Clock::time_point m_started;
    Clock::time_point m_last_activity;
    Clock::time_point m_connect_deadline;
    Clock::time_point m_attempt_deadline;
};

Proxy::Impl::~Impl()
{
    close_everything();
}

void Proxy::Impl::close_everything()
{
    std::vector<Connection*> open;
    for (auto& [id, connection] : m_connections)
        open.push_back(connection.get());
    for (auto* connection : open)
        connection->finish("shutdown", {}, false);
    m_listeners.clear();
    m_retired_connections.clear();
    m_retired_listeners.clear();
    m_resolver.collect_garbage();
}

std::optional<Proxy::Impl::Pipe> Proxy::Impl::take_pipe()
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

void Proxy::Impl::give_pipe(Pipe pipe)
{
    if (m_pipe_pool.size() < PIPE_POOL_LIMIT)
        m_pipe_pool.push_back(std::move(pipe));
}

void Proxy::Impl::retire(Connection& connection)
{
    auto it = m_connections.find(connection.id());
    if (it == m_connections.end())
        return;
    m_retired_connections.push_back(std::move(it->second));
    m_connections.erase(it);
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
    return SocketAddress::from_raw(reinterpret_cast<sockaddr const*>(&address), length).to_string();
}

} // namespace

void Proxy::Impl::accept_from(Listener& listener)
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
            // and spin the loop. Pause every listener until the next sweep.
            if (!m_accept_warned)
                log::warn("accept on {}: {}; pausing new connections", spec.key, std::strerror(errno));
            m_accept_warned = true;
            for (auto& [key, each] : m_listeners)
                (void)m_loop.modify(each->fd(), 0, each.get());
            m_listeners_paused = true;
            return;
        }
        UniqueFd client(fd);
        m_accept_warned = false;
        auto id = m_next_id++;
        auto const& route = listener.route();
        auto peer = describe_peer(spec.kind, fd, address, length);
        auto refuse = [&](std::string_view reason) {
            log::info("conn={} rule={} peer={} target={} up=0 down=0 ms=0 close={}", id, route->name, peer, route->target.text, reason);
        };
        if (m_connections.size() >= m_limits.max_connections) {
            refuse("limit");
            continue;
        }
        if (route->max_connections && route->counter->active >= *route->max_connections) {
            refuse("rule_limit");
            continue;
        }
        bool tcp = spec.kind == ListenerSpec::Kind::Tcp;
        if (tcp) {
            int on = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        }
        auto connection = std::make_unique<Connection>(*this, id, route, std::move(client), tcp, std::move(peer));
        auto* raw = connection.get();
        m_connections.emplace(id, std::move(connection));
        raw->start();
    }
}

ErrorOr<std::vector<ListenerSpec>> Proxy::Impl::build_specs(ProxyConfig const& config)
{
    // A rule keeps its connection counter across reloads (by name), so a
    // per-rule limit still counts the connections opened before.
    std::map<std::string, std::shared_ptr<Counter>> counters;
    for (auto& [key, listener] : m_listeners)
        counters[listener->route()->name] = listener->route()->counter;
    auto counter_for = [&](std::string const& name) {
        auto& counter = counters[name];
        if (!counter)
            counter = std::make_shared<Counter>();
        return counter;
    };

    std::vector<ListenerSpec> specs;
    if (m_options.mode == ProxyMode::Enclave) {
        for (auto const& rule : config.outbound) {
            auto route = std::make_shared<Route>();
            route->name = fmt::format("tunnel:{}", rule.enclave_port);
            route->target.kind = TargetKind::Fixed;
            if (m_options.vsock_dir.empty())
                route->target.address = SocketAddress::vsock(PARENT_CID, rule.vsock_port);
            else
                route->target.address = TRY(SocketAddress::unix_path(listener_path(m_options.vsock_dir, rule.vsock_port)));
            route->target.text = route->target.address.to_string();
            route->max_connections = rule.max_connections;
            route->counter = counter_for(route->name);
            ListenerSpec spec;
            spec.kind = ListenerSpec::Kind::Tcp;
            spec.address = SocketAddress::ip(IpAddress::v4(127, 0, 0, 1), rule.enclave_port);
            spec.key = fmt::format("tcp:{}", spec.address.to_string());
            spec.route = route;
            specs.push_back(std::move(spec));
        }
        return specs;
    }

    for (auto const& rule : config.outbound) {
        auto route = std::make_shared<Route>();
        route->name = fmt::format("out:{}", rule.vsock_port);
        route->target.kind = TargetKind::Tcp;
        route->target.host = rule.host;
        route->target.port = rule.port;
        route->target.family = m_options.family;
        route->target.text = IpAddress::parse(rule.host) && IpAddress::parse(rule.host)->is_v6
            ? fmt::format("[{}]:{}", IpAddress::parse(rule.host)->to_string(), rule.port)
            : fmt::format("{}:{}", rule.host, rule.port);
        route->max_connections = rule.max_connections;
        route->counter = counter_for(route->name);
        ListenerSpec unix_spec;
        unix_spec.kind = ListenerSpec::Kind::Unix;
        unix_spec.path = listener_path(m_options.vsock_dir, rule.vsock_port);
        unix_spec.key = fmt::format("unix:{}", unix_spec.path);
        unix_spec.route = route;
        specs.push_back(std::move(unix_spec));
        if (m_vsock_available) {
            ListenerSpec vsock_spec;
            vsock_spec.kind = ListenerSpec::Kind::Vsock;
            vsock_spec.vsock_port = rule.vsock_port;
            vsock_spec.key = fmt::format("vsock:{}", rule.vsock_port);
            vsock_spec.route = route;
            specs.push_back(std::move(vsock_spec));
        }
    }
    for (auto const& rule : config.inbound) {
        auto route = std::make_shared<Route>();
        route->name = fmt::format("in:{}", rule.listen.to_string());
        route->target.kind = TargetKind::Enclave;
        route->target.vsock_port = rule.vsock_port;
        if (rule.enclave_id) {
            route->target.enclave_socket = enclave_socket_path(m_options.run_dir, *rule.enclave_id);
        } else {
            route->target.enclave_socket = enclave_socket_path_for_cid(m_options.run_dir, *rule.enclave_cid);
            if (m_vsock_available)
                route->target.vsock_cid = rule.enclave_cid;
        }
        route->target.text = rule.enclave_id ? fmt::format("enclave:{}:{}", *rule.enclave_id, rule.vsock_port)
                                             : fmt::format("enclave:cid-{}:{}", *rule.enclave_cid, rule.vsock_port);
        route->max_connections = rule.max_connections;
        route->counter = counter_for(route->name);
        ListenerSpec spec;
        spec.kind = ListenerSpec::Kind::Tcp;
        spec.address = rule.listen;
        spec.key = fmt::format("tcp:{}", rule.listen.to_string());
        spec.route = route;
        specs.push_back(std::move(spec));
    }
    return specs;
}

ErrorOr<std::unique_ptr<Proxy::Impl::Listener>> Proxy::Impl::open_listener(ListenerSpec const& spec)
{
    struct stat identity { };
    UniqueFd fd;
    switch (spec.kind) {
    case ListenerSpec::Kind::Unix:
        TRY(sys::mkdir_p(m_options.vsock_dir, 0750));
        fd = TRY(listen_hybrid(spec.path, LISTEN_BACKLOG, &identity));
        break;
    case ListenerSpec::Kind::Vsock:
        fd = TRY(listen_vsock(VMADDR_CID_ANY, spec.vsock_port, LISTEN_BACKLOG));
        break;
    case ListenerSpec::Kind::Tcp:
        fd = TRY(listen_tcp(spec.address, LISTEN_BACKLOG));
        break;
    }
    if (!set_nonblocking(fd.get()))
        return Error::from_errno("fcntl O_NONBLOCK");
    return std::make_unique<Listener>(*this, spec, std::move(fd), identity);
}

void Proxy::Impl::clamp_limits(ProxyLimits& limits)
{
    auto usable = m_fd_limit > RESERVED_FDS ? (m_fd_limit - RESERVED_FDS) / FDS_PER_CONNECTION : 1;
    usable = std::max<std::size_t>(usable, 1);
    if (limits.max_connections > usable) {
        log::warn("max_connections {} needs more file descriptors than RLIMIT_NOFILE {} allows; using {}",
            limits.max_connections, m_fd_limit, usable);
        limits.max_connections = static_cast<std::uint32_t>(usable);
    }
}

ErrorOr<void> Proxy::Impl::setup(ProxyConfig config)
{
    // Every connection needs up to six descriptors: use the hard limit.
    rlimit limit {};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        if (limit.rlim_cur < limit.rlim_max) {
            limit.rlim_cur = limit.rlim_max;
            ::setrlimit(RLIMIT_NOFILE, &limit);
            ::getrlimit(RLIMIT_NOFILE, &limit);
        }
        m_fd_limit = limit.rlim_cur == RLIM_INFINITY ? (1u << 20) : static_cast<std::size_t>(limit.rlim_cur);
    }
    // A peer that goes away mid-splice must give EPIPE, not kill us.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, nullptr);

    bool has_transport = local_cid().has_value();
    switch (m_options.af_vsock) {
    case AfVsockUse::Auto:
        m_vsock_available = has_transport;
        break;
    case AfVsockUse::On:
        if (!has_transport)
            return Error::from_string("AF_VSOCK: this host has no vsock transport (load vsock and a transport module, e.g. vmw_vsock_virtio_transport, or use --af-vsock off)", ENODEV);
        m_vsock_available = true;
        break;
    case AfVsockUse::Off:
        m_vsock_available = false;
        break;
    }
    if (m_options.mode == ProxyMode::Enclave && m_options.vsock_dir.empty() && !has_transport)
        return Error::from_string("AF_VSOCK: no vsock transport in this enclave (load vmw_vsock_virtio_transport, or give --vsock-dir)", ENODEV);

    if (m_options.handle_signals) {
        sigset_t signals;
        sigemptyset(&signals);
        sigaddset(&signals, SIGHUP);
        sigaddset(&signals, SIGTERM);
        sigaddset(&signals, SIGINT);
        if (::sigprocmask(SIG_BLOCK, &signals, nullptr) < 0)
            return Error::from_errno("sigprocmask");
        m_signal_fd = UniqueFd(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
        if (!m_signal_fd)
            return Error::from_errno("signalfd");
        m_signal_handler = std::make_unique<Wakeup>(*this, true);
        TRY(m_loop.add(m_signal_fd.get(), EPOLLIN, m_signal_handler.get()));
    }
    int commands[2];
    if (::pipe2(commands, O_NONBLOCK | O_CLOEXEC) < 0)
        return Error::from_errno("pipe2");
    m_command_read = UniqueFd(commands[0]);
    m_command_write = UniqueFd(commands[1]);
    m_wakeup_handler = std::make_unique<Wakeup>(*this, false);
    TRY(m_loop.add(m_command_read.get(), EPOLLIN, m_wakeup_handler.get()));
    return reconfigure(std::move(config));
}

ErrorOr<void> Proxy::Impl::reconfigure(ProxyConfig config)
{
    auto specs = TRY(build_specs(config));
    std::map<std::string, std::unique_ptr<Listener>> fresh;
    for (auto const& spec : specs) {
        if (m_listeners.contains(spec.key) || fresh.contains(spec.key))
            continue;
        // On failure `fresh` goes out of scope: its sockets close and their
        // files are removed, and the running configuration is untouched.
        fresh.emplace(spec.key, TRY(open_listener(spec)));
    }
    for (auto& [key, listener] : fresh)
        TRY(m_loop.add(listener->fd(), EPOLLIN, listener.get()));

    std::map<std::string, ListenerSpec const*> wanted;
    for (auto const& spec : specs)
        wanted.emplace(spec.key, &spec);
    for (auto it = m_listeners.begin(); it != m_listeners.end();) {
        auto found = wanted.find(it->first);
        if (found == wanted.end()) {
            log::info("stopped listening on {}", it->first);
            it->second->close();
            m_retired_listeners.push_back(std::move(it->second));
            it = m_listeners.erase(it);
        } else {
            it->second->set_route(found->second->route);
            ++it;
        }
    }
    for (auto& [key, listener] : fresh) {
        log::info("listening on {} for {} -> {}", key, listener->route()->name, listener->route()->target.text);
        m_listeners.emplace(key, std::move(listener));
    }
    clamp_limits(config.limits);
    m_limits = config.limits;
    return {};
}

void Proxy::Impl::reload(ConfigLoader const& loader)
{
    auto config = loader();
    if (config.is_error()) {
        log::error("reload rejected, keeping the running configuration: {}", config.error().message());
        return;
    }
    auto result = reconfigure(config.release_value());
    if (result.is_error()) {
        log::error("reload rejected, keeping the running configuration: {}", result.error().message());
        return;
    }
    log::info("reloaded: {} listeners, {} connections kept", m_listeners.size(), m_connections.size());
}

void Proxy::Impl::on_signal()
{
    signalfd_siginfo info {};
    while (::read(m_signal_fd.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
        if (info.ssi_signo == SIGHUP) {
            if (m_loader)
                reload(*m_loader);
        } else {
            log::info("signal {}: shutting down", info.ssi_signo == SIGTERM ? "TERM" : "INT");
            m_stopping = true;
        }
    }
}

void Proxy::Impl::on_wakeup()
{
    char commands[16];
    ssize_t n;
    while ((n = ::read(m_command_read.get(), commands, sizeof(commands))) > 0) {
        for (ssize_t i = 0; i < n; ++i) {
            if (commands[i] == COMMAND_STOP)
                m_stopping = true;
            else if (commands[i] == COMMAND_RELOAD && m_loader)
                reload(*m_loader);
        }
    }
}

void Proxy::Impl::send_command(char command)
{
    (void)!::write(m_command_write.get(), &command, 1);
}

void Proxy::Impl::sweep(Clock::time_point now)
{
    m_resolver.tick(now);
    std::vector<Connection*> open;
    open.reserve(m_connections.size());
    for (auto& [id, connection] : m_connections)
        open.push_back(connection.get());
    for (auto* connection : open)
        connection->check_timeouts(now);
    if (m_listeners_paused && m_connections.size() < m_limits.max_connections) {
        m_listeners_paused = false;
        for (auto& [key, listener] : m_listeners)
            (void)m_loop.modify(listener->fd(), EPOLLIN, listener.get());
    }
}

ErrorOr<void> Proxy::Impl::run(ConfigLoader const& reload)
{
    m_loader = &reload;
    auto next_sweep = Clock::now() + std::chrono::milliseconds(SWEEP_INTERVAL_MS);
    while (!m_stopping) {
        int timeout = -1;
        if (!m_connections.empty() || m_resolver.busy() || m_listeners_paused) {
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_sweep - Clock::now()).count();
            timeout = static_cast<int>(std::clamp<long>(wait, 0, SWEEP_INTERVAL_MS));
        }
        auto waited = m_loop.wait(timeout);
        if (waited.is_error()) {
            m_loader = nullptr;
            return waited.release_error();
        }
        auto now = Clock::now();
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + std::chrono::milliseconds(SWEEP_INTERVAL_MS);
        }
        m_retired_connections.clear();
        m_retired_listeners.clear();
        m_resolver.collect_garbage();
    }
    close_everything();
    m_loader = nullptr;
    return {};
}

Proxy::Proxy(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) { }
Proxy::~Proxy() = default;

ErrorOr<std::unique_ptr<Proxy>> Proxy::create(ProxyOptions options, ProxyConfig config)
{
    auto loop = TRY(EventLoop::create());
    auto impl = std::make_unique<Impl>(std::move(options), std::move(loop));
    TRY(impl->setup(std::move(config)));
    return std::unique_ptr<Proxy>(new Proxy(std::move(impl)));
}

ErrorOr<void> Proxy::reconfigure(ProxyConfig config) { return m_impl->reconfigure(std::move(config)); }
ErrorOr<void> Proxy::run(ConfigLoader const& reload) { return m_impl->run(reload); }
void Proxy::stop() { m_impl->send_command(Impl::COMMAND_STOP); }
void Proxy::request_reload() { m_impl->send_command(Impl::COMMAND_RELOAD); }
std::size_t Proxy::connection_count() const { return m_impl->connection_count(); }
std::size_t Proxy::listener_count() const { return m_impl->listener_count(); }
std::uint32_t Proxy::effective_max_connections() const { return m_impl->max_connections(); }

} // namespace qtbox::vsock
