#include <qtbox/crypto/ecdsa_signature.hpp>
#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/hash.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/pem.hpp>

#include "support.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace qtbox;
using crypto::CryptoError;
using crypto::KeyType;
using crypto::PrivateKey;
using crypto::PublicKey;
using test::expect_failure;
using test::must;
using test::read_data;
using test::unhex;

namespace {

// Order n of P-384 (FIPS 186-4 D.1.2.4).
constexpr std::string_view P384_ORDER = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";

} // namespace

TEST_CASE("keys: openssl SEC1 P-256 key with an EC PARAMETERS block parses, public key exact")
{
    auto key = must(PrivateKey::parse(read_data("p256-sec1.pem")));
    CHECK(key.type() == KeyType::EcP256);
    CHECK(key.bits() == 256);
    // openssl ec -in p256-sec1.pem -pubout -outform der | xxd -p
    CHECK(hex_encode(key.public_key().spki_der())
        == "3059301306072a8648ce3d020106082a8648ce3d0301070342000419238af25e35ffef0779b05d528d58c2f9f10c8f2f"
           "bde110b20d972cf144fb6ba347a3b08578562e8ae67211ce514a4346b1da2fee1413edf18e8de63e8d6507");
    CHECK(hex_encode(must(key.public_key().ec_point()))
        == "0419238af25e35ffef0779b05d528d58c2f9f10c8f2fbde110b20d972cf144fb6ba347a3b08578562e8ae67211ce514a4346b1da2fee1413edf18e8de63e8d6507");
}

TEST_CASE("keys: openssl PKCS#8 P-384 key matches its SPKI PEM byte for byte")
{
    auto key = must(PrivateKey::parse(read_data("p384-pkcs8.pem")));
    CHECK(key.type() == KeyType::EcP384);
    auto spki_pem = read_data("p384-spki.pem");
    CHECK(key.public_key().spki_pem() == std::string(as_chars(spki_pem)));
    auto public_key = must(PublicKey::parse(spki_pem));
    CHECK(key.matches(public_key));
    CHECK(public_key == key.public_key());
    auto der = must(PublicKey::from_spki_der(public_key.spki_der()));
    CHECK(der == public_key);
    CHECK_FALSE(must(PrivateKey::parse(read_data("p256-sec1.pem"))).matches(public_key));
}

TEST_CASE("keys: RSA PKCS#1 and PKCS#8 forms of one key give the same public key")
{
    auto pkcs1 = must(PrivateKey::parse(read_data("rsa-pkcs1.pem")));
    auto pkcs8 = must(PrivateKey::parse(read_data("rsa-pkcs8.pem")));
    CHECK(pkcs1.type() == KeyType::Rsa);
    CHECK(pkcs1.bits() == 2048);
    CHECK(pkcs1.public_key() == pkcs8.public_key());
    // openssl pkey -in rsa-pkcs1.pem -pubout -outform der | sha256sum
    CHECK(hex_encode(crypto::sha256(pkcs1.public_key().spki_der())) == "156d8eaf73620970ec45a2798065726964c15e353169b75bf85d00cc6c3ae088");
}

TEST_CASE("keys: private keys round-trip through PEM and DER")
{
    for (auto type : { KeyType::EcP256, KeyType::EcP384 }) {
        auto key = must(PrivateKey::generate(type));
        auto pem = must(key.to_pem());
        CHECK(pem.chars().starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        CHECK(must(PrivateKey::parse(pem)).matches(key.public_key()));
        auto der = must(key.to_der());
        CHECK(der.data()[0] == 0x30);
        CHECK(must(PrivateKey::parse(der)).matches(key.public_key()));
    }
    auto rsa = must(PrivateKey::parse(read_data("rsa-pkcs8.pem")));
    auto pem = must(rsa.to_pem());
    CHECK(pem.chars().starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    CHECK(must(PrivateKey::parse(pem)).public_key() == rsa.public_key());
}

TEST_CASE("keys: unsupported and broken keys are refused with the right kind")
{
    CHECK(expect_failure(PrivateKey::parse(read_data("p384-encrypted.pem"))) == CryptoError::Unsupported);
    CHECK(expect_failure(PrivateKey::parse(read_data("secp256k1.pem"))) == CryptoError::Unsupported);
    CHECK(expect_failure(PublicKey::parse(read_data("ed25519-spki.pem"))) == CryptoError::Unsupported);
    CHECK(expect_failure(PublicKey::parse(read_data("rsa1024-spki.pem"))) == CryptoError::Unsupported);
    CHECK(expect_failure(PrivateKey::parse(as_bytes("not a key"))) == CryptoError::Malformed);
    CHECK(expect_failure(PrivateKey::parse(read_data("p384-spki.pem"))) == CryptoError::Malformed);
    CHECK(expect_failure(PublicKey::parse(read_data("p384-pkcs8.pem"))) == CryptoError::Malformed);
    CHECK(expect_failure(PrivateKey::parse(Bytes(crypto::MAX_KEY_INPUT_SIZE + 1, 0x30))) == CryptoError::TooLarge);
    CHECK(expect_failure(PrivateKey::generate_rsa(1024)) == CryptoError::Unsupported);

    auto spki = read_data("p384-spki.pem");
    auto parsed = must(PublicKey::parse(spki));
    auto der = parsed.spki_der();
    Bytes trailing(der.begin(), der.end());
    trailing.push_back(0);
    CHECK(expect_failure(PublicKey::from_spki_der(trailing)) == CryptoError::Malformed);
    Bytes truncated(der.begin(), der.end() - 1);
    CHECK(expect_failure(PublicKey::from_spki_der(truncated)) == CryptoError::Malformed);
}

TEST_CASE("keys: a SEC1 key whose embedded public key is not d·G is refused")
{
    auto key = must(PrivateKey::parse(read_data("p256-sec1.pem")));
    auto der = must(key.to_der());
    Bytes forged(der.view().begin(), der.view().end());
    // The uncompressed point is the last 64 bytes (X‖Y): put another key's there.
    auto other = must(must(PrivateKey::generate(KeyType::EcP256)).public_key().ec_point());
    std::copy(other.begin() + 1, other.end(), forged.end() - 64);
    CHECK(expect_failure(PrivateKey::parse(forged)) == CryptoError::Malformed);
}

TEST_CASE("ecdsa: verifies a P-384 signature made by openssl, and converts it exactly")
{
    // openssl dgst -sha384 -sign p384-pkcs8.pem -out p384-sha384.sig.der (message below)
    auto der = read_data("p384-sha384.sig.der");
    auto raw = must(crypto::ecdsa_signature_from_der(der, 48));
    CHECK(hex_encode(raw)
        == "4be20071961524035c377095637d23ca577af0c2b5b3d128b7de6530cb36a6e5ef6ecbde4564d977c5318b4a96ed050e"
           "e3dacd679eb79fdb077f2a077a4821b5960733b88a51210a258c20bd4412dfc4e75ac7be5d65f16420325e4f91af4b0c");
    CHECK(must(crypto::ecdsa_signature_to_der(raw)) == der);
    auto key = must(PublicKey::parse(read_data("p384-spki.pem")));
    must(key.verify(as_bytes("qtbox known-answer message"), raw));
    must(key.verify_digest(crypto::sha384(as_bytes("qtbox known-answer message")), raw));
    CHECK(expect_failure(key.verify(as_bytes("qtbox known-answer messagE"), raw)) == CryptoError::BadSignature);
}

TEST_CASE("ecdsa: verifies the AWS Nitro document signature with its leaf key")
{
    // SHA-384 of the COSE Sig_structure of tests/data/nitro-attestation-doc-2026-02-02.b64
    // and its 96-byte signature (see data/README.md for how they were extracted).
    auto digest = unhex("d451c07275c348be8a2da1fec4585cb7ab2caad5a88d88ecd59c405088dcab8b9722b8484925c8cca0ee79bda867bf86");
    auto signature = unhex("b8a24c8a71045c6325e89b4ebda5ccc95998e166608d121108f47c883b73411ee6b0382c4596ca2b4aa120de598c97d1"
                           "b720a2fe6957b85465ca175c8533ff1727dc4dbebc1e54035ab716cd67700f779fde9d0b080b86072e19f8c230bb1e9b");
    auto leaf = must(crypto::Certificate::parse(read_data("nitro-leaf.der")));
    auto key = leaf.public_key();
    CHECK(key.type() == KeyType::EcP384);
    must(key.verify_digest(digest, signature));
    signature[10] ^= 0x01;
    CHECK(expect_failure(key.verify_digest(digest, signature)) == CryptoError::BadSignature);
}

TEST_CASE("ecdsa: sign and verify on both curves; RFC 6979 makes signing deterministic")
{
    for (auto type : { KeyType::EcP256, KeyType::EcP384 }) {
        auto key = must(PrivateKey::generate(type));
        auto signature = must(key.sign(as_bytes("message")));
        CHECK(signature.size() == (type == KeyType::EcP256 ? crypto::P256_SIGNATURE_SIZE : crypto::P384_SIGNATURE_SIZE));
        must(key.public_key().verify(as_bytes("message"), signature));
        CHECK(must(key.sign(as_bytes("message"))) == signature);
        auto digest = type == KeyType::EcP256 ? Bytes(32, 3) : Bytes(48, 3);
        must(key.public_key().verify_digest(digest, must(key.sign_digest(digest))));
        CHECK(expect_failure(key.public_key().verify(as_bytes("messagf"), signature)) == CryptoError::BadSignature);
    }
}

TEST_CASE("ecdsa: wrong lengths, r or s zero or ≥ n, and RSA keys are refused")
{
    auto key = must(PrivateKey::generate(KeyType::EcP384));
    auto public_key = key.public_key();
    auto signature = must(key.sign(as_bytes("m")));
    CHECK(expect_failure(public_key.verify(as_bytes("m"), Bytes(signature.begin(), signature.end() - 1))) == CryptoError::Malformed);
    CHECK(expect_failure(public_key.verify(as_bytes("m"), Bytes(64, 1))) == CryptoError::Malformed);
    CHECK(expect_failure(public_key.verify_digest(Bytes(32, 0), signature)) == CryptoError::Malformed);
    CHECK(expect_failure(key.sign_digest(Bytes(32, 0))) == CryptoError::Malformed);

    Bytes zero_r = signature;
    std::fill(zero_r.begin(), zero_r.begin() + 48, 0);
    CHECK(expect_failure(public_key.verify(as_bytes("m"), zero_r)) == CryptoError::BadSignature);
    Bytes zero_s = signature;
    std::fill(zero_s.begin() + 48, zero_s.end(), 0);
    CHECK(expect_failure(public_key.verify(as_bytes("m"), zero_s)) == CryptoError::BadSignature);
    Bytes s_is_n = signature;
    auto order = unhex(P384_ORDER);
    std::copy(order.begin(), order.end(), s_is_n.begin() + 48);
    CHECK(expect_failure(public_key.verify(as_bytes("m"), s_is_n)) == CryptoError::BadSignature);
    Bytes r_is_max(signature);
    std::fill(r_is_max.begin(), r_is_max.begin() + 48, 0xff);
    CHECK(expect_failure(public_key.verify(as_bytes("m"), r_is_max)) == CryptoError::BadSignature);

    auto rsa = must(PrivateKey::parse(read_data("rsa-pkcs1.pem")));
    CHECK(expect_failure(rsa.sign(as_bytes("m"))) == CryptoError::WrongKeyType);
    CHECK(expect_failure(rsa.public_key().verify(as_bytes("m"), signature)) == CryptoError::WrongKeyType);
}

TEST_CASE("rsa-oaep: decrypts an openssl OAEP-SHA256 ciphertext, round-trips, refuses the rest")
{
    // openssl pkeyutl -encrypt -inkey rsa-pkcs1.pem -pkeyopt rsa_padding_mode:oaep
    //   -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
    auto key = must(PrivateKey::parse(read_data("rsa-pkcs1.pem")));
    CHECK(must(key.rsa_oaep_decrypt(read_data("rsa-oaep-sha256.bin"))).chars() == "qtbox oaep known answer");

    auto public_key = key.public_key();
    Bytes largest(190, 0x42);
    auto ciphertext = must(public_key.rsa_oaep_encrypt(largest));
    CHECK(ciphertext.size() == 256);
    CHECK(must(key.rsa_oaep_decrypt(ciphertext)).copy() == largest);
    CHECK(must(public_key.rsa_oaep_encrypt(largest)) != ciphertext); // randomised padding
    CHECK(expect_failure(public_key.rsa_oaep_encrypt(Bytes(191, 0))) == CryptoError::TooLarge);

    ciphertext[100] ^= 1;
    CHECK(expect_failure(key.rsa_oaep_decrypt(ciphertext)) == CryptoError::DecryptionFailed);
    CHECK(expect_failure(key.rsa_oaep_decrypt(Bytes(255, 1))) == CryptoError::Malformed);
    auto ec = must(PrivateKey::generate(KeyType::EcP256));
    CHECK(expect_failure(ec.rsa_oaep_decrypt(ciphertext)) == CryptoError::WrongKeyType);
    CHECK(expect_failure(ec.public_key().rsa_oaep_encrypt(largest)) == CryptoError::WrongKeyType);
}

TEST_CASE("rsa-oaep: a ciphertext for another key fails with DecryptionFailed")
{
    auto other = must(PrivateKey::generate(KeyType::Rsa));
    CHECK(other.bits() == 2048);
    auto key = must(PrivateKey::parse(read_data("rsa-pkcs8.pem")));
    auto ciphertext = must(other.public_key().rsa_oaep_encrypt(as_bytes("for other")));
    CHECK(must(other.rsa_oaep_decrypt(ciphertext)).chars() == "for other");
    CHECK(expect_failure(key.rsa_oaep_decrypt(ciphertext)) == CryptoError::DecryptionFailed);
}

TEST_CASE("ecdh: matches openssl pkeyutl -derive on P-384 and agrees both ways")
{
    // openssl pkeyutl -derive -inkey p384-pkcs8.pem -peerkey p384-peer-spki.pem | xxd -p
    auto key = must(PrivateKey::parse(read_data("p384-pkcs8.pem")));
    auto peer = must(PublicKey::parse(read_data("p384-peer-spki.pem")));
    CHECK(hex_encode(must(key.ecdh(peer))) == "8ab785810cc351c2dc9393034fdc6c647d77df33f61b0d8729197a98fd479d1222e08c82f0e9624fdc0cbd4b20f8a61b");

    for (auto type : { KeyType::EcP256, KeyType::EcP384 }) {
        auto alice = must(PrivateKey::generate(type));
        auto bob = must(PrivateKey::generate(type));
        auto shared = must(alice.ecdh(bob.public_key()));
        CHECK(shared.size() == (type == KeyType::EcP256 ? 32u : 48u));
        CHECK(shared == must(bob.ecdh(alice.public_key())));
    }
    auto p256 = must(PrivateKey::generate(KeyType::EcP256));
    CHECK(expect_failure(p256.ecdh(peer)) == CryptoError::WrongKeyType);
    auto rsa = must(PrivateKey::parse(read_data("rsa-pkcs1.pem")));
    CHECK(expect_failure(rsa.ecdh(peer)) == CryptoError::WrongKeyType);
    CHECK(expect_failure(key.ecdh(rsa.public_key())) == CryptoError::WrongKeyType);
}

TEST_CASE("keys: EC points round-trip; off-curve and compressed points are refused")
{
    auto key = must(PrivateKey::generate(KeyType::EcP384));
    auto point = must(key.public_key().ec_point());
    CHECK(point.size() == 97);
    CHECK(must(PublicKey::from_ec_point(KeyType::EcP384, point)) == key.public_key());
    CHECK(expect_failure(PublicKey::from_ec_point(KeyType::EcP256, point)) == CryptoError::Malformed);
    Bytes off_curve = point;
    off_curve.back() ^= 1;
    CHECK(expect_failure(PublicKey::from_ec_point(KeyType::EcP384, off_curve)) == CryptoError::Malformed);
    Bytes compressed(point.begin(), point.begin() + 49);
    compressed[0] = 0x02;
    CHECK(expect_failure(PublicKey::from_ec_point(KeyType::EcP384, compressed)) == CryptoError::Malformed);
    CHECK(expect_failure(PublicKey::from_ec_point(KeyType::Rsa, point)) == CryptoError::WrongKeyType);
    auto rsa = must(PrivateKey::parse(read_data("rsa-pkcs1.pem")));
    CHECK(expect_failure(rsa.public_key().ec_point()) == CryptoError::WrongKeyType);
}

TEST_CASE("secret: SecretBytes copies, truncates and compares")
{
    crypto::SecretBytes secret(as_bytes("abcdef"));
    CHECK(secret.size() == 6);
    secret.truncate(3);
    CHECK(secret.chars() == "abc");
    secret.truncate(10);
    CHECK(secret.size() == 3);
    CHECK(secret == crypto::SecretBytes(as_bytes("abc")));
    CHECK_FALSE(secret == crypto::SecretBytes(as_bytes("abd")));
    crypto::SecretBytes moved(std::move(secret));
    CHECK(moved.chars() == "abc");
    CHECK(secret.empty());
    CHECK(crypto::key_type_name(KeyType::EcP384) == "P-384");
    CHECK(crypto::failure_name(CryptoError::BadSignature) == "bad signature");
}

TEST_CASE("keys: ECDSA signatures carry the low s (s <= n/2), and verify")
{
    // n/2 of each curve, big-endian (SEC 2 §2.4.2 and §2.5.1 give n).
    auto const p256_half = unhex("7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8");
    auto const p384_half = unhex("7fffffffffffffffffffffffffffffffffffffffffffffffe3b1a6c0fa1b96efac0d06d9245853bd76760cb5666294b9");
    for (auto type : { KeyType::EcP256, KeyType::EcP384 }) {
        auto key = must(PrivateKey::generate(type));
        auto const& half = type == KeyType::EcP256 ? p256_half : p384_half;
        // RFC 6979 makes k a function of key and message: 64 messages give
        // 64 independent s, about half of them above n/2 before normalising.
        for (int i = 0; i < 64; ++i) {
            std::string text = fmt::format("message {}", i);
            auto message = as_bytes(text);
            auto signature = must(key.sign(message));
            ByteView s(signature.data() + half.size(), half.size());
            CAPTURE(i);
            CHECK(std::lexicographical_compare(half.begin(), half.end(), s.begin(), s.end()) == false);
            must(key.public_key().verify(message, signature));
        }
    }
}

TEST_CASE("ecdsa: prepared nonces sign like RFC 6979 would: valid, low s, a fresh r each time, used once")
{
    auto const p256_half = unhex("7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8");
    auto const p384_half = unhex("7fffffffffffffffffffffffffffffffffffffffffffffffe3b1a6c0fa1b96efac0d06d9245853bd76760cb5666294b9");
    for (auto type : { KeyType::EcP256, KeyType::EcP384 }) {
        CAPTURE(crypto::key_type_name(type));
        auto key = must(PrivateKey::generate(type));
        auto other = must(PrivateKey::generate(type));
        auto const& half = type == KeyType::EcP256 ? p256_half : p384_half;
        std::vector<Bytes> rs;
        for (int i = 0; i < 48; ++i) {
            CAPTURE(i);
            std::string text = fmt::format("document {}", i);
            auto message = as_bytes(text);
            // Every other nonce comes from another key on the curve: k and
            // r do not depend on the key that signs.
            auto nonce = must((i % 2 ? other : key).prepare_nonce());
            CHECK(nonce.type() == type);
            CHECK(nonce.usable());
            auto signature = must(key.sign(message, nonce));
            CHECK_FALSE(nonce.usable());
            REQUIRE(signature.size() == 2 * half.size());
            ByteView s(signature.data() + half.size(), half.size());
            CHECK(std::lexicographical_compare(half.begin(), half.end(), s.begin(), s.end()) == false);
            must(key.public_key().verify(message, signature));
            CHECK(expect_failure(other.public_key().verify(message, signature)) == CryptoError::BadSignature);
            rs.emplace_back(signature.begin(), signature.begin() + static_cast<std::ptrdiff_t>(half.size()));
            // The same message signed again, the RFC 6979 way, verifies too
            // and has another r.
            auto deterministic = must(key.sign(message));
            CHECK_FALSE(std::equal(rs.back().begin(), rs.back().end(), deterministic.begin()));
        }
        std::sort(rs.begin(), rs.end());
        CHECK(std::adjacent_find(rs.begin(), rs.end()) == rs.end());
    }
}

TEST_CASE("ecdsa: a prepared nonce is refused when used twice, on another curve or with RSA, and is spent anyway")
{
    auto p384 = must(PrivateKey::generate(KeyType::EcP384));
    auto p256 = must(PrivateKey::generate(KeyType::EcP256));
    auto message = as_bytes(std::string_view("message"));

    auto nonce = must(p384.prepare_nonce());
    must(p384.sign(message, nonce));
    CHECK(expect_failure(p384.sign(message, nonce)) == CryptoError::Malformed);

    auto wrong_curve = must(p256.prepare_nonce());
    CHECK(expect_failure(p384.sign(message, wrong_curve)) == CryptoError::WrongKeyType);
    CHECK_FALSE(wrong_curve.usable());

    auto short_digest = must(p384.prepare_nonce());
    CHECK(expect_failure(p384.sign_digest(crypto::sha256(message), short_digest)) == CryptoError::Malformed);
    CHECK_FALSE(short_digest.usable());

    auto moved = must(p384.prepare_nonce());
    auto taken = std::move(moved);
    CHECK_FALSE(moved.usable()); // NOLINT(bugprone-use-after-move): the point of the check
    must(p384.sign(message, taken));

    auto rsa = must(PrivateKey::parse(read_data("rsa-pkcs1.pem")));
    CHECK(expect_failure(rsa.prepare_nonce()) == CryptoError::WrongKeyType);
    auto for_rsa = must(p384.prepare_nonce());
    CHECK(expect_failure(rsa.sign(message, for_rsa)) == CryptoError::WrongKeyType);
    CHECK_FALSE(for_rsa.usable());
}
