#include <qtbox/base/log.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/vsock/address.hpp>
#include <qtbox/vsock/proxy.hpp>

#include "proxy_impl.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <map>
#include <netinet/in.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qtbox::vsock {

namespace {

bool set_nonblocking(int fd)
{
    int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) >= 0;
}

} // namespace

Proxy::Impl::~Impl()
{
    stop_workers();
    close_listeners();
}

void Proxy::Impl::stop_workers()
{
    // Each worker closes its connections on the way out.
    for (auto& worker : m_workers)
        worker->wake(COMMAND_STOP);
    for (auto& worker : m_workers)
        worker->join();
    for (auto& worker : m_workers)
        worker->drop_inbox();
}

std::vector<std::size_t> Proxy::Impl::worker_loads() const
{
    std::vector<std::size_t> loads;
    for (auto const& worker : m_workers)
        loads.push_back(worker->load());
    return loads;
}

Proxy::Impl::Worker& Proxy::Impl::least_loaded(Worker& self)
{
    Worker* best = &self;
    auto fewest = self.load();
    for (auto& worker : m_workers) {
        if (auto load = worker->load(); load < fewest) {
            best = worker.get();
            fewest = load;
        }
    }
    return *best;
}

void Proxy::Impl::close_listeners()
{
    for (auto& [key, listener] : m_listeners)
        listener->stop_listening();
    m_listeners.clear();
    std::lock_guard lock(m_mutex);
    m_published.listeners.clear();
}

Proxy::Impl::Published Proxy::Impl::published() const
{
    std::lock_guard lock(m_mutex);
    return m_published;
}

void Proxy::Impl::acknowledge(std::size_t index, std::uint64_t generation)
{
    {
        std::lock_guard lock(m_mutex);
        if (index < m_taken.size())
            m_taken[index] = std::max(m_taken[index], generation);
    }
    m_acknowledged.notify_all();
}

void Proxy::Impl::worker_started()
{
    {
        std::lock_guard lock(m_mutex);
        ++m_started;
    }
    m_acknowledged.notify_all();
}

void Proxy::Impl::worker_failed(Error error)
{
    {
        std::lock_guard lock(m_mutex);
        if (!m_worker_error)
            m_worker_error = std::move(error);
    }
    send_command(COMMAND_WORKER_FAILED);
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
                return Error::from_code(ConfigError::Invalid,
                    fmt::format("rule out:{}: {} is not an {} address ({})", rule.vsock_port, rule.host,
                        m_options.family == Family::Ipv4 ? "IPv4" : "IPv6", m_options.family == Family::Ipv4 ? "-4" : "-6"));
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

ErrorOr<std::shared_ptr<Proxy::Impl::Listener>> Proxy::Impl::open_listener(ListenerSpec const& spec)
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
    return std::make_shared<Listener>(spec, std::move(fd), identity);
}

void Proxy::Impl::clamp_limits(ProxyLimits& limits)
{
    // Each worker holds an epoll fd, a wake pipe and its idle pipes.
    auto reserved = RESERVED_FDS + m_taken.size() * FDS_PER_WORKER + 2 * PIPE_POOL_LIMIT;
    auto usable = m_fd_limit > reserved ? (m_fd_limit - reserved) / FDS_PER_CONNECTION : 1;
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
            return Error::from_string("AF_VSOCK: this host has no vsock transport (load vsock and a transport module, e.g. vmw_vsock_virtio_transport, or use --af-vsock off)");
        m_vsock_available = true;
        break;
    case AfVsockUse::Off:
        m_vsock_available = false;
        break;
    }
    if (m_options.mode == ProxyMode::Enclave && m_options.vsock_dir.empty() && !has_transport)
        return Error::from_string("AF_VSOCK: no vsock transport in this enclave (load vmw_vsock_virtio_transport, or give --vsock-dir)");

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
    std::size_t count = m_options.workers;
    if (count == 0) {
        cpu_set_t cpus;
        count = ::sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? static_cast<std::size_t>(CPU_COUNT(&cpus)) : 1;
        count = std::clamp<std::size_t>(count, 1, MAX_WORKERS);
    }
    if (count > MAX_WORKERS_EXPLICIT)
        return Error::from_string(fmt::format("{} workers: at most {}", count, MAX_WORKERS_EXPLICIT));
    m_taken.assign(count, 0);
    TRY(reconfigure(std::move(config)));

    // The workers start now, with the signals above blocked (the control
    // loop's signalfd takes them) and before the sandbox, which then covers
    // every thread. They wait on their wake pipes until run() hands them
    // the listeners.
    std::size_t pool = std::max<std::size_t>(PIPE_POOL_LIMIT / count, 4);
    for (std::size_t index = 0; index < count; ++index)
        m_workers.push_back(TRY(Worker::create(*this, index, pool)));
    for (auto& worker : m_workers)
        worker->start();
    // The seccomp filter may follow as soon as this returns; a thread still
    // in its start-up would meet it there (rseq) and be killed.
    std::unique_lock lock(m_mutex);
    m_acknowledged.wait(lock, [&] { return m_started == m_workers.size(); });
    return {};
}

ErrorOr<void> Proxy::Impl::reconfigure(ProxyConfig config)
{
    auto specs = TRY(build_specs(config));
    std::map<std::string, std::shared_ptr<Listener>> fresh;
    for (auto const& spec : specs) {
        if (m_listeners.contains(spec.key) || fresh.contains(spec.key))
            continue;
        // On failure `fresh` goes out of scope: its sockets close and their
        // files are removed, and the running configuration is untouched.
        fresh.emplace(spec.key, TRY(open_listener(spec)));
    }

    std::map<std::string, ListenerSpec const*> wanted;
    for (auto const& spec : specs)
        wanted.emplace(spec.key, &spec);
    for (auto it = m_listeners.begin(); it != m_listeners.end();) {
        auto found = wanted.find(it->first);
        if (found == wanted.end()) {
            // The fd closes once every worker has let go of it (publish()
            // waits for that).
            log::info("stopped listening on {}", it->first);
            it->second->stop_listening();
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
    publish();
    return {};
}

void Proxy::Impl::publish()
{
    std::uint64_t generation;
    {
        std::lock_guard lock(m_mutex);
        m_published.listeners.clear();
        for (auto& [key, listener] : m_listeners)
            m_published.listeners.push_back(listener);
        m_published.limits = m_limits;
        generation = ++m_published.generation;
    }
    if (!m_running)
        return;
    for (auto& worker : m_workers)
        worker->wake(COMMAND_SYNC);
    // A worker takes it within one pass of its loop; one that stopped
    // counts as having taken everything.
    std::unique_lock lock(m_mutex);
    m_acknowledged.wait(lock, [&] {
        return std::all_of(m_taken.begin(), m_taken.end(), [&](auto taken) { return taken >= generation; });
    });
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
    log::info("reloaded: {} listeners, {} connections kept", m_listeners.size(), connection_count());
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
            if (commands[i] == COMMAND_STOP || commands[i] == COMMAND_WORKER_FAILED)
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

ErrorOr<void> Proxy::Impl::run(ConfigLoader const& reload)
{
    m_loader = &reload;
    m_running = true;
    publish();
    std::optional<Error> failure;
    while (!m_stopping) {
        auto waited = m_loop.wait(-1);
        if (waited.is_error()) {
            failure = waited.release_error();
            break;
        }
    }
    stop_workers();
    close_listeners();
    m_running = false;
    m_loader = nullptr;
    std::lock_guard lock(m_mutex);
    if (m_worker_error)
        return *m_worker_error;
    if (failure)
        return *failure;
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
std::uint32_t Proxy::worker_count() const { return m_impl->worker_count(); }
std::vector<std::size_t> Proxy::worker_loads() const { return m_impl->worker_loads(); }

} // namespace qtbox::vsock
