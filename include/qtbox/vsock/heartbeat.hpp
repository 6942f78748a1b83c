// The heartbeat (docs/FORMATS.md §6): an enclave's init connects to CID 3
// port 9000 and sends one byte, HEARTBEAT_MAGIC; the VMM answers with the
// same byte and its wall clock, nanoseconds since the epoch as a u64
// big-endian, from which init sets the enclave's clock. The VMM serves it
// itself (devices/virtio/vsock.hpp); this is the wire format both ends use.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <array>
#include <cstdint>

namespace qtbox::vsock {

constexpr std::uint8_t HEARTBEAT_MAGIC = 0xB7;
constexpr std::size_t HEARTBEAT_REPLY_SIZE = 9;

enum class HeartbeatError {
    BadReply = 1, // not HEARTBEAT_MAGIC followed by a clock
};

std::array<std::uint8_t, HEARTBEAT_REPLY_SIZE> encode_heartbeat_reply(std::uint64_t wall_clock_ns);
// The parent's wall clock from a reply of exactly HEARTBEAT_REPLY_SIZE bytes.
ErrorOr<std::uint64_t> parse_heartbeat_reply(ByteView reply);

} // namespace qtbox::vsock
