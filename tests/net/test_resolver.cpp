#include "../support/dns_fake.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/net/resolver.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::net;
using namespace qtbox::test;

namespace {

// A temporary directory with hosts and resolv.conf files.
class Files {
public:
    explicit Files(std::string const& resolv_conf, std::string const& hosts = "")
    {
        REQUIRE_FALSE(sys::write_file_atomic(hosts_path(), as_bytes(hosts)).is_error());
        REQUIRE_FALSE(sys::write_file_atomic(resolv_path(), as_bytes(resolv_conf)).is_error());
    }
    std::string hosts_path() const { return m_directory / "hosts"; }
    std::string resolv_path() const { return m_directory / "resolv.conf"; }
    ResolverSettings settings(std::uint16_t port) const { return { hosts_path(), resolv_path(), port }; }

private:
    TempDir m_directory;
};

// What a callback received, copied out of the ErrorOr (GCC 12 warns
// falsely about destroying an ErrorOr<vector> moved into an optional).
struct Outcome {
    bool is_error { false };
    std::string message;
    Addresses addresses;

    static Outcome from(ErrorOr<Addresses> const& value)
    {
        if (value.is_error())
            return { true, value.error().message(), {} };
        return { false, {}, value.value() };
    }
};

// Runs the loop until the callback fired (or 10 s passed).
std::optional<Outcome> resolve(EventLoop& loop, Resolver& resolver, std::string const& name, Family family)
{
    std::optional<Outcome> result;
    resolver.start(name, family, [&](ErrorOr<Addresses> const& value) { result = Outcome::from(value); }, Clock::now());
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!result && Clock::now() < deadline) {
        REQUIRE_FALSE(loop.wait(50).is_error());
        resolver.tick(Clock::now());
        resolver.collect_garbage();
    }
    return result;
}

Bytes answer_a(FakeDnsServer::Question const& question, std::uint32_t ttl, std::uint8_t last)
{
    if (question.type == 1)
        return make_answer(question.id, 0x0180, question.name, 1, { a_record(question.name, ttl, 192, 0, 2, last) });
    return make_answer(question.id, 0x0180, question.name, question.type, {});
}

} // namespace

TEST_CASE("resolver: numeric addresses and hosts entries need no DNS")
{
    Files files("nameserver 127.0.0.1\n", "10.1.2.3 db.internal\nfd00::7 db.internal\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(1));
    auto now = Clock::now();

    auto numeric = resolver.lookup_now("192.0.2.9", Family::Any, now);
    REQUIRE(numeric);
    REQUIRE_FALSE(numeric->is_error());
    CHECK(numeric->value().at(0).to_string() == "192.0.2.9");
    auto wrong = resolver.lookup_now("192.0.2.9", Family::Ipv6, now);
    REQUIRE(wrong);
    REQUIRE(wrong->is_error());
    CHECK(wrong->error().message() == "192.0.2.9 is not an IPv6 address");
    auto bracketed = resolver.lookup_now("[::1]", Family::Ipv6, now);
    REQUIRE(bracketed);
    CHECK(bracketed->value().at(0).to_string() == "::1");

    auto hosts = resolver.lookup_now("DB.internal", Family::Any, now);
    REQUIRE(hosts);
    REQUIRE(hosts->value().size() == 2);
    CHECK(hosts->value()[0].to_string() == "10.1.2.3");
    auto hosts_v6 = resolver.lookup_now("db.internal", Family::Ipv6, now);
    REQUIRE(hosts_v6);
    REQUIRE(hosts_v6->value().size() == 1);
    CHECK(hosts_v6->value()[0].to_string() == "fd00::7");
    CHECK_FALSE(resolver.lookup_now("elsewhere.internal", Family::Any, now));
}

TEST_CASE("resolver: DNS answers are cached for their TTL and lookups are coalesced")
{
    FakeDnsServer server([](auto const& question) { return answer_a(question, 60, 1); });
    Files files("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(server.port()));

    int callbacks = 0;
    std::optional<Outcome> first;
    resolver.start("svc.example", Family::Ipv4, [&](ErrorOr<Addresses> const& value) { ++callbacks; first = Outcome::from(value); }, Clock::now());
    resolver.start("SVC.example.", Family::Ipv4, [&](ErrorOr<Addresses> const&) { ++callbacks; }, Clock::now());
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (callbacks < 2 && Clock::now() < deadline)
        REQUIRE_FALSE(loop.wait(50).is_error());
    CHECK(callbacks == 2);
    REQUIRE(first);
    REQUIRE_FALSE(first->is_error);
    CHECK(first->addresses.at(0).to_string() == "192.0.2.1");
    CHECK(server.questions() == 1);
    CHECK_FALSE(resolver.busy());

    auto cached = resolver.lookup_now("svc.example", Family::Ipv4, Clock::now());
    REQUIRE(cached);
    CHECK(cached->value().at(0).to_string() == "192.0.2.1");
    // Past the TTL the cache entry is gone.
    CHECK_FALSE(resolver.lookup_now("svc.example", Family::Ipv4, Clock::now() + std::chrono::seconds(61)));
    resolver.collect_garbage();
}

TEST_CASE("resolver: both families, IPv4 first; TTL 0 is not cached")
{
    FakeDnsServer server([](auto const& question) {
        if (question.type == 28) {
            FakeRecord aaaa { question.name, 28, 0, Bytes(16, 0) };
            aaaa.data[0] = 0xfd;
            aaaa.data[15] = 2;
            return make_answer(question.id, 0x0180, question.name, 28, { aaaa });
        }
        return answer_a(question, 0, 2);
    });
    Files files("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(server.port()));
    auto result = resolve(loop, resolver, "dual.example", Family::Any);
    REQUIRE(result);
    REQUIRE_FALSE(result->is_error);
    REQUIRE(result->addresses.size() == 2);
    CHECK(result->addresses[0].to_string() == "192.0.2.2");
    CHECK(result->addresses[1].to_string() == "fd00::2");
    CHECK(server.questions() == 2);
    CHECK_FALSE(resolver.lookup_now("dual.example", Family::Any, Clock::now()));
}

TEST_CASE("resolver: NXDOMAIN is final")
{
    FakeDnsServer server([](auto const& question) { return make_answer(question.id, 0x0183, question.name, question.type, {}); });
    Files files("nameserver 127.0.0.1\noptions timeout:2 attempts:3\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(server.port()));
    auto result = resolve(loop, resolver, "missing.example", Family::Ipv4);
    REQUIRE(result);
    REQUIRE(result->is_error);
    CHECK(result->message == "missing.example: no such name (NXDOMAIN)");
    CHECK(server.questions() == 1);
}

TEST_CASE("resolver: a truncated UDP answer is asked again over TCP")
{
    FakeDnsServer server([](auto const& question) {
        if (!question.tcp)
            return make_answer(question.id, 0x0380, question.name, question.type, {});
        return answer_a(question, 30, 3);
    });
    Files files("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(server.port()));
    auto result = resolve(loop, resolver, "big.example", Family::Ipv4);
    REQUIRE(result);
    REQUIRE_FALSE(result->is_error);
    CHECK(result->addresses.at(0).to_string() == "192.0.2.3");
    CHECK(server.tcp_questions() == 1);
}

TEST_CASE("resolver: answers with the wrong id are ignored")
{
    FakeDnsServer server([](auto const& question) {
        auto spoofed = answer_a(question, 30, 66);
        spoofed[0] ^= 0xFF;
        return spoofed;
    });
    Files files("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(server.port()));
    auto started = Clock::now();
    auto result = resolve(loop, resolver, "spoof.example", Family::Ipv4);
    REQUIRE(result);
    REQUIRE(result->is_error);
    CHECK(result->message == "DNS lookup of spoof.example timed out");
    CHECK(Clock::now() - started >= std::chrono::milliseconds(900));
}

TEST_CASE("resolver: SERVFAIL moves on to the next name server")
{
    FakeDnsServer failing([](auto const& question) { return make_answer(question.id, 0x0182, question.name, question.type, {}); });
    Files files("nameserver 127.0.0.1\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(failing.port()));
    auto result = resolve(loop, resolver, "broken.example", Family::Ipv4);
    REQUIRE(result);
    REQUIRE(result->is_error);
    CHECK(result->message == "DNS server failure (SERVFAIL)");
    // One question per listed server, per attempt.
    CHECK(failing.questions() == 2);
}

TEST_CASE("resolver: a server that is down fails fast")
{
    // Take a free UDP port and release it: nobody listens there.
    std::uint16_t port;
    {
        FakeDnsServer probe([](auto const&) { return Bytes {}; });
        port = probe.port();
    }
    Files files("nameserver 127.0.0.1\noptions timeout:5 attempts:2\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(port));
    auto started = Clock::now();
    auto result = resolve(loop, resolver, "down.example", Family::Ipv4);
    REQUIRE(result);
    REQUIRE(result->is_error);
    CHECK(result->message == "DNS server 127.0.0.1:" + std::to_string(port) + ": Connection refused");
    CHECK(Clock::now() - started < std::chrono::seconds(2));
}

TEST_CASE("resolver: a cancelled waiter is never called")
{
    FakeDnsServer server([](auto const& question) { return answer_a(question, 30, 4); });
    Files files("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(server.port()));
    bool cancelled_called = false;
    auto token = resolver.start("c.example", Family::Ipv4, [&](ErrorOr<Addresses> const&) { cancelled_called = true; }, Clock::now());
    resolver.cancel(token);
    auto result = resolve(loop, resolver, "c.example", Family::Ipv4);
    REQUIRE(result);
    CHECK_FALSE(result->is_error);
    CHECK_FALSE(cancelled_called);
}

TEST_CASE("resolver: hosts-file answers are kept for a few seconds")
{
    Files files("nameserver 127.0.0.1\n", "10.9.9.9 cached.internal\n");
    auto loop = EventLoop::create().release_value();
    Resolver resolver(loop, files.settings(1));
    auto now = Clock::now();
    REQUIRE(resolver.lookup_now("cached.internal", Family::Any, now));
    REQUIRE_FALSE(sys::write_file_atomic(files.hosts_path(), as_bytes("10.8.8.8 cached.internal\n")).is_error());
    auto soon = resolver.lookup_now("cached.internal", Family::Any, now + std::chrono::seconds(1));
    REQUIRE(soon);
    CHECK(soon->value().at(0).to_string() == "10.9.9.9");
    auto later = resolver.lookup_now("cached.internal", Family::Any, now + std::chrono::seconds(Resolver::HOSTS_CACHE_SECONDS + 1));
    REQUIRE(later);
    CHECK(later->value().at(0).to_string() == "10.8.8.8");
}
