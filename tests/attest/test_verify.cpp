#include "../support/hex.hpp"
#include "fixture.hpp"

#include <qtbox/attest/verify.hpp>
#include <qtbox/crypto/x509_write.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace qtbox;
using namespace qtbox::attest;
using test::unhex;

namespace {

// 2026-02-02T21:00:00Z, inside the Nitro vector's leaf validity.
constexpr UnixMillis NITRO_AT = 1770066000000;

VerifyOptions nitro_options()
{
    VerifyOptions options;
    crypto::Sha256Digest fingerprint {};
    Bytes bytes = unhex(test::NITRO_ROOT_SHA256);
    std::copy(bytes.begin(), bytes.end(), fingerprint.begin());
    options.anchor.fingerprint = fingerprint;
    options.at = NITRO_AT;
    return options;
}

VerifyOptions fixture_options(test::Chain const& chain)
{
    VerifyOptions options;
    options.anchor.roots.push_back(chain.root);
    options.at = test::FIXTURE_NOW;
    return options;
}

VerifyError failure_of(ErrorOr<VerifiedDocument> const& result)
{
    REQUIRE(result.is_error());
    for (auto kind : { VerifyError::Malformed, VerifyError::Chain, VerifyError::Signature, VerifyError::Time, VerifyError::Policy,
             VerifyError::Nonce }) {
        if (result.error().is(kind))
            return kind;
    }
    FAIL("unexpected error: " << result.error().message());
    return VerifyError::Malformed;
}

PcrRequirement pcr(unsigned index, std::string_view hex)
{
    return PcrRequirement { index, { unhex(hex) } };
}

} // namespace

TEST_CASE("attest: verifies the real Nitro vector pinned to the AWS root fingerprint")
{
    auto verified = verify_document(test::nitro_vector(), nitro_options());
    REQUIRE_FALSE(verified.is_error());
    CHECK(verified.value().signature_order == cose::SignatureOrder::Rfc9052);
    CHECK(verified.value().document.profile == Profile::Nitro);
    CHECK(hex_encode(verified.value().root.sha256_fingerprint()) == test::NITRO_ROOT_SHA256);

    auto claims = nlohmann::json::parse(claims_json(verified.value()));
    CHECK(claims["profile"] == "nitro");
    CHECK(claims["module_id"] == "i-0340e0cb833504eb6-enc019c12d31f78864d");
    CHECK(claims["timestamp"] == 1770065027502ULL);
    CHECK(claims["time"] == "2026-02-02T20:43:47.502Z");
    CHECK(claims["digest"] == "SHA384");
    CHECK(claims["pcrs"].size() == 16);
    CHECK(claims["pcrs"]["0"] == test::NITRO_PCR0);
    CHECK(claims["pcrs"]["2"]
        == "769925c8ae0c5c2d1aa86de149213b1c5dec642557bf0c426c6581f0e562a042d1c7d2578443515d103f74ce55337666");
    CHECK(claims["public_key"] == hex_encode(as_bytes("dummy")));
    CHECK(claims["nonce"] == "0123456789abcdef0123456789abcdef01234567");
    CHECK(claims["certificate"]["subject"].get<std::string>().find("i-0340e0cb833504eb6-enc019c12d31f78864d.us-east-2.aws")
        != std::string::npos);
    CHECK(claims["certificate"]["not_before"] == "2026-02-02T20:34:28Z");
    CHECK(claims["certificate"]["not_after"] == "2026-02-02T23:34:31Z");
    CHECK(claims["root_sha256"] == test::NITRO_ROOT_SHA256);
    CHECK(claims["debug"] == false);
    CHECK(claims["signature_order"] == "rfc9052");
    // Key order of the output is fixed.
    CHECK(claims_json(verified.value(), -1).starts_with("{\"profile\":\"nitro\",\"module_id\":"));
}

TEST_CASE("attest: each Nitro vector check fails with its own kind (acceptance 2)")
{
    Bytes cose = test::nitro_vector();
    Bytes flipped = cose;
    flipped[cose.size() - 10] ^= 0x01; // inside the 96-byte signature at the end
    CHECK(failure_of(verify_document(flipped, nitro_options())) == VerifyError::Signature);

    VerifyOptions late = nitro_options();
    late.at = 1770080400000; // 2026-02-03T01:00:00Z
    CHECK(failure_of(verify_document(cose, late)) == VerifyError::Time);
    VerifyOptions early = nitro_options();
    early.at = 1770060000000; // 2026-02-02T19:20:00Z, before the leaf
    CHECK(failure_of(verify_document(cose, early)) == VerifyError::Time);

    VerifyOptions wrong_root = nitro_options();
    (*wrong_root.anchor.fingerprint)[0] ^= 0x01;
    auto chain_failure = verify_document(cose, wrong_root);
    CHECK(failure_of(chain_failure) == VerifyError::Chain);
    CHECK(chain_failure.error().message().find("is not the pinned root") != std::string::npos);

    VerifyOptions nonce = nitro_options();
    nonce.expectations.nonces.push_back(unhex("00"));
    CHECK(failure_of(verify_document(cose, nonce)) == VerifyError::Nonce);
    VerifyOptions right_nonce = nitro_options();
    right_nonce.expectations.nonces.push_back(unhex("0123456789abcdef0123456789abcdef01234567"));
    CHECK_FALSE(verify_document(cose, right_nonce).is_error());

    VerifyOptions pcrs = nitro_options();
    pcrs.expectations.pcrs.push_back(pcr(0, std::string(96, 'a')));
    CHECK(failure_of(verify_document(cose, pcrs)) == VerifyError::Policy);
    VerifyOptions right_pcrs = nitro_options();
    right_pcrs.expectations.pcrs.push_back(pcr(0, test::NITRO_PCR0));
    right_pcrs.expectations.pcrs.push_back(pcr(3, std::string(96, '0')));
    CHECK_FALSE(verify_document(cose, right_pcrs).is_error());
    VerifyOptions absent = nitro_options();
    absent.expectations.pcrs.push_back(pcr(20, std::string(96, '0')));
    CHECK(failure_of(verify_document(cose, absent)) == VerifyError::Policy);

    CHECK(failure_of(verify_document(ByteView(cose).first(cose.size() / 2), nitro_options())) == VerifyError::Malformed);
}

TEST_CASE("attest: checks run in docs/FORMATS.md §9 order: the first failing step is reported")
{
    Bytes cose = test::nitro_vector();
    VerifyOptions everything_wrong = nitro_options();
    everything_wrong.at = 1770080400000;
    everything_wrong.expectations.nonces.push_back(unhex("00"));
    everything_wrong.expectations.pcrs.push_back(pcr(0, std::string(96, 'a')));
    Bytes flipped = cose;
    flipped[cose.size() - 10] ^= 0x01;
    CHECK(failure_of(verify_document(flipped, everything_wrong)) == VerifyError::Time); // chain time before signature
    everything_wrong.at = NITRO_AT;
    CHECK(failure_of(verify_document(flipped, everything_wrong)) == VerifyError::Signature);
    CHECK(failure_of(verify_document(cose, everything_wrong)) == VerifyError::Nonce); // nonce before PCRs
    (*everything_wrong.anchor.fingerprint)[5] ^= 0x80;
    CHECK(failure_of(verify_document(flipped, everything_wrong)) == VerifyError::Chain);
}

TEST_CASE("attest: freshness: --max-age against the document timestamp")
{
    Bytes cose = test::nitro_vector();
    // The vector's timestamp is 20:43:47.502, NITRO_AT is 21:00:00: 972.498 s old.
    VerifyOptions options = nitro_options();
    options.expectations.max_age_ms = 972498;
    CHECK_FALSE(verify_document(cose, options).is_error());
    options.expectations.max_age_ms = 972497;
    auto stale = verify_document(cose, options);
    CHECK(failure_of(stale) == VerifyError::Time);
    CHECK(stale.error().message().find("stale") != std::string::npos);
    // A timestamp more than MAX_CLOCK_SKEW_MS after --at.
    options.at = 1770065027502 - MAX_CLOCK_SKEW_MS - 1;
    options.expectations.max_age_ms = 3600 * 1000;
    CHECK(failure_of(verify_document(cose, options)) == VerifyError::Time);
}

TEST_CASE("attest: a QingTian-profile document verifies in both signature byte orders (acceptance 3)")
{
    auto chain = test::make_chain();
    Document document = test::qingtian_document(chain);
    for (auto order : { cose::SignatureOrder::Rfc9052, cose::SignatureOrder::QingTian }) {
        CAPTURE(cose::signature_order_name(order));
        auto verified = verify_document(test::sign_document(document, chain.leaf_key, order), fixture_options(chain));
        REQUIRE_FALSE(verified.is_error());
        CHECK(verified.value().signature_order == order);
        CHECK(verified.value().document.profile == Profile::QingTian);
        auto claims = nlohmann::json::parse(claims_json(verified.value()));
        CHECK(claims["signature_order"] == cose::signature_order_name(order));
        CHECK(claims["profile"] == "qingtian");
        CHECK(claims["nonce"] == "");
        CHECK(claims["pcrs"]["0"] == hex_encode(Bytes(48, 0xa0)));
    }
}

TEST_CASE("attest: the chain must end at the pinned root and hold at --at")
{
    auto chain = test::make_chain();
    auto other = test::make_chain("other");
    Document document = test::qingtian_document(chain);
    Bytes cose = test::sign_document(document, chain.leaf_key);

    VerifyOptions pinned_other = fixture_options(chain);
    pinned_other.anchor.roots = { other.root };
    CHECK(failure_of(verify_document(cose, pinned_other)) == VerifyError::Chain);
    VerifyOptions both = fixture_options(chain);
    both.anchor.roots = { other.root, chain.root };
    CHECK_FALSE(verify_document(cose, both).is_error());
    VerifyOptions none = fixture_options(chain);
    none.anchor.roots.clear();
    CHECK(failure_of(verify_document(cose, none)) == VerifyError::Chain);

    // A leaf that the bundle's CA did not issue.
    Document foreign = document;
    foreign.certificate = Bytes(other.leaf.der().begin(), other.leaf.der().end());
    CHECK(failure_of(verify_document(test::sign_document(foreign, other.leaf_key), fixture_options(chain)))
        == VerifyError::Chain);
    // The CA missing from the bundle.
    Document short_bundle = document;
    short_bundle.cabundle.pop_back();
    CHECK(failure_of(verify_document(test::sign_document(short_bundle, chain.leaf_key), fixture_options(chain)))
        == VerifyError::Chain);
    // The bundle in the wrong order (leaf's issuer first).
    Document reversed = document;
    std::swap(reversed.cabundle[0], reversed.cabundle[1]);
    CHECK(failure_of(verify_document(test::sign_document(reversed, chain.leaf_key), fixture_options(chain)))
        == VerifyError::Chain);

    // The leaf lives 3 hours around FIXTURE_NOW.
    VerifyOptions after = fixture_options(chain);
    after.at = test::FIXTURE_NOW + 2 * test::HOUR_MS + 1000;
    CHECK(failure_of(verify_document(cose, after)) == VerifyError::Time);
    VerifyOptions before = fixture_options(chain);
    before.at = test::FIXTURE_NOW - 2 * test::HOUR_MS;
    CHECK(failure_of(verify_document(cose, before)) == VerifyError::Time);
}

TEST_CASE("attest: a document signed by another key than the leaf's fails the signature step")
{
    auto chain = test::make_chain();
    Document document = test::qingtian_document(chain);
    CHECK(failure_of(verify_document(test::sign_document(document, chain.ca_key), fixture_options(chain)))
        == VerifyError::Signature);
    Bytes cose = test::sign_document(document, chain.leaf_key);
    cose[40] ^= 0x01; // inside the payload (module_id), still well-formed
    CHECK(failure_of(verify_document(cose, fixture_options(chain))) == VerifyError::Signature);
}

TEST_CASE("verify: a document whose PCR0 is all zeros is a debug document (docs/FORMATS.md §2), any other is not")
{
    attest::Document document;
    CHECK(!attest::is_debug_document(document));
    document.pcrs.push_back({ 0, Bytes(48, 0) });
    document.pcrs.push_back({ 1, Bytes(48, 0x11) });
    CHECK(attest::is_debug_document(document));
    document.pcrs[0].value[47] = 1;
    CHECK(!attest::is_debug_document(document));
}
