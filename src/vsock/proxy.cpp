#include <qtbox/base/log.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/vsock/address.hpp>
#include <qtbox/vsock/proxy.hpp>

#include "proxy_connection.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <thread>
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

// The log line of a connection that was never served.
void log_unserved(std::uint64_t id, Route const& route, std::string_view peer, std::string_view reason)
{
    log::info("conn={} rule={} peer={} target={} up=0 down=0 ms=0 close={}", id, route.name, peer, route.target.text, reason);
}

bool set_nonblocking(int fd)
{
    int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) >= 0;
}

} // namespace

class Proxy::Impl final {
public:
    class Listener;
    class Worker;

    Impl(ProxyOptions options, EventLoop loop) : m_options(std::move(options)), m_loop(std::move(loop)) { }
    ~Impl();

    ErrorOr<void> setup(ProxyConfig config);
    ErrorOr<void> reconfigure(ProxyConfig config);
    ErrorOr<void> run(ConfigLoader const& reload);
    void send_command(char command);

    static constexpr char COMMAND_STOP = 'S';
    static constexpr char COMMAND_RELOAD = 'R';
    // A worker's loop failed: stop everything and report it.
    static constexpr char COMMAND_WORKER_FAILED = 'F';
    // To workers: take the published listener set and limits.
    static constexpr char COMMAND_SYNC = 'L';
    // To workers: serve the connections other workers handed over.
    static constexpr char COMMAND_ADOPT = 'C';

    std::size_t connection_count() const { return m_active.load(std::memory_order_relaxed); }
    std::size_t listener_count() const { return m_listeners.size(); }
    std::uint32_t max_connections() const { return m_limits.max_connections; }
    std::uint32_t worker_count() const { return static_cast<std::uint32_t>(m_workers.size()); }
    std::vector<std::size_t> worker_loads() const;

    // What the workers share (any thread).
    struct Published {
        std::vector<std::shared_ptr<Listener>> listeners;
        ProxyLimits limits;
        std::uint64_t generation { 0 };
    };
    Published published() const;
    // Worker `index` has taken the listener set of `generation` (or, with
    // TAKEN_ALL, has stopped and takes nothing more).
    void acknowledge(std::size_t index, std::uint64_t generation);
    static constexpr std::uint64_t TAKEN_ALL = ~std::uint64_t { 0 };
    void worker_failed(Error error);
    // A worker's thread runs (glibc's thread start-up, rseq included, is
    // behind it: the sandbox may come).
    void worker_started();
    bool try_open_connection(std::uint32_t limit) { return try_acquire(m_active, limit); }
    void connection_closed() { m_active.fetch_sub(1, std::memory_order_relaxed); }
    std::uint64_t next_id() { return m_next_id.fetch_add(1, std::memory_order_relaxed); }
    // Where a new connection goes: the worker with the fewest, `self` on a
    // tie.
    Worker& least_loaded(Worker& self);
    ProxyOptions const& options() const { return m_options; }

private:
    class Wakeup;

    ErrorOr<std::vector<ListenerSpec>> build_specs(ProxyConfig const& config);
    ErrorOr<std::shared_ptr<Listener>> open_listener(ListenerSpec const& spec);
    void clamp_limits(ProxyLimits& limits);
    // Hands the listener set and limits to the workers and, while they
    // run, waits until each has taken them.
    void publish();
    void stop_workers();
    void reload(ConfigLoader const& loader);
    void close_listeners();
    void on_signal();
    void on_wakeup();

    ProxyOptions m_options;
    // The control loop: signals and commands; connections live in workers.
    EventLoop m_loop;
    ProxyLimits m_limits;
    bool m_vsock_available { false };
    std::size_t m_fd_limit { 1024 };
    std::map<std::string, std::shared_ptr<Listener>> m_listeners;
    std::vector<std::unique_ptr<Worker>> m_workers;
    bool m_running { false };
    bool m_stopping { false };
    UniqueFd m_signal_fd;
    // stop(), request_reload() and failing workers come through a pipe.
    UniqueFd m_command_read;
    UniqueFd m_command_write;
    std::unique_ptr<Wakeup> m_signal_handler;
    std::unique_ptr<Wakeup> m_wakeup_handler;
    ConfigLoader const* m_loader { nullptr };

    std::atomic<std::size_t> m_active { 0 };
    std::atomic<std::uint64_t> m_next_id { 1 };
    mutable std::mutex m_mutex;
    std::condition_variable m_acknowledged;
    Published m_published;                  // under m_mutex
    std::vector<std::uint64_t> m_taken;     // per worker, under m_mutex
    std::size_t m_started { 0 };            // under m_mutex
    std::optional<Error> m_worker_error;    // under m_mutex
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

// A listening socket, shared by every worker that waits on it. Its fd stays
// open until the last worker lets go of it, so a worker never accepts on a
// number that was closed and reused under it.
class Proxy::Impl::Listener {
public:
    Listener(ListenerSpec spec, UniqueFd fd, struct stat identity)
        : m_spec(std::move(spec)), m_route(m_spec.route), m_fd(std::move(fd)), m_identity(identity)
    {
    }
    ~Listener() { stop_listening(); }

    // Removes the socket file (if it still is ours): no new connections
    // reach a Unix listener from here on. The fd closes with the object.
    void stop_listening()
    {
        if (m_stopped.exchange(true))
            return;
        if (m_spec.kind == ListenerSpec::Kind::Unix)
            remove_socket_file(m_spec.path, m_identity);
    }

    int fd() const { return m_fd.get(); }
    ListenerSpec const& spec() const { return m_spec; }
    std::shared_ptr<Route const> route() const
    {
        std::lock_guard lock(m_mutex);
        return m_route;
    }
    void set_route(std::shared_ptr<Route const> route)
    {
        std::lock_guard lock(m_mutex);
        m_route = std::move(route);
    }

private:
    ListenerSpec const m_spec;
    mutable std::mutex m_mutex;
    std::shared_ptr<Route const> m_route; // under m_mutex: a reload changes it
    UniqueFd m_fd;
    struct stat m_identity;
    std::atomic<bool> m_stopped { false };
};

// One event loop on its own thread, with the connections it accepted.
class Proxy::Impl::Worker final : public ConnectionOwner, public EventHandler {
public:
    static ErrorOr<std::unique_ptr<Worker>> create(Impl& core, std::size_t index, std::size_t pipe_pool_limit)
    {
        auto loop = TRY(EventLoop::create());
        int fds[2];
        if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
            return Error::from_errno("pipe2");
        auto worker = std::unique_ptr<Worker>(new Worker(core, std::move(loop), UniqueFd(fds[0]), UniqueFd(fds[1]), index, pipe_pool_limit));
        TRY(worker->m_loop.add(worker->m_wake_read.get(), EPOLLIN, worker.get()));
        return worker;
    }
    ~Worker() { join(); }

    void start()
    {
        m_thread = std::thread([this] { main(); });
    }

    // A connection accepted by some worker, already counted (globally, in
    // its rule, and in the load of the worker that is to serve it).
    struct Handoff {
        UniqueFd client;
        std::shared_ptr<Route const> route;
        bool tcp { false };
        std::string peer;
        std::uint64_t id { 0 };
    };
    // From another worker's thread: serve this connection here.
    void adopt(Handoff handoff)
    {
        {
            std::lock_guard lock(m_inbox_mutex);
            m_inbox.push_back(std::move(handoff));
        }
        wake(COMMAND_ADOPT);
    }
    // Connections on this worker, handed-over ones included.
    std::size_t load() const { return m_load.load(std::memory_order_relaxed); }
    void count_in() { m_load.fetch_add(1, std::memory_order_relaxed); }
    // After every worker has stopped: whatever was handed over too late is
    // closed and uncounted.
    void drop_inbox();
    void wake(char command) { (void)!::write(m_wake_write.get(), &command, 1); }
    void join()
    {
        if (m_thread.joinable()) {
            wake(COMMAND_STOP);
            m_thread.join();
        }
    }

    // The wake pipe.
    void on_event(std::uint32_t) override;

    // ConnectionOwner.
    EventLoop& loop() override { return m_loop; }
    Resolver& resolver() override { return m_resolver; }
    ProxyLimits const& limits() const override { return m_limits; }
    std::optional<Pipe> take_pipe() override;
    void give_pipe(Pipe pipe) override;
    void retire(ProxyConnection& connection) override;

private:
    // This worker's interest in one listener.
    struct Registration final : EventHandler {
        Registration(Worker& owner, std::shared_ptr<Listener> shared) : worker(owner), listener(std::move(shared)) { }
        void on_event(std::uint32_t) override { worker.accept_from(*listener); }
        Worker& worker;
        std::shared_ptr<Listener> listener;
    };

    Worker(Impl& core, EventLoop loop, UniqueFd wake_read, UniqueFd wake_write, std::size_t index, std::size_t pipe_pool_limit)
        : m_core(core), m_loop(std::move(loop)), m_resolver(m_loop, core.options().resolver), m_index(index),
          m_pipe_pool_limit(pipe_pool_limit), m_wake_read(std::move(wake_read)), m_wake_write(std::move(wake_write))
    {
    }

    void main();
    void accept_from(Listener& listener);
    void serve(Handoff handoff);
    void take_inbox();
    void sync();
    void watch(Registration& registration);
    void pause();
    void sweep(Clock::time_point now);
    void close_everything();

    Impl& m_core;
    EventLoop m_loop;
    Resolver m_resolver;
    std::size_t m_index;
    ProxyLimits m_limits;
    std::map<Listener*, std::unique_ptr<Registration>> m_registrations;
    std::vector<std::unique_ptr<Registration>> m_retired_registrations;
    std::unordered_map<std::uint64_t, std::unique_ptr<ProxyConnection>> m_connections;
    std::vector<std::unique_ptr<ProxyConnection>> m_retired_connections;
    std::vector<Pipe> m_pipe_pool;
    std::size_t m_pipe_pool_limit;
    bool m_stopping { false };
    bool m_paused { false };
    // One warning per episode of failing accepts, not one per retry.
    bool m_accept_warned { false };
    std::optional<std::uint64_t> m_taken_generation;
    std::atomic<std::size_t> m_load { 0 };
    std::mutex m_inbox_mutex;
    std::vector<Handoff> m_inbox; // under m_inbox_mutex
    UniqueFd m_wake_read;
    UniqueFd m_wake_write;
    std::thread m_thread;
};

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
        log::warn("worker {}: cannot wait on {}: {}", m_index, registration.listener->spec().key, added.error().message());
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
        log_unserved(handoff.id, *handoff.route, handoff.peer, "shutdown");
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
        connection->finish("shutdown", {}, false);
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
    return SocketAddress::from_raw(reinterpret_cast<sockaddr const*>(&address), length).to_string();
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
                log::warn("accept on {}: {}; pausing new connections", spec.key, std::strerror(errno));
            m_accept_warned = true;
            pause();
            return;
        }
        UniqueFd client(fd);
        m_accept_warned = false;
        auto id = m_core.next_id();
        auto route = listener.route();
        auto peer = describe_peer(spec.kind, fd, address, length);
        auto refuse = [&](std::string_view reason) { log_unserved(id, *route, peer, reason); };
        if (!m_core.try_open_connection(m_limits.max_connections)) {
            refuse("limit");
            continue;
        }
        if (route->max_connections && !try_acquire(route->counter->active, *route->max_connections)) {
            m_core.connection_closed();
            refuse("rule_limit");
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
    std::size_t count = m_options.workers;
    if (count == 0) {
        cpu_set_t cpus;
        count = ::sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? static_cast<std::size_t>(CPU_COUNT(&cpus)) : 1;
        count = std::clamp<std::size_t>(count, 1, MAX_WORKERS);
    }
    if (count > MAX_WORKERS_EXPLICIT)
        return Error::from_string(fmt::format("{} workers: at most {}", count, MAX_WORKERS_EXPLICIT), EINVAL);
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
