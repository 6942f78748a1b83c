// The pure parts of the vsock device: the packet header codec and the
// per-connection protocol state with its credit accounting (virtio 1.2
// §5.10.6), driven packet by packet without sockets or queues.
#include <qtbox/devices/virtio/vsock_connection.hpp>
#include <qtbox/devices/virtio/vsock_packet.hpp>

#include <doctest/doctest.h>

using namespace qtbox;
using namespace qtbox::devices::virtio::vsock;

namespace {

constexpr std::uint64_t GUEST_CID = 7;

Header guest_packet(Op op, std::uint32_t len = 0, std::uint32_t flags = 0)
{
    Header header;
    header.src_cid = GUEST_CID;
    header.dst_cid = 3;
    header.src_port = 1234;
    header.dst_port = 5000;
    header.len = len;
    header.op = static_cast<std::uint16_t>(op);
    header.flags = flags;
    header.buf_alloc = 64 * 1024;
    header.fwd_cnt = 0;
    return header;
}

// What the device sends next for `control`, with the counters filled in.
Header device_packet(ConnectionState& state, Op op, std::uint32_t len = 0)
{
    Header header;
    header.op = static_cast<std::uint16_t>(op);
    header.len = len;
    state.sending(header);
    return header;
}

ConnectionState open_connection()
{
    auto state = ConnectionState::accepted(guest_packet(Op::Request));
    auto control = state.next_control();
    REQUIRE(control);
    CHECK(control->op == Op::Response);
    device_packet(state, Op::Response);
    REQUIRE(state.is_open());
    return state;
}

} // namespace

TEST_CASE("vsock packet: the header round-trips through its 44 little-endian bytes")
{
    Header header;
    header.src_cid = 0x0102030405060708;
    header.dst_cid = 3;
    header.src_port = 0xA1A2A3A4;
    header.dst_port = 9000;
    header.len = 4096;
    header.type = TYPE_STREAM;
    header.op = static_cast<std::uint16_t>(Op::Rw);
    header.flags = SHUTDOWN_SEND;
    header.buf_alloc = BUFFER_SIZE;
    header.fwd_cnt = 0xDEADBEEF;
    auto bytes = encode_header(header);
    CHECK(bytes.size() == HEADER_SIZE);
    CHECK(bytes[0] == 0x08);
    CHECK(bytes[7] == 0x01);
    CHECK(bytes[8] == 3);
    CHECK(bytes[16] == 0xA4);
    CHECK(bytes[20] == 0x28); // 9000 = 0x2328
    CHECK(bytes[21] == 0x23);
    CHECK(bytes[28] == 1); // type
    CHECK(bytes[30] == 5); // op
    CHECK(bytes[32] == 2); // flags
    CHECK(bytes[40] == 0xEF); // fwd_cnt
    CHECK(bytes[43] == 0xDE);
    CHECK(decode_header(bytes) == header);
}

TEST_CASE("vsock packet: op names, and which ops a stream uses")
{
    CHECK(op_name(1) == "REQUEST");
    CHECK(op_name(3) == "RST");
    CHECK(op_name(7) == "CREDIT_REQUEST");
    CHECK(op_name(0) == "INVALID");
    CHECK(op_name(8) == "unknown");
    CHECK(is_known_op(1));
    CHECK(is_known_op(7));
    CHECK_FALSE(is_known_op(0));
    CHECK_FALSE(is_known_op(8));
}

TEST_CASE("vsock connection: a guest REQUEST is answered with RESPONSE, then data flows")
{
    auto state = ConnectionState::accepted(guest_packet(Op::Request));
    CHECK_FALSE(state.is_open());
    CHECK_FALSE(state.may_send_data());
    auto response = device_packet(state, Op::Response);
    CHECK(response.buf_alloc == BUFFER_SIZE);
    CHECK(response.fwd_cnt == 0);
    CHECK(state.is_open());
    CHECK_FALSE(state.next_control());
    auto outcome = state.on_packet(guest_packet(Op::Rw, 100));
    CHECK(outcome.verdict == Verdict::Data);
    CHECK(state.held() == 100);
    state.forwarded(60);
    CHECK(state.held() == 40);
    CHECK(state.fwd_cnt() == 60);
}

TEST_CASE("vsock connection: a packet before the device's RESPONSE is a violation")
{
    auto state = ConnectionState::accepted(guest_packet(Op::Request));
    CHECK(state.on_packet(guest_packet(Op::Rw, 1)).verdict == Verdict::Reset);
    auto again = ConnectionState::accepted(guest_packet(Op::Request));
    CHECK(again.on_packet(guest_packet(Op::Rst)).verdict == Verdict::Closed);
}

TEST_CASE("vsock connection: the device's REQUEST, then the guest's RESPONSE or RST")
{
    auto state = ConnectionState::requested();
    CHECK(state.awaiting_response());
    auto control = state.next_control();
    REQUIRE(control);
    CHECK(control->op == Op::Request);
    // A RESPONSE to a REQUEST the guest has not seen yet is not an answer.
    CHECK(state.on_packet(guest_packet(Op::Response)).verdict == Verdict::Reset);

    auto asked = ConnectionState::requested();
    auto request = device_packet(asked, Op::Request);
    CHECK(request.buf_alloc == BUFFER_SIZE);
    CHECK_FALSE(asked.next_control());
    CHECK(asked.on_packet(guest_packet(Op::Response)).verdict == Verdict::Established);
    CHECK(asked.is_open());
    CHECK(asked.credit() == 64 * 1024);

    auto refused = ConnectionState::requested();
    device_packet(refused, Op::Request);
    CHECK(refused.on_packet(guest_packet(Op::Rst)).verdict == Verdict::Closed);

    auto confused = ConnectionState::requested();
    device_packet(confused, Op::Request);
    CHECK(confused.on_packet(guest_packet(Op::Rw, 5)).verdict == Verdict::Reset);
}

TEST_CASE("vsock connection: ops that do not fit an open connection reset it")
{
    for (auto op : { Op::Request, Op::Response, Op::Invalid }) {
        auto state = open_connection();
        auto outcome = state.on_packet(guest_packet(op));
        CHECK(outcome.verdict == Verdict::Reset);
        CHECK_FALSE(outcome.violation.empty());
    }
    auto state = open_connection();
    auto header = guest_packet(Op::Rw);
    header.op = 42;
    CHECK(state.on_packet(header).verdict == Verdict::Reset);
}

TEST_CASE("vsock connection: the device never has more in flight than the guest's credit")
{
    auto state = open_connection();
    CHECK(state.credit() == 64 * 1024);
    device_packet(state, Op::Rw, 60 * 1024);
    CHECK(state.credit() == 4 * 1024);
    device_packet(state, Op::Rw, 4 * 1024);
    CHECK(state.credit() == 0);
    // The guest consumed 16 KiB and says so.
    auto update = guest_packet(Op::CreditUpdate);
    update.fwd_cnt = 16 * 1024;
    CHECK(state.on_packet(update).verdict == Verdict::None);
    CHECK(state.credit() == 16 * 1024);
    // A fwd_cnt ahead of what was sent is nonsense: no credit.
    update.fwd_cnt = 128 * 1024;
    state.on_packet(update);
    CHECK(state.credit() == 0);
}

TEST_CASE("vsock connection: counters wrap as u32")
{
    auto state = open_connection();
    auto update = guest_packet(Op::CreditUpdate);
    // 4 GiB minus one byte go by (65537 × 65535 = 2^32 − 1), so that the
    // next packet takes tx_cnt past zero.
    for (int i = 0; i < 65537; ++i) {
        device_packet(state, Op::Rw, 65535);
        update.fwd_cnt += 65535;
        state.on_packet(update);
    }
    CHECK(state.credit() == 64 * 1024);
    device_packet(state, Op::Rw, 1000);
    CHECK(state.credit() == 64 * 1024 - 1000);
}

TEST_CASE("vsock connection: a guest sending beyond its credit is reset")
{
    auto state = open_connection();
    CHECK(state.on_packet(guest_packet(Op::Rw, MAX_PACKET_PAYLOAD)).verdict == Verdict::Data);
    CHECK(state.on_packet(guest_packet(Op::Rw, MAX_PACKET_PAYLOAD)).verdict == Verdict::Data);
    CHECK(state.on_packet(guest_packet(Op::Rw, MAX_PACKET_PAYLOAD)).verdict == Verdict::Data);
    CHECK(state.on_packet(guest_packet(Op::Rw, MAX_PACKET_PAYLOAD - 1)).verdict == Verdict::Data);
    CHECK(state.held() == BUFFER_SIZE - 1);
    // The host took everything, but the guest was never told: 1 byte left.
    state.forwarded(state.held());
    auto outcome = state.on_packet(guest_packet(Op::Rw, 2));
    CHECK(outcome.verdict == Verdict::Reset);
    CHECK(outcome.violation == "data beyond the credit the device gave");
}

TEST_CASE("vsock connection: a CREDIT_UPDATE is owed when the guest's view runs low, and after CREDIT_REQUEST")
{
    auto state = open_connection();
    state.on_packet(guest_packet(Op::Rw, MAX_PACKET_PAYLOAD));
    state.forwarded(MAX_PACKET_PAYLOAD);
    // Plenty of room as the guest sees it: no update volunteered.
    CHECK_FALSE(state.next_control());
    state.on_packet(guest_packet(Op::Rw, MAX_PACKET_PAYLOAD));
    state.on_packet(guest_packet(Op::Rw, MAX_PACKET_PAYLOAD));
    state.on_packet(guest_packet(Op::Rw, MAX_PACKET_PAYLOAD - 100));
    // The guest sees 100 bytes free, and the device has forwarded more.
    auto control = state.next_control();
    REQUIRE(control);
    CHECK(control->op == Op::CreditUpdate);
    auto update = device_packet(state, Op::CreditUpdate);
    CHECK(update.fwd_cnt == MAX_PACKET_PAYLOAD);
    CHECK(update.buf_alloc == BUFFER_SIZE);
    CHECK_FALSE(state.next_control());
    // Low, but nothing new forwarded: nothing to tell.
    CHECK_FALSE(state.next_control());

    CHECK(state.on_packet(guest_packet(Op::CreditRequest)).verdict == Verdict::None);
    control = state.next_control();
    REQUIRE(control);
    CHECK(control->op == Op::CreditUpdate);
    // Data carries the counters too, so it settles the request.
    device_packet(state, Op::Rw, 10);
    CHECK_FALSE(state.next_control());
}

TEST_CASE("vsock connection: SHUTDOWN flags accumulate; SEND forbids more data; both finish the connection")
{
    auto state = open_connection();
    CHECK(state.on_packet(guest_packet(Op::Shutdown, 0, SHUTDOWN_RECEIVE)).verdict == Verdict::Shutdown);
    CHECK(state.guest_receives_no_more());
    CHECK_FALSE(state.may_send_data());
    CHECK(state.on_packet(guest_packet(Op::Shutdown, 0, SHUTDOWN_RECEIVE)).verdict == Verdict::None);
    CHECK(state.on_packet(guest_packet(Op::Shutdown, 0, SHUTDOWN_SEND)).verdict == Verdict::Finish);

    auto half = open_connection();
    CHECK(half.on_packet(guest_packet(Op::Shutdown, 0, SHUTDOWN_SEND)).verdict == Verdict::Shutdown);
    CHECK(half.guest_sends_no_more());
    CHECK(half.may_send_data());
    auto outcome = half.on_packet(guest_packet(Op::Rw, 1));
    CHECK(outcome.verdict == Verdict::Reset);
    CHECK(outcome.violation == "data after SHUTDOWN(SEND)");

    auto closed = open_connection();
    CHECK(closed.on_packet(guest_packet(Op::Shutdown, 0, SHUTDOWN_SEND | SHUTDOWN_RECEIVE)).verdict == Verdict::Finish);
    auto ignored = open_connection();
    CHECK(ignored.on_packet(guest_packet(Op::Shutdown, 0, 0xFFFFFFFC)).verdict == Verdict::None);
}

TEST_CASE("vsock connection: the host's end of stream is owed as SHUTDOWN(SEND), after the handshake")
{
    auto state = ConnectionState::accepted(guest_packet(Op::Request));
    state.host_finished();
    auto control = state.next_control();
    REQUIRE(control);
    CHECK(control->op == Op::Response);
    device_packet(state, Op::Response);
    control = state.next_control();
    REQUIRE(control);
    CHECK(control->op == Op::Shutdown);
    CHECK(control->flags == SHUTDOWN_SEND);
    CHECK_FALSE(state.may_send_data());
    device_packet(state, Op::Shutdown);
    CHECK_FALSE(state.next_control());
    state.host_finished();
    CHECK_FALSE(state.next_control());
}
