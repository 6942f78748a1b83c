#include <qtbox/devices/virtio/vsock_connection.hpp>

namespace qtbox::devices::virtio::vsock {

ConnectionState ConnectionState::accepted(Header const& request)
{
    ConnectionState state;
    state.m_open = true;
    state.m_owe_handshake = true;
    state.m_peer_buf_alloc = request.buf_alloc;
    state.m_peer_fwd_cnt = request.fwd_cnt;
    return state;
}

ConnectionState ConnectionState::requested()
{
    ConnectionState state;
    state.m_device_initiated = true;
    state.m_owe_handshake = true;
    return state;
}

Outcome ConnectionState::on_packet(Header const& header)
{
    auto op = static_cast<Op>(header.op);
    if (op == Op::Rst)
        return { Verdict::Closed, {} };
    // Every packet carries the sender's counters (virtio 1.2 §5.10.6.3).
    m_peer_buf_alloc = header.buf_alloc;
    m_peer_fwd_cnt = header.fwd_cnt;

    if (!m_open) {
        // The device asked; only the guest's answer may come, and only once
        // the REQUEST went out.
        if (op == Op::Response && !m_owe_handshake) {
            m_open = true;
            return { Verdict::Established, {} };
        }
        return { Verdict::Reset, "a packet other than RESPONSE or RST before the connection was open" };
    }
    if (m_owe_handshake)
        return { Verdict::Reset, "a packet before the device's RESPONSE" };

    switch (op) {
    case Op::Rw: {
        if (guest_sends_no_more())
            return { Verdict::Reset, "data after SHUTDOWN(SEND)" };
        // The guest's credit as it can know it: what it was last told.
        std::uint32_t in_flight = m_rx_cnt - m_advertised_fwd_cnt;
        if (header.len > BUFFER_SIZE - in_flight)
            return { Verdict::Reset, "data beyond the credit the device gave" };
        if (header.len == 0)
            return { Verdict::None, {} };
        m_rx_cnt += header.len;
        return { Verdict::Data, {} };
    }
    case Op::Shutdown: {
        std::uint32_t added = header.flags & (SHUTDOWN_RECEIVE | SHUTDOWN_SEND) & ~m_guest_shutdown;
        if (added == 0)
            return { Verdict::None, {} };
        m_guest_shutdown |= added;
        if (m_guest_shutdown == (SHUTDOWN_RECEIVE | SHUTDOWN_SEND))
            return { Verdict::Finish, {} };
        return { Verdict::Shutdown, {} };
    }
    case Op::CreditUpdate:
        return { Verdict::None, {} };
    case Op::CreditRequest:
        m_credit_requested = true;
        return { Verdict::None, {} };
    case Op::Request:
        return { Verdict::Reset, "REQUEST for a connection that is open" };
    case Op::Response:
        return { Verdict::Reset, "RESPONSE for a connection that is open" };
    case Op::Invalid:
    case Op::Rst:
        break;
    }
    return { Verdict::Reset, "an unknown op" };
}

void ConnectionState::forwarded(std::uint32_t bytes)
{
    // Never more than was received: the caller forwards what it holds.
    if (bytes > held())
        bytes = held();
    m_fwd_cnt += bytes;
}

std::uint32_t ConnectionState::credit() const
{
    std::uint32_t in_flight = m_tx_cnt - m_peer_fwd_cnt;
    // A fwd_cnt ahead of what was sent, or a buf_alloc that shrank below
    // what is in flight: no credit until the guest reports sense.
    if (in_flight > m_peer_buf_alloc)
        return 0;
    return m_peer_buf_alloc - in_flight;
}

bool ConnectionState::may_send_data() const
{
    return is_open() && !guest_receives_no_more() && !m_host_finished;
}

void ConnectionState::host_finished()
{
    if (m_host_finished)
        return;
    m_host_finished = true;
    m_owe_shutdown = true;
}

bool ConnectionState::owes_credit_update() const
{
    if (!is_open())
        return false;
    if (m_credit_requested)
        return true;
    if (m_fwd_cnt == m_advertised_fwd_cnt)
        return false;
    std::uint32_t guest_view_free = BUFFER_SIZE - (m_rx_cnt - m_advertised_fwd_cnt);
    return guest_view_free < CREDIT_UPDATE_THRESHOLD;
}

std::optional<Control> ConnectionState::next_control() const
{
    if (m_owe_handshake)
        return Control { m_device_initiated ? Op::Request : Op::Response, 0 };
    if (!m_open)
        return std::nullopt;
    if (m_owe_shutdown)
        return Control { Op::Shutdown, SHUTDOWN_SEND };
    if (owes_credit_update())
        return Control { Op::CreditUpdate, 0 };
    return std::nullopt;
}

void ConnectionState::sending(Header& header)
{
    header.buf_alloc = BUFFER_SIZE;
    header.fwd_cnt = m_fwd_cnt;
    m_advertised_fwd_cnt = m_fwd_cnt;
    // Any packet tells the guest the counters a CREDIT_UPDATE would.
    m_credit_requested = false;
    switch (static_cast<Op>(header.op)) {
    case Op::Request:
    case Op::Response:
        m_owe_handshake = false;
        break;
    case Op::Shutdown:
        m_owe_shutdown = false;
        break;
    case Op::Rw:
        m_tx_cnt += header.len;
        break;
    default:
        break;
    }
}

} // namespace qtbox::devices::virtio::vsock
