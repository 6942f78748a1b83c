#include <qtbox/vsock/address.hpp>

#include <doctest/doctest.h>

using namespace qtbox;
using namespace qtbox::vsock;

TEST_CASE("vsock address: the VMM's own ports are reserved (docs/FORMATS.md §6)")
{
    CHECK(is_reserved_parent_port(9000));
    CHECK(is_reserved_parent_port(9001));
    CHECK_FALSE(is_reserved_parent_port(8000));
    CHECK_FALSE(is_reserved_parent_port(9002));
}

TEST_CASE("vsock address: handshake lines are formatted exactly")
{
    CHECK(connect_request(5050) == "CONNECT 5050\n");
    CHECK(connect_reply(0) == "OK 0\n");
    CHECK(connect_reply(4294967295u) == "OK 4294967295\n");
}

TEST_CASE("vsock address: CONNECT request parsing")
{
    auto line = parse_connect_request("CONNECT 5050\nrest");
    REQUIRE_FALSE(line.is_error());
    REQUIRE(line.value().has_value());
    CHECK(line.value()->port == 5050);
    CHECK(line.value()->length == 13);

    auto longest = parse_connect_request("CONNECT 4294967295\n");
    REQUIRE_FALSE(longest.is_error());
    CHECK(longest.value()->port == 4294967295u);

    // Not complete yet: read more.
    for (auto partial : { "", "C", "CONNECT", "CONNECT ", "CONNECT 50" }) {
        auto result = parse_connect_request(partial);
        REQUIRE_FALSE(result.is_error());
        CHECK_FALSE(result.value().has_value());
    }
}

TEST_CASE("vsock address: malformed CONNECT requests are refused")
{
    for (auto bad : { "CONNECT\n", "CONNECT \n", "CONNECT 4294967296\n", "CONNECT 05\n", "CONNECT -1\n", "CONNECT 1 \n",
             "CONNECT 12a\n", "connect 5\n", "CONNECT  5\n", "CONNECT 99999999999\n", "GET / HTTP/1.1\r\n", "X" }) {
        auto result = parse_connect_request(bad);
        REQUIRE(result.is_error());
        CHECK(result.error().message() == "expected 'CONNECT <port>'");
        CHECK(result.error().is(HandshakeError::Malformed));
    }
    // No newline within the limit.
    auto endless = parse_connect_request("CONNECT 1111111111111111111111111111111");
    REQUIRE(endless.is_error());
    CHECK(endless.error().message() == "handshake line longer than 32 bytes");
}

TEST_CASE("vsock address: OK reply parsing keeps the bytes after the line")
{
    std::string_view buffer = "OK 1073741824\nhello";
    auto line = parse_connect_reply(buffer);
    REQUIRE_FALSE(line.is_error());
    REQUIRE(line.value().has_value());
    CHECK(line.value()->port == 1073741824u);
    CHECK(buffer.substr(line.value()->length) == "hello");

    auto waiting = parse_connect_reply("OK");
    REQUIRE_FALSE(waiting.is_error());
    CHECK_FALSE(waiting.value().has_value());

    auto refused = parse_connect_reply("ERR no listener\n");
    REQUIRE(refused.is_error());
    CHECK(refused.error().message() == "expected 'OK <port>'");
    // An answer that cannot become "OK " is refused before its newline.
    CHECK(parse_connect_reply("NO").is_error());
    CHECK(parse_connect_reply("OK\n").is_error());
}
