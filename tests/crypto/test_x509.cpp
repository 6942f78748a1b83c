#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/x509.hpp>

#include "support.hpp"

using namespace qtbox;
using crypto::Certificate;
using crypto::CryptoError;
using test::must;
using test::at;
using test::expect_failure;
using test::read_data;

TEST_CASE("x509: an openssl-made P-384 CA certificate, every accessor exact")
{
    // openssl req -x509 -new -key p384-pkcs8.pem -sha384 -subj "/C=CN/O=Example Org/CN=example-root"
    //   -days 3650 -set_serial 0x1234ABCD -addext basicConstraints=critical,CA:TRUE,pathlen:1
    //   -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature
    auto pem = read_data("openssl-root.pem");
    auto root = must(Certificate::parse(pem));
    CHECK(root.version() == 3);
    CHECK(root.subject() == "C=CN, O=Example Org, CN=example-root");
    CHECK(root.issuer() == root.subject());
    CHECK(root.subject_common_name() == "example-root");
    CHECK(root.is_self_issued());
    CHECK(root.serial_hex() == "1234abcd");
    CHECK(root.serial() == Bytes { 0x12, 0x34, 0xab, 0xcd });
    CHECK(root.not_before() == at("2026-11-22T19:56:14Z"));
    CHECK(root.not_after() == at("2036-11-19T19:56:14Z"));
    CHECK(root.is_ca());
    CHECK(root.max_path_length() == 1u);
    CHECK(root.key_usage() == std::uint16_t { 0x86 });
    CHECK(crypto::key_usage_names(*root.key_usage()) == "digitalSignature, keyCertSign, cRLSign");
    CHECK(root.extended_key_usage().empty());
    CHECK(root.signature_algorithm() == "ECDSA with SHA384");
    CHECK(hex_encode(root.sha256_fingerprint()) == "293b8d56268c8887f89ce1029a8972d2833acc7153b7777d331403b3cc4b1d4a");
    CHECK(root.public_key() == must(crypto::PublicKey::parse(read_data("p384-spki.pem"))));
    CHECK(root.pem() == std::string(as_chars(pem)));
    CHECK(root.describe().find("example-root") != std::string::npos);
    CHECK(must(Certificate::parse_der(root.der())) == root);
    must(root.verify_signed_by(root));
}

TEST_CASE("x509: an openssl-made P-256 leaf with extended key usage")
{
    auto root = must(Certificate::parse(read_data("openssl-root.pem")));
    auto leaf = must(Certificate::parse(read_data("openssl-leaf.pem")));
    CHECK(leaf.subject() == "O=Example Org, CN=example-leaf");
    CHECK(leaf.issuer() == "C=CN, O=Example Org, CN=example-root");
    CHECK_FALSE(leaf.is_self_issued());
    CHECK(leaf.serial_hex() == "0100");
    CHECK(leaf.not_before() == at("2026-11-22T19:56:18Z"));
    CHECK(leaf.not_after() == at("2027-11-22T19:56:18Z"));
    CHECK(leaf.is_valid_at(at("2027-11-22T19:56:18Z")));
    CHECK_FALSE(leaf.is_valid_at(at("2027-11-22T19:56:19Z")));
    CHECK_FALSE(leaf.is_valid_at(at("2026-11-22T19:56:17Z")));
    CHECK_FALSE(leaf.is_ca());
    CHECK(leaf.max_path_length() == std::nullopt);
    CHECK(leaf.key_usage() == crypto::key_usage::DIGITAL_SIGNATURE);
    CHECK(leaf.extended_key_usage() == std::vector<std::string> { "1.3.6.1.5.5.7.3.3" });
    CHECK(hex_encode(leaf.sha256_fingerprint()) == "3d2aad9e724a1f0deefe2b1b57b0b6303d98f78668cba90ec7358b57505c5941");
    CHECK(leaf.public_key().type() == crypto::KeyType::EcP256);
    CHECK(must(crypto::PrivateKey::parse(read_data("p256-sec1.pem"))).matches(leaf.public_key()));
    must(leaf.verify_signed_by(root));
    CHECK(expect_failure(root.verify_signed_by(leaf)) == CryptoError::BadSignature);
    CHECK(expect_failure(leaf.verify_signed_by(leaf)) == CryptoError::BadSignature);
}

TEST_CASE("x509: the AWS Nitro chain's fields")
{
    auto root = must(Certificate::parse(read_data("nitro-ca0.der")));
    CHECK(root.subject() == "C=US, O=Amazon, OU=AWS, CN=aws.nitro-enclaves");
    CHECK(hex_encode(root.sha256_fingerprint()) == "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b");
    CHECK(root.max_path_length() == std::nullopt);
    CHECK(must(Certificate::parse(read_data("nitro-ca1.der"))).max_path_length() == 2u);
    CHECK(must(Certificate::parse(read_data("nitro-ca2.der"))).max_path_length() == 1u);
    auto instance = must(Certificate::parse(read_data("nitro-ca3.der")));
    CHECK(instance.max_path_length() == 0u);
    CHECK(instance.key_usage() == crypto::key_usage::KEY_CERT_SIGN);
    auto leaf = must(Certificate::parse(read_data("nitro-leaf.der")));
    CHECK(leaf.der().size() == 640);
    CHECK(leaf.subject_common_name() == "i-0340e0cb833504eb6-enc019c12d31f78864d.us-east-2.aws");
    CHECK(leaf.not_before() == at("2026-02-02T20:34:28Z"));
    CHECK(leaf.not_after() == at("2026-02-02T23:34:31Z"));
    CHECK(leaf.key_usage() == (crypto::key_usage::DIGITAL_SIGNATURE | crypto::key_usage::NON_REPUDIATION));
    must(leaf.verify_signed_by(instance));
}

TEST_CASE("x509: PEM bundles keep their order; parse() wants exactly one certificate")
{
    auto root = read_data("openssl-root.pem");
    auto leaf = read_data("openssl-leaf.pem");
    std::string bundle = std::string(as_chars(root)) + "\n" + std::string(as_chars(leaf));
    auto certificates = must(Certificate::parse_pem_bundle(bundle));
    REQUIRE(certificates.size() == 2);
    CHECK(certificates[0].subject_common_name() == "example-root");
    CHECK(certificates[1].subject_common_name() == "example-leaf");
    auto two = Certificate::parse(as_bytes(bundle));
    REQUIRE(two.is_error());
    CHECK(two.error().is(CryptoError::Malformed));
    CHECK(two.error().message() == "expected one certificate, found 2");
    CHECK(expect_failure(Certificate::parse_pem_bundle(std::string(as_chars(read_data("p384-spki.pem"))))) == CryptoError::Malformed);
    CHECK(expect_failure(Certificate::parse_pem_bundle("")) == CryptoError::Malformed);
}

TEST_CASE("x509: broken DER is refused with the right kind")
{
    auto der = read_data("nitro-leaf.der");
    Bytes trailing = der;
    trailing.push_back(0);
    CHECK(expect_failure(Certificate::parse_der(trailing)) == CryptoError::Malformed);
    Bytes truncated(der.begin(), der.end() - 1);
    CHECK(expect_failure(Certificate::parse_der(truncated)) == CryptoError::Malformed);
    CHECK(expect_failure(Certificate::parse_der(as_bytes("garbage"))) == CryptoError::Malformed);
    CHECK(expect_failure(Certificate::parse_der({})) == CryptoError::Malformed);
    CHECK(expect_failure(Certificate::parse_der(Bytes(crypto::MAX_CERTIFICATE_SIZE + 1, 0x30))) == CryptoError::TooLarge);
    Bytes corrupted = der;
    corrupted[4] ^= 0xff;
    CHECK(Certificate::parse_der(corrupted).is_error());
}
