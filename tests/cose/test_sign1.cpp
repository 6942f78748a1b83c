#include "../support/hex.hpp"

#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cose/sign1.hpp>
#include <qtbox/crypto/error.hpp>

#include <doctest/doctest.h>

using namespace qtbox;
using namespace qtbox::cose;
using test::unhex;

namespace {

// COSE Working Group examples (github.com/cose-wg/Examples,
// ecdsa-examples/ecdsa-sig-02.json and ecdsa-sig-01.json): public test data.
constexpr std::string_view EXAMPLE_P384_MESSAGE
    = "d28444a1013822a104445033383454546869732069732074686520636f6e74656e742e5860b8f85eff78c88f5351ced2f1887b79b2"
      "96490795594b62e41e22529bb90208b7d8cddd4a46d0e9c986464d83d0a5d1edf39b3e2c5750364230d0e8d76460d8808e76c83830fb"
      "bd1978cc174066eb437f17887979ecf027dcc9d51baf6c4fd8c0";
constexpr std::string_view EXAMPLE_P384_POINT
    = "049132723f6292b010619dbe248d698c17b58756c639e7150f81bee4eb8ac37236ad0a1a19d67be32a66263e1e524d129c98cd3078c5"
      "54d832ac603c4326410ff61662459b41f1f3df5dbcc83598ff7c5ed8411ca735679d1c4cb3009397d9ef2c";
constexpr std::string_view EXAMPLE_P384_TO_BE_SIGNED
    = "846a5369676e61747572653144a10138224054546869732069732074686520636f6e74656e742e";
constexpr std::string_view EXAMPLE_P256_MESSAGE
    = "d28445a201260300a10442313154546869732069732074686520636f6e74656e742e5840eae868ecc176883766c5dc5ba5b8dca25dab"
      "3c2e56a551ce5705b793914348e172727f48461fabbba2e343492ddecac3983686250bc68e9f1a7a07d41225b59f";
constexpr std::string_view EXAMPLE_P256_POINT
    = "04bac5b11cad8f99f9c72b05cf4b9e26d244dc189f745228255a219a86d6a09eff20138bf82dc1b6d562be0fa54ab7804a3a64b6d72c"
      "cfed6b6fb6ed28bbfc117e";

crypto::PublicKey point_key(crypto::KeyType type, std::string_view hex)
{
    auto key = crypto::PublicKey::from_ec_point(type, unhex(hex));
    REQUIRE_FALSE(key.is_error());
    return key.release_value();
}

Sign1 parsed(ByteView encoded)
{
    auto message = parse_sign1(encoded);
    REQUIRE_FALSE(message.is_error());
    return message.release_value();
}

crypto::PrivateKey generated(crypto::KeyType type)
{
    auto key = crypto::PrivateKey::generate(type);
    REQUIRE_FALSE(key.is_error());
    return key.release_value();
}

CoseError failure_of(ErrorOr<SignatureOrder> const& result)
{
    REQUIRE(result.is_error());
    for (auto kind : { CoseError::Malformed, CoseError::UnsupportedAlgorithm, CoseError::KeyMismatch, CoseError::BadSignature }) {
        if (result.error().is(kind))
            return kind;
    }
    FAIL("unexpected error: " << result.error().message());
    return CoseError::Malformed;
}

} // namespace

TEST_CASE("cose: verifies the COSE WG ES384 example and builds its Sig_structure")
{
    Sign1 message = parsed(unhex(EXAMPLE_P384_MESSAGE));
    CHECK(message.tagged);
    CHECK(hex_encode(message.protected_header) == "a1013822");
    CHECK(cbor::to_diagnostic(message.unprotected) == "{4: h'50333834'}");
    CHECK(as_chars(message.payload) == "This is the content.");
    CHECK(message.signature.size() == 96);
    CHECK(sign1_algorithm(message).value() == Algorithm::ES384);
    CHECK(hex_encode(sig_structure(message.protected_header, message.payload)) == EXAMPLE_P384_TO_BE_SIGNED);
    auto order = verify_sign1(message, point_key(crypto::KeyType::EcP384, EXAMPLE_P384_POINT));
    REQUIRE_FALSE(order.is_error());
    CHECK(order.value() == SignatureOrder::Rfc9052);
    // Re-encoding keeps every byte.
    CHECK(hex_encode(encode_sign1(message)) == EXAMPLE_P384_MESSAGE);
}

TEST_CASE("cose: verifies the COSE WG ES256 example with a content type in the protected header")
{
    Sign1 message = parsed(unhex(EXAMPLE_P256_MESSAGE));
    CHECK(sign1_algorithm(message).value() == Algorithm::ES256);
    auto order = verify_sign1(message, point_key(crypto::KeyType::EcP256, EXAMPLE_P256_POINT));
    REQUIRE_FALSE(order.is_error());
    CHECK(order.value() == SignatureOrder::Rfc9052);
}

TEST_CASE("cose: a signature with byte-reversed halves verifies and is reported as QingTian order")
{
    Sign1 message = parsed(unhex(EXAMPLE_P384_MESSAGE));
    Bytes original = message.signature;
    message.signature = reverse_signature_halves(original);
    CHECK(message.signature != original);
    CHECK(message.signature[0] == original[47]);
    CHECK(message.signature[48] == original[95]);
    CHECK(reverse_signature_halves(message.signature) == original);
    auto order = verify_sign1(message, point_key(crypto::KeyType::EcP384, EXAMPLE_P384_POINT));
    REQUIRE_FALSE(order.is_error());
    CHECK(order.value() == SignatureOrder::QingTian);
}

TEST_CASE("cose: a changed signature, payload or protected header does not verify")
{
    auto key = point_key(crypto::KeyType::EcP384, EXAMPLE_P384_POINT);
    Sign1 message = parsed(unhex(EXAMPLE_P384_MESSAGE));
    Sign1 flipped = message;
    flipped.signature[10] ^= 0x01;
    CHECK(failure_of(verify_sign1(flipped, key)) == CoseError::BadSignature);
    Sign1 payload = message;
    payload.payload.push_back('!');
    CHECK(failure_of(verify_sign1(payload, key)) == CoseError::BadSignature);
    // The same header {1: -35} re-encoded with 4-byte integers is different
    // bytes, so a different Sig_structure (RFC 9052 §4.4: verbatim bytes).
    Sign1 header = message;
    header.protected_header = algorithm_header(Algorithm::ES384, cbor::Width::Byte4);
    CHECK(failure_of(verify_sign1(header, key)) == CoseError::BadSignature);
    // External AAD is part of what was signed.
    CHECK(failure_of(verify_sign1(message, key, as_bytes("aad"))) == CoseError::BadSignature);
    Sign1 short_signature = message;
    short_signature.signature.pop_back();
    CHECK(failure_of(verify_sign1(short_signature, key)) == CoseError::Malformed);
}

TEST_CASE("cose: the key must be the algorithm's curve")
{
    Sign1 message = parsed(unhex(EXAMPLE_P384_MESSAGE));
    CHECK(failure_of(verify_sign1(message, point_key(crypto::KeyType::EcP256, EXAMPLE_P256_POINT)))
        == CoseError::KeyMismatch);
}

TEST_CASE("cose: sign then verify, ES384 and ES256, both byte orders, tagged and untagged")
{
    for (auto type : { crypto::KeyType::EcP384, crypto::KeyType::EcP256 }) {
        auto key = generated(type);
        for (auto order : { SignatureOrder::Rfc9052, SignatureOrder::QingTian }) {
            for (bool tagged : { false, true }) {
                CAPTURE(crypto::key_type_name(type));
                CAPTURE(signature_order_name(order));
                CAPTURE(tagged);
                SignOptions options;
                options.order = order;
                options.tagged = tagged;
                auto encoded = sign_sign1(as_bytes("payload"), key, options);
                REQUIRE_FALSE(encoded.is_error());
                CHECK(encoded.value()[0] == (tagged ? 0xd2 : 0x84));
                Sign1 message = parsed(encoded.value());
                CHECK(message.tagged == tagged);
                CHECK(hex_encode(message.protected_header)
                    == (type == crypto::KeyType::EcP384 ? "a1013822" : "a10126"));
                auto verified = verify_sign1(message, key.public_key());
                REQUIRE_FALSE(verified.is_error());
                CHECK(verified.value() == order);
            }
        }
    }
}

TEST_CASE("cose: signs with a verbatim QingTian protected header and an unprotected map")
{
    auto key = generated(crypto::KeyType::EcP384);
    SignOptions options;
    options.protected_header = algorithm_header(Algorithm::ES384, cbor::Width::Byte4);
    options.unprotected = cbor::Value::map();
    options.unprotected.insert(cbor::Value::unsigned_integer(4), cbor::Value::byte_string(as_bytes("kid")));
    auto encoded = sign_sign1(as_bytes("{}"), key, options);
    REQUIRE_FALSE(encoded.is_error());
    // 84, bstr(11) a1 1a00000001 3a00000022, {4: h'6b6964'}, ...
    CHECK(hex_encode(ByteView(encoded.value()).first(19)) == "844ba11a000000013a00000022a104436b6964");
    auto verified = verify_sign1(parsed(encoded.value()), key.public_key());
    REQUIRE_FALSE(verified.is_error());

    options.protected_header = algorithm_header(Algorithm::ES256);
    auto mismatch = sign_sign1(as_bytes("{}"), key, options);
    REQUIRE(mismatch.is_error());
    CHECK(mismatch.error().is(CoseError::KeyMismatch));
}

TEST_CASE("cose: parse refuses what is not a COSE_Sign1")
{
    auto check_malformed = [](std::string_view hex, std::string_view why) {
        CAPTURE(hex);
        auto result = parse_sign1(unhex(hex));
        REQUIRE(result.is_error());
        CHECK(result.error().is(CoseError::Malformed));
        CHECK(result.error().message().find(why) != std::string::npos);
    };
    check_malformed("a0", "not an array of 4 items");
    check_malformed("83404040", "not an array of 4 items");
    check_malformed("d18440a04040", "tag 17 instead of 18");
    check_malformed("8440a0f640", "detached payload");
    check_malformed("84a0a04040", "protected header is not a byte string");
    check_malformed("8440804040", "unprotected header is not a map");
    check_malformed("8440a0406161", "signature is not a byte string");
    check_malformed("8440a0404000", "trailing bytes");
    check_malformed("8440a04059", "input ends inside an item");
    Bytes big(MAX_SIGN1_SIZE + 1, 0);
    CHECK(parse_sign1(big).error().is(CoseError::Malformed));
    CHECK(parse_sign1(unhex("8440a04040"), 4).error().message().find("exceeds the limit") != std::string::npos);
}

TEST_CASE("cose: the algorithm must be ES256 or ES384, protected, and without critical headers")
{
    auto algorithm_of = [](std::string_view protected_hex, std::string_view unprotected_hex) {
        Bytes encoded = unhex("84");
        Bytes header = unhex(protected_hex);
        cbor::Encoder encoder;
        encoder.byte_string(header).raw(unhex(unprotected_hex)).byte_string({}).byte_string({});
        encoded.insert(encoded.end(), encoder.output().begin(), encoder.output().end());
        auto message = parse_sign1(encoded);
        REQUIRE_FALSE(message.is_error());
        return sign1_algorithm(message.value());
    };
    CHECK(algorithm_of("a1013822", "a0").value() == Algorithm::ES384);
    CHECK(algorithm_of("a11a000000013a00000022", "a0").value() == Algorithm::ES384);
    CHECK(algorithm_of("a10126", "a0").value() == Algorithm::ES256);
    CHECK(algorithm_of("", "a0").error().is(CoseError::UnsupportedAlgorithm));
    CHECK(algorithm_of("a0", "a10126").error().is(CoseError::Malformed));
    CHECK(algorithm_of("a10127", "a0").error().is(CoseError::UnsupportedAlgorithm)); // EdDSA
    CHECK(algorithm_of("a101654553333834", "a0").error().is(CoseError::UnsupportedAlgorithm)); // "ES384" text
    CHECK(algorithm_of("a2013822028101", "a0").error().is(CoseError::UnsupportedAlgorithm)); // crit
    CHECK(algorithm_of("a1013822", "a1028101").error().is(CoseError::UnsupportedAlgorithm));
    CHECK(algorithm_of("80", "a0").error().is(CoseError::Malformed));
    CHECK(algorithm_of("a101", "a0").error().is(CoseError::Malformed));
}
