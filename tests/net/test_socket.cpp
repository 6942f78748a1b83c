#include "../support/temp_dir.hpp"

#include <qtbox/net/socket.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::net;

TEST_CASE("net socket: numeric IP addresses")
{
    auto v4 = IpAddress::parse("192.0.2.1");
    REQUIRE(v4);
    CHECK_FALSE(v4->is_v6);
    CHECK(v4->to_string() == "192.0.2.1");
    CHECK(*v4 == IpAddress::v4(192, 0, 2, 1));
    auto v6 = IpAddress::parse("[2001:DB8::1]");
    REQUIRE(v6);
    CHECK(v6->is_v6);
    CHECK(v6->to_string() == "2001:db8::1");
    CHECK(v6->matches(Family::Ipv6));
    CHECK_FALSE(v6->matches(Family::Ipv4));
    CHECK(v6->matches(Family::Any));
    for (auto bad : { "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "example.com", "fe80::1%eth0", "[::1", "::1]", " 1.2.3.4", "01.2.3.4" })
        CHECK_MESSAGE(!IpAddress::parse(bad), bad);
}

TEST_CASE("net socket: ip:port parsing")
{
    auto v4 = SocketAddress::parse_ip_port("127.0.0.1:5050");
    REQUIRE_FALSE(v4.is_error());
    CHECK(v4.value().family() == AF_INET);
    CHECK(v4.value().to_string() == "127.0.0.1:5050");
    auto v6 = SocketAddress::parse_ip_port("[::]:443");
    REQUIRE_FALSE(v6.is_error());
    CHECK(v6.value().family() == AF_INET6);
    CHECK(v6.value().to_string() == "[::]:443");
    CHECK(SocketAddress::parse_ip_port("0.0.0.0:65535").value().to_string() == "0.0.0.0:65535");

    struct Case {
        char const* text;
        char const* message;
    };
    for (auto const& c : {
             Case { "127.0.0.1", "invalid address '127.0.0.1': expected ip:port or [ipv6]:port" },
             Case { "127.0.0.1:0", "invalid address '127.0.0.1:0': the port must be a number from 1 to 65535" },
             Case { "127.0.0.1:65536", "invalid address '127.0.0.1:65536': the port must be a number from 1 to 65535" },
             Case { "127.0.0.1:080", "invalid address '127.0.0.1:080': the port must be a number from 1 to 65535" },
             Case { "127.0.0.1:", "invalid address '127.0.0.1:': the port must be a number from 1 to 65535" },
             Case { "127.0.0.1:http", "invalid address '127.0.0.1:http': the port must be a number from 1 to 65535" },
             Case { "localhost:80", "invalid address 'localhost:80': not a numeric IPv4 address (write IPv6 as [address]:port)" },
             Case { "::1:80", "invalid address '::1:80': not a numeric IPv4 address (write IPv6 as [address]:port)" },
             Case { "[::1]80", "invalid address '[::1]80': expected [IPv6]:port" },
             Case { "[1.2.3.4]:80", "invalid address '[1.2.3.4]:80': not a numeric IPv6 address" },
         }) {
        auto result = SocketAddress::parse_ip_port(c.text);
        REQUIRE_MESSAGE(result.is_error(), c.text);
        CHECK(result.error().message() == c.message);
    }
}

TEST_CASE("net socket: address text for logs")
{
    CHECK(SocketAddress::vsock(3, 8000).to_string() == "vsock:3:8000");
    CHECK(SocketAddress::unix_path("/run/qtbox/vsock/3_8000").value().to_string() == "unix:/run/qtbox/vsock/3_8000");
    std::string long_path(sizeof(sockaddr_un::sun_path), 'a');
    auto too_long = SocketAddress::unix_path(long_path);
    REQUIRE(too_long.is_error());
    CHECK(too_long.error().is(SocketError::PathTooLong));
}

TEST_CASE("net socket: a hybrid listener is 0660, refuses a live socket and replaces a stale one")
{
    test::TempDir directory;
    std::string path = directory / "3_8000";
    struct stat identity { };
    auto first = listen_hybrid(path, 16, &identity);
    REQUIRE_FALSE(first.is_error());
    struct stat st { };
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0660);
    CHECK(st.st_ino == identity.st_ino);

    auto second = listen_hybrid(path, 16);
    REQUIRE(second.is_error());
    CHECK(second.error().is(SocketError::AddressInUse));
    CHECK(second.error().message() == "bind " + path + ": another process is listening there");

    // The first listener goes away without removing its file: stale.
    first.value().reset();
    auto third = listen_hybrid(path, 16, &identity);
    REQUIRE_FALSE(third.is_error());

    // remove_socket_file removes only the file it was given the identity of.
    struct stat other = identity;
    other.st_ino += 1;
    remove_socket_file(path, other);
    CHECK(::access(path.c_str(), F_OK) == 0);
    remove_socket_file(path, identity);
    CHECK(::access(path.c_str(), F_OK) != 0);
}

TEST_CASE("net socket: a refused connect is reported with its errno")
{
    // An ephemeral port that was bound and released: nobody listens there.
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in any {};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(probe.get(), reinterpret_cast<sockaddr*>(&any), sizeof(any)) == 0);
    socklen_t length = sizeof(any);
    REQUIRE(::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&any), &length) == 0);
    probe.reset();
    auto address = SocketAddress::ip(IpAddress::v4(127, 0, 0, 1), ntohs(any.sin_port));
    auto pending = start_connect(address);
    if (pending.is_error()) {
        CHECK(pending.error().is_errno(ECONNREFUSED));
        return;
    }
    REQUIRE(pending.value().in_progress);
    fd_set writable;
    FD_ZERO(&writable);
    FD_SET(pending.value().fd.get(), &writable);
    timeval timeout { 5, 0 };
    REQUIRE(::select(pending.value().fd.get() + 1, nullptr, &writable, nullptr, &timeout) == 1);
    auto result = finish_connect(pending.value().fd.get());
    REQUIRE(result.is_error());
    CHECK(result.error().is_errno(ECONNREFUSED));
    CHECK(result.error().message() == "connect: Connection refused");
}
