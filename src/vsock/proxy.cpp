#include <qtbox/base/log.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/vsock/address.hpp>
#include <qtbox/vsock/proxy.hpp>

#include "proxy_connection.hpp"

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

struct ListenerSpec {
    std::string key;
    enum class Kind { Unix, Vsock, Tcp } kind { Kind::Tcp };
    std::string path;
    std::uint32_t vsock_port { 0 };
    SocketAddress address;
    std::shared_ptr<Route const> route;
};

bool set_nonblocking(int fd)
{
    int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) >= 0;
}

} // namespace

class Proxy::Impl final : public ConnectionOwner {
public:
    class Listener;

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

    // ConnectionOwner.
    EventLoop& loop() override { return m_loop; }
    Resolver& resolver() override { return m_resolver; }
    ProxyLimits const& limits() const override { return m_limits; }
    std::optional<Pipe> take_pipe() override;
    void give_pipe(Pipe pipe) override;
    void retire(ProxyConnection& connection) override;

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
    std::unordered_map<std::uint64_t, std::unique_ptr<ProxyConnection>> m_connections;
    std::vector<std::unique_ptr<ProxyConnection>> m_retired_connections;
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


Proxy::Impl::~Impl()
{
    close_everything();
}

void Proxy::Impl::close_everything()
{
    std::vector<ProxyConnection*> open;
    for (auto& [id, connection] : m_connections)
        open.push_back(connection.get());
    for (auto* connection : open)
        connection->finish("shutdown", {}, false);
    m_listeners.clear();
    m_retired_connections.clear();
    m_retired_listeners.clear();
    m_resolver.collect_garbage();
}

std::optional<Pipe> Proxy::Impl::take_pipe()
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

void Proxy::Impl::retire(ProxyConnection& connection)
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
        auto connection = std::make_unique<ProxyConnection>(*this, id, route, std::move(client), tcp, std::move(peer));
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
        route->target.text = fmt::format("{}:{}", rule.host, rule.port);
        if (auto numeric = IpAddress::parse(rule.host)) {
            // A numeric target the address family forbids can never work:
            // refuse the configuration rather than every connection.
            if (!numeric->matches(m_options.family))
                return Error::from_string(fmt::format("rule out:{}: {} is not an {} address ({})", rule.vsock_port,
                                              rule.host, m_options.family == Family::Ipv4 ? "IPv4" : "IPv6",
                                              m_options.family == Family::Ipv4 ? "-4" : "-6"),
                    EINVAL);
            if (numeric->is_v6)
                route->target.text = fmt::format("[{}]:{}", numeric->to_string(), rule.port);
        }
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
    std::vector<ProxyConnection*> open;
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
