#include <qtbox/attest/seal.hpp>

#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/encoder.hpp>
#include <qtbox/crypto/aead.hpp>
#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/hmac.hpp>
#include <qtbox/crypto/pem.hpp>
#include <qtbox/crypto/random.hpp>

#include <fmt/format.h>

namespace qtbox::attest {

namespace {

constexpr std::size_t P256_POINT_SIZE = 65;
constexpr std::size_t P384_POINT_SIZE = 97;

Error seal_error(SealError kind, std::string message)
{
    return Error::from_code(kind, std::move(message));
}

std::string_view alg_for(crypto::KeyType type)
{
    switch (type) {
    case crypto::KeyType::Rsa:
        return SEAL_ALG_RSA;
    case crypto::KeyType::EcP256:
        return SEAL_ALG_P256;
    case crypto::KeyType::EcP384:
        return SEAL_ALG_P384;
    }
    return {};
}

// info = "qtbox-seal-v1" ‖ 0x00 ‖ ephemeral point ‖ recipient point.
Bytes hkdf_info(ByteView ephemeral_point, ByteView recipient_point)
{
    Bytes info = to_bytes(SEAL_HKDF_LABEL);
    info.push_back(0);
    info.insert(info.end(), ephemeral_point.begin(), ephemeral_point.end());
    info.insert(info.end(), recipient_point.begin(), recipient_point.end());
    return info;
}

ErrorOr<crypto::SecretBytes> derive_key(ByteView shared_secret, ByteView ephemeral_point, ByteView recipient_point)
{
    return crypto::hkdf_sha256({}, shared_secret, hkdf_info(ephemeral_point, recipient_point),
        crypto::AES256_GCM_KEY_SIZE);
}

Bytes encode_envelope(std::string_view alg, ByteView encapsulated_key, ByteView iv, ByteView ciphertext)
{
    cbor::Encoder encoder;
    encoder.map_header(4);
    encoder.text_string("alg").text_string(alg);
    encoder.text_string("ek").byte_string(encapsulated_key);
    encoder.text_string("iv").byte_string(iv);
    encoder.text_string("ct").byte_string(ciphertext);
    return encoder.take();
}

} // namespace

ErrorOr<crypto::PublicKey> recipient_key(ByteView field)
{
    if (field.empty())
        return seal_error(SealError::NoRecipientKey, "seal: the document carries no public_key");
    ErrorOr<crypto::PublicKey> key = Error::from_string({});
    if (!crypto::looks_like_pem(field) && (field.size() == P256_POINT_SIZE || field.size() == P384_POINT_SIZE)
        && field[0] == 0x04) {
        key = crypto::PublicKey::from_ec_point(
            field.size() == P256_POINT_SIZE ? crypto::KeyType::EcP256 : crypto::KeyType::EcP384, field);
    } else {
        key = crypto::PublicKey::parse(field);
    }
    if (key.is_error())
        return seal_error(SealError::BadRecipientKey,
            fmt::format("seal: the document's public_key is not a usable key: {}", key.error().message()));
    return key.release_value();
}

ErrorOr<Bytes> seal(ByteView plaintext, crypto::PublicKey const& recipient)
{
    if (plaintext.size() > MAX_SEAL_PLAINTEXT)
        return seal_error(SealError::TooLarge,
            fmt::format("seal: {} bytes exceed the limit of {}", plaintext.size(), MAX_SEAL_PLAINTEXT));
    std::string_view alg = alg_for(recipient.type());
    Bytes iv = TRY(crypto::random_bytes(crypto::AES256_GCM_IV_SIZE));
    Bytes encapsulated_key;
    crypto::SecretBytes content_key;
    if (recipient.type() == crypto::KeyType::Rsa) {
        content_key = crypto::SecretBytes(crypto::AES256_GCM_KEY_SIZE);
        TRY(crypto::random_fill(content_key.span()));
        encapsulated_key = TRY(recipient.rsa_oaep_encrypt(content_key));
    } else {
        auto ephemeral = TRY(crypto::PrivateKey::generate(recipient.type()));
        encapsulated_key = TRY(ephemeral.public_key().ec_point());
        Bytes recipient_point = TRY(recipient.ec_point());
        crypto::SecretBytes shared = TRY(ephemeral.ecdh(recipient));
        content_key = TRY(derive_key(shared, encapsulated_key, recipient_point));
    }
    Bytes ciphertext = TRY(crypto::aes256_gcm_encrypt(content_key, iv, plaintext, as_bytes(alg)));
    return encode_envelope(alg, encapsulated_key, iv, ciphertext);
}

ErrorOr<crypto::SecretBytes> open(ByteView envelope, crypto::PrivateKey const& key)
{
    auto malformed = [](std::string why) {
        return seal_error(SealError::MalformedEnvelope, "open: malformed envelope: " + why);
    };
    if (envelope.size() > MAX_ENVELOPE_SIZE)
        return seal_error(SealError::TooLarge,
            fmt::format("open: envelope of {} bytes exceeds the limit of {}", envelope.size(), MAX_ENVELOPE_SIZE));
    cbor::DecodeOptions options;
    options.max_depth = 1;
    options.max_items = 64;
    auto decoded = cbor::decode(envelope, options);
    if (decoded.is_error())
        return malformed(decoded.error().message());
    cbor::Value const& map = decoded.value();
    if (!map.is_map() || map.as_map().size() != 4)
        return malformed("not a map of alg, ek, iv, ct");
    cbor::Value const* alg_value = map.find("alg");
    cbor::Value const* ek = map.find("ek");
    cbor::Value const* iv = map.find("iv");
    cbor::Value const* ct = map.find("ct");
    if (!alg_value || !ek || !iv || !ct)
        return malformed("not a map of alg, ek, iv, ct");
    if (!alg_value->is_text() || !ek->is_bytes() || !iv->is_bytes() || !ct->is_bytes())
        return malformed("alg must be a text string, ek, iv and ct byte strings");
    std::string_view alg = alg_value->as_text();
    if (alg != SEAL_ALG_RSA && alg != SEAL_ALG_P256 && alg != SEAL_ALG_P384)
        return malformed(fmt::format("unknown alg \"{}\"", alg.substr(0, 64)));
    if (iv->as_bytes().size() != crypto::AES256_GCM_IV_SIZE)
        return malformed(fmt::format("iv of {} bytes instead of {}", iv->as_bytes().size(), crypto::AES256_GCM_IV_SIZE));
    if (ct->as_bytes().size() < crypto::AES256_GCM_TAG_SIZE)
        return malformed("ct shorter than the GCM tag");
    if (alg != alg_for(key.type()))
        return seal_error(SealError::WrongKey, fmt::format("open: the envelope is {} but the key is {}", alg,
            crypto::key_type_name(key.type())));

    crypto::SecretBytes content_key;
    if (key.type() == crypto::KeyType::Rsa) {
        auto unwrapped = key.rsa_oaep_decrypt(ek->as_bytes());
        if (unwrapped.is_error())
            return seal_error(SealError::DecryptionFailed, "open: " + unwrapped.error().message());
        content_key = unwrapped.release_value();
        if (content_key.size() != crypto::AES256_GCM_KEY_SIZE)
            return seal_error(SealError::DecryptionFailed, "open: the wrapped key is not an AES-256 key");
    } else {
        std::size_t point_size = key.type() == crypto::KeyType::EcP256 ? P256_POINT_SIZE : P384_POINT_SIZE;
        if (ek->as_bytes().size() != point_size)
            return malformed(fmt::format("ek of {} bytes instead of {}", ek->as_bytes().size(), point_size));
        auto ephemeral = crypto::PublicKey::from_ec_point(key.type(), ek->as_bytes());
        if (ephemeral.is_error())
            return malformed("ek: " + ephemeral.error().message());
        Bytes recipient_point = TRY(key.public_key().ec_point());
        crypto::SecretBytes shared = TRY(key.ecdh(ephemeral.value()));
        content_key = TRY(derive_key(shared, ek->as_bytes(), recipient_point));
    }
    auto plaintext = crypto::aes256_gcm_decrypt(content_key, iv->as_bytes(), ct->as_bytes(), as_bytes(alg));
    if (plaintext.is_error())
        return seal_error(SealError::DecryptionFailed,
            "open: the envelope was not sealed to this key, or it was modified");
    return plaintext.release_value();
}

} // namespace qtbox::attest
