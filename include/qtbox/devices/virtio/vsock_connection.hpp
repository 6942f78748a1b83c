// The protocol state of one virtio-vsock stream connection, as the device
// keeps it (virtio 1.2 §5.10.6.3 flow control, §5.10.6.5 stream sockets):
// which packets the guest may send next, which control packets the device
// owes the guest, and the credit counters of both directions. Pure: no
// sockets, no queues; VsockDevice drives one per connection, and the unit
// tests drive it packet by packet.
//
// Connection set-up: a connection the guest asked for (REQUEST) starts open
// and owes the guest a RESPONSE; one the device asks the guest for (a parent
// program's CONNECT, docs/FORMATS.md §6) owes the guest a REQUEST and waits
// for its RESPONSE. Until that exchange is over, any packet but RST is a
// violation.
//
// Credit (docs/PLATFORMS.md §V4.2):
//   - device → guest: the device may have at most
//     peer_buf_alloc − (tx_cnt − peer_fwd_cnt) bytes in flight, u32
//     arithmetic; the guest's buf_alloc and fwd_cnt come with each of its
//     packets.
//   - guest → device: the device advertises buf_alloc = BUFFER_SIZE and its
//     fwd_cnt (bytes the host side has taken) in every packet it sends. The
//     guest can only have used the fwd_cnt it was last sent, so a packet that
//     takes rx_cnt − advertised_fwd_cnt past BUFFER_SIZE is over its credit:
//     a violation. The device therefore never holds more than BUFFER_SIZE
//     bytes of one connection. When the guest's view of the free space falls
//     under CREDIT_UPDATE_THRESHOLD and the device has forwarded more than it
//     last told, it owes a CREDIT_UPDATE (and always after CREDIT_REQUEST).
//
// Shutdown: the SHUTDOWN flags accumulate. SEND (the guest sends no more)
// makes later RW a violation; both flags end the connection (Linux's close()
// sends both, then waits for the peer's RST). The host side's end of stream
// makes the device owe a SHUTDOWN with SEND.
#pragma once

#include <qtbox/devices/virtio/vsock_packet.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

namespace qtbox::devices::virtio::vsock {

// The guest's view of the device's free receive space under which the device
// volunteers a CREDIT_UPDATE: one largest packet (Linux's receiver uses the
// same mark, VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
constexpr std::uint32_t CREDIT_UPDATE_THRESHOLD = MAX_PACKET_PAYLOAD;

// What a packet from the guest asks of the device.
enum class Verdict {
    None, // bookkeeping only (CREDIT_UPDATE, CREDIT_REQUEST, an empty RW, a repeated SHUTDOWN flag)
    Data, // RW within credit: the header.len payload bytes go to the host side
    Established, // RESPONSE to the device's REQUEST: the connection is open
    Shutdown, // SHUTDOWN set one new flag (see guest_sends_no_more, guest_receives_no_more)
    Finish, // SHUTDOWN completed both flags: answer RST, close the host side once its data is flushed
    Closed, // RST: close the host side at once and send nothing
    Reset, // a violation: answer RST and close the host side at once
};

struct Outcome {
    Verdict verdict { Verdict::None };
    // For Reset: what the guest did wrong, for a notice.
    std::string_view violation;
};

// A control packet the device owes the guest, in the order it must go.
struct Control {
    Op op { Op::Invalid };
    std::uint32_t flags { 0 };
};

class ConnectionState {
public:
    // The guest asked (`request` is its REQUEST); the device owes RESPONSE.
    static ConnectionState accepted(Header const& request);
    // The device asks the guest; it owes REQUEST, then waits for RESPONSE.
    static ConnectionState requested();

    // The guest's packet `header` for this connection (addresses already
    // matched). Updates the guest's credit from buf_alloc and fwd_cnt and
    // the state; for Data, counts header.len as received.
    Outcome on_packet(Header const& header);

    // Open: the set-up exchange is over in both directions.
    bool is_open() const { return m_open && !m_owe_handshake; }
    // The device asked and the guest has not answered yet.
    bool awaiting_response() const { return !m_open; }
    bool guest_sends_no_more() const { return m_guest_shutdown & SHUTDOWN_SEND; }
    bool guest_receives_no_more() const { return m_guest_shutdown & SHUTDOWN_RECEIVE; }

    // ---- guest → device ----
    // The host side (a socket, a service) took `bytes` of what was received.
    void forwarded(std::uint32_t bytes);
    // Received and not yet forwarded; never more than BUFFER_SIZE.
    std::uint32_t held() const { return m_rx_cnt - m_fwd_cnt; }
    std::uint32_t fwd_cnt() const { return m_fwd_cnt; }

    // ---- device → guest ----
    // Bytes the device may send now.
    std::uint32_t credit() const;
    // Whether data may go to the guest at all (open, the guest still
    // receives, the host side has not ended).
    bool may_send_data() const;
    // The host side ended its stream: the device owes SHUTDOWN(SEND).
    void host_finished();
    bool host_has_finished() const { return m_host_finished; }
    // The next control packet owed, if any: REQUEST or RESPONSE first, then
    // SHUTDOWN, then CREDIT_UPDATE. Data (which also carries the credit
    // counters) goes after a REQUEST/RESPONSE and before a SHUTDOWN.
    std::optional<Control> next_control() const;
    bool owes_handshake() const { return m_owe_handshake; }
    // Fills buf_alloc and fwd_cnt of a packet about to be sent (any op) and
    // records that the guest now knows them; `header.op` and `header.len`
    // say what goes: a control packet from next_control() is no longer owed,
    // and an RW's len counts against the credit.
    void sending(Header& header);

private:
    ConnectionState() = default;
    bool owes_credit_update() const;

    bool m_open { false }; // RESPONSE received (device-initiated) or REQUEST accepted
    bool m_owe_handshake { false }; // REQUEST or RESPONSE not sent yet
    bool m_device_initiated { false };
    std::uint32_t m_guest_shutdown { 0 };
    bool m_host_finished { false };
    bool m_owe_shutdown { false };
    bool m_credit_requested { false };

    // Guest → device.
    std::uint32_t m_rx_cnt { 0 };
    std::uint32_t m_fwd_cnt { 0 };
    std::uint32_t m_advertised_fwd_cnt { 0 };
    // Device → guest.
    std::uint32_t m_tx_cnt { 0 };
    std::uint32_t m_peer_buf_alloc { 0 };
    std::uint32_t m_peer_fwd_cnt { 0 };
};

} // namespace qtbox::devices::virtio::vsock
