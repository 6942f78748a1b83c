#include "../support/hex.hpp"
#include "fixture.hpp"

#include <qtbox/attest/seal.hpp>
#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/encoder.hpp>

#include <doctest/doctest.h>

using namespace qtbox;
using namespace qtbox::attest;

namespace {

crypto::PrivateKey generated(crypto::KeyType type)
{
    auto key = crypto::PrivateKey::generate(type);
    REQUIRE_FALSE(key.is_error());
    return key.release_value();
}

SealError seal_error_of(Error const& error)
{
    for (auto kind : { SealError::NoRecipientKey, SealError::BadRecipientKey, SealError::TooLarge,
             SealError::MalformedEnvelope, SealError::WrongKey, SealError::DecryptionFailed }) {
        if (error.is(kind))
            return kind;
    }
    FAIL("unexpected error: " << error.message());
    return SealError::MalformedEnvelope;
}

// Re-encodes an envelope with one field replaced.
Bytes with_field(ByteView envelope, std::string_view name, cbor::Value value)
{
    auto map = cbor::decode(envelope).release_value();
    for (auto& entry : map.as_map()) {
        if (entry.key.as_text() == name)
            entry.value = value;
    }
    return cbor::encode(map);
}

} // namespace

TEST_CASE("attest: seal and open round trip for RSA-2048, P-256 and P-384 (acceptance 4)")
{
    struct Case {
        crypto::KeyType type;
        std::string_view alg;
        std::size_t ek_size;
    };
    Case const cases[] = {
        { crypto::KeyType::Rsa, SEAL_ALG_RSA, 256 },
        { crypto::KeyType::EcP256, SEAL_ALG_P256, 65 },
        { crypto::KeyType::EcP384, SEAL_ALG_P384, 97 },
    };
    Bytes secret = to_bytes("the database password");
    for (auto const& c : cases) {
        CAPTURE(c.alg);
        auto key = generated(c.type);
        // The document carries the key as SPKI DER.
        auto recipient = recipient_key(key.public_key().spki_der());
        REQUIRE_FALSE(recipient.is_error());
        auto envelope = seal(secret, recipient.value());
        REQUIRE_FALSE(envelope.is_error());

        auto map = cbor::decode(envelope.value()).release_value();
        REQUIRE(map.as_map().size() == 4);
        CHECK(map.as_map()[0].key.as_text() == "alg");
        CHECK(map.as_map()[1].key.as_text() == "ek");
        CHECK(map.as_map()[2].key.as_text() == "iv");
        CHECK(map.as_map()[3].key.as_text() == "ct");
        CHECK(map.find("alg")->as_text() == c.alg);
        CHECK(map.find("ek")->as_bytes().size() == c.ek_size);
        CHECK(map.find("iv")->as_bytes().size() == 12);
        CHECK(map.find("ct")->as_bytes().size() == secret.size() + 16);

        auto opened = open(envelope.value(), key);
        REQUIRE_FALSE(opened.is_error());
        CHECK(opened.value().view().size() == secret.size());
        CHECK(std::equal(secret.begin(), secret.end(), opened.value().view().begin()));

        // Two envelopes of the same secret differ (fresh keys and IVs).
        CHECK(seal(secret, recipient.value()).value() != envelope.value());

        // Another key of the same type cannot open it.
        auto other = generated(c.type);
        auto wrong = open(envelope.value(), other);
        REQUIRE(wrong.is_error());
        CHECK(seal_error_of(wrong.error()) == SealError::DecryptionFailed);

        // Any change to ct, iv or the alg-bound data is detected.
        Bytes ct(map.find("ct")->as_bytes().begin(), map.find("ct")->as_bytes().end());
        ct[0] ^= 0x01;
        CHECK(seal_error_of(open(with_field(envelope.value(), "ct", cbor::Value::byte_string(ct)), key).error())
            == SealError::DecryptionFailed);
        Bytes iv(map.find("iv")->as_bytes().begin(), map.find("iv")->as_bytes().end());
        iv[11] ^= 0x80;
        CHECK(seal_error_of(open(with_field(envelope.value(), "iv", cbor::Value::byte_string(iv)), key).error())
            == SealError::DecryptionFailed);
    }
}

TEST_CASE("attest: an empty secret seals, and an EC key may be given as a raw point or PEM")
{
    auto key = generated(crypto::KeyType::EcP384);
    auto point = key.public_key().ec_point().release_value();
    auto from_point = recipient_key(point);
    REQUIRE_FALSE(from_point.is_error());
    CHECK(from_point.value() == key.public_key());
    auto from_pem = recipient_key(as_bytes(key.public_key().spki_pem()));
    REQUIRE_FALSE(from_pem.is_error());
    CHECK(from_pem.value() == key.public_key());
    auto envelope = seal({}, from_point.value());
    REQUIRE_FALSE(envelope.is_error());
    auto opened = open(envelope.value(), key);
    REQUIRE_FALSE(opened.is_error());
    CHECK(opened.value().empty());
}

TEST_CASE("attest: unusable recipient keys and malformed envelopes are refused")
{
    CHECK(seal_error_of(recipient_key({}).error()) == SealError::NoRecipientKey);
    CHECK(seal_error_of(recipient_key(as_bytes("dummy")).error()) == SealError::BadRecipientKey);
    CHECK(seal_error_of(recipient_key(Bytes(97, 0x04)).error()) == SealError::BadRecipientKey); // not on the curve

    auto p384 = generated(crypto::KeyType::EcP384);
    auto p256 = generated(crypto::KeyType::EcP256);
    CHECK(seal_error_of(seal(Bytes(MAX_SEAL_PLAINTEXT + 1), p384.public_key()).error()) == SealError::TooLarge);

    Bytes envelope = seal(to_bytes("x"), p384.public_key()).release_value();
    CHECK(seal_error_of(open(envelope, p256).error()) == SealError::WrongKey);

    auto malformed = [&](ByteView bytes) { return seal_error_of(open(bytes, p384).error()); };
    CHECK(malformed(as_bytes("")) == SealError::MalformedEnvelope);
    CHECK(malformed(test::unhex("a0")) == SealError::MalformedEnvelope);
    Bytes trailing = envelope;
    trailing.push_back(0);
    CHECK(malformed(trailing) == SealError::MalformedEnvelope);
    CHECK(malformed(with_field(envelope, "alg", cbor::Value::text_string("A128GCM"))) == SealError::MalformedEnvelope);
    CHECK(malformed(with_field(envelope, "alg", cbor::Value::byte_string(as_bytes("x")))) == SealError::MalformedEnvelope);
    CHECK(malformed(with_field(envelope, "iv", cbor::Value::byte_string(Bytes(11)))) == SealError::MalformedEnvelope);
    CHECK(malformed(with_field(envelope, "ct", cbor::Value::byte_string(Bytes(15)))) == SealError::MalformedEnvelope);
    CHECK(malformed(with_field(envelope, "ek", cbor::Value::byte_string(Bytes(65, 4)))) == SealError::MalformedEnvelope);
    CHECK(malformed(with_field(envelope, "ek", cbor::Value::byte_string(Bytes(97, 4)))) == SealError::MalformedEnvelope);
    // The alg string is authenticated: a P-384 envelope relabelled for
    // another recipient type is refused before decryption.
    CHECK(seal_error_of(open(with_field(envelope, "alg", cbor::Value::text_string(std::string(SEAL_ALG_P256))), p256).error())
        == SealError::MalformedEnvelope);
    CHECK(seal_error_of(open(Bytes(MAX_ENVELOPE_SIZE + 1), p384).error()) == SealError::TooLarge);
}
