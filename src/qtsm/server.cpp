// qtsm-server's event loop; the design is described in server.hpp.
#include <qtbox/qtsm/server.hpp>

#include <qtbox/base/log.hpp>
#include <qtbox/qtsm/framing.hpp>
#include <qtbox/qtsm/pcr_bank.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <fcntl.h>
#include <limits>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>

namespace qtbox::qtsm {

namespace {

// epoll tokens; clients are numbered from FIRST_CLIENT_TOKEN up.
constexpr std::uint64_t LISTENER_TOKEN = 0;
constexpr std::uint64_t UPSTREAM_TOKEN = 1;
constexpr std::uint64_t STOP_TOKEN = 2;
constexpr std::uint64_t FIRST_CLIENT_TOKEN = 16;
constexpr int MAX_EVENTS = 64;

std::int64_t monotonic_ms()
{
    timespec now {};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}

ErrorOr<void> set_nonblocking(int fd)
{
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return Error::from_errno("fcntl O_NONBLOCK");
    return {};
}

bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK; }

enum class Phase {
    Reading, // waiting for (the rest of) a request
    Waiting, // its request is with the QTSM
    Writing, // its answer is being written
};

struct Client {
    std::uint64_t id { 0 };
    UniqueFd fd;
    pid_t pid { 0 };
    uid_t uid { 0 };
    gid_t gid { 0 };
    FrameReader reader { MAX_REQUEST_SIZE };
    Phase phase { Phase::Reading };
    Bytes output;
    std::size_t written { 0 };
    bool close_after_write { false };
    std::int64_t deadline { 0 }; // 0: none
    std::uint32_t events { 0 };  // what epoll watches now

    std::string name() const { return fmt::format("client {} (pid {}, uid {}, gid {})", id, pid, uid, gid); }
};

struct Pending {
    std::uint64_t client { 0 };
    Request request;
};

} // namespace

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
    UniqueFd epoll;
    UniqueFd listener;
    UniqueFd upstream;
    ServerOptions options;
    std::unordered_map<std::uint64_t, std::unique_ptr<Client>> clients;
    std::uint64_t next_client { FIRST_CLIENT_TOKEN };
    bool listener_paused { false };
    std::size_t refused_connections { 0 };

    std::deque<Pending> pending;
    Bytes upstream_output;
    std::size_t upstream_written { 0 };
    bool upstream_watching_output { false };
    FrameReader upstream_reader { MAX_RESPONSE_SIZE };
    std::int64_t upstream_deadline { 0 };

    ErrorOr<void> watch(int fd, std::uint64_t token, std::uint32_t events, int operation)
    {
        epoll_event event {};
        event.events = events;
        event.data.u64 = token;
        if (::epoll_ctl(epoll.get(), operation, fd, &event) < 0)
            return Error::from_errno("epoll_ctl");
        return {};
    }

    void set_client_events(Client& client, std::uint32_t events)
    {
        if (client.events == events)
            return;
        if (watch(client.fd.get(), client.id, events, EPOLL_CTL_MOD).is_error())
            log::warn("{}: epoll_ctl: {}", client.name(), std::strerror(errno));
        client.events = events;
    }

    void close_client(std::uint64_t id, std::string_view why)
    {
        auto it = clients.find(id);
        if (it == clients.end())
            return;
        log::info("{} disconnected{}{}", it->second->name(), why.empty() ? "" : ": ", why);
        // Closing the descriptor removes it from the epoll set.
        clients.erase(it);
        if (listener_paused) {
            listener_paused = false;
            (void)watch(listener.get(), LISTENER_TOKEN, EPOLLIN, EPOLL_CTL_MOD);
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
        log::warn("{}: refused ({}): {}", client.name(), error_name(code), error.message());
        client.close_after_write = close_after;
        respond(client, encode_error(code));
    }

    void write_client(Client& client)
    {
        auto id = client.id;
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
        log::debug("{}: {}", client.name(), request_name(request));
        if (upstream_written > 0) {
            upstream_output.erase(upstream_output.begin(), upstream_output.begin() + static_cast<std::ptrdiff_t>(upstream_written));
            upstream_written = 0;
        }
        auto frame = make_frame(encoded);
        upstream_output.insert(upstream_output.end(), frame.begin(), frame.end());
        if (pending.empty())
            upstream_deadline = monotonic_ms() + options.upstream_timeout_ms;
        pending.push_back({ client.id, std::move(request) });
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
        auto id = client.id;
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
                return; // `client` may be gone now
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
                    log::warn("accept: {}; not accepting until a client disconnects", std::strerror(errno));
                    listener_paused = true;
                    (void)watch(listener.get(), LISTENER_TOKEN, 0, EPOLL_CTL_MOD);
                }
                return;
            }
            if (clients.size() >= options.max_clients) {
                if (refused_connections++ % 100 == 0)
                    log::warn("{} clients connected (the maximum): refusing new connections ({} so far)",
                        clients.size(), refused_connections);
                continue;
            }
            auto client = std::make_unique<Client>();
            client->id = next_client++;
            ucred credentials {};
            socklen_t length = sizeof(credentials);
            if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0) {
                client->pid = credentials.pid;
                client->uid = credentials.uid;
                client->gid = credentials.gid;
            }
            client->fd = std::move(fd);
            if (watch(client->fd.get(), client->id, EPOLLIN, EPOLL_CTL_ADD).is_error()) {
                log::warn("{}: epoll_ctl: {}", client->name(), std::strerror(errno));
                continue;
            }
            client->events = EPOLLIN;
            log::info("{} connected", client->name());
            clients.emplace(client->id, std::move(client));
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
            TRY(watch(upstream.get(), UPSTREAM_TOKEN, more ? EPOLLIN | EPOLLOUT : EPOLLIN, EPOLL_CTL_MOD));
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
            log::warn("the QTSM's answer to {} is malformed: {}", request_name(entry.request),
                response.is_error() ? response.error().message() : std::string("a response of another kind"));
        }
        if (it == clients.end())
            return {}; // the client left while its request was in flight
        auto& client = *it->second;
        if (auto const* error = valid ? std::get_if<ErrorResponse>(&response.value()) : nullptr)
            log::info("{}: {} answered {}", client.name(), request_name(entry.request), error_name(error->code));
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

    ErrorOr<void> loop()
    {
        std::array<epoll_event, MAX_EVENTS> events {};
        for (;;) {
            int count = ::epoll_wait(epoll.get(), events.data(), MAX_EVENTS, next_timeout(monotonic_ms()));
            if (count < 0) {
                if (errno == EINTR)
                    continue;
                return Error::from_errno("epoll_wait");
            }
            for (int i = 0; i < count; ++i) {
                auto token = events[i].data.u64;
                auto flags = events[i].events;
                if (token == STOP_TOKEN)
                    return {};
                if (token == LISTENER_TOKEN) {
                    accept_clients();
                } else if (token == UPSTREAM_TOKEN) {
                    if (flags & (EPOLLIN | EPOLLHUP | EPOLLERR))
                        TRY(read_upstream());
                    if (flags & EPOLLOUT)
                        TRY(write_upstream());
                } else {
                    auto it = clients.find(token);
                    if (it == clients.end())
                        continue; // closed earlier in this batch
                    auto& client = *it->second;
                    if (client.phase == Phase::Reading && (flags & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                        read_client(client);
                    else if (client.phase == Phase::Writing && (flags & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
                        write_client(client);
                    else if (flags & (EPOLLHUP | EPOLLERR))
                        close_client(token, "hung up while its request was with the QTSM");
                }
            }
            // Requests screened in this batch go upstream together.
            if (upstream_written < upstream_output.size())
                TRY(write_upstream());
            TRY(expire(monotonic_ms()));
        }
    }
};

Server::Server(std::unique_ptr<State> state) : m_state(std::move(state)) { }
Server::Server(Server&&) noexcept = default;
Server::~Server() = default;

ErrorOr<Server> Server::create(UniqueFd listener, UniqueFd upstream, ServerOptions options)
{
    auto state = std::make_unique<State>();
    state->epoll = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
    if (!state->epoll)
        return Error::from_errno("epoll_create1");
    TRY(set_nonblocking(listener.get()));
    TRY(set_nonblocking(upstream.get()));
    state->listener = std::move(listener);
    state->upstream = std::move(upstream);
    state->options = options;
    TRY(state->watch(state->listener.get(), LISTENER_TOKEN, EPOLLIN, EPOLL_CTL_ADD));
    TRY(state->watch(state->upstream.get(), UPSTREAM_TOKEN, EPOLLIN, EPOLL_CTL_ADD));
    if (options.stop_fd >= 0)
        TRY(state->watch(options.stop_fd, STOP_TOKEN, EPOLLIN, EPOLL_CTL_ADD));
    return Server(std::move(state));
}

ErrorOr<void> Server::run()
{
    auto result = m_state->loop();
    if (result.is_error())
        m_state->fail_pending();
    return result;
}

} // namespace qtbox::qtsm
