#include <qtbox/vsock/heartbeat.hpp>

#include <doctest/doctest.h>

using namespace qtbox;
using namespace qtbox::vsock;

TEST_CASE("heartbeat: the reply is 0xB7 and the clock, u64 big-endian")
{
    auto reply = encode_heartbeat_reply(0x0102030405060708ull);
    CHECK(Bytes(reply.begin(), reply.end()) == Bytes { 0xB7, 1, 2, 3, 4, 5, 6, 7, 8 });
    auto clock = parse_heartbeat_reply(ByteView(reply));
    REQUIRE_FALSE(clock.is_error());
    CHECK(clock.value() == 0x0102030405060708ull);
    auto zero = encode_heartbeat_reply(0);
    CHECK(parse_heartbeat_reply(ByteView(zero)).value() == 0);
}

TEST_CASE("heartbeat: a reply of the wrong size or without the magic byte is refused")
{
    auto reply = encode_heartbeat_reply(1'700'000'000'000'000'000ull);
    Bytes wrong_magic(reply.begin(), reply.end());
    wrong_magic[0] = 0xB6;
    auto refused = parse_heartbeat_reply(wrong_magic);
    REQUIRE(refused.is_error());
    CHECK(refused.error().is(HeartbeatError::BadReply));
    CHECK(refused.error().message() == "heartbeat reply starts with 0xb6, expected 0xb7");
    auto short_reply = parse_heartbeat_reply(ByteView(reply).first(8));
    REQUIRE(short_reply.is_error());
    CHECK(short_reply.error().message() == "heartbeat reply of 8 bytes, expected 9");
    CHECK(parse_heartbeat_reply(ByteView()).error().is(HeartbeatError::BadReply));
}
