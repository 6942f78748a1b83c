// The virtio-vsock packet header (virtio 1.2 §5.10.6), little-endian, 44
// bytes, and its fields' values. Pure: bytes in, bytes out.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace qtbox::devices::virtio::vsock {

constexpr std::size_t HEADER_SIZE = 44;
// The largest payload one packet may carry: Linux's
// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, which is also Firecracker's cap.
constexpr std::uint32_t MAX_PACKET_PAYLOAD = 64 * 1024;
// The receive buffer the device advertises per connection (buf_alloc).
constexpr std::uint32_t BUFFER_SIZE = 256 * 1024;

constexpr std::uint16_t TYPE_STREAM = 1;

enum class Op : std::uint16_t {
    Invalid = 0,
    Request = 1,
    Response = 2,
    Rst = 3,
    Shutdown = 4,
    Rw = 5,
    CreditUpdate = 6,
    CreditRequest = 7,
};

// SHUTDOWN flags: the sender will receive no more / send no more.
constexpr std::uint32_t SHUTDOWN_RECEIVE = 1;
constexpr std::uint32_t SHUTDOWN_SEND = 2;

struct Header {
    std::uint64_t src_cid { 0 };
    std::uint64_t dst_cid { 0 };
    std::uint32_t src_port { 0 };
    std::uint32_t dst_port { 0 };
    std::uint32_t len { 0 };
    std::uint16_t type { TYPE_STREAM };
    std::uint16_t op { 0 };
    std::uint32_t flags { 0 };
    std::uint32_t buf_alloc { 0 };
    std::uint32_t fwd_cnt { 0 };

    bool operator==(Header const&) const = default;
};

std::array<std::uint8_t, HEADER_SIZE> encode_header(Header const& header);
// Exactly HEADER_SIZE bytes; no field is judged here.
Header decode_header(std::span<std::uint8_t const, HEADER_SIZE> bytes);

// REQUEST through CREDIT_REQUEST: the ops a stream connection uses.
bool is_known_op(std::uint16_t op);
// "REQUEST", "RW"...; "unknown" for a value outside the enum.
std::string_view op_name(std::uint16_t op);

} // namespace qtbox::devices::virtio::vsock
