// One connection of qt-proxy's engine, served by one worker
// (impl.hpp; design and events: include/qtbox/proxy/proxy.hpp).
#pragma once

#include <qtbox/base/fd.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/net/resolver.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/proxy/proxy.hpp>
#include <qtbox/proxy/routes.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::proxy {

using net::Addresses;
using net::Clock;
using net::EventHandler;
using net::EventLoop;
using net::Resolver;
using net::SocketAddress;

// Takes one unit of `count` unless that would pass `limit`.
inline bool try_acquire(std::atomic<std::size_t>& count, std::size_t limit)
{
    auto current = count.load(std::memory_order_relaxed);
    do {
        if (current >= limit)
            return false;
    } while (!count.compare_exchange_weak(current, current + 1, std::memory_order_relaxed));
    return true;
}

// One address to try: hybrid sockets of enclaves need the CONNECT line.
struct Candidate {
    SocketAddress address;
    bool handshake { false };
};

struct Pipe {
    UniqueFd read;
    UniqueFd write;
    std::size_t capacity { 0 };
};

class ProxyConnection;

// What a connection uses of the proxy that owns it.
class ConnectionOwner {
public:
    virtual EventLoop& loop() = 0;
    virtual Resolver& resolver() = 0;
    virtual ProxyLimits const& limits() const = 0;
    // A pipe from the pool (or a new one); nullopt when none can be had.
    virtual std::optional<Pipe> take_pipe() = 0;
    // Back to the pool; only empty pipes are given back.
    virtual void give_pipe(Pipe pipe) = 0;
    // The connection has closed; destroy it after the current event batch.
    virtual void retire(ProxyConnection& connection) = 0;
    // Reports a connection that has ended.
    virtual void report(ConnectionClosed const& event) = 0;

protected:
    ~ConnectionOwner() = default;
};

class ProxyConnection {
public:
    enum class Phase {
        Resolving,
        Connecting,
        Handshake,
        Open,
        Closed,
    };

    // The caller has counted the connection in route->counter (it is
    // uncounted when the connection finishes).
    ProxyConnection(ConnectionOwner& owner, std::uint64_t id, std::shared_ptr<Route const> route, UniqueFd client, bool client_tcp, std::string peer);
    ProxyConnection(ProxyConnection const&) = delete;
    ProxyConnection& operator=(ProxyConnection const&) = delete;

    std::uint64_t id() const { return m_id; }
    Phase phase() const { return m_phase; }

    // Registers the client and starts resolving or connecting.
    void start();
    // Called every sweep; may close the connection.
    void check_timeouts(Clock::time_point now);
    // Closes both sides (reset when `abort`), reports the connection's end
    // and hands it to the owner's retire().
    void finish(CloseReason reason, std::string_view detail, bool abort);

private:
    struct Side final : EventHandler {
        Side(ProxyConnection& connection, bool client) : owner(connection), is_client(client) { }
        void on_event(std::uint32_t events) override { owner.on_side_event(*this, events); }

        ProxyConnection& owner;
        bool is_client;
        UniqueFd fd;
        bool readable { false };
        bool writable { false };
        // The peer's EOF (or an error) is known: read until recv says 0.
        bool hung_up { false };
        bool tcp { false };
        // EPOLLOUT is asked for only once a write has found the socket
        // full (or while connecting): otherwise each read by a Unix peer
        // would wake the loop for nothing, and request/response traffic
        // would pay a wake-up per message.
        bool out_watched { false };
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
        std::size_t buffer_size { Proxy::SMALL_BUFFER_SIZE };
        std::size_t head { 0 };
        std::size_t tail { 0 };
        std::size_t pending { 0 };
        bool bulk { false };
        bool eof { false };
        bool shut { false };
        std::uint64_t bytes { 0 };

        std::size_t capacity() const { return pipe ? pipe->capacity : buffer_size; }
    };

    void on_resolved(ErrorOr<Addresses> result);
    void connect_next();
    void on_connected();
    void handshake();
    void open(std::string_view early);
    void on_side_event(Side& side, std::uint32_t events);
    bool pump(Flow& flow);
    void fail_side(Side& side, std::string_view what);
    // A write found `side` full: mark it, and ask for EPOLLOUT.
    void blocked(Side& side);

    ConnectionOwner& m_owner;
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

} // namespace qtbox::proxy
