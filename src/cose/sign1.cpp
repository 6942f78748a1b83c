#include <qtbox/cose/sign1.hpp>

#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/hash.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <optional>

namespace qtbox::cose {

std::string_view algorithm_name(Algorithm algorithm)
{
    switch (algorithm) {
    case Algorithm::ES256:
        return "ES256";
    case Algorithm::ES384:
        return "ES384";
    }
    return "unknown";
}

std::string_view signature_order_name(SignatureOrder order)
{
    return order == SignatureOrder::Rfc9052 ? "rfc9052" : "qingtian";
}

namespace {

Error malformed(std::string why)
{
    return Error::from_code(CoseError::Malformed, "COSE_Sign1: " + std::move(why));
}

// The algorithm's curve and its signature size (RFC 9053 §2.1).
crypto::KeyType key_type_of(Algorithm algorithm)
{
    return algorithm == Algorithm::ES256 ? crypto::KeyType::EcP256 : crypto::KeyType::EcP384;
}

std::size_t signature_size_of(Algorithm algorithm)
{
    return algorithm == Algorithm::ES256 ? crypto::P256_SIGNATURE_SIZE : crypto::P384_SIGNATURE_SIZE;
}

ErrorOr<Algorithm> algorithm_for_key(crypto::KeyType type)
{
    switch (type) {
    case crypto::KeyType::EcP256:
        return Algorithm::ES256;
    case crypto::KeyType::EcP384:
        return Algorithm::ES384;
    case crypto::KeyType::Rsa:
        break;
    }
    return Error::from_code(CoseError::KeyMismatch, "COSE_Sign1: signing needs an EC P-256 or P-384 key");
}

bool is_label(cbor::Value const& key, std::int64_t label)
{
    return key.is_integer() && key.as_int64() == label;
}

} // namespace

ErrorOr<Sign1> parse_sign1(ByteView encoded, std::size_t max_size)
{
    if (encoded.size() > max_size)
        return malformed(fmt::format("message of {} bytes exceeds the limit of {}", encoded.size(), max_size));
    cbor::DecodeOptions options;
    options.max_depth = MAX_SIGN1_DEPTH;
    auto decoded = cbor::decode(encoded, options);
    if (decoded.is_error())
        return malformed(decoded.error().message());
    cbor::Value message = decoded.release_value();

    Sign1 result;
    if (message.is_tag()) {
        if (message.tag_number() != SIGN1_TAG)
            return malformed(fmt::format("tag {} instead of {} (COSE_Sign1)", message.tag_number(), SIGN1_TAG));
        result.tagged = true;
        cbor::Value content = message.tag_content();
        message = std::move(content);
    }
    if (!message.is_array() || message.as_array().size() != 4)
        return malformed("not an array of 4 items");
    auto& items = message.as_array();
    if (!items[0].is_bytes())
        return malformed("protected header is not a byte string");
    if (!items[1].is_map())
        return malformed("unprotected header is not a map");
    if (items[2].is_null())
        return malformed("detached payload is not supported");
    if (!items[2].is_bytes())
        return malformed("payload is not a byte string");
    if (!items[3].is_bytes())
        return malformed("signature is not a byte string");
    auto copy = [](ByteView bytes) { return Bytes(bytes.begin(), bytes.end()); };
    result.protected_header = copy(items[0].as_bytes());
    result.unprotected = std::move(items[1]);
    result.payload = copy(items[2].as_bytes());
    result.signature = copy(items[3].as_bytes());
    return result;
}

ErrorOr<Algorithm> sign1_algorithm(Sign1 const& message)
{
    // RFC 9052 §3: a zero-length protected bstr stands for the empty map.
    cbor::Value protected_map = cbor::Value::map();
    if (!message.protected_header.empty()) {
        cbor::DecodeOptions options;
        options.max_depth = MAX_SIGN1_DEPTH;
        auto decoded = cbor::decode(message.protected_header, options);
        if (decoded.is_error())
            return malformed("protected header: " + decoded.error().message());
        protected_map = decoded.release_value();
        if (!protected_map.is_map())
            return malformed("protected header is not a map");
    }
    if (message.unprotected.is_map()) {
        for (auto const& entry : message.unprotected.as_map()) {
            // §3: a label appears in one bucket only; alg and crit belong
            // in the protected one.
            if (is_label(entry.key, HEADER_ALGORITHM))
                return malformed("alg in the unprotected header");
            if (is_label(entry.key, HEADER_CRITICAL))
                return Error::from_code(CoseError::UnsupportedAlgorithm,
                    "COSE_Sign1: critical headers are not supported");
        }
    }
    cbor::Value const* algorithm = nullptr;
    for (auto const& entry : protected_map.as_map()) {
        if (is_label(entry.key, HEADER_CRITICAL))
            return Error::from_code(CoseError::UnsupportedAlgorithm, "COSE_Sign1: critical headers are not supported");
        if (is_label(entry.key, HEADER_ALGORITHM))
            algorithm = &entry.value;
    }
    if (algorithm == nullptr)
        return Error::from_code(CoseError::UnsupportedAlgorithm, "COSE_Sign1: no alg in the protected header");
    auto value = algorithm->as_int64();
    if (value == static_cast<std::int64_t>(Algorithm::ES256))
        return Algorithm::ES256;
    if (value == static_cast<std::int64_t>(Algorithm::ES384))
        return Algorithm::ES384;
    return Error::from_code(CoseError::UnsupportedAlgorithm,
        fmt::format("COSE_Sign1: algorithm {} is not ES256 or ES384", cbor::to_diagnostic(*algorithm)));
}

Bytes sig_structure(ByteView protected_header, ByteView payload, ByteView external_aad)
{
    cbor::Encoder encoder;
    encoder.array_header(4)
        .text_string("Signature1")
        .byte_string(protected_header)
        .byte_string(external_aad)
        .byte_string(payload);
    return encoder.take();
}

Bytes reverse_signature_halves(ByteView signature)
{
    Bytes result(signature.begin(), signature.end());
    auto half = result.begin() + static_cast<std::ptrdiff_t>(result.size() / 2);
    std::reverse(result.begin(), half);
    std::reverse(half, result.end());
    return result;
}

namespace {

// Both orders, or `only` one of them, against one digest of Sig_structure.
ErrorOr<SignatureOrder> verify_orders(Sign1 const& message, crypto::PublicKey const& key, ByteView external_aad,
    std::optional<SignatureOrder> only)
{
    Algorithm algorithm = TRY(sign1_algorithm(message));
    if (key.type() != key_type_of(algorithm))
        return Error::from_code(CoseError::KeyMismatch,
            fmt::format("COSE_Sign1: {} needs a {} key, not {}", algorithm_name(algorithm),
                crypto::key_type_name(key_type_of(algorithm)), crypto::key_type_name(key.type())));
    if (message.signature.size() != signature_size_of(algorithm))
        return malformed(fmt::format("{} signature of {} bytes, expected {}", algorithm_name(algorithm),
            message.signature.size(), signature_size_of(algorithm)));

    // Hash once, try the orders against the same digest.
    Bytes to_be_signed = sig_structure(message.protected_header, message.payload, external_aad);
    Bytes digest;
    if (algorithm == Algorithm::ES384) {
        auto hash = crypto::sha384(to_be_signed);
        digest.assign(hash.begin(), hash.end());
    } else {
        auto hash = crypto::sha256(to_be_signed);
        digest.assign(hash.begin(), hash.end());
    }
    for (SignatureOrder order : { SignatureOrder::Rfc9052, SignatureOrder::QingTian }) {
        if (only && *only != order)
            continue;
        auto attempt = order == SignatureOrder::Rfc9052 ? key.verify_digest(digest, message.signature)
                                                        : key.verify_digest(digest, reverse_signature_halves(message.signature));
        if (!attempt.is_error())
            return order;
        // Malformed here means r or s out of range in this reading, which the
        // other order may still satisfy.
        if (!attempt.error().is(crypto::CryptoError::BadSignature) && !attempt.error().is(crypto::CryptoError::Malformed))
            return attempt.release_error();
    }
    if (only)
        return Error::from_code(CoseError::BadSignature,
            fmt::format("COSE_Sign1: {} signature does not verify in the {} byte order (the only one accepted)",
                algorithm_name(algorithm), signature_order_name(*only)));
    return Error::from_code(CoseError::BadSignature,
        fmt::format("COSE_Sign1: {} signature does not verify in either byte order", algorithm_name(algorithm)));
}

} // namespace

ErrorOr<SignatureOrder> verify_sign1(Sign1 const& message, crypto::PublicKey const& key, ByteView external_aad)
{
    return verify_orders(message, key, external_aad, std::nullopt);
}

ErrorOr<SignatureOrder> verify_sign1_in_order(Sign1 const& message, crypto::PublicKey const& key, SignatureOrder only,
    ByteView external_aad)
{
    return verify_orders(message, key, external_aad, only);
}

Bytes algorithm_header(Algorithm algorithm, cbor::Width width)
{
    cbor::Encoder encoder;
    encoder.map_header(1)
        .integer(HEADER_ALGORITHM, width)
        .integer(static_cast<std::int64_t>(algorithm), width);
    return encoder.take();
}

ErrorOr<Bytes> sign_sign1(ByteView payload, crypto::PrivateKey const& key, SignOptions const& options)
{
    Algorithm algorithm = TRY(algorithm_for_key(key.type()));
    Sign1 message;
    message.protected_header = options.protected_header.empty() ? algorithm_header(algorithm)
                                                               : options.protected_header;
    message.unprotected = options.unprotected.is_null() ? cbor::Value::map() : options.unprotected;
    if (!message.unprotected.is_map())
        return malformed("the unprotected header must be a map");
    message.payload.assign(payload.begin(), payload.end());
    message.tagged = options.tagged;

    auto named = sign1_algorithm(message);
    if (named.is_error())
        return named.release_error();
    if (named.value() != algorithm)
        return Error::from_code(CoseError::KeyMismatch,
            fmt::format("COSE_Sign1: the protected header names {} but the key is {}",
                algorithm_name(named.value()), crypto::key_type_name(key.type())));

    auto to_be_signed = sig_structure(message.protected_header, message.payload, options.external_aad);
    Bytes signature = options.nonce && options.nonce->usable() ? TRY(key.sign(to_be_signed, *options.nonce))
                                                               : TRY(key.sign(to_be_signed));
    message.signature = options.order == SignatureOrder::QingTian ? reverse_signature_halves(signature)
                                                                  : std::move(signature);
    return encode_sign1(message);
}

Bytes encode_sign1(Sign1 const& message)
{
    cbor::Encoder encoder;
    if (message.tagged)
        encoder.tag(SIGN1_TAG);
    encoder.array_header(4).byte_string(message.protected_header);
    if (message.unprotected.is_map())
        encoder.value(message.unprotected);
    else
        encoder.map_header(0);
    encoder.byte_string(message.payload).byte_string(message.signature);
    return encoder.take();
}

} // namespace qtbox::cose
