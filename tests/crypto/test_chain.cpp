#include <qtbox/crypto/chain.hpp>
#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/pem.hpp>

#include "support.hpp"

#include <fmt/format.h>

using namespace qtbox;
using crypto::Certificate;
using crypto::ChainError;
using crypto::KeyType;
using test::ca_profile;
using test::DAY;
using test::HOUR;
using test::leaf_profile;
using test::must;
using test::at;
using test::read_data;
using test::T0;

namespace {

ChainError verify_failure(Certificate const& leaf, std::vector<Certificate> const& intermediates,
    std::vector<Certificate> const& roots, UnixMillis when)
{
    auto result = crypto::verify_chain(leaf, intermediates, roots, when);
    REQUIRE_MESSAGE(result.is_error(), "the chain verified");
    return result.error().code_as<ChainError>().value();
}

std::string verify_message(Certificate const& leaf, std::vector<Certificate> const& intermediates,
    std::vector<Certificate> const& roots, UnixMillis when)
{
    auto result = crypto::verify_chain(leaf, intermediates, roots, when);
    REQUIRE(result.is_error());
    return result.error().message();
}

struct Nitro {
    Certificate leaf = must(Certificate::parse(read_data("nitro-leaf.der")));
    std::vector<Certificate> intermediates {
        must(Certificate::parse(read_data("nitro-ca3.der"))),
        must(Certificate::parse(read_data("nitro-ca2.der"))),
        must(Certificate::parse(read_data("nitro-ca1.der"))),
    };
    std::vector<Certificate> roots { must(Certificate::parse(read_data("nitro-ca0.der"))) };
};

// root → parent CA (pathLen 0) → leaf, P-384 throughout.
struct Chain {
    test::Issued root = test::self_signed(ca_profile("CN=root,O=test"));
    test::Issued parent = test::issued_by(root, ca_profile("CN=parent,O=test", 0));
    test::Issued leaf = test::issued_by(parent, leaf_profile("CN=leaf,O=test"));
};

} // namespace

TEST_CASE("chain: the AWS Nitro chain verifies inside its validity, at the document's time")
{
    Nitro nitro;
    must(crypto::verify_chain(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-02T21:00:00Z")));
    // The whole cabundle reversed, root included, is accepted too.
    auto with_root = nitro.intermediates;
    with_root.push_back(nitro.roots[0]);
    must(crypto::verify_chain(nitro.leaf, with_root, nitro.roots, at("2026-02-02T21:00:00Z")));
    // Boundaries are inclusive.
    must(crypto::verify_chain(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-02T23:34:31Z")));
}

TEST_CASE("chain: the Nitro chain is expired after the leaf's notAfter and not yet valid before its notBefore")
{
    Nitro nitro;
    CHECK(verify_failure(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-03T01:00:00Z")) == ChainError::Expired);
    CHECK(verify_failure(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-02T23:34:31.001Z")) == ChainError::Expired);
    CHECK(verify_message(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-03T01:00:00Z"))
        == "the leaf (C=US, ST=Washington, L=Seattle, O=Amazon, OU=AWS, CN=i-0340e0cb833504eb6-enc019c12d31f78864d.us-east-2.aws): "
           "expired at 2026-02-02T23:34:31Z (checked at 2026-02-03T01:00:00Z)");
    CHECK(verify_failure(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-02T20:00:00Z")) == ChainError::NotYetValid);
}

TEST_CASE("chain: the Nitro chain against another root, in the wrong order, or with a gap is Untrusted")
{
    Nitro nitro;
    std::vector<Certificate> other_root { must(Certificate::parse(read_data("openssl-root.pem"))) };
    auto when = at("2026-02-02T21:00:00Z");
    CHECK(verify_failure(nitro.leaf, nitro.intermediates, other_root, when) == ChainError::Untrusted);
    std::vector<Certificate> swapped { nitro.intermediates[1], nitro.intermediates[0], nitro.intermediates[2] };
    CHECK(verify_failure(nitro.leaf, swapped, nitro.roots, when) == ChainError::Untrusted);
    std::vector<Certificate> gap { nitro.intermediates[0], nitro.intermediates[2] };
    CHECK(verify_failure(nitro.leaf, gap, nitro.roots, when) == ChainError::Untrusted);
    // Several roots offered: the right one is found.
    std::vector<Certificate> both { other_root[0], nitro.roots[0] };
    must(crypto::verify_chain(nitro.leaf, nitro.intermediates, both, when));
}

TEST_CASE("chain: a fresh root → CA → leaf chain verifies inside validity")
{
    Chain chain;
    CHECK(chain.leaf.certificate.signature_algorithm() == "ECDSA with SHA384");
    must(crypto::verify_chain(chain.leaf.certificate, std::vector { chain.parent.certificate }, std::vector { chain.root.certificate },
        T0 + 2 * HOUR));
    must(crypto::verify_chain_der(chain.leaf.certificate.der(),
        std::vector<Bytes> { Bytes(chain.parent.certificate.der().begin(), chain.parent.certificate.der().end()) },
        std::vector<Bytes> { Bytes(chain.root.certificate.der().begin(), chain.root.certificate.der().end()) }, T0 + 2 * HOUR));
}

TEST_CASE("chain: a P-256 chain (ECDSA-SHA256) with the leaf directly under the root")
{
    auto root = test::self_signed(ca_profile("CN=root256"), KeyType::EcP256);
    auto leaf = test::issued_by(root, leaf_profile("CN=leaf256"), KeyType::EcP256);
    CHECK(leaf.certificate.signature_algorithm() == "ECDSA with SHA256");
    must(crypto::verify_chain(leaf.certificate, {}, std::vector { root.certificate }, T0 + 2 * HOUR));
}

TEST_CASE("chain: time is checked on every certificate, the root included")
{
    Chain chain;
    std::vector intermediates { chain.parent.certificate };
    std::vector roots { chain.root.certificate };
    CHECK(verify_failure(chain.leaf.certificate, intermediates, roots, T0 + 4 * HOUR + 1000) == ChainError::Expired);
    CHECK(verify_failure(chain.leaf.certificate, intermediates, roots, T0 + HOUR - 1000) == ChainError::NotYetValid);
    must(crypto::verify_chain(chain.leaf.certificate, intermediates, roots, T0 + 4 * HOUR));

    // A root that ends before the leaf does.
    auto short_root_profile = ca_profile("CN=short root");
    short_root_profile.not_after = T0 + 3 * HOUR;
    auto short_root = test::self_signed(short_root_profile);
    auto leaf = test::issued_by(short_root, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf.certificate, {}, std::vector { short_root.certificate }, T0 + 3 * HOUR + 30 * 60 * 1000)
        == ChainError::Expired);
    CHECK(verify_message(leaf.certificate, {}, std::vector { short_root.certificate }, T0 + 3 * HOUR + 30 * 60 * 1000)
        == "the root (CN=short root): expired at 2026-01-01T03:00:00Z (checked at 2026-01-01T03:30:00Z)");

    // An intermediate that starts after the leaf.
    auto late_profile = ca_profile("CN=late CA");
    late_profile.not_before = T0 + 2 * HOUR;
    auto late = test::issued_by(chain.root, late_profile);
    auto late_leaf = test::issued_by(late, leaf_profile("CN=leaf"));
    CHECK(verify_failure(late_leaf.certificate, std::vector { late.certificate }, roots, T0 + 90 * 60 * 1000)
        == ChainError::NotYetValid);
}

TEST_CASE("chain: a root with the right name but another key is Untrusted")
{
    Chain chain;
    auto impostor = test::self_signed(ca_profile("CN=root,O=test"));
    CHECK(verify_failure(chain.leaf.certificate, std::vector { chain.parent.certificate }, std::vector { impostor.certificate },
              T0 + 2 * HOUR)
        == ChainError::Untrusted);
    auto stranger = test::self_signed(ca_profile("CN=stranger"));
    CHECK(verify_failure(chain.leaf.certificate, std::vector { chain.parent.certificate }, std::vector { stranger.certificate },
              T0 + 2 * HOUR)
        == ChainError::Untrusted);
}

TEST_CASE("chain: a modified leaf signature is Untrusted")
{
    Chain chain;
    Bytes der(chain.leaf.certificate.der().begin(), chain.leaf.certificate.der().end());
    der[der.size() - 5] ^= 0x01; // inside the signature's s
    auto tampered = Certificate::parse_der(der);
    REQUIRE(!tampered.is_error());
    CHECK(verify_failure(tampered.value(), std::vector { chain.parent.certificate }, std::vector { chain.root.certificate }, T0 + 2 * HOUR)
        == ChainError::Untrusted);
}

TEST_CASE("chain: a CA without keyCertSign violates the constraints")
{
    auto root = test::self_signed(ca_profile("CN=root"));
    auto profile = ca_profile("CN=no-keycertsign");
    profile.key_usage = crypto::key_usage::CRL_SIGN | crypto::key_usage::DIGITAL_SIGNATURE;
    auto ca = test::issued_by(root, profile);
    auto leaf = test::issued_by(ca, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf.certificate, std::vector { ca.certificate }, std::vector { root.certificate }, T0 + 2 * HOUR)
        == ChainError::ConstraintViolated);
    CHECK(verify_message(leaf.certificate, std::vector { ca.certificate }, std::vector { root.certificate }, T0 + 2 * HOUR)
        == "intermediate 1 (CN=no-keycertsign): issues certificates but keyUsage lacks keyCertSign");
}

TEST_CASE("chain: an issuer that is not a CA violates the constraints")
{
    auto root = test::self_signed(ca_profile("CN=root"));
    auto profile = ca_profile("CN=not-a-ca");
    profile.is_ca = false;
    auto issuer = test::issued_by(root, profile);
    auto leaf = test::issued_by(issuer, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf.certificate, std::vector { issuer.certificate }, std::vector { root.certificate }, T0 + 2 * HOUR)
        == ChainError::ConstraintViolated);

    auto root_profile = ca_profile("CN=not-a-ca-root");
    root_profile.is_ca = false;
    auto bad_root = test::self_signed(root_profile);
    auto leaf2 = test::issued_by(bad_root, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf2.certificate, {}, std::vector { bad_root.certificate }, T0 + 2 * HOUR) == ChainError::ConstraintViolated);
}

TEST_CASE("chain: pathLenConstraint exceeded violates the constraints; at the limit it verifies")
{
    auto root = test::self_signed(ca_profile("CN=root", 1));
    auto first = test::issued_by(root, ca_profile("CN=first", 0));
    auto second = test::issued_by(first, ca_profile("CN=second"));
    auto leaf = test::issued_by(second, leaf_profile("CN=leaf"));
    std::vector roots { root.certificate };
    CHECK(verify_failure(leaf.certificate, std::vector { second.certificate, first.certificate }, roots, T0 + 2 * HOUR)
        == ChainError::ConstraintViolated);
    CHECK(verify_message(leaf.certificate, std::vector { second.certificate, first.certificate }, roots, T0 + 2 * HOUR)
        == "intermediate 2 (CN=first): pathLenConstraint 0 but 1 intermediate CA(s) below it");
    auto direct = test::issued_by(first, leaf_profile("CN=direct"));
    must(crypto::verify_chain(direct.certificate, std::vector { first.certificate }, roots, T0 + 2 * HOUR));

    // The root's own pathLen 1 is exceeded by two intermediates below it.
    auto third = test::issued_by(root, ca_profile("CN=third"));
    auto fourth = test::issued_by(third, ca_profile("CN=fourth"));
    auto leaf2 = test::issued_by(fourth, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf2.certificate, std::vector { fourth.certificate, third.certificate }, roots, T0 + 2 * HOUR)
        == ChainError::ConstraintViolated);
}

TEST_CASE("chain: a leaf that is a CA, or lacks digitalSignature, violates the constraints")
{
    Chain chain;
    auto ca_leaf_profile = ca_profile("CN=ca-leaf");
    ca_leaf_profile.key_usage |= crypto::key_usage::DIGITAL_SIGNATURE;
    auto ca_leaf = test::issued_by(chain.parent, ca_leaf_profile);
    std::vector intermediates { chain.parent.certificate };
    std::vector roots { chain.root.certificate };
    CHECK(verify_failure(ca_leaf.certificate, intermediates, roots, T0 + 2 * HOUR) == ChainError::ConstraintViolated);
    CHECK(verify_message(ca_leaf.certificate, intermediates, roots, T0 + 2 * HOUR)
        == "the leaf (CN=ca-leaf): a CA certificate cannot be the leaf");

    auto no_signature_profile = leaf_profile("CN=encipher-only");
    no_signature_profile.key_usage = crypto::key_usage::KEY_ENCIPHERMENT;
    auto no_signature = test::issued_by(chain.parent, no_signature_profile);
    CHECK(verify_failure(no_signature.certificate, intermediates, roots, T0 + 2 * HOUR) == ChainError::ConstraintViolated);
}

TEST_CASE("chain: checks run in order (trust, constraints, time)")
{
    Chain chain;
    auto stranger = test::self_signed(ca_profile("CN=stranger"));
    // Untrusted and expired: Untrusted.
    CHECK(verify_failure(chain.leaf.certificate, std::vector { chain.parent.certificate }, std::vector { stranger.certificate },
              T0 + 400 * DAY)
        == ChainError::Untrusted);
    // A CA leaf that is also expired: ConstraintViolated.
    auto ca_leaf = test::issued_by(chain.parent, ca_profile("CN=ca-leaf"));
    CHECK(verify_failure(ca_leaf.certificate, std::vector { chain.parent.certificate }, std::vector { chain.root.certificate },
              T0 + 400 * DAY)
        == ChainError::ConstraintViolated);
}

TEST_CASE("chain: absurd lengths, no root and unparsable DER are refused")
{
    auto root = test::self_signed(ca_profile("CN=root"));
    std::vector<test::Issued> cas;
    cas.push_back(test::issued_by(root, ca_profile("CN=ca0")));
    for (int index = 1; index < 8; ++index)
        cas.push_back(test::issued_by(cas.back(), ca_profile(fmt::format("CN=ca{}", index))));
    auto leaf = test::issued_by(cas.back(), leaf_profile("CN=leaf"));
    std::vector<Certificate> intermediates;
    for (auto it = cas.rbegin(); it != cas.rend(); ++it)
        intermediates.push_back(it->certificate);
    CHECK(intermediates.size() + 2 > crypto::MAX_CHAIN_LENGTH);
    CHECK(verify_failure(leaf.certificate, intermediates, std::vector { root.certificate }, T0 + 2 * HOUR) == ChainError::TooLong);
    // Six intermediates (8 certificates) are still accepted.
    auto short_leaf = test::issued_by(cas[5], leaf_profile("CN=leaf6"));
    std::vector<Certificate> six(intermediates.end() - 6, intermediates.end());
    must(crypto::verify_chain(short_leaf.certificate, six, std::vector { root.certificate }, T0 + 2 * HOUR));

    CHECK(verify_failure(leaf.certificate, {}, {}, T0) == ChainError::Malformed);
    auto garbage = crypto::verify_chain_der(as_bytes("garbage"), {}, std::vector<Bytes> { Bytes(root.certificate.der().begin(), root.certificate.der().end()) }, T0);
    REQUIRE(garbage.is_error());
    CHECK(garbage.error().is(ChainError::Malformed));
    CHECK(garbage.error().message().starts_with("the leaf: parse certificate"));
    CHECK(crypto::chain_failure_name(ChainError::Expired) == "certificate expired");
}

// The algorithm profile (chain.hpp "algorithms"): fixtures made by
// tests/crypto/data/make-profile-fixtures.sh, issued by openssl-root.pem
// (P-384) or profile-root-rsa.pem (RSA-2048).
namespace {

// 2027-06-01T00:00:00Z, inside every fixture's validity.
constexpr UnixMillis PROFILE_AT = 1811808000000;

Bytes pem_der(std::string const& name)
{
    auto blocks = must(crypto::pem_decode(as_chars(read_data(name))));
    REQUIRE(blocks.size() == 1);
    return std::move(blocks[0].der);
}

Error profile_error(std::string const& leaf, std::vector<std::string> const& intermediates, std::string const& root)
{
    std::vector<Bytes> chain;
    for (auto const& name : intermediates)
        chain.push_back(pem_der(name));
    auto result = crypto::verify_chain_der(pem_der(leaf), chain, std::vector<Bytes> { pem_der(root) }, PROFILE_AT);
    REQUIRE_MESSAGE(result.is_error(), "the chain verified");
    return result.release_error();
}

} // namespace

TEST_CASE("chain: algorithm profile: ECDSA signatures with SHA-256, SHA-384 and SHA-512 verify, with any curve pairing")
{
    // P-384 issuer: SHA-256 (shorter than the curve), SHA-384 (the fixture
    // openssl-leaf.pem), SHA-512 (longer, truncated as SEC1 §4.1.4 says).
    for (auto const* name : { "profile-leaf-sha256.pem", "profile-leaf-sha512.pem", "openssl-leaf.pem" }) {
        CAPTURE(name);
        must(crypto::verify_chain_der(pem_der(name), {}, std::vector<Bytes> { pem_der("openssl-root.pem") }, PROFILE_AT));
    }
    auto leaf = must(Certificate::parse(read_data("profile-leaf-sha512.pem")));
    CHECK(leaf.signature_algorithm() == "ECDSA with SHA512");
}

TEST_CASE("chain: algorithm profile: SHA-1 and SHA-224 signatures are Untrusted, on the leaf or above")
{
    auto sha1 = profile_error("profile-leaf-sha1.pem", {}, "openssl-root.pem");
    CHECK(sha1.is(ChainError::Untrusted));
    CHECK(sha1.message() == "the leaf (O=qtbox tests, CN=leaf sha1): signature algorithm ECDSA with SHA1 is not accepted");
    auto sha224 = profile_error("profile-leaf-sha224.pem", {}, "openssl-root.pem");
    CHECK(sha224.is(ChainError::Untrusted));
    CHECK(sha224.message() == "the leaf (O=qtbox tests, CN=leaf sha224): signature algorithm ECDSA with SHA224 is not accepted");
    // The leaf's own signature (SHA-256) is fine; its CA's is SHA-1.
    auto above = profile_error("profile-leaf-under-ca-sha1.pem", { "profile-ca-sha1.pem" }, "openssl-root.pem");
    CHECK(above.is(ChainError::Untrusted));
    CHECK(above.message() == "the last intermediate (O=qtbox tests, CN=CA sha1): signature algorithm ECDSA with SHA1 is not accepted");
}

TEST_CASE("chain: algorithm profile: RSA PKCS#1 v1.5 verifies, RSASSA-PSS is Untrusted")
{
    must(crypto::verify_chain_der(pem_der("profile-leaf-rsa-pkcs1.pem"), {}, std::vector<Bytes> { pem_der("profile-root-rsa.pem") },
        PROFILE_AT));
    auto pss = profile_error("profile-leaf-rsa-pss.pem", {}, "profile-root-rsa.pem");
    CHECK(pss.is(ChainError::Untrusted));
    CHECK(pss.message() == "the leaf (O=qtbox tests, CN=leaf RSA PSS): signature algorithm RSASSA-PSS is not accepted");
}

TEST_CASE("chain: an RSA root still verifies PKCS#1 v1.5 after its key was used for RSA-OAEP")
{
    // rsa_oaep_encrypt switches the shared key context to PKCS#1 v2.1
    // padding; certificate verification must not follow that setting.
    auto root = must(Certificate::parse(read_data("profile-root-rsa.pem")));
    auto leaf = must(Certificate::parse(read_data("profile-leaf-rsa-pkcs1.pem")));
    must(root.public_key().rsa_oaep_encrypt(as_bytes("secret")));
    must(crypto::verify_chain(leaf, {}, std::vector { root }, PROFILE_AT));
}

TEST_CASE("chain: algorithm profile: a P-521, RSA-1024 or secp256k1 key anywhere in the chain is refused when parsed")
{
    auto p521 = profile_error("profile-leaf-p521.pem", {}, "openssl-root.pem");
    CHECK(p521.is(ChainError::Malformed));
    CHECK(p521.message() == "the leaf: certificate public key: EC curve secp521r1 is not supported (only P-256 and P-384)");
    auto rsa1024 = profile_error("profile-leaf-sha256.pem", { "profile-ca-rsa1024.pem" }, "openssl-root.pem");
    CHECK(rsa1024.is(ChainError::Malformed));
    CHECK(rsa1024.message()
        == "intermediate 1: certificate public key: RSA-1024 is not supported (the modulus must have 2048 to 8192 bits)");
    auto secp256k1 = profile_error("profile-leaf-sha256.pem", {}, "profile-root-secp256k1.pem");
    CHECK(secp256k1.is(ChainError::Malformed));
    CHECK(secp256k1.message() == "root 1: certificate public key: EC curve secp256k1 is not supported (only P-256 and P-384)");
    for (auto const* name : { "profile-leaf-p521.pem", "profile-ca-rsa1024.pem", "profile-root-secp256k1.pem" }) {
        CAPTURE(name);
        CHECK(test::expect_failure(Certificate::parse(read_data(name))) == crypto::CryptoError::Unsupported);
    }
}

TEST_CASE("chain: a certificate with an unknown critical extension is refused when parsed")
{
    auto critical = profile_error("profile-leaf-critical.pem", {}, "openssl-root.pem");
    CHECK(critical.is(ChainError::Malformed));
    CHECK(critical.message().starts_with("the leaf: parse certificate: "));
    CHECK(critical.message().ends_with("(-0x2562)")); // MBEDTLS_ERR_X509_INVALID_EXTENSIONS + MBEDTLS_ERR_ASN1_UNEXPECTED_TAG
}

TEST_CASE("chain: a chain that goes on above a certificate a trusted root issued is Untrusted")
{
    // A re-issued root (same name, same key, another serial) placed as an
    // intermediate: the trusted root itself issued the leaf, so the path
    // given is not the path to the trust anchor.
    auto root = test::self_signed(ca_profile("CN=root,O=test"));
    auto copy_profile = ca_profile("CN=root,O=test");
    copy_profile.not_after = T0 + 300 * DAY;
    auto copy = must(crypto::self_sign_certificate(copy_profile, root.key));
    auto leaf_key = must(crypto::PrivateKey::generate(KeyType::EcP384));
    auto leaf = must(crypto::issue_certificate(leaf_profile("CN=leaf"), leaf_key.public_key(), copy, root.key));
    CHECK(verify_failure(leaf, std::vector { copy }, std::vector { root.certificate }, T0 + 2 * HOUR) == ChainError::Untrusted);
    CHECK(verify_message(leaf, std::vector { copy }, std::vector { root.certificate }, T0 + 2 * HOUR)
        == "the leaf (CN=leaf) is issued by the trusted root (CN=root, O=test) itself, but the chain goes on above it");
    CHECK(verify_failure(leaf, std::vector { copy, root.certificate }, std::vector { root.certificate }, T0 + 2 * HOUR)
        == ChainError::Untrusted);
    // Directly under the root it verifies.
    must(crypto::verify_chain(leaf, {}, std::vector { root.certificate }, T0 + 2 * HOUR));
}

TEST_CASE("chain: key rollover: a new root key cross-certified by the trusted old one, under the same name, verifies")
{
    auto old_root = test::self_signed(ca_profile("CN=root,O=test"));
    auto new_key = must(crypto::PrivateKey::generate(KeyType::EcP384));
    auto cross = must(crypto::issue_certificate(ca_profile("CN=root,O=test"), new_key.public_key(), old_root.certificate, old_root.key));
    CHECK(cross.is_self_issued());
    auto ca_key = must(crypto::PrivateKey::generate(KeyType::EcP384));
    auto ca = must(crypto::issue_certificate(ca_profile("CN=ca,O=test"), ca_key.public_key(), cross, new_key));
    test::Issued ca_issued { std::move(ca_key), ca };
    auto leaf = test::issued_by(ca_issued, leaf_profile("CN=leaf"));
    // The old root's name matches the CA's issuer, but its key did not sign
    // the CA: the path goes on through the cross certificate.
    must(crypto::verify_chain(leaf.certificate, std::vector { ca, cross }, std::vector { old_root.certificate }, T0 + 2 * HOUR));
}

TEST_CASE("chain: a warm link cache answers only for the exact DER of both certificates; any one-byte change is verified in full")
{
    Chain chain;
    std::vector roots { chain.root.certificate };
    crypto::LinkCache cache;
    must(crypto::verify_chain(chain.leaf.certificate, std::vector { chain.parent.certificate }, roots, T0 + 2 * HOUR, &cache));
    CHECK(cache.size() == 2);
    CHECK(cache.hits() == 0);
    must(crypto::verify_chain(chain.leaf.certificate, std::vector { chain.parent.certificate }, roots, T0 + 2 * HOUR, &cache));
    CHECK(cache.hits() == 2);

    // Every single-byte change of the leaf's or the CA's DER that still
    // parses: the warm cache gives the verdict a cold verification gives,
    // and that verdict is a failure.
    std::size_t parsed = 0;
    for (int which = 0; which < 2; ++which) {
        ByteView original = which == 0 ? chain.leaf.certificate.der() : chain.parent.certificate.der();
        for (std::size_t index = 0; index < original.size(); ++index) {
            Bytes changed(original.begin(), original.end());
            changed[index] ^= 0x01;
            auto certificate = Certificate::parse_der(changed);
            if (certificate.is_error())
                continue;
            ++parsed;
            auto const& leaf = which == 0 ? certificate.value() : chain.leaf.certificate;
            std::vector intermediates { which == 1 ? certificate.value() : chain.parent.certificate };
            auto warm = crypto::verify_chain(leaf, intermediates, roots, T0 + 2 * HOUR, &cache);
            auto cold = crypto::verify_chain(leaf, intermediates, roots, T0 + 2 * HOUR);
            CAPTURE(which);
            CAPTURE(index);
            REQUIRE(cold.is_error());
            REQUIRE(warm.is_error());
            CHECK(warm.error().code_as<ChainError>() == cold.error().code_as<ChainError>());
        }
    }
    // Most of a certificate is its signed part: plenty of changes parse.
    CHECK(parsed > 200);
    // A changed CA whose key and name are intact still signs the genuine
    // leaf: that link is true and may be remembered (it is keyed by the
    // changed DER); the changed CA's own link to the root is what fails.
}

TEST_CASE("chain: a warm link cache still checks every certificate's validity at the instant asked")
{
    Chain chain;
    std::vector intermediates { chain.parent.certificate };
    std::vector roots { chain.root.certificate };
    crypto::LinkCache cache;
    must(crypto::verify_chain(chain.leaf.certificate, intermediates, roots, T0 + 2 * HOUR, &cache));
    auto failure = [&](UnixMillis when) {
        auto result = crypto::verify_chain(chain.leaf.certificate, intermediates, roots, when, &cache);
        REQUIRE(result.is_error());
        return result.error().code_as<ChainError>().value();
    };
    // The leaf has expired, or is not valid yet; then the CA and the root.
    CHECK(failure(T0 + 5 * HOUR) == ChainError::Expired);
    CHECK(failure(T0 + HOUR / 2) == ChainError::NotYetValid);
    CHECK(failure(T0 - HOUR) == ChainError::NotYetValid);
    CHECK(failure(T0 + 400 * DAY) == ChainError::Expired);
    // Each of these came from the cache: the links were not what failed.
    CHECK(cache.hits() == 8);
    // A constraint is checked each time too: the CA as the leaf's only
    // certificate above a leaf that is itself a CA.
    auto ca_leaf = test::issued_by(chain.parent, ca_profile("CN=ca-leaf,O=test"));
    auto refused = crypto::verify_chain(ca_leaf.certificate, intermediates, roots, T0 + 2 * HOUR, &cache);
    REQUIRE(refused.is_error());
    CHECK(refused.error().code_as<ChainError>() == ChainError::ConstraintViolated);
}
