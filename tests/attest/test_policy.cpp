#include "../support/hex.hpp"
#include "fixture.hpp"

#include <qtbox/attest/policy.hpp>

#include <doctest/doctest.h>

using namespace qtbox;
using namespace qtbox::attest;
using test::unhex;

namespace {

std::string const PCR_A(96, 'a');
std::string const PCR_B(96, 'b');

std::string policy_error(std::string_view json)
{
    Expectations expectations;
    auto result = add_policy_json(json, expectations);
    REQUIRE(result.is_error());
    // Nothing from a refused file is kept.
    CHECK(expectations.pcrs.empty());
    CHECK(expectations.nonces.empty());
    CHECK_FALSE(expectations.max_age_ms.has_value());
    return result.error().message();
}

} // namespace

TEST_CASE("attest: a policy file adds PCR alternatives, a maximum age and a nonce")
{
    Expectations expectations;
    auto json = R"({"pcrs": {"0": [")" + PCR_A + R"(", ")" + PCR_B + R"("], "8": [")" + PCR_B
        + R"("]}, "max_age_s": 900, "nonce": "00ff"})";
    REQUIRE_FALSE(add_policy_json(json, expectations).is_error());
    REQUIRE(expectations.pcrs.size() == 2);
    CHECK(expectations.pcrs[0].index == 0);
    CHECK(expectations.pcrs[0].accepted == std::vector<Bytes> { unhex(PCR_A), unhex(PCR_B) });
    CHECK(expectations.pcrs[1].index == 8);
    CHECK(expectations.max_age_ms == 900000);
    CHECK(expectations.nonces == std::vector<Bytes> { unhex("00ff") });

    // Requirements add up; the smaller age wins.
    REQUIRE_FALSE(add_policy_json(R"({"max_age_s": 60, "pcrs": {"0": [")" + PCR_A + R"("]}})", expectations).is_error());
    CHECK(expectations.max_age_ms == 60000);
    CHECK(expectations.pcrs.size() == 3);
    REQUIRE_FALSE(add_policy_json(R"({"max_age_s": 3600})", expectations).is_error());
    CHECK(expectations.max_age_ms == 60000);
    REQUIRE_FALSE(add_policy_json("{}", expectations).is_error());
}

TEST_CASE("attest: policy files are strict about keys and types")
{
    CHECK(policy_error("") == "policy: not valid JSON");
    CHECK(policy_error("[]") == "policy: the top level is not a JSON object");
    CHECK(policy_error(R"({"pcr": {}})") == "policy: \"pcr\": unknown key (known: pcrs, max_age_s, nonce)");
    CHECK(policy_error(R"({"max_age_s": 1, "max_age_s": 2})") == "policy: \"max_age_s\": duplicate key");
    CHECK(policy_error(R"({"pcrs": {"0": ["aa"], "0": ["bb"]}})") == "policy: \"0\": duplicate key");
    CHECK(policy_error(R"({"max_age_s": 900.0})") == "policy: max_age_s: not a non-negative integer");
    CHECK(policy_error(R"({"max_age_s": "900"})") == "policy: max_age_s: not a non-negative integer");
    CHECK(policy_error(R"({"max_age_s": -1})") == "policy: max_age_s: not a non-negative integer");
    CHECK(policy_error(R"({"max_age_s": 9999999999})").find("is more than") != std::string::npos);
    CHECK(policy_error(R"({"pcrs": []})") == "policy: pcrs: not an object");
    CHECK(policy_error(R"({"pcrs": {"01": ["aa"]}})") == "policy: pcrs.\"01\": not a PCR index 0..31");
    CHECK(policy_error(R"({"pcrs": {"32": ["aa"]}})") == "policy: pcrs.\"32\": not a PCR index 0..31");
    CHECK(policy_error(R"({"pcrs": {"-1": ["aa"]}})") == "policy: pcrs.\"-1\": not a PCR index 0..31");
    CHECK(policy_error(R"({"pcrs": {"0": []}})") == "policy: pcrs.\"0\": not a non-empty array of hex strings");
    CHECK(policy_error(R"({"pcrs": {"0": "aa"}})") == "policy: pcrs.\"0\": not a non-empty array of hex strings");
    CHECK(policy_error(R"({"pcrs": {"0": [1]}})") == "policy: pcrs.\"0\"[0]: not a string");
    CHECK(policy_error(R"({"pcrs": {"0": ["xyz"]}})") == "policy: pcrs.\"0\"[0]: not hex");
    CHECK(policy_error(R"({"pcrs": {"0": ["aabb"]}})")
        == "policy: pcrs.\"0\"[0]: 2 bytes, a PCR value has 48 (or 32 or 64)");
    CHECK(policy_error(R"({"nonce": 5})") == "policy: nonce: not a string");
    CHECK(policy_error(R"({"nonce": "0g"})") == "policy: nonce: not hex");
    // A valid part before an invalid one is not kept either (checked in policy_error).
    CHECK(policy_error(R"({"nonce": "00", "bogus": 1})").find("unknown key") != std::string::npos);
}

TEST_CASE("attest: --pcr takes N=HEX")
{
    auto requirement = parse_pcr_argument("8=" + PCR_A);
    REQUIRE_FALSE(requirement.is_error());
    CHECK(requirement.value().index == 8);
    CHECK(requirement.value().accepted == std::vector<Bytes> { unhex(PCR_A) });
    CHECK(parse_pcr_argument("31=" + std::string(64, '0')).value().index == 31);
    CHECK(parse_pcr_argument(PCR_A).error().message().ends_with("expected N=HEX"));
    CHECK(parse_pcr_argument("32=" + PCR_A).error().message().find("not a PCR index 0..31") != std::string::npos);
    CHECK(parse_pcr_argument("=" + PCR_A).error().message().find("not a PCR index") != std::string::npos);
    CHECK(parse_pcr_argument("0=zz").error().message().ends_with("not hex"));
    CHECK(parse_pcr_argument("0=00").error().message().ends_with("1 bytes, a PCR value has 48 (or 32 or 64)"));
}
