// qtsm-server's event loop; the design is described in server.hpp.
#include <qtbox/qtsm/server.hpp>

#include <qtbox/base/sys.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/qtsm/framing.hpp>
#include <qtbox/qtsm/pcr_bank.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <limits>
#include <optional>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

namespace qtbox::qtsm {

namespace {

// Clients are numbered from FIRST_CLIENT_ID up.
constexpr std::uint64_t FIRST_CLIENT_ID = 16;

std::int64_t monotonic_ms()
{
    timespec now {};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}

bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK; }

enum class Phase {
    Reading, // waiting for (the rest of) a request
    Waiting, // its request is with the QTSM
    Writing, // its answer is being written
};

// The loop's handlers: each forwards its fd's events to the server's state.
struct Client final : net::EventHandler {
    explicit Client(Server::State& owner) : server(owner) { }
    void on_event(std::uint32_t flags) override;

    Server::State& server;
    ClientInfo info;
    UniqueFd fd;
    // Closed in this batch of events: the object lives on until the batch
    // is over (net::EventLoop), and ignores what is still queued for it.
    bool closed { false };
    FrameReader reader { MAX_REQUEST_SIZE };
    Phase phase { Phase::Reading };
    Bytes output;
    std::size_t written { 0 };
    bool close_after_write { false };
    std::int64_t deadline { 0 }; // 0: none
    std::uint32_t events { 0 };  // what epoll watches now

    std::uint64_t id() const { return info.id; }
    std::string name() const { return client_name(info); }
};

// The listening socket, the upstream channel and the stop fd.
struct Source final : net::EventHandler {
    enum class Kind { Listener, Upstream, Stop };
    Source(Server::State& owner, Kind which) : server(owner), kind(which) { }
    void on_event(std::uint32_t flags) override;

    Server::State& server;
    Kind kind;
};

struct Pending {
    std::uint64_t client { 0 };
    Request request;
};

} // namespace

std::string client_name(ClientInfo const& client)
{
    return fmt::format("client {} (pid {}, uid {}, gid {})", client.id, client.pid, client.uid, client.gid);
}

ErrorOr<Request> screen_request(ByteView encoded)
{
    auto request = TRY(decode_request(encoded));
    auto check_index = [](std::uint16_t index, std::string_view what) -> ErrorOr<void> {
        if (index >= PCR_COUNT)
            return Error::from_code(QtsmError::InvalidIndex, fmt::format("{}: PCR {} does not exist", what, index));
        if (index < SYSTEM_PCR_COUNT)
            return Error::from_code(QtsmError::ReadOnlyIndex,
                fmt::format("{}: PCR {} is a platform register (0-15 are read-only)", what, index));
        return {};
    };
    if (auto const* extend = std::get_if<ExtendPcrRequest>(&request)) {
        TRY(check_index(extend->index, "ExtendPCR"));
        if (extend->data.empty())
            return Error::from_code(QtsmError::InvalidArgument, "ExtendPCR: no data");
    } else if (auto const* lock = std::get_if<LockPcrRequest>(&request)) {
        TRY(check_index(lock->index, "LockPCR"));
    } else if (auto const* locks = std::get_if<LockPcrsRequest>(&request)) {
        if (locks->range.empty())
            return Error::from_code(QtsmError::InvalidArgument, "LockPCRs: empty range");
        for (auto index : locks->range)
            TRY(check_index(index, "LockPCRs"));
    } else if (auto const* describe = std::get_if<DescribePcrRequest>(&request)) {
        if (describe->index >= PCR_COUNT)
            return Error::from_code(QtsmError::InvalidIndex,
                fmt::format("DescribePCR: PCR {} does not exist", describe->index));
    }
    return request;
}

struct Server::State {
    explicit State(net::EventLoop event_loop, ServerOptions server_options)
        : loop(std::move(event_loop)), options(std::move(server_options))
    {
    }

    net::EventLoop loop;
    UniqueFd listener;
    UniqueFd upstream;
    ServerOptions options;
    Source listener_source { *this, Source::Kind::Listener };
    Source upstream_source { *this, Source::Kind::Upstream };
    Source stop_source { *this, Source::Kind::Stop };
    std::unordered_map<std::uint64_t, std::unique_ptr<Client>> clients;
    // Closed during the current batch of events; freed after it.
    std::vector<std::unique_ptr<Client>> retired;
    std::uint64_t next_client { FIRST_CLIENT_ID };
    bool listener_paused { false };
    std::size_t refused_connections { 0 };
    // The stop fd became readable, or the upstream channel failed: the
    // rest of the batch is ignored and the loop ends.
    bool stopped { false };
    std::optional<Error> failure;

    std::deque<Pending> pending;
    Bytes upstream_output;
    std::size_t upstream_written { 0 };
    bool upstream_watching_output { false };
    FrameReader upstream_reader { MAX_RESPONSE_SIZE };
    std::int64_t upstream_deadline { 0 };

    void report(ServerEvent const& event) const
    {
        if (options.on_event)
            options.on_event(event);
    }

    void notify(Severity severity, std::string text) const
    {
        if (options.notice)
            options.notice(Notice { severity, std::move(text) });
    }

    bool done() const { return stopped || failure.has_value(); }

    void set_client_events(Client& client, std::uint32_t events)
    {
        if (client.events == events)
            return;
        if (auto modified = loop.modify(client.fd.get(), events, &client); modified.is_error())
            notify(Severity::Warning, fmt::format("{}: epoll_ctl: {}", client.name(), std::strerror(modified.error().errno_code())));
        client.events = events;
    }

    void close_client(std::uint64_t id, std::string_view why)
    {
        auto it = clients.find(id);
        if (it == clients.end())
            return;
        report(ClientDisconnected { it->second->info, std::string(why) });
        // Closing the descriptor removes it from the epoll set; the object
        // waits for the end of the batch.
        auto client = std::move(it->second);
        clients.erase(it);
        client->fd.reset();
        client->closed = true;
        retired.push_back(std::move(client));
        if (listener_paused) {
            listener_paused = false;
            (void)loop.modify(listener.get(), EPOLLIN, &listener_source);
        }
    }

    // Queues `item` as the client's answer and tries to write it now.
    void respond(Client& client, Bytes const& item)
    {
        client.output = make_frame(item);
        client.written = 0;
        client.phase = Phase::Writing;
        client.deadline = monotonic_ms() + options.frame_timeout_ms;
        write_client(client);
    }

    void refuse(Client& client, Error const& error, bool close_after)
    {
        auto code = error.code_as<QtsmError>().value_or(QtsmError::InternalError);
        report(RequestRefused { client.info, code, error.message() });
        client.close_after_write = close_after;
        respond(client, encode_error(code));
    }

    void write_client(Client& client)
    {
        auto id = client.id();
        while (client.written < client.output.size()) {
            ssize_t n = ::send(client.fd.get(), client.output.data() + client.written,
                client.output.size() - client.written, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (would_block(errno)) {
                    set_client_events(client, EPOLLOUT);
                    return;
                }
                close_client(id, fmt::format("write: {}", std::strerror(errno)));
                return;
            }
            client.written += static_cast<std::size_t>(n);
        }
        client.output.clear();
        client.written = 0;
        client.deadline = 0;
        if (client.close_after_write) {
            close_client(id, "after an unrecoverable framing error");
            return;
        }
        client.phase = Phase::Reading;
        set_client_events(client, EPOLLIN);
    }

    void forward(Client& client, Request request)
    {
        auto encoded = encode_request(request);
        report(RequestForwarded { client.info, request_name(request) });
        if (upstream_written > 0) {
            upstream_output.erase(upstream_output.begin(), upstream_output.begin() + static_cast<std::ptrdiff_t>(upstream_written));
            upstream_written = 0;
        }
        auto frame = make_frame(encoded);
        upstream_output.insert(upstream_output.end(), frame.begin(), frame.end());
        if (pending.empty())
            upstream_deadline = monotonic_ms() + options.upstream_timeout_ms;
        pending.push_back({ client.id(), std::move(request) });
        client.phase = Phase::Waiting;
        client.deadline = 0;
        // Nothing to read from this client until it has its answer.
        set_client_events(client, 0);
    }

    void on_client_frame(Client& client, Bytes const& item)
    {
        auto screened = screen_request(item);
        if (screened.is_error()) {
            refuse(client, screened.error(), false);
            return;
        }
        forward(client, screened.release_value());
    }

    void read_client(Client& client)
    {
        auto id = client.id();
        while (client.phase == Phase::Reading) {
            auto space = client.reader.space();
            ssize_t n = ::recv(client.fd.get(), space.data(), space.size(), MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (!would_block(errno))
                    close_client(id, fmt::format("read: {}", std::strerror(errno)));
                return;
            }
            if (n == 0) {
                close_client(id, client.reader.in_progress() ? "closed inside a request" : "");
                return;
            }
            auto complete = client.reader.commit(static_cast<std::size_t>(n));
            if (complete.is_error()) {
                bool too_large = complete.error().is(FrameError::TooLarge);
                auto code = too_large ? QtsmError::InputTooLarge : QtsmError::InvalidArgument;
                // An over-long prefix leaves the stream out of step: answer
                // once, then drop the client. An empty frame was consumed
                // whole, so the client may go on.
                if (!too_large)
                    client.reader.take();
                refuse(client, Error::from_code(code, complete.error().message()), too_large);
                return; // `client` may be closed now
            }
            if (!complete.value()) {
                if (client.deadline == 0)
                    client.deadline = monotonic_ms() + options.frame_timeout_ms;
                continue;
            }
            auto item = client.reader.take();
            client.deadline = 0;
            on_client_frame(client, item);
            if (!clients.contains(id))
                return;
        }
    }

    void accept_clients()
    {
        for (;;) {
            UniqueFd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!fd) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                if (!would_block(errno)) {
                    // EMFILE/ENFILE/ENOMEM: stop accepting until a client leaves,
                    // instead of spinning on a listener that stays readable.
                    notify(Severity::Warning, fmt::format("accept: {}; not accepting until a client disconnects", std::strerror(errno)));
                    listener_paused = true;
                    (void)loop.modify(listener.get(), 0, &listener_source);
                }
                return;
            }
            if (clients.size() >= options.max_clients) {
                if (refused_connections++ % 100 == 0)
                    notify(Severity::Warning, fmt::format("{} clients connected (the maximum): refusing new connections ({} so far)",
                                                  clients.size(), refused_connections));
                continue;
            }
            auto client = std::make_unique<Client>(*this);
            client->info.id = next_client++;
            ucred credentials {};
            socklen_t length = sizeof(credentials);
            if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0) {
                client->info.pid = credentials.pid;
                client->info.uid = credentials.uid;
                client->info.gid = credentials.gid;
            }
            client->fd = std::move(fd);
            if (auto added = loop.add(client->fd.get(), EPOLLIN, client.get()); added.is_error()) {
                notify(Severity::Warning, fmt::format("{}: epoll_ctl: {}", client->name(), std::strerror(added.error().errno_code())));
                continue;
            }
            client->events = EPOLLIN;
            report(ClientConnected { client->info });
            clients.emplace(client->id(), std::move(client));
        }
    }

    ErrorOr<void> write_upstream()
    {
        while (upstream_written < upstream_output.size()) {
            ssize_t n = ::send(upstream.get(), upstream_output.data() + upstream_written,
                upstream_output.size() - upstream_written, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (would_block(errno))
                    break;
                return Error::from_errno("write to the QTSM");
            }
            upstream_written += static_cast<std::size_t>(n);
        }
        bool more = upstream_written < upstream_output.size();
        if (!more) {
            upstream_output.clear();
            upstream_written = 0;
        }
        if (more != upstream_watching_output) {
            TRY(loop.modify(upstream.get(), more ? EPOLLIN | EPOLLOUT : EPOLLIN, &upstream_source));
            upstream_watching_output = more;
        }
        return {};
    }

    ErrorOr<void> on_upstream_frame(Bytes const& item)
    {
        if (pending.empty())
            return Error::from_string("the QTSM sent an answer nobody asked for");
        auto entry = std::move(pending.front());
        pending.pop_front();
        upstream_deadline = pending.empty() ? 0 : monotonic_ms() + options.upstream_timeout_ms;
        auto it = clients.find(entry.client);
        auto response = decode_response(item);
        bool valid = !response.is_error() && response_matches(entry.request, response.value());
        if (!valid) {
            notify(Severity::Warning, fmt::format("the QTSM's answer to {} is malformed: {}", request_name(entry.request),
                                          response.is_error() ? response.error().message() : std::string("a response of another kind")));
        }
        if (it == clients.end())
            return {}; // the client left while its request was in flight
        auto& client = *it->second;
        if (valid) {
            auto const* error = std::get_if<ErrorResponse>(&response.value());
            report(RequestAnswered { client.info, request_name(entry.request),
                error ? std::optional<QtsmError>(error->code) : std::nullopt });
        }
        respond(client, valid ? item : encode_error(QtsmError::InvalidResponse));
        return {};
    }

    ErrorOr<void> read_upstream()
    {
        for (;;) {
            auto space = upstream_reader.space();
            ssize_t n = ::recv(upstream.get(), space.data(), space.size(), MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (would_block(errno))
                    return {};
                return Error::from_errno("read from the QTSM");
            }
            if (n == 0)
                return Error::from_string("the QTSM closed the channel");
            auto complete = upstream_reader.commit(static_cast<std::size_t>(n));
            if (complete.is_error())
                return complete.release_error().context("the QTSM's answer");
            if (complete.value())
                TRY(on_upstream_frame(upstream_reader.take()));
        }
    }

    // The earliest deadline as an epoll timeout (-1: none), and expiry.
    int next_timeout(std::int64_t now) const
    {
        std::int64_t earliest = std::numeric_limits<std::int64_t>::max();
        for (auto const& [id, client] : clients) {
            if (client->deadline != 0)
                earliest = std::min(earliest, client->deadline);
        }
        if (upstream_deadline != 0)
            earliest = std::min(earliest, upstream_deadline);
        if (earliest == std::numeric_limits<std::int64_t>::max())
            return -1;
        return static_cast<int>(std::clamp<std::int64_t>(earliest - now, 0, 60'000));
    }

    ErrorOr<void> expire(std::int64_t now)
    {
        if (upstream_deadline != 0 && now >= upstream_deadline)
            return Error::from_string(fmt::format("the QTSM did not answer {} within {} ms",
                                          request_name(pending.front().request), options.upstream_timeout_ms));
        std::vector<std::uint64_t> expired;
        for (auto const& [id, client] : clients) {
            if (client->deadline != 0 && now >= client->deadline)
                expired.push_back(id);
        }
        for (auto id : expired) {
            auto const& client = *clients.at(id);
            close_client(id, client.phase == Phase::Writing ? "did not take its answer in time"
                                                            : "did not finish its request in time");
        }
        return {};
    }

    // Before giving up: tell every client still waiting that its request
    // failed, without blocking on any of them.
    void fail_pending()
    {
        auto frame = make_frame(encode_error(QtsmError::InternalError));
        for (auto const& entry : pending) {
            auto it = clients.find(entry.client);
            if (it != clients.end())
                (void)::send(it->second->fd.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        pending.clear();
    }

    void on_upstream_event(std::uint32_t flags)
    {
        if (flags & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (auto read = read_upstream(); read.is_error()) {
                failure = read.release_error();
                return;
            }
        }
        if (flags & EPOLLOUT) {
            if (auto written = write_upstream(); written.is_error())
                failure = written.release_error();
        }
    }

    void on_client_event(Client& client, std::uint32_t flags)
    {
        if (client.phase == Phase::Reading && (flags & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            read_client(client);
        else if (client.phase == Phase::Writing && (flags & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
            write_client(client);
        else if (flags & (EPOLLHUP | EPOLLERR))
            close_client(client.id(), "hung up while its request was with the QTSM");
    }

    ErrorOr<void> run_loop()
    {
        for (;;) {
            auto waited = loop.wait(next_timeout(monotonic_ms()));
            retired.clear();
            if (waited.is_error())
                return waited.release_error();
            if (failure)
                return std::exchange(failure, std::nullopt).value();
            if (stopped)
                return {};
            // Requests screened in this batch go upstream together.
            if (upstream_written < upstream_output.size())
                TRY(write_upstream());
            TRY(expire(monotonic_ms()));
        }
    }
};

namespace {

void Client::on_event(std::uint32_t flags)
{
    // Once the server is stopping, what is left of the batch is not
    // handled; a client closed earlier in the batch takes nothing more.
    if (server.done() || closed)
        return;
    server.on_client_event(*this, flags);
}

void Source::on_event(std::uint32_t flags)
{
    if (server.done())
        return;
    switch (kind) {
    case Kind::Stop:
        server.stopped = true;
        break;
    case Kind::Listener:
        server.accept_clients();
        break;
    case Kind::Upstream:
        server.on_upstream_event(flags);
        break;
    }
}

} // namespace

Server::Server(std::unique_ptr<State> state) : m_state(std::move(state)) { }
Server::Server(Server&&) noexcept = default;
Server::~Server() = default;

ErrorOr<Server> Server::create(UniqueFd listener, UniqueFd upstream, ServerOptions options)
{
    auto loop = TRY(net::EventLoop::create());
    TRY(sys::set_nonblocking(listener.get()));
    TRY(sys::set_nonblocking(upstream.get()));
    auto state = std::make_unique<State>(std::move(loop), std::move(options));
    state->listener = std::move(listener);
    state->upstream = std::move(upstream);
    TRY(state->loop.add(state->listener.get(), EPOLLIN, &state->listener_source));
    TRY(state->loop.add(state->upstream.get(), EPOLLIN, &state->upstream_source));
    if (state->options.stop_fd >= 0)
        TRY(state->loop.add(state->options.stop_fd, EPOLLIN, &state->stop_source));
    return Server(std::move(state));
}

ErrorOr<void> Server::run()
{
    auto result = m_state->run_loop();
    if (result.is_error())
        m_state->fail_pending();
    return result;
}

} // namespace qtbox::qtsm
