// The virtio-vsock device (virtio 1.2 §5.10) with hybrid vsock on the
// parent side (docs/ARCHITECTURE.md "Hybrid vsock", docs/PLATFORMS.md §V4).
//
// Structure: one State under one mutex. Its fixed handlers (the parent-side
// listener, the RX and TX notification eventfds, a timerfd for deadlines and
// an eventfd that frees closed connections) and one Connection per
// conversation are registered with the VMM's net::EventLoop; every handler
// takes the mutex, and so do activate() and reset() on vCPU threads.
//
// A Connection is the host half (a Unix socket, or a session of a service
// inside the VMM) plus its vsock::ConnectionState (the protocol and the
// credit counters, vsock_connection.hpp). Closed connections are not freed
// at once: an event for them may already have been fetched in the current
// batch (net/event_loop.hpp), so they wait in a graveyard that the reaper
// empties two of its own dispatches later, by which time no batch can still
// name them.
//
// TX (guest → device): each chain is one packet; the header is copied out of
// guest memory before it is judged. RX (device → guest): RSTs for no
// connection first, then the connections that owe a packet, round robin,
// one packet each per turn. Host data is read straight into the guest's
// buffers (readv) and guest data written straight from them (sendmsg); what
// a host socket cannot take at once waits in a per-connection ring of at most
// BUFFER_SIZE bytes, the credit the device advertises.
#include <qtbox/base/sys.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/devices/virtio/vsock_connection.hpp>
#include <qtbox/devices/virtio/vsock_packet.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/vsock/address.hpp>
#include <qtbox/vsock/heartbeat.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <fcntl.h>
#include <list>
#include <mutex>
#include <optional>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>
#include <vector>

namespace qtbox::devices::virtio {

using namespace vsock;
namespace address = ::qtbox::vsock;

namespace {

// Chains taken from one queue before the device lets other events run (it
// signals its own notification fd to come back).
constexpr std::size_t MAX_CHAINS_PER_PASS = 256;
// RSTs owed for packets of no connection, waiting for RX buffers. While
// this many wait, the device takes no more TX chains: a guest that floods
// the TX queue is slowed to the pace at which it takes the answers.
constexpr std::size_t MAX_PENDING_RESETS = 256;
// Parent connections accepted per listener event.
constexpr std::size_t MAX_ACCEPTS_PER_EVENT = 64;
constexpr int LISTEN_BACKLOG = 128;
// After accept() fails for lack of fds or memory, the listener rests this
// long instead of spinning on a socket it cannot serve.
constexpr int ACCEPT_RETRY_MS = 100;
// Notices of one kind (protocol violations, refused parents...) per device:
// enough to diagnose, never a flood a guest controls.
constexpr std::size_t MAX_NOTICES_PER_KIND = 16;
// Local ports of parent-initiated connections: high, away from the ports
// guests listen on, and unique among live connections.
constexpr std::uint32_t FIRST_LOCAL_PORT = 1u << 30;
// Service answers made in one settle() before the loop's other work goes on.
constexpr std::size_t MAX_ANSWERS_PER_SETTLE = 16;
// What one service session may have waiting for the guest.
constexpr std::size_t MAX_SERVICE_OUTPUT = BUFFER_SIZE;
// virtio 1.2 §5.10.4: the configuration space is `le64 guest_cid`.
constexpr std::size_t CONFIG_SIZE = 8;

using Clock = net::Clock;

// A connection's addresses on the parent side (CID 3) and the guest side.
struct Key {
    std::uint32_t local_port { 0 };
    std::uint32_t peer_port { 0 };
    auto operator<=>(Key const&) const = default;
};

// Byte ranges across a chain's buffers.
using Spans = std::vector<std::span<std::uint8_t>>;

void gather(Spans const& spans, std::size_t offset, std::uint8_t* out, std::size_t size)
{
    for (auto const& span : spans) {
        if (size == 0)
            return;
        if (offset >= span.size()) {
            offset -= span.size();
            continue;
        }
        std::size_t take = std::min(size, span.size() - offset);
        std::memcpy(out, span.data() + offset, take);
        out += take;
        size -= take;
        offset = 0;
    }
}

// The guest's bytes a host socket has not taken yet: a ring of BUFFER_SIZE,
// allocated while it holds anything.
class PendingBytes {
public:
    std::size_t size() const { return m_size; }
    bool empty() const { return m_size == 0; }

    // Copies [offset, offset + length) of a chain's buffers in. The caller
    // never appends more than BUFFER_SIZE − size() (the credit check
    // guarantees it).
    void append(Spans const& spans, std::size_t offset, std::size_t length)
    {
        if (length == 0)
            return;
        if (!m_data)
            m_data = std::make_unique_for_overwrite<std::uint8_t[]>(BUFFER_SIZE);
        std::size_t tail = (m_head + m_size) % BUFFER_SIZE;
        std::size_t first = std::min(length, BUFFER_SIZE - tail);
        gather(spans, offset, m_data.get() + tail, first);
        gather(spans, offset + first, m_data.get(), length - first);
        m_size += length;
    }
    // Up to two segments in order.
    int segments(iovec (&out)[2]) const
    {
        if (m_size == 0)
            return 0;
        std::size_t first = std::min(m_size, BUFFER_SIZE - m_head);
        out[0] = { m_data.get() + m_head, first };
        if (first == m_size)
            return 1;
        out[1] = { m_data.get(), m_size - first };
        return 2;
    }
    void consume(std::size_t length)
    {
        m_head = (m_head + length) % BUFFER_SIZE;
        m_size -= length;
        if (m_size == 0) {
            m_data.reset();
            m_head = 0;
        }
    }

private:
    std::unique_ptr<std::uint8_t[]> m_data;
    std::size_t m_head { 0 };
    std::size_t m_size { 0 };
};

void scatter(Spans const& spans, std::size_t offset, std::uint8_t const* in, std::size_t size)
{
    for (auto const& span : spans) {
        if (size == 0)
            return;
        if (offset >= span.size()) {
            offset -= span.size();
            continue;
        }
        std::size_t take = std::min(size, span.size() - offset);
        std::memcpy(span.data() + offset, in, take);
        in += take;
        size -= take;
        offset = 0;
    }
}

// iovecs for [offset, offset + size) of the spans (at most one per span,
// so at most MAX_QUEUE_SIZE, under IOV_MAX).
std::vector<iovec> iovecs(Spans const& spans, std::size_t offset, std::size_t size)
{
    std::vector<iovec> result;
    for (auto const& span : spans) {
        if (size == 0)
            break;
        if (offset >= span.size()) {
            offset -= span.size();
            continue;
        }
        std::size_t take = std::min(size, span.size() - offset);
        result.push_back({ span.data() + offset, take });
        size -= take;
        offset = 0;
    }
    return result;
}

// sendmsg without SIGPIPE: a host peer that went away is an error to
// handle, not a signal. -1 with errno on failure.
ssize_t send_segments(int fd, iovec* segments, std::size_t count)
{
    msghdr message {};
    message.msg_iov = segments;
    message.msg_iovlen = count;
    for (;;) {
        ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0 && errno == EINTR)
            continue;
        return sent;
    }
}

ssize_t read_segments(int fd, iovec* segments, std::size_t count)
{
    for (;;) {
        ssize_t got = ::readv(fd, segments, static_cast<int>(count));
        if (got < 0 && errno == EINTR)
            continue;
        return got;
    }
}

bool would_block(int code)
{
    return code == EAGAIN || code == EWOULDBLOCK;
}

class HeartbeatSession final : public VsockSession {
public:
    HeartbeatSession(
        std::function<std::uint64_t()> const& wall_clock_ns, std::function<void()> const& on_heartbeat, bool& seen)
        : m_wall_clock_ns(wall_clock_ns)
        , m_on_heartbeat(on_heartbeat)
        , m_seen(seen)
    {
    }

    ErrorOr<std::size_t> consume(ByteView data, Bytes& answers) override
    {
        if (data.empty())
            return 0;
        if (m_answered)
            return Error::from_string("heartbeat: more bytes after the heartbeat");
        if (data[0] != HeartbeatService::MAGIC)
            return Error::from_string(
                fmt::format("heartbeat: expected the single byte {:#04x}", HeartbeatService::MAGIC));
        m_answered = true;
        // docs/FORMATS.md §6: 0xB7, then the wall clock in ns, u64 big-endian.
        auto encoded = qtbox::vsock::encode_heartbeat_reply(m_wall_clock_ns ? m_wall_clock_ns() : 0);
        answers.insert(answers.end(), encoded.begin(), encoded.end());
        if (!m_seen) {
            m_seen = true;
            if (m_on_heartbeat)
                m_on_heartbeat();
        }
        return 1;
    }

private:
    std::function<std::uint64_t()> const& m_wall_clock_ns;
    std::function<void()> const& m_on_heartbeat;
    bool& m_seen;
    bool m_answered { false };
};

} // namespace

ErrorOr<Bytes> VsockSession::on_data(ByteView data)
{
    Bytes answers;
    while (!data.empty()) {
        auto used = TRY(consume(data, answers));
        if (used == 0 || used > data.size())
            return Error::from_string("a service took no bytes, or more than it was given");
        data = data.subspan(used);
    }
    return answers;
}

HeartbeatService::HeartbeatService(std::function<std::uint64_t()> wall_clock_ns, std::function<void()> on_heartbeat)
    : m_wall_clock_ns(std::move(wall_clock_ns))
    , m_on_heartbeat(std::move(on_heartbeat))
{
}

std::unique_ptr<VsockSession> HeartbeatService::open()
{
    return std::make_unique<HeartbeatSession>(m_wall_clock_ns, m_on_heartbeat, m_seen);
}

namespace {

enum class Phase {
    Handshake, // a parent client that has not sent its CONNECT line yet
    Connecting, // the device asked the guest (REQUEST) and waits for its answer
    Open, // both ways
    Draining, // the guest closed; its last bytes go to the host, then the socket closes
};

struct Connection final : net::EventHandler {
    explicit Connection(VsockDevice::State& device_state)
        : device(device_state)
    {
    }
    void on_event(std::uint32_t events) override;

    VsockDevice::State& device;
    Phase phase { Phase::Handshake };
    bool keyed { false };
    Key key;
    ConnectionState protocol { ConnectionState::requested() };

    UniqueFd fd; // the host socket (none for a service)
    std::unique_ptr<VsockSession> session; // a service inside the VMM
    std::uint32_t service_port { 0 };
    Bytes service_output; // a service's answer, waiting for guest credit

    PendingBytes pending; // guest bytes the host socket has not taken
    std::string handshake; // the parent's CONNECT line so far
    bool host_readable { false };
    bool host_write_shut { false };
    std::uint32_t registered { 0 }; // the epoll interest, 0 = not in the loop
    std::optional<Clock::time_point> deadline;
    bool dead { false };

    bool in_ready { false };
    std::list<Connection*>::iterator ready_position;
    std::list<std::unique_ptr<Connection>>::iterator self;
};

} // namespace

struct VsockDevice::State {
    // A fixed handler that calls back into the State under its lock.
    struct Handler final : net::EventHandler {
        State* state { nullptr };
        void (State::*method)() { nullptr };
        void on_event(std::uint32_t) override
        {
            std::lock_guard lock(state->mutex);
            (state->*method)();
        }
    };

    struct NoticeBudget {
        std::size_t left { MAX_NOTICES_PER_KIND };
    };

    State(VsockConfig configuration, net::EventLoop& event_loop)
        : config(std::move(configuration))
        , loop(event_loop)
    {
    }
    ~State();

    // ---- set-up ----
    ErrorOr<void> start();
    void bind(Handler& handler, void (State::*method)());

    // ---- handlers (lock held) ----
    void on_listener();
    void on_tx_notify();
    void on_rx_notify();
    void on_timer();
    void on_reaper();
    void on_connection_event(Connection& connection, std::uint32_t events);

    // ---- queues ----
    void process_tx();
    void handle_tx_chain(Chain const& chain);
    void process_rx();
    std::uint32_t fill_rx(Chain const& chain);
    std::uint32_t produce(Connection& connection, Chain const& chain);
    void broken(std::string_view which, Error const& error);
    // A chain the driver got wrong: reported and given back unused; false
    // when the queue itself is broken (then `broken` was called).
    bool skip_bad_chain(Queue& queue, BadChain const& bad, std::string_view which);
    void settle();

    // ---- connections ----
    void open_guest_connection(Header const& request);
    void deliver(Connection& connection, Chain const& chain, std::uint32_t length);
    // Hands a service's session what it may take of the connection's held
    // bytes (VsockSession's flow control); false when it reset the connection.
    bool feed_session(Connection& connection);
    // feed_session made an answer during this TX pass.
    bool service_answered { false };
    void established(Connection& connection);
    void guest_shutdown(Connection& connection);
    void finish(Connection& connection);
    void flush(Connection& connection);
    void read_handshake(Connection& connection);
    std::uint32_t allocate_local_port();
    Connection& add_connection();
    void insert_key(Connection& connection, Key key);
    void refresh(Connection& connection);
    bool wants_rx(Connection const& connection) const;
    // Closes a connection: it leaves every index at once; its host side
    // closes now, or (Teardown::Later, on vCPU threads, which make no
    // system calls but an eventfd write) on the event-loop thread.
    enum class Teardown { Now, Later };
    void kill(Connection& connection, Teardown teardown = Teardown::Now);
    void close_host(Connection& connection);
    void reset_connection(Connection& connection);
    void queue_reset(Header const& packet);
    void queue_reset(Key key);
    void set_deadline(Connection& connection, int timeout_ms);
    void arm_timer();
    void drop_all();

    Header header_for(Key key) const;
    void report(NoticeBudget& budget, Severity severity, std::string text);
    void violation(std::string_view what, Header const& header);

    VsockConfig config;
    net::EventLoop& loop;
    std::mutex mutex;
    MmioTransport* transport { nullptr };

    UniqueFd listener;
    struct stat listener_identity { };
    bool listener_in_loop { false };
    std::optional<Clock::time_point> accept_retry;
    UniqueFd rx_notify; // dups of the transport's fds, so that the device
    UniqueFd tx_notify; // controls their life in the loop
    UniqueFd timer;
    std::optional<Clock::time_point> timer_armed;
    UniqueFd reaper;
    Handler listener_handler;
    Handler rx_handler;
    Handler tx_handler;
    Handler timer_handler;
    Handler reaper_handler;

    bool active { false };
    bool queue_broken { false };
    bool tx_paused { false };
    Queue rx;
    Queue tx;
    std::optional<Chain> held_rx; // an RX buffer taken but not used yet
    // The driver had no RX buffer left the last time the device looked:
    // host sockets with unread data leave the loop's interest until its
    // next RX notification (else level-triggered EPOLLIN would spin).
    bool rx_starved { false };

    std::list<std::unique_ptr<Connection>> connections;
    std::map<Key, Connection*> by_key;
    std::list<Connection*> ready;
    std::deque<Header> resets;
    std::vector<std::unique_ptr<Connection>> graveyard_new;
    std::vector<std::unique_ptr<Connection>> graveyard_old;
    std::uint32_t next_local_port { FIRST_LOCAL_PORT };

    NoticeBudget violations;
    NoticeBudget refusals;
    NoticeBudget host_errors;
};

void Connection::on_event(std::uint32_t events)
{
    std::lock_guard lock(device.mutex);
    if (dead)
        return;
    device.on_connection_event(*this, events);
}

// ---------------------------------------------------------------------------
// Set-up and tear-down

ErrorOr<void> VsockDevice::State::start()
{
    if (config.limits.max_connections == 0)
        return Error::from_string("vsock: max_connections must be at least 1");
    if (config.limits.handshake_timeout_ms <= 0 || config.limits.close_timeout_ms <= 0)
        return Error::from_string("vsock: the timeouts must be positive");

    int timer_fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (timer_fd < 0)
        return Error::from_errno("vsock: timerfd_create");
    timer.reset(timer_fd);
    reaper = TRY(sys::eventfd());
    bind(timer_handler, &State::on_timer);
    bind(reaper_handler, &State::on_reaper);
    TRY(loop.add(timer.get(), EPOLLIN, &timer_handler));
    TRY(loop.add(reaper.get(), EPOLLIN, &reaper_handler));

    if (config.host_listener && config.host_listener->fd) {
        listener = std::move(config.host_listener->fd);
        listener_identity = config.host_listener->identity;
    } else if (!config.host_socket_path.empty()) {
        auto listening = VsockDevice::bind_host_socket(config.host_socket_path);
        if (listening.is_error())
            return listening.release_error();
        listener = std::move(listening.value()->fd);
        listener_identity = listening.value()->identity;
    }
    if (listener) {
        bind(listener_handler, &State::on_listener);
        TRY(loop.add(listener.get(), EPOLLIN, &listener_handler));
        listener_in_loop = true;
    }
    return {};
}

ErrorOr<std::shared_ptr<HostListener>> VsockDevice::bind_host_socket(std::string const& path)
{
    auto bound = std::make_shared<HostListener>();
    auto listening = net::listen_hybrid(path, LISTEN_BACKLOG, &bound->identity);
    if (listening.is_error())
        return listening.release_error().context("vsock: parent-side socket");
    bound->fd = listening.release_value();
    return bound;
}

void VsockDevice::State::bind(Handler& handler, void (State::*method)())
{
    handler.state = this;
    handler.method = method;
}

VsockDevice::State::~State()
{
    // The device is destroyed between two waits of the loop (vsock.hpp), so
    // nothing is in flight; the loop itself outlives the device.
    for (auto& connection : connections)
        close_host(*connection);
    for (auto& connection : graveyard_new)
        close_host(*connection);
    connections.clear();
    graveyard_new.clear();
    graveyard_old.clear();
    // The notification fds are dups: the transport's own fds keep the
    // eventfds alive, so closing ours would not take them out of the loop.
    for (auto* fd : { &rx_notify, &tx_notify, &timer, &reaper }) {
        if (*fd)
            loop.remove(fd->get());
    }
    if (listener) {
        if (listener_in_loop)
            loop.remove(listener.get());
        listener.reset();
        net::remove_socket_file(config.host_socket_path, listener_identity);
    }
}

ErrorOr<std::unique_ptr<VsockDevice>> VsockDevice::create(VsockConfig config, net::EventLoop& loop)
{
    auto state = std::make_unique<State>(std::move(config), loop);
    TRY(state->start());
    return std::unique_ptr<VsockDevice>(new VsockDevice(std::move(state)));
}

VsockDevice::VsockDevice(std::unique_ptr<State> state)
    : m_state(std::move(state))
{
}

VsockDevice::~VsockDevice() = default;

ErrorOr<void> VsockDevice::attach(MmioTransport& transport)
{
    auto& state = *m_state;
    std::lock_guard lock(state.mutex);
    if (state.transport != nullptr)
        return Error::from_string("vsock: the device is attached already");
    if (transport.queue_count() < queue_count())
        return Error::from_string("vsock: the transport has too few queues");
    int rx_fd = ::fcntl(transport.notify_fd(VSOCK_QUEUE_RX), F_DUPFD_CLOEXEC, 0);
    if (rx_fd < 0)
        return Error::from_errno("vsock: dup of the RX notification fd");
    state.rx_notify.reset(rx_fd);
    int tx_fd = ::fcntl(transport.notify_fd(VSOCK_QUEUE_TX), F_DUPFD_CLOEXEC, 0);
    if (tx_fd < 0)
        return Error::from_errno("vsock: dup of the TX notification fd");
    state.tx_notify.reset(tx_fd);
    state.bind(state.rx_handler, &State::on_rx_notify);
    state.bind(state.tx_handler, &State::on_tx_notify);
    TRY(state.loop.add(state.rx_notify.get(), EPOLLIN, &state.rx_handler));
    auto added = state.loop.add(state.tx_notify.get(), EPOLLIN, &state.tx_handler);
    if (added.is_error()) {
        state.loop.remove(state.rx_notify.get());
        return added.release_error();
    }
    state.transport = &transport;
    return {};
}

void VsockDevice::read_config(std::uint64_t offset, std::span<std::uint8_t> data) const
{
    std::fill(data.begin(), data.end(), 0);
    std::uint64_t cid = m_state->config.guest_cid;
    for (std::size_t i = 0; i < data.size(); ++i) {
        std::uint64_t at = offset + i;
        if (at < offset || at >= CONFIG_SIZE)
            break;
        data[i] = static_cast<std::uint8_t>(cid >> (8 * at));
    }
}

ErrorOr<void> VsockDevice::activate(Activation activation)
{
    auto& state = *m_state;
    std::lock_guard lock(state.mutex);
    if (state.transport == nullptr)
        return Error::from_string("vsock: activated before attach()");
    if (activation.queues.size() < 2 || !activation.queues[VSOCK_QUEUE_RX].is_ready()
        || !activation.queues[VSOCK_QUEUE_TX].is_ready())
        return Error::from_string("vsock: the driver did not make the RX and TX queues ready");
    state.drop_all();
    state.rx = std::move(activation.queues[VSOCK_QUEUE_RX]);
    state.tx = std::move(activation.queues[VSOCK_QUEUE_TX]);
    state.active = true;
    // The work itself happens on the event-loop thread.
    sys::signal_event(state.tx_notify.get());
    sys::signal_event(state.rx_notify.get());
    return {};
}

void VsockDevice::reset()
{
    auto& state = *m_state;
    std::lock_guard lock(state.mutex);
    state.drop_all();
}

std::vector<int> VsockDevice::event_fds() const
{
    std::vector<int> fds;
    for (auto const* fd : { &m_state->rx_notify, &m_state->tx_notify, &m_state->reaper }) {
        if (fd->is_valid())
            fds.push_back(fd->get());
    }
    return fds;
}

std::size_t VsockDevice::connection_count() const
{
    std::lock_guard lock(m_state->mutex);
    return m_state->connections.size();
}

// From activate() and reset(), on a vCPU thread.
void VsockDevice::State::drop_all()
{
    while (!connections.empty())
        kill(*connections.front(), Teardown::Later);
    resets.clear();
    held_rx.reset();
    rx.reset();
    tx.reset();
    active = false;
    queue_broken = false;
    tx_paused = false;
}

// ---------------------------------------------------------------------------
// Notices

void VsockDevice::State::report(NoticeBudget& budget, Severity severity, std::string text)
{
    if (!config.notice || budget.left == 0)
        return;
    if (--budget.left == 0)
        text += " (further notices of this kind are not shown)";
    config.notice(Notice { severity, std::move(text) });
}

void VsockDevice::State::violation(std::string_view what, Header const& header)
{
    report(violations, Severity::Warning,
        fmt::format("vsock: guest protocol violation: {} ({} from guest port {} to parent port {})", what,
            op_name(header.op), header.src_port, header.dst_port));
}

void VsockDevice::State::broken(std::string_view which, Error const& error)
{
    if (queue_broken)
        return;
    queue_broken = true;
    if (config.notice)
        config.notice(Notice { Severity::Error,
            fmt::format(
                "vsock: the guest broke the {} queue ({}); the device needs a reset", which, error.message()) });
    transport->needs_reset();
}

// ---------------------------------------------------------------------------
// Connections

Connection& VsockDevice::State::add_connection()
{
    connections.push_back(std::make_unique<Connection>(*this));
    auto& connection = *connections.back();
    connection.self = std::prev(connections.end());
    return connection;
}

bool VsockDevice::State::skip_bad_chain(Queue& queue, BadChain const& bad, std::string_view which)
{
    if (!bad.head || queue.is_broken()) {
        broken(which, bad.error);
        return false;
    }
    report(violations, Severity::Warning, fmt::format("vsock: a bad {} chain: {}", which, bad.error.message()));
    queue.consume_bad_chain(bad);
    return true;
}

void VsockDevice::State::insert_key(Connection& connection, Key key)
{
    connection.key = key;
    connection.keyed = true;
    by_key[key] = &connection;
}

Header VsockDevice::State::header_for(Key key) const
{
    Header header;
    header.src_cid = address::PARENT_CID;
    header.dst_cid = config.guest_cid;
    header.src_port = key.local_port;
    header.dst_port = key.peer_port;
    header.type = TYPE_STREAM;
    return header;
}

void VsockDevice::State::queue_reset(Key key)
{
    auto header = header_for(key);
    header.op = static_cast<std::uint16_t>(Op::Rst);
    resets.push_back(header);
}

// The answer to a packet of no connection: RST with the addresses swapped
// and the packet's type (virtio 1.2 §5.10.6.5), never to an RST.
void VsockDevice::State::queue_reset(Header const& packet)
{
    if (packet.op == static_cast<std::uint16_t>(Op::Rst))
        return;
    auto header = header_for(Key { packet.dst_port, packet.src_port });
    header.type = packet.type;
    header.op = static_cast<std::uint16_t>(Op::Rst);
    resets.push_back(header);
}

void VsockDevice::State::kill(Connection& connection, Teardown teardown)
{
    if (connection.dead)
        return;
    connection.dead = true;
    if (connection.keyed) {
        auto found = by_key.find(connection.key);
        if (found != by_key.end() && found->second == &connection)
            by_key.erase(found);
        connection.keyed = false;
    }
    if (connection.in_ready) {
        ready.erase(connection.ready_position);
        connection.in_ready = false;
    }
    if (teardown == Teardown::Now)
        close_host(connection);
    if (graveyard_new.empty())
        sys::signal_event(reaper.get());
    graveyard_new.push_back(std::move(*connection.self));
    connections.erase(connection.self);
}

void VsockDevice::State::close_host(Connection& connection)
{
    if (connection.fd) {
        if (connection.registered != 0)
            loop.remove(connection.fd.get());
        connection.fd.reset();
    }
    connection.registered = 0;
    connection.session.reset();
    connection.service_output = {};
    connection.pending.consume(connection.pending.size());
}

void VsockDevice::State::reset_connection(Connection& connection)
{
    // Only a connection the guest knows of: not a parent client before its
    // REQUEST went out.
    if (connection.keyed && !(connection.phase == Phase::Connecting && connection.protocol.owes_handshake()))
        queue_reset(connection.key);
    kill(connection);
}

void VsockDevice::State::set_deadline(Connection& connection, int timeout_ms)
{
    connection.deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    if (!timer_armed || *connection.deadline < *timer_armed)
        arm_timer();
}

void VsockDevice::State::arm_timer()
{
    std::optional<Clock::time_point> earliest = accept_retry;
    for (auto const& connection : connections) {
        if (connection->deadline && (!earliest || *connection->deadline < *earliest))
            earliest = connection->deadline;
    }
    itimerspec spec {};
    if (earliest) {
        auto since_epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(earliest->time_since_epoch()).count();
        // 0 would disarm the timer: a deadline at the epoch is long past anyway.
        if (since_epoch <= 0)
            since_epoch = 1;
        spec.it_value.tv_sec = static_cast<time_t>(since_epoch / 1'000'000'000);
        spec.it_value.tv_nsec = static_cast<long>(since_epoch % 1'000'000'000);
    }
    // steady_clock is CLOCK_MONOTONIC, the timer's clock.
    ::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &spec, nullptr);
    timer_armed = earliest;
}

bool VsockDevice::State::wants_rx(Connection const& connection) const
{
    if (connection.dead || connection.phase == Phase::Handshake || connection.phase == Phase::Draining)
        return false;
    if (connection.protocol.next_control())
        return true;
    if (!connection.protocol.may_send_data() || connection.protocol.credit() == 0)
        return false;
    if (connection.session)
        return !connection.service_output.empty();
    return connection.host_readable;
}

// Brings the connection's epoll interest and its place in the RX round
// robin in line with its state.
void VsockDevice::State::refresh(Connection& connection)
{
    if (connection.dead)
        return;
    if (wants_rx(connection) && !connection.in_ready) {
        connection.ready_position = ready.insert(ready.end(), &connection);
        connection.in_ready = true;
    }
    if (!connection.fd)
        return;
    std::uint32_t wanted = 0;
    switch (connection.phase) {
    case Phase::Handshake:
        wanted = EPOLLIN;
        break;
    case Phase::Connecting:
        break;
    case Phase::Open:
        // Data the host sent stays in the interest set while the guest can
        // take it: a readable socket is read in the same round (settle ->
        // process_rx), so interest changes only when the guest's credit or
        // its RX buffers run out, not on every message.
        if (connection.protocol.may_send_data() && connection.protocol.credit() > 0
            && !(connection.host_readable && rx_starved))
            wanted |= EPOLLIN;
        if (!connection.pending.empty())
            wanted |= EPOLLOUT;
        break;
    case Phase::Draining:
        if (!connection.pending.empty())
            wanted |= EPOLLOUT;
        break;
    }
    if (wanted == connection.registered)
        return;
    // Out of the loop while nothing is wanted: a hung-up socket reports
    // EPOLLHUP whatever the interest, and would spin.
    if (wanted == 0) {
        loop.remove(connection.fd.get());
        connection.registered = 0;
        return;
    }
    auto result = connection.registered == 0 ? loop.add(connection.fd.get(), wanted, &connection)
                                             : loop.modify(connection.fd.get(), wanted, &connection);
    if (result.is_error()) {
        report(host_errors, Severity::Warning, fmt::format("vsock: {}", result.error().message()));
        reset_connection(connection);
        return;
    }
    connection.registered = wanted;
}

void VsockDevice::State::open_guest_connection(Header const& request)
{
    Key key { request.dst_port, request.src_port };
    if (connections.size() >= config.limits.max_connections) {
        report(refusals, Severity::Warning,
            fmt::format("vsock: guest connection to port {} refused: {} connections are open", request.dst_port,
                connections.size()));
        queue_reset(request);
        return;
    }
    auto service = config.services.find(request.dst_port);
    if (service != config.services.end()) {
        // A service answers on the event loop (a session), or on a thread of
        // its own through a socket of the VMM, which from here on is a host
        // socket like any other.
        auto const& served = service->second;
        UniqueFd socket;
        std::unique_ptr<VsockSession> session;
        if (served && served->answers_on_socket())
            socket = served->open_socket();
        else if (served)
            session = served->open();
        if (!socket && !session) {
            queue_reset(request);
            return;
        }
        auto& connection = add_connection();
        connection.fd = std::move(socket);
        connection.session = std::move(session);
        connection.service_port = request.dst_port;
        connection.phase = Phase::Open;
        connection.protocol = ConnectionState::accepted(request);
        insert_key(connection, key);
        refresh(connection);
        return;
    }
    if (config.listener_dir.empty()) {
        queue_reset(request);
        return;
    }
    // docs/FORMATS.md §1 and §6: CID 3 port P is <listener_dir>/3_P.
    auto path = fmt::format("{}/3_{}", config.listener_dir, request.dst_port);
    auto socket_address = net::SocketAddress::unix_path(path);
    if (socket_address.is_error()) {
        queue_reset(request);
        return;
    }
    // Nobody listening (ENOENT, ECONNREFUSED) or a full backlog (EAGAIN): an
    // RST at once; a Unix connect never stays in progress.
    auto connected = net::start_connect(socket_address.value());
    if (connected.is_error() || connected.value().in_progress) {
        queue_reset(request);
        return;
    }
    auto& connection = add_connection();
    connection.fd = std::move(connected.value().fd);
    connection.phase = Phase::Open;
    connection.protocol = ConnectionState::accepted(request);
    insert_key(connection, key);
    refresh(connection);
}

bool VsockDevice::State::feed_session(Connection& connection)
{
    // One answer per call: the answer goes out (process_tx yields to
    // process_rx) before the next request is taken, so the guest works on
    // it while the service makes the next one.
    bool answered = false;
    while (!answered && !connection.pending.empty()
        && connection.service_output.size() + MAX_SERVICE_ANSWER <= MAX_SERVICE_OUTPUT) {
        iovec segments[2];
        connection.pending.segments(segments);
        ByteView data(static_cast<std::uint8_t const*>(segments[0].iov_base), segments[0].iov_len);
        auto before = connection.service_output.size();
        auto used = connection.session->consume(data, connection.service_output);
        std::string problem;
        if (used.is_error())
            problem = used.error().message();
        else if (used.value() == 0 || used.value() > data.size())
            problem = "it took no bytes, or more than it was given";
        else if (connection.service_output.size() - before > MAX_SERVICE_ANSWER)
            problem = fmt::format("one answer of {} bytes (at most {})", connection.service_output.size() - before,
                MAX_SERVICE_ANSWER);
        if (!problem.empty()) {
            report(violations, Severity::Warning,
                fmt::format("vsock: service on port {} reset a connection: {}", connection.service_port, problem));
            reset_connection(connection);
            return false;
        }
        connection.pending.consume(used.value());
        connection.protocol.forwarded(static_cast<std::uint32_t>(used.value()));
        answered = connection.service_output.size() > before;
    }
    service_answered = service_answered || answered;
    return true;
}

void VsockDevice::State::deliver(Connection& connection, Chain const& chain, std::uint32_t length)
{
    if (connection.session) {
        // Held in the connection's buffer (within the credit the device
        // gave) until the service takes it (VsockSession's flow control).
        connection.pending.append(chain.readable, HEADER_SIZE, length);
        if (feed_session(connection))
            refresh(connection);
        return;
    }

    std::size_t sent = 0;
    if (connection.pending.empty()) {
        auto segments = iovecs(chain.readable, HEADER_SIZE, length);
        ssize_t result = send_segments(connection.fd.get(), segments.data(), segments.size());
        if (result < 0) {
            if (!would_block(errno)) {
                reset_connection(connection);
                return;
            }
        } else {
            sent = static_cast<std::size_t>(result);
        }
    }
    // Within the credit, so within the ring (vsock_connection.hpp).
    connection.pending.append(chain.readable, HEADER_SIZE + sent, length - sent);
    connection.protocol.forwarded(static_cast<std::uint32_t>(sent));
    refresh(connection);
}

void VsockDevice::State::established(Connection& connection)
{
    // docs/FORMATS.md §6: "OK <port>\n", the device's local port. The socket
    // has sent nothing yet, so its buffer takes the short line whole.
    auto line = address::connect_reply(connection.key.local_port);
    iovec segment { line.data(), line.size() };
    ssize_t sent = send_segments(connection.fd.get(), &segment, 1);
    if (sent != static_cast<ssize_t>(line.size())) {
        reset_connection(connection);
        return;
    }
    connection.phase = Phase::Open;
    connection.deadline.reset();
    refresh(connection);
}

void VsockDevice::State::guest_shutdown(Connection& connection)
{
    if (connection.protocol.guest_sends_no_more() && connection.fd && connection.pending.empty()
        && !connection.host_write_shut) {
        ::shutdown(connection.fd.get(), SHUT_WR);
        connection.host_write_shut = true;
    }
    refresh(connection);
}

// Both SHUTDOWN flags: the guest's close(). A clean disconnect is SHUTDOWN
// answered by the peer's RST (virtio 1.2 §5.10.6.5; Linux holds the socket
// until it comes or a timeout passes), so the RST goes at once; the host side
// gets the guest's last bytes, within close_timeout_ms, and then its end of
// stream.
void VsockDevice::State::finish(Connection& connection)
{
    queue_reset(connection.key);
    if (connection.session || connection.pending.empty()) {
        kill(connection);
        return;
    }
    by_key.erase(connection.key);
    connection.keyed = false;
    if (connection.in_ready) {
        ready.erase(connection.ready_position);
        connection.in_ready = false;
    }
    connection.phase = Phase::Draining;
    set_deadline(connection, config.limits.close_timeout_ms);
    refresh(connection);
}

void VsockDevice::State::flush(Connection& connection)
{
    while (!connection.pending.empty()) {
        iovec segments[2];
        int count = connection.pending.segments(segments);
        ssize_t sent = send_segments(connection.fd.get(), segments, static_cast<std::size_t>(count));
        if (sent < 0) {
            if (would_block(errno))
                break;
            reset_connection(connection);
            return;
        }
        connection.pending.consume(static_cast<std::size_t>(sent));
        connection.protocol.forwarded(static_cast<std::uint32_t>(sent));
    }
    if (connection.pending.empty()) {
        if (connection.phase == Phase::Draining) {
            kill(connection);
            return;
        }
        if (connection.protocol.guest_sends_no_more() && !connection.host_write_shut) {
            ::shutdown(connection.fd.get(), SHUT_WR);
            connection.host_write_shut = true;
        }
    }
    refresh(connection);
}

std::uint32_t VsockDevice::State::allocate_local_port()
{
    // Unique among live connections: at most max_connections ports are
    // taken, so this ends within max_connections + 1 tries.
    for (;;) {
        std::uint32_t candidate = next_local_port;
        next_local_port = (next_local_port >= address::PORT_ANY - 1) ? FIRST_LOCAL_PORT : next_local_port + 1;
        auto found = by_key.lower_bound(Key { candidate, 0 });
        if (found == by_key.end() || found->first.local_port != candidate)
            return candidate;
    }
}

void VsockDevice::State::read_handshake(Connection& connection)
{
    // One byte at a time: the line is short, it happens once per
    // connection, and nothing past the newline is taken from the stream.
    for (;;) {
        char byte = 0;
        auto got = sys::read(connection.fd.get(), &byte, 1);
        if (got.is_error()) {
            if (!would_block(got.error().errno_code()))
                kill(connection);
            return;
        }
        if (got.value() == 0) {
            kill(connection);
            return;
        }
        connection.handshake.push_back(byte);
        auto parsed = address::parse_connect_request(connection.handshake);
        if (parsed.is_error()) {
            report(refusals, Severity::Warning,
                fmt::format("vsock: a parent connection sent a bad CONNECT line: {}", parsed.error().message()));
            kill(connection);
            return;
        }
        if (!parsed.value())
            continue;
        std::uint32_t port = parsed.value()->port;
        // No driver yet (or a reset one): nobody to ask.
        if (!active || queue_broken) {
            kill(connection);
            return;
        }
        connection.handshake = {};
        connection.phase = Phase::Connecting;
        connection.protocol = ConnectionState::requested();
        insert_key(connection, Key { allocate_local_port(), port });
        set_deadline(connection, config.limits.handshake_timeout_ms);
        refresh(connection);
        return;
    }
}

// ---------------------------------------------------------------------------
// Handlers

void VsockDevice::State::on_listener()
{
    for (std::size_t i = 0; i < MAX_ACCEPTS_PER_EVENT; ++i) {
        int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int code = errno;
            if (would_block(code))
                break;
            if (code == EINTR || code == ECONNABORTED)
                continue;
            report(host_errors, Severity::Warning,
                fmt::format("vsock: accept on {}: {}", config.host_socket_path, std::strerror(code)));
            // Out of fds or memory: rest instead of spinning.
            loop.remove(listener.get());
            listener_in_loop = false;
            accept_retry = Clock::now() + std::chrono::milliseconds(ACCEPT_RETRY_MS);
            arm_timer();
            break;
        }
        UniqueFd client(fd);
        if (connections.size() >= config.limits.max_connections) {
            report(refusals, Severity::Warning,
                fmt::format("vsock: parent connection refused: {} connections are open", connections.size()));
            continue;
        }
        auto& connection = add_connection();
        connection.fd = std::move(client);
        connection.phase = Phase::Handshake;
        set_deadline(connection, config.limits.handshake_timeout_ms);
        refresh(connection);
    }
    settle();
}

void VsockDevice::State::on_tx_notify()
{
    sys::clear_event(tx_notify.get());
    process_tx();
    settle();
}

void VsockDevice::State::on_rx_notify()
{
    sys::clear_event(rx_notify.get());
    rx_starved = false;
    settle();
}

void VsockDevice::State::on_timer()
{
    std::uint64_t expirations = 0;
    [[maybe_unused]] auto taken = ::read(timer.get(), &expirations, sizeof(expirations));
    auto now = Clock::now();
    if (accept_retry && *accept_retry <= now) {
        accept_retry.reset();
        if (listener && !listener_in_loop && !loop.add(listener.get(), EPOLLIN, &listener_handler).is_error())
            listener_in_loop = true;
    }
    std::vector<Connection*> expired;
    for (auto const& connection : connections) {
        if (connection->deadline && *connection->deadline <= now)
            expired.push_back(connection.get());
    }
    for (auto* connection : expired) {
        if (connection->dead)
            continue;
        connection->deadline.reset();
        switch (connection->phase) {
        case Phase::Handshake:
        case Phase::Draining:
            kill(*connection);
            break;
        case Phase::Connecting:
            // The guest never answered. If the REQUEST went out, an RST
            // withdraws it, so that a late RESPONSE finds nothing open.
            reset_connection(*connection);
            break;
        case Phase::Open:
            break;
        }
    }
    arm_timer();
    settle();
}

void VsockDevice::State::on_reaper()
{
    sys::clear_event(reaper.get());
    for (auto& connection : graveyard_new)
        close_host(*connection);
    graveyard_old.clear();
    graveyard_old = std::move(graveyard_new);
    graveyard_new.clear();
    if (!graveyard_old.empty())
        sys::signal_event(reaper.get());
}

void VsockDevice::State::on_connection_event(Connection& connection, std::uint32_t events)
{
    if (connection.phase == Phase::Handshake) {
        read_handshake(connection);
        settle();
        return;
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && !connection.pending.empty()) {
        flush(connection);
        if (connection.dead) {
            settle();
            return;
        }
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && (connection.registered & EPOLLIN))
        connection.host_readable = true;
    refresh(connection);
    settle();
}

// After every handler: owed packets go out while RX buffers last, and a
// paused TX queue resumes once the RSTs it waited for have gone.
void VsockDevice::State::settle()
{
    process_rx();
    // Requests a service holds back get their answers one at a time, each
    // sent (and the guest interrupted) before the next is made, so the
    // guest works on one while the service makes the next.
    for (std::size_t round = 0;; ++round) {
        // feed_session may reset (and so unlist) the connection it feeds.
        for (auto next = connections.begin(); next != connections.end();) {
            Connection& connection = **next++;
            if (connection.session && !connection.pending.empty() && feed_session(connection))
                refresh(connection);
        }
        if (!std::exchange(service_answered, false))
            break;
        process_rx();
        if (round + 1 == MAX_ANSWERS_PER_SETTLE) {
            // Let the loop's other work in; go on next round.
            sys::signal_event(rx_notify.get());
            break;
        }
    }
    if (tx_paused && resets.size() < MAX_PENDING_RESETS && active) {
        tx_paused = false;
        sys::signal_event(tx_notify.get());
    }
}

// ---------------------------------------------------------------------------
// TX: guest → device

void VsockDevice::State::process_tx()
{
    if (!active || queue_broken)
        return;
    bool used = false;
    tx.disable_notifications();
    for (std::size_t taken = 0;; ++taken) {
        if (resets.size() >= MAX_PENDING_RESETS) {
            tx_paused = true;
            break;
        }
        if (taken == MAX_CHAINS_PER_PASS) {
            sys::signal_event(tx_notify.get());
            break;
        }
        auto popped = tx.pop();
        if (std::holds_alternative<std::monostate>(popped)) {
            if (tx.is_broken()) {
                broken("TX", Error::from_string("its available index ran ahead"));
                return;
            }
            if (tx.enable_notifications())
                continue;
            break;
        }
        if (auto* bad = std::get_if<BadChain>(&popped)) {
            if (!skip_bad_chain(tx, *bad, "TX"))
                return;
            used = true;
            continue;
        }
        auto const& chain = std::get<Chain>(popped);
        handle_tx_chain(chain);
        // TX buffers are device-readable only: nothing written.
        tx.push_used(chain.head, 0);
        used = true;
        // A service answered: let its answer out (settle, process_rx)
        // before the next request; the rest of the queue comes next round.
        if (service_answered) {
            service_answered = false;
            sys::signal_event(tx_notify.get());
            break;
        }
    }
    if (used && tx.needs_interrupt())
        transport->raise(Interrupt::UsedBuffer);
}

void VsockDevice::State::handle_tx_chain(Chain const& chain)
{
    if (chain.readable_length < HEADER_SIZE) {
        report(
            violations, Severity::Warning, "vsock: guest protocol violation: a TX chain shorter than a packet header");
        return;
    }
    // Copied before it is judged: the guest can change its memory at any time.
    std::array<std::uint8_t, HEADER_SIZE> raw {};
    gather(chain.readable, 0, raw.data(), raw.size());
    auto header = decode_header(raw);

    if (header.src_cid != config.guest_cid || header.dst_cid != address::PARENT_CID) {
        // Nobody to answer: the addresses are not this guest's to use.
        violation(fmt::format("addressed from CID {} to CID {}", header.src_cid, header.dst_cid), header);
        return;
    }
    Key key { header.dst_port, header.src_port };
    auto found = by_key.find(key);
    Connection* connection = found == by_key.end() ? nullptr : found->second;

    bool length_ok = header.len <= MAX_PACKET_PAYLOAD && header.len <= chain.readable_length - HEADER_SIZE;
    if (!length_ok || header.type != TYPE_STREAM) {
        violation(!length_ok
                ? fmt::format("a payload length of {} in a chain of {} bytes", header.len, chain.readable_length)
                : fmt::format("socket type {}", header.type),
            header);
        if (connection)
            reset_connection(*connection);
        else
            queue_reset(header);
        return;
    }

    if (!connection) {
        if (header.op == static_cast<std::uint16_t>(Op::Request))
            open_guest_connection(header);
        else
            queue_reset(header); // nothing for an RST
        return;
    }

    auto outcome = connection->protocol.on_packet(header);
    switch (outcome.verdict) {
    case Verdict::None:
        refresh(*connection);
        break;
    case Verdict::Data:
        deliver(*connection, chain, header.len);
        break;
    case Verdict::Established:
        established(*connection);
        break;
    case Verdict::Shutdown:
        guest_shutdown(*connection);
        break;
    case Verdict::Finish:
        finish(*connection);
        break;
    case Verdict::Closed:
        kill(*connection);
        break;
    case Verdict::Reset:
        violation(outcome.violation, header);
        reset_connection(*connection);
        break;
    }
}

// ---------------------------------------------------------------------------
// RX: device → guest

void VsockDevice::State::process_rx()
{
    if (!active || queue_broken)
        return;
    bool used = false;
    for (std::size_t taken = 0; !resets.empty() || !ready.empty(); ++taken) {
        if (taken == MAX_CHAINS_PER_PASS) {
            sys::signal_event(rx_notify.get());
            break;
        }
        if (!held_rx) {
            auto popped = rx.pop();
            if (std::holds_alternative<std::monostate>(popped)) {
                if (rx.is_broken()) {
                    broken("RX", Error::from_string("its available index ran ahead"));
                    return;
                }
                // Wait for the driver's notification, unless buffers came
                // while it was being asked for (virtio 1.2 §2.7.10).
                if (rx.enable_notifications())
                    continue;
                rx_starved = true;
                break;
            }
            if (auto* bad = std::get_if<BadChain>(&popped)) {
                if (!skip_bad_chain(rx, *bad, "RX"))
                    return;
                used = true;
                continue;
            }
            auto& chain = std::get<Chain>(popped);
            if (!chain.readable.empty() || chain.writable_length < HEADER_SIZE) {
                report(violations, Severity::Warning,
                    "vsock: guest protocol violation: an RX buffer that cannot hold a packet header");
                rx.push_used(chain.head, 0);
                used = true;
                continue;
            }
            held_rx = std::move(chain);
        }
        std::uint32_t written = fill_rx(*held_rx);
        if (written == 0) {
            // Nothing fit: what is owed needs room for data this buffer
            // lacks. Give it back empty rather than hold it forever.
            if ((!resets.empty() || !ready.empty()) && held_rx->writable_length == HEADER_SIZE) {
                rx.push_used(held_rx->head, 0);
                held_rx.reset();
                used = true;
                continue;
            }
            break;
        }
        rx.push_used(held_rx->head, written);
        held_rx.reset();
        used = true;
    }
    if (used && rx.needs_interrupt())
        transport->raise(Interrupt::UsedBuffer);
}

// Writes one packet into `chain`: an owed RST first, else the next
// connection in the round robin that has something. Returns the bytes
// written (header included), 0 when nobody could use the buffer.
std::uint32_t VsockDevice::State::fill_rx(Chain const& chain)
{
    if (!resets.empty()) {
        auto raw = encode_header(resets.front());
        resets.pop_front();
        scatter(chain.writable, 0, raw.data(), raw.size());
        return HEADER_SIZE;
    }
    for (std::size_t tries = ready.size(); tries > 0 && !ready.empty(); --tries) {
        Connection& connection = *ready.front();
        ready.pop_front();
        connection.in_ready = false;
        std::uint32_t written = produce(connection, chain);
        refresh(connection);
        if (written != 0)
            return written;
    }
    return 0;
}

std::uint32_t VsockDevice::State::produce(Connection& connection, Chain const& chain)
{
    if (connection.dead || !connection.keyed)
        return 0;
    auto header = header_for(connection.key);
    auto send = [&](std::uint32_t payload) -> std::uint32_t {
        header.len = payload;
        connection.protocol.sending(header);
        auto raw = encode_header(header);
        scatter(chain.writable, 0, raw.data(), raw.size());
        return static_cast<std::uint32_t>(HEADER_SIZE) + payload;
    };

    auto control = connection.protocol.next_control();
    if (control && (control->op == Op::Request || control->op == Op::Response)) {
        header.op = static_cast<std::uint16_t>(control->op);
        return send(0);
    }

    std::uint32_t room = std::min({ chain.writable_length - static_cast<std::uint32_t>(HEADER_SIZE), MAX_PACKET_PAYLOAD,
        connection.protocol.credit() });
    if (connection.protocol.may_send_data() && room > 0) {
        if (connection.session && !connection.service_output.empty()) {
            auto length = static_cast<std::uint32_t>(std::min<std::size_t>(room, connection.service_output.size()));
            scatter(chain.writable, HEADER_SIZE, connection.service_output.data(), length);
            connection.service_output.erase(connection.service_output.begin(),
                connection.service_output.begin() + static_cast<std::ptrdiff_t>(length));
            header.op = static_cast<std::uint16_t>(Op::Rw);
            return send(length);
        }
        if (connection.fd && connection.host_readable) {
            auto segments = iovecs(chain.writable, HEADER_SIZE, room);
            ssize_t got = read_segments(connection.fd.get(), segments.data(), segments.size());
            if (got > 0) {
                if (static_cast<std::uint32_t>(got) < room)
                    connection.host_readable = false;
                header.op = static_cast<std::uint16_t>(Op::Rw);
                return send(static_cast<std::uint32_t>(got));
            }
            connection.host_readable = false;
            if (got == 0) {
                // End of the host's stream: SHUTDOWN(SEND) below.
                connection.protocol.host_finished();
            } else if (!would_block(errno)) {
                // A host error resets the guest's connection, in this buffer.
                header.op = static_cast<std::uint16_t>(Op::Rst);
                header.len = 0;
                auto raw = encode_header(header);
                scatter(chain.writable, 0, raw.data(), raw.size());
                kill(connection);
                return HEADER_SIZE;
            }
        }
    }

    control = connection.protocol.next_control();
    if (control) {
        header.op = static_cast<std::uint16_t>(control->op);
        header.flags = control->flags;
        return send(0);
    }
    return 0;
}

} // namespace qtbox::devices::virtio
