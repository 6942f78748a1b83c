#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/x509_write.hpp>

#include "support.hpp"

using namespace qtbox;
using crypto::CryptoError;
using crypto::KeyType;
using test::ca_profile;
using test::HOUR;
using test::leaf_profile;
using test::must;
using test::at;
using test::expect_failure;
using test::T0;

TEST_CASE("x509 write: a self-signed root has exactly the requested fields")
{
    auto profile = ca_profile("CN=qtbox test root,O=qtbox,C=DE");
    profile.serial = { 0x01, 0x02, 0x03 };
    profile.not_before = T0 + 999; // rounded down to the second
    auto root = test::self_signed(profile);
    auto const& certificate = root.certificate;
    CHECK(certificate.version() == 3);
    CHECK(certificate.subject() == "CN=qtbox test root, O=qtbox, C=DE");
    CHECK(certificate.issuer() == certificate.subject());
    CHECK(certificate.is_self_issued());
    CHECK(certificate.serial_hex() == "010203");
    CHECK(certificate.not_before() == T0);
    CHECK(certificate.not_after() == T0 + 365 * test::DAY);
    CHECK(certificate.is_ca());
    CHECK(certificate.max_path_length() == std::nullopt);
    CHECK(certificate.key_usage() == (crypto::key_usage::KEY_CERT_SIGN | crypto::key_usage::CRL_SIGN));
    CHECK(certificate.signature_algorithm() == "ECDSA with SHA384");
    CHECK(root.key.matches(certificate.public_key()));
    must(certificate.verify_signed_by(certificate));
}

TEST_CASE("x509 write: an issued certificate names its issuer exactly and carries the constraints")
{
    auto root = test::self_signed(ca_profile("CN=root,OU=unit,O=qtbox"));
    auto ca = test::issued_by(root, ca_profile("CN=ca,O=qtbox", 3));
    CHECK(ca.certificate.issuer() == "CN=root, OU=unit, O=qtbox");
    CHECK(std::ranges::equal(ca.certificate.issuer_der(), root.certificate.subject_der()));
    CHECK(ca.certificate.max_path_length() == 3u);
    must(ca.certificate.verify_signed_by(root.certificate));

    auto leaf = test::issued_by(ca, leaf_profile("CN=leaf"), KeyType::EcP256);
    CHECK_FALSE(leaf.certificate.is_ca());
    CHECK(leaf.certificate.max_path_length() == std::nullopt);
    CHECK(leaf.certificate.key_usage() == crypto::key_usage::DIGITAL_SIGNATURE);
    CHECK(leaf.certificate.public_key().type() == KeyType::EcP256);
    CHECK(leaf.certificate.signature_algorithm() == "ECDSA with SHA384");
    // Random serials: 16 bytes, positive, different every time.
    CHECK(leaf.certificate.serial().size() == 16);
    CHECK((leaf.certificate.serial()[0] & 0x80) == 0);
    CHECK(test::issued_by(ca, leaf_profile("CN=leaf")).certificate.serial() != leaf.certificate.serial());
}

TEST_CASE("x509 write: an RSA subject key under an EC issuer")
{
    auto root = test::self_signed(ca_profile("CN=root"), KeyType::EcP256);
    auto rsa = must(crypto::PrivateKey::parse(test::read_data("rsa-pkcs1.pem")));
    auto certificate = must(crypto::issue_certificate(leaf_profile("CN=rsa"), rsa.public_key(), root.certificate, root.key));
    CHECK(certificate.public_key() == rsa.public_key());
    CHECK(certificate.signature_algorithm() == "ECDSA with SHA256");
}

TEST_CASE("x509 write: times before and after 2050 (UTCTime and GeneralizedTime) round-trip")
{
    auto profile = ca_profile("CN=long");
    profile.not_before = at("2049-12-31T23:59:59Z");
    profile.not_after = at("2056-02-29T12:00:00Z");
    auto root = test::self_signed(profile);
    CHECK(root.certificate.not_before() == at("2049-12-31T23:59:59Z"));
    CHECK(root.certificate.not_after() == at("2056-02-29T12:00:00Z"));
}

TEST_CASE("x509 write: bad profiles and mismatched keys are refused")
{
    auto key = must(crypto::PrivateKey::generate(KeyType::EcP256));
    auto check = [&](crypto::CertificateProfile const& profile, CryptoError expected) {
        CHECK(expect_failure(crypto::self_sign_certificate(profile, key)) == expected);
    };
    auto profile = ca_profile("");
    check(profile, CryptoError::Malformed);
    profile = ca_profile("XX=unknown attribute");
    check(profile, CryptoError::Malformed);
    profile = ca_profile("CN=x");
    profile.not_after = profile.not_before - 1000;
    check(profile, CryptoError::Malformed);
    profile = leaf_profile("CN=x");
    profile.path_length = 0;
    check(profile, CryptoError::Malformed);
    profile = ca_profile("CN=x");
    profile.serial = Bytes(21, 1);
    check(profile, CryptoError::Malformed);
    profile.serial = { 0x80, 0x01 };
    check(profile, CryptoError::Malformed);
    profile.serial = { 0x00, 0x00 };
    check(profile, CryptoError::Malformed);
    profile = ca_profile("CN=x");
    profile.key_usage = 0;
    check(profile, CryptoError::Malformed);

    auto rsa = must(crypto::PrivateKey::parse(test::read_data("rsa-pkcs1.pem")));
    CHECK(expect_failure(crypto::self_sign_certificate(ca_profile("CN=rsa"), rsa)) == CryptoError::WrongKeyType);
    auto root = test::self_signed(ca_profile("CN=root"));
    CHECK(expect_failure(crypto::issue_certificate(leaf_profile("CN=l"), key.public_key(), root.certificate, key))
        == CryptoError::WrongKeyType);
}
