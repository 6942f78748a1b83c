// The qt-proxy engine: a few worker threads, each with its own epoll loop,
// every socket non-blocking.
//
// Threads: one worker per CPU the process may run on (at most MAX_WORKERS,
// or ProxyOptions::workers). Every worker waits on every listening socket
// (EPOLLEXCLUSIVE, so a new connection wakes one of them); the worker that
// accepts places the connection on the worker with the fewest (itself on a
// tie, else through the other's inbox and wake pipe). From then on both
// sides of the connection, its pipes, timers and name lookups live on that
// one thread, and nothing on the data path is shared.
// What is shared: the connection and per-rule counts (atomics, so limits
// hold across workers) and the listener set, which the thread that called
// run() changes on a reload and then hands to each worker, waiting until
// every worker has taken it before the reload counts as done. The workers
// start in create(), so that the seccomp filter (sandbox.hpp) covers them,
// and begin accepting in run().
//
// Listeners and targets by mode (docs/ARCHITECTURE.md "Hybrid vsock", docs/FORMATS.md §6), as routes.hpp
// builds them:
//   parent, [[outbound]]  <vsock-dir>/3_<vsock_port> (+ AF_VSOCK port when
//                         the host has a vsock transport) -> TCP host:port
//   parent, [[inbound]]   TCP listen -> the enclave's vsock.sock with
//                         "CONNECT <vsock_port>\n" (or AF_VSOCK cid:port when
//                         no such socket exists and AF_VSOCK is available)
//   enclave, [[outbound]] TCP 127.0.0.1:<enclave_port> -> AF_VSOCK 3:<vsock_port>
//                         (or <vsock-dir>/3_<vsock_port> when a vsock dir is
//                         given, which is how the host tests run it)
// A connection only ever goes to its rule's target: names are resolved per
// connection (resolver.hpp) and nothing the client sends is interpreted.
//
// Each direction starts with recv/send through a 16 KiB buffer (fewest
// system calls for small messages) and moves to splice(2) through a 256 KiB
// pipe as soon as a read fills that buffer, so bulk bytes are never copied
// into user space; if pipes cannot be had (fd limits) it copies through a
// 64 KiB buffer instead. A side is not read while the other side's pipe or
// buffer is full (back-pressure), so memory per connection is bounded by two
// pipes or two buffers, and an idle connection holds no buffer at all. The
// connections themselves are src/proxy/connection.*, the workers' loops
// src/proxy/worker.cpp; src/proxy/proxy.cpp holds the listeners, the reload
// and the signals.
//
// EOF on one side becomes shutdown(SHUT_WR) on the other once everything
// before it is delivered; the connection closes when both directions are
// finished. An error or a reset on either side ends that connection only
// (TCP peers get a reset, SO_LINGER 0, so that truncation is never mistaken
// for a clean end).
//
// The engine never prints: each connection ends with one ConnectionClosed
// event, which qt-proxy writes as the line
//   conn=<id> rule=<rule> peer=<who> target=<where> up=<bytes client->target>
//   down=<bytes target->client> ms=<duration> close=<reason> [error="<why>"]
// with reasons done, limit, rule_limit, resolve_failed, connect_failed,
// connect_timeout, handshake_failed, idle_timeout, client_error,
// target_error, shutdown; everything else it reports is a Notice.
//
// Process-wide settings are the caller's (qt-proxy does them before
// create()): RLIMIT_NOFILE raised as far as it goes (fd_limit says what it
// got), SIGPIPE ignored (a peer that goes away mid-splice must give EPIPE,
// not kill the process), and SIGHUP, SIGTERM and SIGINT blocked, so that the
// worker threads inherit the mask and the signals queue for signal_fd.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/net/resolver.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/proxy/config.hpp>

#include <cstdint>
#include <sys/types.h>
#include <utility>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::proxy {

enum class AfVsockUse {
    // Listen/connect on AF_VSOCK when the host has a vsock transport.
    Auto,
    // Require it (start-up fails without a transport).
    On,
    Off,
};

// Why a connection ended: the close= field of its line.
enum class CloseReason {
    Done,            // both directions finished
    Limit,           // refused: [limits] max_connections reached
    RuleLimit,       // refused: the rule's max_connections reached
    ResolveFailed,   // the target's name did not resolve
    ConnectFailed,   // no address of the target accepted the connection
    ConnectTimeout,  // resolve + connect + handshake took longer than connect_timeout
    HandshakeFailed, // the enclave did not answer CONNECT with OK
    IdleTimeout,     // no byte either way for idle_timeout
    ClientError,     // the client's side failed or was reset
    TargetError,     // the target's side failed or was reset
    Shutdown,        // the proxy stopped
};

// "done", "limit", "rule_limit", ... as in the line.
std::string_view close_reason_name(CloseReason reason);

// One connection has ended, served or not (a refused one has no address, no
// bytes and 0 ms).
struct ConnectionClosed {
    std::uint64_t id { 0 };
    // The rule's name ("out:<vsock_port>", "in:<listen>", "tunnel:<port>").
    std::string rule;
    // Who connected: "unix:pid=<pid>,uid=<uid>", "vsock:<cid>:<port>", an IP address and port.
    std::string peer;
    // The rule's target as configured.
    std::string target;
    // The address a connection was made to or last tried; empty when none was.
    std::string address;
    std::uint64_t up { 0 };   // bytes client -> target
    std::uint64_t down { 0 }; // bytes target -> client
    std::int64_t milliseconds { 0 };
    CloseReason reason { CloseReason::Done };
    // Why it failed, when there is more to say. It may carry a peer's words
    // (an enclave's answer to CONNECT): quote it before printing it.
    std::string detail;
};

struct ProxyOptions {
    ProxyMode mode { ProxyMode::Parent };
    // Parent: where enclave state dirs are (<run>/enclaves/...).
    std::string run_dir;
    // Parent: where the 3_<port> listeners are made. Enclave: where to
    // connect instead of AF_VSOCK; empty means AF_VSOCK CID 3.
    std::string vsock_dir;
    // Parent mode: the uid and gid the process is about to switch to
    // (qt-proxy(1) --user); the socket directory and the sockets made while
    // still root are given to them. Empty: keep the owner.
    std::optional<std::pair<uid_t, gid_t>> socket_owner;
    // Restrict this process's filesystem access with Landlock before the
    // workers start (qt-proxy(1) "SANDBOX"): the socket directory, and
    // reading the directories of `reread_files` and of the resolver's files.
    // Irreversible: the applet sets it, in-process tests do not.
    bool confine_filesystem { false };
    std::vector<std::string> reread_files;
    AfVsockUse af_vsock { AfVsockUse::Auto };
    net::Family family { net::Family::Any };
    net::ResolverSettings resolver;
    // Worker threads; 0: one per CPU in this process's affinity mask, at
    // most Proxy::MAX_WORKERS.
    std::uint32_t workers { 0 };
    // RLIMIT_NOFILE as the caller left it. Every connection needs up to
    // FDS_PER_CONNECTION descriptors: max_connections is lowered (with a
    // warning notice) to what this covers.
    std::size_t fd_limit { 1024 };
    // A signalfd (sys::signalfd) of SIGHUP, SIGTERM and SIGINT, which the
    // caller has blocked before create(): HUP reloads, TERM/INT stop. -1:
    // none (in-process tests). The caller keeps it open while the proxy
    // lives.
    int signal_fd { -1 };
    // Called once for every connection that ends, from the worker that
    // served it (any thread); may be empty.
    std::function<void(ConnectionClosed const&)> on_connection_closed;
    // Listeners opened and closed, reloads, signals, lowered limits, failing
    // accepts (any thread); may be empty.
    NoticeSink notice;
};

// Loads the configuration again on SIGHUP.
using ConfigLoader = std::function<ErrorOr<ProxyConfig>()>;

class Proxy {
public:
    static constexpr int LISTEN_BACKLOG = 4096;
    static constexpr int MAX_ACCEPTS_PER_EVENT = 64;
    // The automatic worker count stops here; an explicit one may go to
    // MAX_WORKERS_EXPLICIT.
    static constexpr std::uint32_t MAX_WORKERS = 8;
    static constexpr std::uint32_t MAX_WORKERS_EXPLICIT = 64;
    // A direction starts with a small buffer and moves to splice once a
    // read fills it; without a pipe it copies through the larger one.
    static constexpr std::size_t SMALL_BUFFER_SIZE = 16 * 1024;
    static constexpr std::size_t COPY_BUFFER_SIZE = 64 * 1024;
    // Asked for each pipe; bounds the bytes held per direction in flight.
    static constexpr std::size_t PIPE_SIZE = 256 * 1024;
    // Idle pipes kept for reuse, shared out among the workers.
    static constexpr std::size_t PIPE_POOL_LIMIT = 64;
    // Timeouts are checked this often while anything is in progress.
    static constexpr int SWEEP_INTERVAL_MS = 100;
    // A connection holds at most two sockets and two pipes.
    static constexpr std::size_t FDS_PER_CONNECTION = 6;
    // Descriptors kept aside for listeners, the resolvers and logging, and
    // for each worker's epoll fd and wake pipe.
    static constexpr std::size_t RESERVED_FDS = 64;
    static constexpr std::size_t FDS_PER_WORKER = 3;

    // Binds every listener (creating <vsock-dir> mode 0750 when needed) and
    // starts the workers; limits.max_connections is lowered (with a
    // warning) when options.fd_limit cannot cover it.
    static ErrorOr<std::unique_ptr<Proxy>> create(ProxyOptions options, ProxyConfig config);
    ~Proxy();
    Proxy(Proxy const&) = delete;
    Proxy& operator=(Proxy const&) = delete;

    // Applies a new configuration without dropping live connections: new
    // listeners are bound first, and if any fails nothing changes. Only
    // from the thread that calls run(), or before it.
    ErrorOr<void> reconfigure(ProxyConfig config);
    // Serves until SIGTERM/SIGINT (or stop()); closes everything on the way
    // out, removing its socket files.
    ErrorOr<void> run(ConfigLoader const& reload);
    // Thread-safe: makes run() return soon (each worker closes its
    // connections first).
    void stop();
    // Thread-safe: run() reloads as on SIGHUP.
    void request_reload();

    // For tests and the start-up message.
    std::size_t connection_count() const;
    std::size_t listener_count() const;
    std::uint32_t effective_max_connections() const;
    std::uint32_t worker_count() const;
    // The socket directory's fd (parent mode), for the sandbox; -1: none.
    int socket_directory_fd() const;
    // Whether confine_filesystem found Landlock and put it in force.
    bool landlock_on() const;
    // Connections on each worker.
    std::vector<std::size_t> worker_loads() const;

    class Impl;

private:
    explicit Proxy(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace qtbox::proxy
