// qtsm-server's engine (SPEC §5): many local clients on a Unix socket, one
// upstream channel to the QTSM (vsock CID 3 port 9001 in an enclave).
//
// Overview
// - One thread, one epoll loop, every socket non-blocking. The upstream
//   channel answers requests in the order it gets them, so the server
//   pipelines: each complete, screened client request is appended to the
//   upstream output and its client recorded in a FIFO; each upstream
//   response goes to the client at the head of the FIFO. Any number of
//   clients can have a request in flight; each client has at most one (the
//   next is not read until its answer is written), so memory is bounded by
//   max_clients × (request + response) and a client that sends ahead is held
//   back by its own socket buffer.
// - Screening (screen_request): the request is decoded with the QTSM's own
//   strict decoder; malformed requests, size violations, and extends or locks
//   of the platform PCRs 0..15 (and of indices past 31) are answered here and
//   never reach the QTSM. What is forwarded is the re-encoded request, never
//   the client's bytes.
// - Defences against slow or hostile local clients: a frame that has started
//   must be complete within frame_timeout_ms and an answer must be taken
//   within the same time, or the client is dropped; an over-long length
//   prefix is answered InputTooLarge and the client dropped (its stream is
//   out of step); past max_clients, new connections are closed at once.
//   Idle clients (no partial frame) are never timed out: libqtsm users keep
//   one connection for the life of the app. No client error stops the
//   server; only the upstream channel failing does.
// - Every client is logged with its SO_PEERCRED pid/uid/gid when it
//   connects, and with them again on every refused request.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/qtsm/protocol.hpp>

#include <cstddef>
#include <memory>

namespace qtbox::qtsm {

struct ServerOptions {
    std::size_t max_clients { 256 };
    int frame_timeout_ms { 10'000 };
    // The QTSM must answer the oldest forwarded request within this, or the
    // channel is considered dead.
    int upstream_timeout_ms { 60'000 };
    // Readable (a signalfd, an eventfd) when the server should stop.
    int stop_fd { -1 };
};

// The local decision on one client request: the re-encoded request to
// forward, or an Error whose code() is the QtsmError to answer with.
ErrorOr<Request> screen_request(ByteView encoded);

class Server {
public:
    // `listener`: a listening Unix socket; `upstream`: a connected stream to
    // the QTSM. Both are made non-blocking here.
    static ErrorOr<Server> create(UniqueFd listener, UniqueFd upstream, ServerOptions options = {});
    Server(Server&&) noexcept;
    ~Server();

    // Runs until stop_fd becomes readable (returns success) or the upstream
    // channel fails (returns the error).
    ErrorOr<void> run();

    struct State;

private:
    explicit Server(std::unique_ptr<State> state);
    std::unique_ptr<State> m_state;
};

} // namespace qtbox::qtsm
