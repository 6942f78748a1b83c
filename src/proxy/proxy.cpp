#include <qtbox/base/sys.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/proxy/proxy.hpp>
#include <qtbox/proxy/routes.hpp>

#include "impl.hpp"

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
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qtbox::proxy {

std::string_view close_reason_name(CloseReason reason)
{
    switch (reason) {
    case CloseReason::Done:
        return "done";
    case CloseReason::Limit:
        return "limit";
    case CloseReason::RuleLimit:
        return "rule_limit";
    case CloseReason::ResolveFailed:
        return "resolve_failed";
    case CloseReason::ConnectFailed:
        return "connect_failed";
    case CloseReason::ConnectTimeout:
        return "connect_timeout";
    case CloseReason::HandshakeFailed:
        return "handshake_failed";
    case CloseReason::IdleTimeout:
        return "idle_timeout";
    case CloseReason::ClientError:
        return "client_error";
    case CloseReason::TargetError:
        return "target_error";
    case CloseReason::Shutdown:
        return "shutdown";
    }
    return "unknown";
}

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

ErrorOr<void> Proxy::Impl::open_socket_directory()
{
    if (m_socket_directory)
        return {};
    std::optional<SocketDirectory::Owner> owner;
    if (m_options.socket_owner)
        owner = SocketDirectory::Owner { m_options.socket_owner->first, m_options.socket_owner->second };
    m_socket_directory = std::make_shared<SocketDirectory const>(TRY(SocketDirectory::open(m_options.vsock_dir, owner)));
    return {};
}

ErrorOr<std::shared_ptr<Proxy::Impl::Listener>> Proxy::Impl::open_listener(ListenerSpec const& spec)
{
    struct stat identity { };
    UniqueFd fd;
    switch (spec.kind) {
    case ListenerSpec::Kind::Unix:
        TRY(open_socket_directory());
        fd = TRY(m_socket_directory->listen(socket_name(spec.path), LISTEN_BACKLOG, identity));
        break;
    case ListenerSpec::Kind::Vsock:
        fd = TRY(net::listen_vsock(VMADDR_CID_ANY, spec.vsock_port, LISTEN_BACKLOG));
        break;
    case ListenerSpec::Kind::Tcp:
        fd = TRY(net::listen_tcp(spec.address, LISTEN_BACKLOG));
        break;
    }
    TRY(sys::set_nonblocking(fd.get()));
    return std::make_shared<Listener>(spec, std::move(fd), identity, m_socket_directory);
}

void Proxy::Impl::clamp_limits(ProxyLimits& limits)
{
    // Each worker holds an epoll fd, a wake pipe and its idle pipes.
    auto reserved = RESERVED_FDS + m_taken.size() * FDS_PER_WORKER + 2 * PIPE_POOL_LIMIT;
    auto fd_limit = m_options.fd_limit;
    auto usable = fd_limit > reserved ? (fd_limit - reserved) / FDS_PER_CONNECTION : 1;
    usable = std::max<std::size_t>(usable, 1);
    if (limits.max_connections > usable) {
        notify(Severity::Warning, fmt::format("max_connections {} needs more file descriptors than RLIMIT_NOFILE {} allows; using {}",
                                      limits.max_connections, fd_limit, usable));
        limits.max_connections = static_cast<std::uint32_t>(usable);
    }
}

ErrorOr<void> Proxy::Impl::setup(ProxyConfig config)
{
    bool has_transport = net::local_cid().has_value();
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

    if (m_options.signal_fd >= 0) {
        m_signal_handler = std::make_unique<Wakeup>(*this, true);
        TRY(m_loop.add(m_options.signal_fd, EPOLLIN, m_signal_handler.get()));
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
    // Parent mode makes its 3_<port> sockets in one directory through one fd
    // (socket_dir.hpp), opened by the first Unix listener or here: a reload
    // under the sandbox may add sockets but not make the directory.
    if (m_options.mode == ProxyMode::Parent && !m_options.vsock_dir.empty())
        TRY(open_socket_directory());

    // Before the workers start, so that they are confined too (landlock.hpp).
    if (m_options.confine_filesystem) {
        FilesystemScope scope;
        if (m_socket_directory)
            scope.socket_directory = m_socket_directory->path();
        scope.read_files = m_options.reread_files;
        scope.read_files.push_back(m_options.resolver.hosts_path);
        scope.read_files.push_back(m_options.resolver.resolv_conf_path);
        m_landlock = TRY(restrict_filesystem(scope));
    }

    // The workers start now, with the caller's signal mask (the control
    // loop's signalfd takes those signals) and before the sandbox, which
    // then covers every thread. They wait on their wake pipes until run()
    // hands them the listeners.
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
    // A rule keeps its connection counter across reloads (by name).
    RuleCounters counters;
    for (auto& [key, listener] : m_listeners)
        counters[listener->route()->name] = listener->route()->counter;
    RouteSettings settings {
        .mode = m_options.mode,
        .run_dir = m_options.run_dir,
        .vsock_dir = m_options.vsock_dir,
        .af_vsock = m_vsock_available,
        .family = m_options.family,
    };
    auto specs = TRY(build_listener_specs(config, settings, counters));
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
            notify(Severity::Info, fmt::format("stopped listening on {}", it->first));
            it->second->stop_listening();
            it = m_listeners.erase(it);
        } else {
            it->second->set_route(found->second->route);
            ++it;
        }
    }
    for (auto& [key, listener] : fresh) {
        notify(Severity::Info, fmt::format("listening on {} for {} -> {}", key, listener->route()->name, listener->route()->target.text));
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
        notify(Severity::Error, fmt::format("reload rejected, keeping the running configuration: {}", config.error().message()));
        return;
    }
    auto result = reconfigure(config.release_value());
    if (result.is_error()) {
        notify(Severity::Error, fmt::format("reload rejected, keeping the running configuration: {}", result.error().message()));
        return;
    }
    notify(Severity::Info, fmt::format("reloaded: {} listeners, {} connections kept", m_listeners.size(), connection_count()));
}

void Proxy::Impl::on_signal()
{
    signalfd_siginfo info {};
    while (::read(m_options.signal_fd, &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
        if (info.ssi_signo == SIGHUP) {
            if (m_loader)
                reload(*m_loader);
        } else {
            notify(Severity::Info, fmt::format("signal {}: shutting down", info.ssi_signo == SIGTERM ? "TERM" : "INT"));
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
    auto loop = TRY(net::EventLoop::create());
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

int Proxy::socket_directory_fd() const { return m_impl->socket_directory_fd(); }

bool Proxy::landlock_on() const { return m_impl->landlock_on(); }
std::vector<std::size_t> Proxy::worker_loads() const { return m_impl->worker_loads(); }

} // namespace qtbox::proxy
