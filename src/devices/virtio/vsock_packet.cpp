#include <qtbox/devices/virtio/vsock_packet.hpp>

namespace qtbox::devices::virtio::vsock {

namespace {

// Field offsets of the header (virtio 1.2 §5.10.6; docs/PLATFORMS.md §V4.1).
constexpr std::size_t SRC_CID = 0;
constexpr std::size_t DST_CID = 8;
constexpr std::size_t SRC_PORT = 16;
constexpr std::size_t DST_PORT = 20;
constexpr std::size_t LEN = 24;
constexpr std::size_t TYPE = 28;
constexpr std::size_t OP = 30;
constexpr std::size_t FLAGS = 32;
constexpr std::size_t BUF_ALLOC = 36;
constexpr std::size_t FWD_CNT = 40;
static_assert(FWD_CNT + 4 == HEADER_SIZE);

template<typename T>
void store(std::uint8_t* out, T value)
{
    for (std::size_t i = 0; i < sizeof(T); ++i)
        out[i] = static_cast<std::uint8_t>(value >> (8 * i));
}

template<typename T>
T load(std::uint8_t const* in)
{
    T value = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
        value = static_cast<T>(value | static_cast<T>(static_cast<T>(in[i]) << (8 * i)));
    return value;
}

} // namespace

std::array<std::uint8_t, HEADER_SIZE> encode_header(Header const& header)
{
    std::array<std::uint8_t, HEADER_SIZE> bytes {};
    auto* out = bytes.data();
    store(out + SRC_CID, header.src_cid);
    store(out + DST_CID, header.dst_cid);
    store(out + SRC_PORT, header.src_port);
    store(out + DST_PORT, header.dst_port);
    store(out + LEN, header.len);
    store(out + TYPE, header.type);
    store(out + OP, header.op);
    store(out + FLAGS, header.flags);
    store(out + BUF_ALLOC, header.buf_alloc);
    store(out + FWD_CNT, header.fwd_cnt);
    return bytes;
}

Header decode_header(std::span<std::uint8_t const, HEADER_SIZE> bytes)
{
    auto const* in = bytes.data();
    Header header;
    header.src_cid = load<std::uint64_t>(in + SRC_CID);
    header.dst_cid = load<std::uint64_t>(in + DST_CID);
    header.src_port = load<std::uint32_t>(in + SRC_PORT);
    header.dst_port = load<std::uint32_t>(in + DST_PORT);
    header.len = load<std::uint32_t>(in + LEN);
    header.type = load<std::uint16_t>(in + TYPE);
    header.op = load<std::uint16_t>(in + OP);
    header.flags = load<std::uint32_t>(in + FLAGS);
    header.buf_alloc = load<std::uint32_t>(in + BUF_ALLOC);
    header.fwd_cnt = load<std::uint32_t>(in + FWD_CNT);
    return header;
}

bool is_known_op(std::uint16_t op)
{
    return op >= static_cast<std::uint16_t>(Op::Request) && op <= static_cast<std::uint16_t>(Op::CreditRequest);
}

std::string_view op_name(std::uint16_t op)
{
    switch (static_cast<Op>(op)) {
    case Op::Invalid:
        return "INVALID";
    case Op::Request:
        return "REQUEST";
    case Op::Response:
        return "RESPONSE";
    case Op::Rst:
        return "RST";
    case Op::Shutdown:
        return "SHUTDOWN";
    case Op::Rw:
        return "RW";
    case Op::CreditUpdate:
        return "CREDIT_UPDATE";
    case Op::CreditRequest:
        return "CREDIT_REQUEST";
    }
    return "unknown";
}

} // namespace qtbox::devices::virtio::vsock
