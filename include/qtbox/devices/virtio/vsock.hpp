// The virtio-vsock device (virtio 1.2 §5.10), with Firecracker-style hybrid
// vsock on the parent side (docs/ARCHITECTURE.md "Hybrid vsock",
// docs/FORMATS.md §6).
//
// The guest sees a vsock transport with its own CID (--cid) and the parent
// at CID 3. On the parent, nothing uses AF_VSOCK:
//   - a guest connection to CID 3 port P is served inside the VMM when P is
//     one of its services (9000, the heartbeat; 9001, the QTSM), and
//     otherwise becomes a connection to the Unix socket <listener_dir>/3_P;
//     nobody listening there means a reset for the guest, at once;
//   - a parent program connects to `host_socket_path` (the enclave's
//     vsock.sock), writes "CONNECT P\n", and once the guest's listener on P
//     accepts, reads "OK <local port>\n" and then the guest's stream.
//
// Every packet from the guest is untrusted: its header, its length (at most
// MAX_PACKET_PAYLOAD, and within the chain), its addresses (source must be
// the guest's CID, destination CID 3), its op and its use of credit. A
// guest that sends more than the credit it was given, or a packet that does
// not fit its connection's state, gets that connection reset; it never
// blocks another connection or the VMM.
//
// Flow control (§5.10.6.3): each side advertises buf_alloc and fwd_cnt in
// every header; the device sends the guest at most
// peer_buf_alloc − (tx_cnt − peer_fwd_cnt) bytes, and stops reading a host
// socket when that credit is spent until a CREDIT_UPDATE arrives. Data from
// the guest that a host socket cannot take at once is buffered, at most
// BUFFER_SIZE bytes per connection, the credit the device advertises.
//
// Shutdown (§5.10.6.5): the guest's SHUTDOWN(SEND) becomes shutdown(SHUT_WR)
// on the host socket once the buffered bytes are flushed; SHUTDOWN(RECEIVE)
// stops reading it; both (the guest's close(), which waits for the peer's
// RST) are answered with RST at once, and the host socket gets the last
// buffered bytes (within close_timeout_ms) and then its end of stream. A
// host end of stream becomes SHUTDOWN(SEND) for the guest, a host error an
// RST; a guest RST closes the host socket at once. Any packet of no
// connection but an RST is answered with RST.
//
// Threads: the device runs on the VMM's event-loop thread (net::EventLoop);
// activate() and reset() come from a vCPU thread and take the same lock;
// their only system calls there are eventfd writes (and futex): connections
// are dropped at once but their sockets close on the event-loop thread.
// The NoticeSink is called with that lock held: it must not call back into
// the device. The loop must outlive the device, and the device is destroyed
// between two calls to EventLoop::wait() (net/event_loop.hpp), after its
// transport stopped running vCPUs. Notices are few: the first of each kind
// (guest protocol violations, refused connections, host errors) up to a
// fixed number per device, and a broken queue.
//
// System calls on the event-loop thread (for the VMM's seccomp allow-list):
// accept4 (the parent socket), read (CONNECT lines, eventfds, the timerfd),
// readv (host → guest), sendmsg with MSG_NOSIGNAL (guest → host, the OK
// line), write (eventfds, the transport's irqfd), socket(AF_UNIX,
// SOCK_STREAM) and connect (<listener_dir>/3_P), shutdown, close, epoll_ctl,
// timerfd_settime, clock_gettime (normally the vDSO), futex, and malloc's
// mmap/munmap/brk (a connection's buffer is BUFFER_SIZE); when the device is
// destroyed, lstat and unlink as well. create() and attach() (on the VMM's
// main thread) use socket, connect, lstat, unlink, umask, bind, chmod,
// listen, fcntl, timerfd_create, eventfd2 and epoll_ctl.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/devices/virtio/mmio.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/vsock/heartbeat.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace qtbox::devices::virtio {

constexpr std::uint32_t VSOCK_DEVICE_ID = 19;
constexpr std::size_t VSOCK_QUEUE_RX = 0;
constexpr std::size_t VSOCK_QUEUE_TX = 1;
constexpr std::size_t VSOCK_QUEUE_EVENT = 2;

// What one VsockSession::consume() call may append to its answers.
constexpr std::size_t MAX_SERVICE_ANSWER = 64 * 1024;

// One conversation with a service served inside the VMM.
//
// Flow control: the device holds what the guest sent in the connection's
// buffer (its credit) and hands it to consume() only while the answers not
// yet taken by the guest leave room for one more answer. A guest that stops
// reading its answers so runs out of credit and stops sending; neither side
// grows without bound, and the connection is never reset for it.
class VsockSession {
public:
    virtual ~VsockSession() = default;
    // Takes a prefix of `data` (at least one byte when `data` is not empty),
    // stopping after the first request it answers, and appends that answer
    // (at most MAX_SERVICE_ANSWER bytes) to `answers`. Returns how many bytes
    // it took. An error resets the connection.
    virtual ErrorOr<std::size_t> consume(ByteView data, Bytes& answers) = 0;

    // All of `data`, all the answers (tests, and callers without flow control).
    ErrorOr<Bytes> on_data(ByteView data);
};

// A service on CID 3 port P, inside the VMM, in one of two ways:
//   - on the event-loop thread: open() returns a VsockSession, or nullptr to
//     refuse the connection (the guest gets a reset);
//   - on a thread of its own (answers_on_socket() is true), for a service
//     whose answers take long to make (the QTSM signs): open_socket() returns
//     the device's end (non-blocking) of a connected Unix stream socket whose other end the
//     service's thread serves, or an invalid fd to refuse. The device treats
//     that end as it treats a host socket (flow control, shutdown, reset),
//     so the event loop never waits for the service. The socket never
//     leaves the VMM: the port is still not forwarded.
class VsockService {
public:
    virtual ~VsockService() = default;
    virtual std::unique_ptr<VsockSession> open() { return nullptr; }
    virtual bool answers_on_socket() const { return false; }
    virtual UniqueFd open_socket() { return {}; }
};

// The heartbeat (docs/FORMATS.md §6): the guest sends 0xB7; the answer is
// 0xB7 and the wall clock in nanoseconds since the epoch, u64 big-endian.
// `on_heartbeat` runs once, for the first valid heartbeat of the boot.
class HeartbeatService final : public VsockService {
public:
    static constexpr std::uint8_t MAGIC = qtbox::vsock::HEARTBEAT_MAGIC;
    HeartbeatService(std::function<std::uint64_t()> wall_clock_ns, std::function<void()> on_heartbeat);
    std::unique_ptr<VsockSession> open() override;

private:
    std::function<std::uint64_t()> m_wall_clock_ns;
    std::function<void()> m_on_heartbeat;
    bool m_seen { false };
};

struct VsockLimits {
    // Connections open at once (both directions and the services); a
    // request beyond it is reset.
    std::size_t max_connections { 1024 };
    // A parent connection must send its CONNECT line within this time, and
    // the guest must answer the request within it too.
    int handshake_timeout_ms { 10'000 };
    // After the guest closed a connection, what it sent before has this long
    // to reach the host socket before the socket is closed anyway.
    int close_timeout_ms { 10'000 };
};

// A listening Unix socket made before the VMM dropped its privileges (into
// a directory its service user may not write, vmm(1) --user): the socket,
// and the file's identity for removing it later only if it is still ours.
struct HostListener {
    UniqueFd fd;
    struct stat identity { };
};

struct VsockConfig {
    std::uint64_t guest_cid { 0 };
    // <run>/vsock; empty: every port that is not a service is refused.
    std::string listener_dir;
    // The enclave's vsock.sock; empty: no parent-side listener.
    std::string host_socket_path;
    // Bound at host_socket_path beforehand (VsockDevice::bind_host_socket);
    // empty: create() binds it.
    std::shared_ptr<HostListener> host_listener;
    // Ports of CID 3 served inside the VMM, never forwarded.
    std::map<std::uint32_t, std::shared_ptr<VsockService>> services;
    VsockLimits limits;
    NoticeSink notice;
};

class VsockDevice final : public Device {
public:
    // Creates the parent-side listener at host_socket_path (mode 0660,
    // replacing a stale socket, refusing one another process listens on) and
    // registers it with `loop`; nothing else happens until the driver sets
    // DRIVER_OK.
    static ErrorOr<std::unique_ptr<VsockDevice>> create(VsockConfig config, net::EventLoop& loop);
    // The parent-side listener as create() would make it, for a caller that
    // must bind before it loses the right to (VsockConfig::host_listener).
    static ErrorOr<std::shared_ptr<HostListener>> bind_host_socket(std::string const& path);
    ~VsockDevice() override;

    // The transport the device raises interrupts through, and whose queue
    // notification fds it waits on (through dups of them, registered with
    // the loop). Call once, before the guest runs.
    ErrorOr<void> attach(MmioTransport& transport);

    std::uint32_t device_id() const override { return VSOCK_DEVICE_ID; }
    std::uint64_t device_features() const override { return 0; }
    std::size_t queue_count() const override { return 3; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override;
    ErrorOr<void> activate(Activation activation) override;
    void reset() override;

    // Open connections, for tests and limits.
    std::size_t connection_count() const;
    // The eventfds the device itself writes (its copies of the queue
    // notifications, its reaper), on the event-loop thread and from vCPU
    // threads in activate()/reset(): the VMM's seccomp write allow-list
    // names them. Valid once attach() succeeded.
    std::vector<int> event_fds() const;

    struct State;

private:
    explicit VsockDevice(std::unique_ptr<State> state);
    std::unique_ptr<State> m_state;
};

} // namespace qtbox::devices::virtio
