#include <qtbox/vsock/heartbeat.hpp>

#include <fmt/format.h>

namespace qtbox::vsock {

std::array<std::uint8_t, HEARTBEAT_REPLY_SIZE> encode_heartbeat_reply(std::uint64_t wall_clock_ns)
{
    std::array<std::uint8_t, HEARTBEAT_REPLY_SIZE> reply {};
    reply[0] = HEARTBEAT_MAGIC;
    for (std::size_t i = 0; i < 8; ++i)
        reply[1 + i] = static_cast<std::uint8_t>(wall_clock_ns >> (56 - 8 * i));
    return reply;
}

ErrorOr<std::uint64_t> parse_heartbeat_reply(ByteView reply)
{
    if (reply.size() != HEARTBEAT_REPLY_SIZE)
        return Error::from_code(HeartbeatError::BadReply,
            fmt::format("heartbeat reply of {} bytes, expected {}", reply.size(), HEARTBEAT_REPLY_SIZE));
    if (reply[0] != HEARTBEAT_MAGIC)
        return Error::from_code(HeartbeatError::BadReply,
            fmt::format("heartbeat reply starts with {:#04x}, expected {:#04x}", reply[0], HEARTBEAT_MAGIC));
    std::uint64_t clock = 0;
    for (std::size_t i = 1; i < HEARTBEAT_REPLY_SIZE; ++i)
        clock = (clock << 8) | reply[i];
    return clock;
}

} // namespace qtbox::vsock
