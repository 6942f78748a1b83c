#include "../support/dns_fake.hpp"

#include <qtbox/net/dns.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

using namespace qtbox;
using namespace qtbox::net;
using namespace qtbox::test;

TEST_CASE("dns: a query is RFC 1035 bytes")
{
    auto query = dns::encode_query(0xBEEF, "Kms.Example.com.", dns::RecordType::A);
    REQUIRE_FALSE(query.is_error());
    CHECK(hex_encode(query.value())
        == "beef01000001000000000000"
           "034b6d73074578616d706c6503636f6d00"
           "00010001");
    auto aaaa = dns::encode_query(1, "a.b", dns::RecordType::Aaaa);
    REQUIRE_FALSE(aaaa.is_error());
    CHECK(hex_encode(aaaa.value()) == "000101000001000000000000016101620000" "1c0001");
}

TEST_CASE("dns: host names are checked before any query")
{
    struct Case {
        std::string name;
        std::string message;
    };
    for (auto const& c : {
             Case { "", "invalid host name '': empty" },
             Case { ".", "invalid host name '.': empty" },
             Case { "a..b", "invalid host name 'a..b': empty label" },
             Case { "-a.b", "invalid host name '-a.b': a label starts or ends with '-'" },
             Case { "a b", "invalid host name 'a b': character ' ' is not allowed" },
             Case { "a/b", "invalid host name 'a/b': character '/' is not allowed" },
             Case { fmt::format("{}.com", std::string(64, 'x')), fmt::format("invalid host name '{}.com': label longer than 63 characters", std::string(64, 'x')) },
         }) {
        auto result = dns::validate_name(c.name);
        REQUIRE_MESSAGE(result.is_error(), c.name);
        CHECK(result.error().message() == c.message);
    }
    std::string long_name;
    for (int i = 0; i < 64; ++i)
        long_name += "abc.";
    long_name.pop_back();
    REQUIRE(dns::validate_name(long_name).is_error());
    CHECK(dns::validate_name(long_name).error().message() == fmt::format("invalid host name '{}': longer than 253 characters", long_name));
    CHECK_FALSE(dns::validate_name("_service.example-1.com.").is_error());
}

TEST_CASE("dns: addresses are collected through a CNAME chain, with the smallest TTL")
{
    auto message = make_answer(7, 0x0180, "www.example.com", 1, {
        { "www.example.com", 5, 300, wire_name("edge.example.net") },
        a_record("edge.example.net", 60, 192, 0, 2, 10),
        a_record("other.example.net", 1, 198, 51, 100, 1),
        a_record("EDGE.example.net", 120, 192, 0, 2, 11),
        a_record("edge.example.net", 90, 192, 0, 2, 10),
    });
    auto answer = dns::parse_response(message, 7, "WWW.example.com", dns::RecordType::A);
    REQUIRE_FALSE(answer.is_error());
    CHECK_FALSE(answer.value().truncated);
    REQUIRE(answer.value().addresses.size() == 2);
    CHECK(answer.value().addresses[0].to_string() == "192.0.2.10");
    CHECK(answer.value().addresses[1].to_string() == "192.0.2.11");
    CHECK(answer.value().ttl == 60);
}

TEST_CASE("dns: compressed names are followed; AAAA records are read")
{
    auto message = make_answer(9, 0x0180, "v6.example", 28, {});
    // One AAAA record whose owner is a pointer to the question name (offset 12).
    message[7] = 1;
    Bytes record = { 0xC0, 0x0C, 0x00, 0x1C, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x10,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
    message.insert(message.end(), record.begin(), record.end());
    auto answer = dns::parse_response(message, 9, "v6.example", dns::RecordType::Aaaa);
    REQUIRE_FALSE(answer.is_error());
    REQUIRE(answer.value().addresses.size() == 1);
    CHECK(answer.value().addresses[0].to_string() == "2001:db8::1");
    CHECK(answer.value().ttl == 60);
}

TEST_CASE("dns: answers to another question are told apart from server errors")
{
    auto good = make_answer(7, 0x0180, "a.example", 1, { a_record("a.example", 30, 10, 0, 0, 1) });
    auto mismatch = [&](ByteView message, std::uint16_t id, std::string_view name, dns::RecordType type) {
        auto result = dns::parse_response(message, id, name, type);
        REQUIRE(result.is_error());
        CHECK(result.error().is(dns::DnsError::Mismatch));
        CHECK(result.error().message() == "DNS answer does not match the query");
    };
    mismatch(good, 8, "a.example", dns::RecordType::A);
    mismatch(good, 7, "b.example", dns::RecordType::A);
    mismatch(good, 7, "a.example", dns::RecordType::Aaaa);
    auto query = good;
    query[2] &= 0x7F; // QR clear: a query, not an answer
    mismatch(query, 7, "a.example", dns::RecordType::A);

    struct Case {
        std::uint16_t flags;
        dns::DnsError failure;
        char const* message;
    };
    for (auto const& c : {
             Case { 0x0183, dns::DnsError::NameNotFound, "a.example: no such name (NXDOMAIN)" },
             Case { 0x0182, dns::DnsError::ServerFailure, "DNS server failure (SERVFAIL)" },
             Case { 0x0185, dns::DnsError::Refused, "DNS server refused the query (REFUSED)" },
             Case { 0x0184, dns::DnsError::OtherRcode, "DNS server answered with rcode 4" },
         }) {
        auto result = dns::parse_response(make_answer(7, c.flags, "a.example", 1, {}), 7, "a.example.", dns::RecordType::A);
        REQUIRE(result.is_error());
        CHECK(result.error().is(c.failure));
        CHECK(result.error().message() == c.message);
    }
}

TEST_CASE("dns: truncated answers ask for TCP; empty answers are NODATA")
{
    auto truncated = dns::parse_response(make_answer(1, 0x0380, "t.example", 1, {}), 1, "t.example", dns::RecordType::A);
    REQUIRE_FALSE(truncated.is_error());
    CHECK(truncated.value().truncated);
    auto nodata = dns::parse_response(make_answer(1, 0x0180, "t.example", 1, {}), 1, "t.example", dns::RecordType::A);
    REQUIRE_FALSE(nodata.is_error());
    CHECK(nodata.value().addresses.empty());
    CHECK(nodata.value().ttl == 0);
}

TEST_CASE("dns: hostile answers are refused without reading out of bounds")
{
    auto malformed = [](Bytes const& message, char const* why) {
        auto result = dns::parse_response(message, 7, "a.example", dns::RecordType::A);
        REQUIRE(result.is_error());
        CHECK(result.error().is(dns::DnsError::Malformed));
        CHECK(result.error().message() == fmt::format("malformed DNS answer: {}", why));
    };
    auto good = make_answer(7, 0x0180, "a.example", 1, { a_record("a.example", 30, 10, 0, 0, 1) });
    malformed(Bytes(good.begin(), good.begin() + 11), "shorter than a header");
    // Every truncation of a valid answer fails cleanly.
    for (std::size_t size = 12; size < good.size(); ++size) {
        auto result = dns::parse_response(ByteView(good.data(), size), 7, "a.example", dns::RecordType::A);
        CHECK(result.is_error());
    }
    // A compression pointer to itself (a loop) in the answer's owner name.
    auto looping = make_answer(7, 0x0180, "a.example", 1, {});
    looping[7] = 1;
    auto self = static_cast<std::uint8_t>(looping.size());
    Bytes record = { 0xC0, self, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4 };
    looping.insert(looping.end(), record.begin(), record.end());
    malformed(looping, "compression pointer does not point backwards");
    // A label type other than 00 and 11.
    auto label = make_answer(7, 0x0180, "a.example", 1, {});
    label[7] = 1;
    Bytes bad_label = { 0x40, 0 };
    label.insert(label.end(), bad_label.begin(), bad_label.end());
    malformed(label, "unknown label type");
    // An A record with a 5-byte address.
    malformed(make_answer(7, 0x0180, "a.example", 1, { { "a.example", 1, 30, { 1, 2, 3, 4, 5 } } }), "address record of the wrong length");
    // A CNAME loop longer than the chain limit.
    std::vector<FakeRecord> chain;
    for (int i = 0; i < 10; ++i)
        chain.push_back({ i == 0 ? std::string("a.example") : fmt::format("c{}.example", i), 5, 30, wire_name(fmt::format("c{}.example", i + 1)) });
    malformed(make_answer(7, 0x0180, "a.example", 1, chain), "CNAME chain longer than 8");
}

TEST_CASE("dns: a TTL with the top bit set counts as zero (RFC 2181 §8)")
{
    auto answer = dns::parse_response(make_answer(3, 0x0180, "a.example", 1, { a_record("a.example", 0x80000000u, 10, 0, 0, 1) }), 3,
        "a.example", dns::RecordType::A);
    REQUIRE_FALSE(answer.is_error());
    CHECK(answer.value().ttl == 0);
    CHECK(answer.value().addresses.size() == 1);
}

TEST_CASE("dns: hosts file lookup")
{
    std::string_view hosts = "# comment\n"
                             "127.0.0.1\tlocalhost\n"
                             "10.0.0.5   kms.internal  KMS   # trailing comment\n"
                             "fd00::5 kms.internal\n"
                             "10.0.0.5 kms.internal\n"
                             "10.0.0.6 other.internal kms.internal.\n"
                             "bogus kms.internal\n"
                             "10.0.0.7\n";
    auto all = dns::hosts_lookup(hosts, "KMS.internal.", Family::Any);
    REQUIRE(all.size() == 3);
    CHECK(all[0].to_string() == "10.0.0.5");
    CHECK(all[1].to_string() == "fd00::5");
    CHECK(all[2].to_string() == "10.0.0.6");
    auto v6 = dns::hosts_lookup(hosts, "kms.internal", Family::Ipv6);
    REQUIRE(v6.size() == 1);
    CHECK(v6[0].to_string() == "fd00::5");
    CHECK(dns::hosts_lookup(hosts, "kms", Family::Any).size() == 1);
    CHECK(dns::hosts_lookup(hosts, "comment", Family::Any).empty());
    CHECK(dns::hosts_lookup(hosts, "missing", Family::Any).empty());
}

TEST_CASE("dns: resolv.conf name servers and options")
{
    auto conf = dns::parse_resolv_conf("# generated\n"
                                       "search corp.example\n"
                                       "nameserver 10.0.0.2\n"
                                       "; another comment\n"
                                       "nameserver fe80::1%eth0\n"
                                       "nameserver 2001:db8::53\n"
                                       "nameserver 10.0.0.3\n"
                                       "nameserver 10.0.0.4\n"
                                       "options ndots:2 timeout:45 attempts:0 rotate\n");
    REQUIRE(conf.nameservers.size() == 3);
    CHECK(conf.nameservers[0].to_string() == "10.0.0.2");
    CHECK(conf.nameservers[1].to_string() == "2001:db8::53");
    CHECK(conf.nameservers[2].to_string() == "10.0.0.3");
    CHECK(conf.timeout_seconds == 30);
    CHECK(conf.attempts == 1);

    auto empty = dns::parse_resolv_conf("");
    REQUIRE(empty.nameservers.size() == 1);
    CHECK(empty.nameservers[0].to_string() == "127.0.0.1");
    CHECK(empty.timeout_seconds == 5);
    CHECK(empty.attempts == 2);
}
