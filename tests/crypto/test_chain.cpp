#include <qtbox/crypto/chain.hpp>
#include <qtbox/crypto/error.hpp>

#include "support.hpp"

#include <fmt/format.h>

using namespace qtbox;
using crypto::Certificate;
using crypto::ChainFailure;
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

ChainFailure verify_failure(Certificate const& leaf, std::vector<Certificate> const& intermediates,
    std::vector<Certificate> const& roots, UnixMillis when)
{
    auto result = crypto::verify_chain(leaf, intermediates, roots, when);
    REQUIRE_MESSAGE(result.is_error(), "the chain verified");
    return static_cast<ChainFailure>(result.error().code());
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
    CHECK(verify_failure(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-03T01:00:00Z")) == ChainFailure::Expired);
    CHECK(verify_failure(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-02T23:34:31.001Z")) == ChainFailure::Expired);
    CHECK(verify_message(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-03T01:00:00Z"))
        == "the leaf (C=US, ST=Washington, L=Seattle, O=Amazon, OU=AWS, CN=i-0340e0cb833504eb6-enc019c12d31f78864d.us-east-2.aws): "
           "expired at 2026-02-02T23:34:31Z (checked at 2026-02-03T01:00:00Z)");
    CHECK(verify_failure(nitro.leaf, nitro.intermediates, nitro.roots, at("2026-02-02T20:00:00Z")) == ChainFailure::NotYetValid);
}

TEST_CASE("chain: the Nitro chain against another root, in the wrong order, or with a gap is Untrusted")
{
    Nitro nitro;
    std::vector<Certificate> other_root { must(Certificate::parse(read_data("openssl-root.pem"))) };
    auto when = at("2026-02-02T21:00:00Z");
    CHECK(verify_failure(nitro.leaf, nitro.intermediates, other_root, when) == ChainFailure::Untrusted);
    std::vector<Certificate> swapped { nitro.intermediates[1], nitro.intermediates[0], nitro.intermediates[2] };
    CHECK(verify_failure(nitro.leaf, swapped, nitro.roots, when) == ChainFailure::Untrusted);
    std::vector<Certificate> gap { nitro.intermediates[0], nitro.intermediates[2] };
    CHECK(verify_failure(nitro.leaf, gap, nitro.roots, when) == ChainFailure::Untrusted);
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
    CHECK(verify_failure(chain.leaf.certificate, intermediates, roots, T0 + 4 * HOUR + 1000) == ChainFailure::Expired);
    CHECK(verify_failure(chain.leaf.certificate, intermediates, roots, T0 + HOUR - 1000) == ChainFailure::NotYetValid);
    must(crypto::verify_chain(chain.leaf.certificate, intermediates, roots, T0 + 4 * HOUR));

    // A root that ends before the leaf does.
    auto short_root_profile = ca_profile("CN=short root");
    short_root_profile.not_after = T0 + 3 * HOUR;
    auto short_root = test::self_signed(short_root_profile);
    auto leaf = test::issued_by(short_root, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf.certificate, {}, std::vector { short_root.certificate }, T0 + 3 * HOUR + 30 * 60 * 1000)
        == ChainFailure::Expired);
    CHECK(verify_message(leaf.certificate, {}, std::vector { short_root.certificate }, T0 + 3 * HOUR + 30 * 60 * 1000)
        == "the root (CN=short root): expired at 2026-01-01T03:00:00Z (checked at 2026-01-01T03:30:00Z)");

    // An intermediate that starts after the leaf.
    auto late_profile = ca_profile("CN=late CA");
    late_profile.not_before = T0 + 2 * HOUR;
    auto late = test::issued_by(chain.root, late_profile);
    auto late_leaf = test::issued_by(late, leaf_profile("CN=leaf"));
    CHECK(verify_failure(late_leaf.certificate, std::vector { late.certificate }, roots, T0 + 90 * 60 * 1000)
        == ChainFailure::NotYetValid);
}

TEST_CASE("chain: a root with the right name but another key is Untrusted")
{
    Chain chain;
    auto impostor = test::self_signed(ca_profile("CN=root,O=test"));
    CHECK(verify_failure(chain.leaf.certificate, std::vector { chain.parent.certificate }, std::vector { impostor.certificate },
              T0 + 2 * HOUR)
        == ChainFailure::Untrusted);
    auto stranger = test::self_signed(ca_profile("CN=stranger"));
    CHECK(verify_failure(chain.leaf.certificate, std::vector { chain.parent.certificate }, std::vector { stranger.certificate },
              T0 + 2 * HOUR)
        == ChainFailure::Untrusted);
}

TEST_CASE("chain: a modified leaf signature is Untrusted")
{
    Chain chain;
    Bytes der(chain.leaf.certificate.der().begin(), chain.leaf.certificate.der().end());
    der[der.size() - 5] ^= 0x01; // inside the signature's s
    auto tampered = Certificate::parse_der(der);
    REQUIRE(!tampered.is_error());
    CHECK(verify_failure(tampered.value(), std::vector { chain.parent.certificate }, std::vector { chain.root.certificate }, T0 + 2 * HOUR)
        == ChainFailure::Untrusted);
}

TEST_CASE("chain: a CA without keyCertSign violates the constraints")
{
    auto root = test::self_signed(ca_profile("CN=root"));
    auto profile = ca_profile("CN=no-keycertsign");
    profile.key_usage = crypto::key_usage::CRL_SIGN | crypto::key_usage::DIGITAL_SIGNATURE;
    auto ca = test::issued_by(root, profile);
    auto leaf = test::issued_by(ca, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf.certificate, std::vector { ca.certificate }, std::vector { root.certificate }, T0 + 2 * HOUR)
        == ChainFailure::ConstraintViolated);
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
        == ChainFailure::ConstraintViolated);

    auto root_profile = ca_profile("CN=not-a-ca-root");
    root_profile.is_ca = false;
    auto bad_root = test::self_signed(root_profile);
    auto leaf2 = test::issued_by(bad_root, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf2.certificate, {}, std::vector { bad_root.certificate }, T0 + 2 * HOUR) == ChainFailure::ConstraintViolated);
}

TEST_CASE("chain: pathLenConstraint exceeded violates the constraints; at the limit it verifies")
{
    auto root = test::self_signed(ca_profile("CN=root", 1));
    auto first = test::issued_by(root, ca_profile("CN=first", 0));
    auto second = test::issued_by(first, ca_profile("CN=second"));
    auto leaf = test::issued_by(second, leaf_profile("CN=leaf"));
    std::vector roots { root.certificate };
    CHECK(verify_failure(leaf.certificate, std::vector { second.certificate, first.certificate }, roots, T0 + 2 * HOUR)
        == ChainFailure::ConstraintViolated);
    CHECK(verify_message(leaf.certificate, std::vector { second.certificate, first.certificate }, roots, T0 + 2 * HOUR)
        == "intermediate 2 (CN=first): pathLenConstraint 0 but 1 intermediate CA(s) below it");
    auto direct = test::issued_by(first, leaf_profile("CN=direct"));
    must(crypto::verify_chain(direct.certificate, std::vector { first.certificate }, roots, T0 + 2 * HOUR));

    // The root's own pathLen 1 is exceeded by two intermediates below it.
    auto third = test::issued_by(root, ca_profile("CN=third"));
    auto fourth = test::issued_by(third, ca_profile("CN=fourth"));
    auto leaf2 = test::issued_by(fourth, leaf_profile("CN=leaf"));
    CHECK(verify_failure(leaf2.certificate, std::vector { fourth.certificate, third.certificate }, roots, T0 + 2 * HOUR)
        == ChainFailure::ConstraintViolated);
}

TEST_CASE("chain: a leaf that is a CA, or lacks digitalSignature, violates the constraints")
{
    Chain chain;
    auto ca_leaf_profile = ca_profile("CN=ca-leaf");
    ca_leaf_profile.key_usage |= crypto::key_usage::DIGITAL_SIGNATURE;
    auto ca_leaf = test::issued_by(chain.parent, ca_leaf_profile);
    std::vector intermediates { chain.parent.certificate };
    std::vector roots { chain.root.certificate };
    CHECK(verify_failure(ca_leaf.certificate, intermediates, roots, T0 + 2 * HOUR) == ChainFailure::ConstraintViolated);
    CHECK(verify_message(ca_leaf.certificate, intermediates, roots, T0 + 2 * HOUR)
        == "the leaf (CN=ca-leaf): a CA certificate cannot be the leaf");

    auto no_signature_profile = leaf_profile("CN=encipher-only");
    no_signature_profile.key_usage = crypto::key_usage::KEY_ENCIPHERMENT;
    auto no_signature = test::issued_by(chain.parent, no_signature_profile);
    CHECK(verify_failure(no_signature.certificate, intermediates, roots, T0 + 2 * HOUR) == ChainFailure::ConstraintViolated);
}

TEST_CASE("chain: checks run in order (trust, constraints, time)")
{
    Chain chain;
    auto stranger = test::self_signed(ca_profile("CN=stranger"));
    // Untrusted and expired: Untrusted.
    CHECK(verify_failure(chain.leaf.certificate, std::vector { chain.parent.certificate }, std::vector { stranger.certificate },
              T0 + 400 * DAY)
        == ChainFailure::Untrusted);
    // A CA leaf that is also expired: ConstraintViolated.
    auto ca_leaf = test::issued_by(chain.parent, ca_profile("CN=ca-leaf"));
    CHECK(verify_failure(ca_leaf.certificate, std::vector { chain.parent.certificate }, std::vector { chain.root.certificate },
              T0 + 400 * DAY)
        == ChainFailure::ConstraintViolated);
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
    CHECK(verify_failure(leaf.certificate, intermediates, std::vector { root.certificate }, T0 + 2 * HOUR) == ChainFailure::TooLong);
    // Six intermediates (8 certificates) are still accepted.
    auto short_leaf = test::issued_by(cas[5], leaf_profile("CN=leaf6"));
    std::vector<Certificate> six(intermediates.end() - 6, intermediates.end());
    must(crypto::verify_chain(short_leaf.certificate, six, std::vector { root.certificate }, T0 + 2 * HOUR));

    CHECK(verify_failure(leaf.certificate, {}, {}, T0) == ChainFailure::Malformed);
    auto garbage = crypto::verify_chain_der(as_bytes("garbage"), {}, std::vector<Bytes> { Bytes(root.certificate.der().begin(), root.certificate.der().end()) }, T0);
    REQUIRE(garbage.is_error());
    CHECK(garbage.error().is(ChainFailure::Malformed));
    CHECK(garbage.error().message().starts_with("the leaf: parse certificate"));
    CHECK(crypto::chain_failure_name(ChainFailure::Expired) == "certificate expired");
}
