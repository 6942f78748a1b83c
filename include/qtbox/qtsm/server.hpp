// qtsm-server's engine (docs/FORMATS.md §5): many local clients on a Unix socket, one
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
// - Every client is reported with its SO_PEERCRED pid/uid/gid when it
//   connects, and with them again on every refused request. The server
//   never prints: it reports through ServerOptions' callbacks, and
//   qtsm-server writes the lines.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/qtsm/protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <variant>

namespace qtbox::qtsm {

// A local client: its number (unique for the server's life) and the
// credentials the kernel gave for it when it connected (SO_PEERCRED).
struct ClientInfo {
    std::uint64_t id { 0 };
    pid_t pid { 0 };
    uid_t uid { 0 };
    gid_t gid { 0 };
};

// "client <id> (pid <pid>, uid <uid>, gid <gid>)".
std::string client_name(ClientInfo const& client);

// What the server reports about its clients.
struct ClientConnected {
    ClientInfo client;
};
struct ClientDisconnected {
    ClientInfo client;
    // Why the server let it go; empty when the client closed between
    // requests.
    std::string reason;
};
// A request answered here with an error, never forwarded (screen_request,
// framing errors).
struct RequestRefused {
    ClientInfo client;
    QtsmError code { QtsmError::InternalError };
    std::string message;
};
// A screened request on its way to the QTSM.
struct RequestForwarded {
    ClientInfo client;
    std::string_view request; // request_name()
};
// The QTSM's well-formed answer to a client's request, about to be written.
struct RequestAnswered {
    ClientInfo client;
    std::string_view request; // request_name()
    // The code of an ErrorResponse; nullopt for any other answer.
    std::optional<QtsmError> error;
};
using ServerEvent = std::variant<ClientConnected, ClientDisconnected, RequestRefused, RequestForwarded, RequestAnswered>;

struct ServerOptions {
    std::size_t max_clients { 256 };
    int frame_timeout_ms { 10'000 };
    // The QTSM must answer the oldest forwarded request within this, or the
    // channel is considered dead.
    int upstream_timeout_ms { 60'000 };
    // Readable (a signalfd, an eventfd) when the server should stop.
    int stop_fd { -1 };
    // Called from run()'s thread; either may be empty. Notices: failures
    // that do not stop the server (accept, epoll_ctl), clients refused past
    // max_clients, malformed answers from the QTSM.
    std::function<void(ServerEvent const&)> on_event;
    NoticeSink notice;
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
