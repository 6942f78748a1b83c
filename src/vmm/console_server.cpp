// The console socket (vmm/console_server.hpp; docs/FORMATS.md §11). Every
// call here runs on the event-loop thread, under its seccomp allow-list
// (vmm/seccomp.hpp): accept4, sendmsg, read, close and epoll_ctl while the
// VM runs; poll, lstat and unlink in finish().
#include <qtbox/base/sys.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/vmm/console_server.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace qtbox::vmm {

namespace {

// The socket file is the VMM user's alone: the console of a debug enclave
// is as private as its --console file.
constexpr mode_t SOCKET_MODE = 0600;
constexpr int LISTEN_BACKLOG = 8;
// Connections taken per listener event (the others wait for the next round).
constexpr int MAX_ACCEPTS_PER_EVENT = 16;
// After accept4 fails for want of fds or memory, how long the listener
// rests instead of spinning on its pending connection.
constexpr std::chrono::milliseconds ACCEPT_RETRY { 1000 };
// What a reader may send (nothing is expected) is read in pieces this big,
// at most this many per event, and dropped.
constexpr std::size_t DISCARD_SIZE = 512;
constexpr int DISCARDS_PER_EVENT = 16;

bool would_block(int code) { return code == EAGAIN || code == EWOULDBLOCK; }

// Never blocks and never raises SIGPIPE; -1 with errno like sendmsg.
ssize_t send_now(int fd, ByteView bytes)
{
    iovec piece { const_cast<std::uint8_t*>(bytes.data()), bytes.size() };
    msghdr message {};
    message.msg_iov = &piece;
    message.msg_iovlen = 1;
    return ::sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
}

// docs/FORMATS.md §11: what stands for the bytes a slow reader lost, on a
// line of its own.
std::string dropped_marker(std::uint64_t dropped, bool at_line_start)
{
    return fmt::format("{}[... {} bytes dropped ...]\n", at_line_start ? "" : "\n", dropped);
}

} // namespace

class ConsoleServer::Handler final : public net::EventHandler {
public:
    explicit Handler(std::function<void(std::uint32_t)> on_ready) : m_on_ready(std::move(on_ready)) { }
    void on_event(std::uint32_t events) override { m_on_ready(events); }

private:
    std::function<void(std::uint32_t)> m_on_ready;
};

struct ConsoleServer::Reader final : public net::EventHandler {
    explicit Reader(ConsoleServer& server_) : server(server_) { }
    void on_event(std::uint32_t events) override
    {
        if (!ended)
            server.on_reader(*this, events);
    }

    ConsoleServer& server;
    UniqueFd fd;
    std::uint64_t position { 0 }; // the next ring position to copy out
    Bytes pending;                // copied out, not all sent yet (at most CHUNK and a marker)
    std::size_t sent { 0 };       // how much of `pending` the socket took
    bool first_copy { true };     // the replay: what the ring lost before it is history, not a drop
    bool at_line_start { true };  // the last byte copied out ended a line
    bool reading { true };        // EPOLLIN wanted: the reader has not shut its side
    std::uint32_t watched { 0 };
    bool ended { false };
};

ConsoleServer::ConsoleServer(std::string path, ConsoleRing& ring, net::EventLoop& loop)
    : m_path(std::move(path))
    , m_ring(ring)
    , m_loop(loop)
{
}

ErrorOr<std::unique_ptr<ConsoleServer>> ConsoleServer::create(std::string path, ConsoleRing& ring, net::EventLoop& loop,
    std::shared_ptr<devices::virtio::HostListener> prebound)
{
    auto server = std::unique_ptr<ConsoleServer>(new ConsoleServer(std::move(path), ring, loop));
    if (auto started = server->start(std::move(prebound)); started.is_error())
        return started.release_error().context(fmt::format("console socket {}", server->m_path));
    return server;
}

ErrorOr<std::shared_ptr<devices::virtio::HostListener>> ConsoleServer::bind(std::string const& path)
{
    // sys::unix_listen replaces any socket file at the path; probe it
    // first: only one nobody accepts on (ECONNREFUSED) is stale.
    struct stat existing { };
    if (::lstat(path.c_str(), &existing) == 0 && S_ISSOCK(existing.st_mode)) {
        auto address = TRY(net::SocketAddress::unix_path(path));
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!probe)
            return Error::from_errno("socket");
        if (::connect(probe.get(), address.raw(), address.length()) == 0 || errno == EAGAIN)
            return Error::from_code(ConsoleServerError::InUse, "another process is serving it");
        // A socket we may not even probe (EACCES...) is not ours to replace.
        if (errno != ECONNREFUSED && errno != ENOENT)
            return Error::from_errno("probing the existing socket");
    }
    auto bound = std::make_shared<devices::virtio::HostListener>();
    bound->fd = TRY(sys::unix_listen(path, SOCKET_MODE, LISTEN_BACKLOG));
    if (::lstat(path.c_str(), &bound->identity) < 0)
        return Error::from_errno("lstat");
    return bound;
}

ErrorOr<void> ConsoleServer::start(std::shared_ptr<devices::virtio::HostListener> prebound)
{
    if (!prebound || !prebound->fd)
        prebound = TRY(bind(m_path));
    m_listener = std::move(prebound->fd);
    m_identity = prebound->identity;
    TRY(sys::set_nonblocking(m_listener.get()));
    m_wake = TRY(sys::eventfd());
    m_listener_handler = std::make_unique<Handler>([this](std::uint32_t) { on_listener(); });
    m_wake_handler = std::make_unique<Handler>([this](std::uint32_t) { on_wake(); });
    TRY(m_loop.add(m_wake.get(), EPOLLIN, m_wake_handler.get()));
    TRY(m_loop.add(m_listener.get(), EPOLLIN, m_listener_handler.get()));
    m_listener_in_loop = true;
    m_ring.set_wake_fd(m_wake.get());
    return {};
}

ConsoleServer::~ConsoleServer()
{
    m_ring.set_wake_fd(-1);
    if (m_reader)
        end_reader();
    m_ended.clear();
    stop_listening();
    if (m_wake && m_wake_handler)
        m_loop.remove(m_wake.get());
}

void ConsoleServer::stop_listening()
{
    if (!m_listener)
        return;
    if (m_listener_in_loop)
        m_loop.remove(m_listener.get());
    m_listener_in_loop = false;
    m_listener.reset();
    net::remove_socket_file(m_path, m_identity);
}

void ConsoleServer::on_listener()
{
    for (int i = 0; i < MAX_ACCEPTS_PER_EVENT && m_listener; ++i) {
        int fd = ::accept4(m_listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int code = errno;
            if (would_block(code))
                return;
            if (code == EINTR || code == ECONNABORTED)
                continue;
            // Out of fds or memory: rest (settle() resumes).
            m_loop.remove(m_listener.get());
            m_listener_in_loop = false;
            m_accept_retry = std::chrono::steady_clock::now() + ACCEPT_RETRY;
            return;
        }
        UniqueFd client(fd);
        if (m_reader) {
            refuse(std::move(client));
            continue;
        }
        auto reader = std::make_unique<Reader>(*this);
        reader->fd = std::move(client);
        auto greeting = as_bytes(GREETING);
        reader->pending.assign(greeting.begin(), greeting.end());
        if (m_loop.add(reader->fd.get(), EPOLLIN, reader.get()).is_error())
            continue; // the reader sees its connection close
        reader->watched = EPOLLIN;
        m_reader = std::move(reader);
        pump(*m_reader);
    }
}

void ConsoleServer::refuse(UniqueFd client)
{
    // A fresh socket's buffer takes one short line; if it does not, the
    // client sees the connection close without it.
    [[maybe_unused]] auto sent = send_now(client.get(), as_bytes(BUSY));
}

void ConsoleServer::on_wake()
{
    sys::clear_event(m_wake.get());
    if (m_reader)
        pump(*m_reader);
}

void ConsoleServer::on_reader(Reader& reader, std::uint32_t events)
{
    if ((events & EPOLLIN) && reader.reading) {
        std::uint8_t discard[DISCARD_SIZE];
        for (int i = 0; i < DISCARDS_PER_EVENT; ++i) {
            ssize_t n = ::read(reader.fd.get(), discard, sizeof(discard));
            if (n > 0)
                continue;
            if (n == 0) {
                // Shut for writing only (a half-close): it may still read.
                reader.reading = false;
                break;
            }
            if (errno == EINTR)
                continue;
            if (would_block(errno))
                break;
            return end_reader();
        }
    }
    // Both directions closed (the reader went away) or a reset.
    if (events & (EPOLLHUP | EPOLLERR))
        return end_reader();
    pump(reader);
}

void ConsoleServer::pump(Reader& reader)
{
    bool caught_up = false;
    int copies = 0;
    while (true) {
        if (reader.sent == reader.pending.size()) {
            if (copies == CHUNKS_PER_ROUND)
                break;
            reader.pending.clear();
            reader.sent = 0;
            auto chunk = m_ring.read(reader.position, CHUNK, reader.pending);
            reader.position = chunk.next;
            if (chunk.dropped > 0 && !reader.first_copy) {
                auto marker = dropped_marker(chunk.dropped, reader.at_line_start);
                reader.pending.insert(reader.pending.begin(), marker.begin(), marker.end());
            }
            reader.first_copy = false;
            if (reader.pending.empty()) {
                caught_up = true; // the ring armed the wake for the next byte
                break;
            }
            reader.at_line_start = reader.pending.back() == '\n';
            ++copies;
        }
        ssize_t n = send_now(reader.fd.get(), ByteView(reader.pending).subspan(reader.sent));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (would_block(errno))
                break;
            return end_reader(); // EPIPE, ECONNRESET: the reader went away
        }
        reader.sent += static_cast<std::size_t>(n);
    }
    // Not caught up: the socket is full (EPOLLOUT says when it drains) or
    // this round's budget is spent (the writable socket fires at once).
    watch(reader, (reader.reading ? EPOLLIN : 0u) | (caught_up ? 0u : EPOLLOUT));
}

void ConsoleServer::watch(Reader& reader, std::uint32_t events)
{
    if (events == reader.watched)
        return;
    if (m_loop.modify(reader.fd.get(), events, &reader).is_error())
        return end_reader();
    reader.watched = events;
}

void ConsoleServer::end_reader()
{
    if (!m_reader)
        return;
    m_reader->ended = true;
    m_loop.remove(m_reader->fd.get());
    m_reader->fd.reset();
    m_ended.push_back(std::move(m_reader));
}

void ConsoleServer::settle()
{
    m_ended.clear();
    if (m_listener && !m_listener_in_loop && m_accept_retry && std::chrono::steady_clock::now() >= *m_accept_retry) {
        if (!m_loop.add(m_listener.get(), EPOLLIN, m_listener_handler.get()).is_error()) {
            m_listener_in_loop = true;
            m_accept_retry.reset();
        }
    }
}

void ConsoleServer::finish(int timeout_ms)
{
    // No new reader; connections still queued see theirs close.
    stop_listening();
    m_ended.clear();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (m_reader) {
        pump(*m_reader);
        if (!m_reader)
            break;
        if (m_reader->sent == m_reader->pending.size() && m_reader->position >= m_ring.end())
            break;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            break;
        pollfd socket { m_reader->fd.get(), POLLOUT, 0 };
        int ready = ::poll(&socket, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0 || (socket.revents & (POLLERR | POLLHUP | POLLNVAL)))
            break;
    }
    end_reader();
    m_ended.clear();
}

} // namespace qtbox::vmm
