// The private part of qt-proxy's engine (include/qtbox/proxy/proxy.hpp):
// the control side (Proxy::Impl: listeners, reload, signals), the listening
// sockets the workers share, and the workers themselves. Shared by proxy.cpp
// (control) and worker.cpp (the workers' loops and accept path).
#pragma once

#include <qtbox/base/event.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/net/resolver.hpp>
#include <qtbox/proxy/proxy.hpp>
#include <qtbox/proxy/routes.hpp>

#include "connection.hpp"
#include "landlock.hpp"
#include "socket_dir.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <fcntl.h>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace qtbox::proxy {

// The file name of a listener path under the socket directory.
inline std::string socket_name(std::string const& path)
{
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The end of a connection that was never served.
ConnectionClosed unserved(std::uint64_t id, Route const& route, std::string peer, CloseReason reason);

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
    int socket_directory_fd() const { return m_socket_directory ? m_socket_directory->fd() : -1; }
    bool landlock_on() const { return m_landlock == LandlockState::On; }
    // Through the options' callbacks, when there are some (any thread).
    void report(ConnectionClosed const& event) const
    {
        if (m_options.on_connection_closed)
            m_options.on_connection_closed(event);
    }
    void notify(Severity severity, std::string text) const
    {
        if (m_options.notice)
            m_options.notice(Notice { severity, std::move(text) });
    }

private:
    class Wakeup;

    ErrorOr<std::shared_ptr<Listener>> open_listener(ListenerSpec const& spec);
    ErrorOr<void> open_socket_directory();
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
    // Parent mode's socket directory, opened by setup() (socket_dir.hpp).
    std::shared_ptr<SocketDirectory const> m_socket_directory;
    LandlockState m_landlock { LandlockState::Unavailable };
    // The control loop: signals and commands; connections live in workers.
    EventLoop m_loop;
    ProxyLimits m_limits;
    bool m_vsock_available { false };
    std::map<std::string, std::shared_ptr<Listener>> m_listeners;
    std::vector<std::unique_ptr<Worker>> m_workers;
    bool m_running { false };
    bool m_stopping { false };
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
    // `directory`: where a Unix listener's file is (socket_dir.hpp).
    Listener(ListenerSpec spec, UniqueFd fd, struct stat identity, std::shared_ptr<SocketDirectory const> directory = {})
        : m_spec(std::move(spec)), m_fd(std::move(fd)), m_identity(identity), m_directory(std::move(directory))
    {
        // One copy of the route, the one a reload replaces: the spec's own
        // would go stale.
        m_route = std::move(m_spec.route);
    }
    ~Listener() { stop_listening(); }

    // Removes the socket file (if it still is ours): no new connections
    // reach a Unix listener from here on. The fd closes with the object.
    void stop_listening()
    {
        if (m_stopped.exchange(true))
            return;
        if (m_spec.kind == ListenerSpec::Kind::Unix && m_directory)
            m_directory->remove(socket_name(m_spec.path), m_identity);
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
    ListenerSpec m_spec; // without its route (see m_route)
    mutable std::mutex m_mutex;
    std::shared_ptr<Route const> m_route; // under m_mutex: a reload changes it
    UniqueFd m_fd;
    struct stat m_identity;
    std::shared_ptr<SocketDirectory const> m_directory;
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
    void report(ConnectionClosed const& event) override { m_core.report(event); }

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

} // namespace qtbox::proxy
