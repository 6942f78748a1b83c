// Sealing a secret to the key an attestation document carries (docs/FORMATS.md §9
// --seal; opened inside the enclave by `qtsm open`). This is the KMS
// "recipient" step without a cloud.
//
// Envelope: a CBOR map, definite, keys in this order:
//   "alg": tstr, one of
//       "RSA-OAEP-256+A256GCM"           recipient is RSA (2048..8192 bits)
//       "ECDH-P256+HKDF-SHA256+A256GCM"  recipient is an EC P-256 key
//       "ECDH-P384+HKDF-SHA256+A256GCM"  recipient is an EC P-384 key
//   "ek":  bstr, the encapsulated key:
//       RSA: RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label) encryption of a
//            fresh 32-byte AES-256 key;
//       EC:  the ephemeral public key, uncompressed point 04‖X‖Y (65 or 97
//            bytes); the AES key is HKDF-SHA256(salt = empty,
//            IKM = ECDH x-coordinate, info = "qtbox-seal-v1" ‖ 0x00 ‖ ek ‖
//            recipient point, L = 32), binding both public keys.
//   "iv":  bstr(12), random
//   "ct":  bstr, AES-256-GCM ciphertext ‖ 16-byte tag, with the alg string's
//          UTF-8 bytes as associated data.
// Every key is fresh per envelope (a new AES key, a new ephemeral EC key).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/secret.hpp>

#include <cstddef>
#include <string_view>

namespace qtbox::attest {

constexpr std::string_view SEAL_ALG_RSA = "RSA-OAEP-256+A256GCM";
constexpr std::string_view SEAL_ALG_P256 = "ECDH-P256+HKDF-SHA256+A256GCM";
constexpr std::string_view SEAL_ALG_P384 = "ECDH-P384+HKDF-SHA256+A256GCM";
constexpr std::string_view SEAL_HKDF_LABEL = "qtbox-seal-v1";

// The largest secret sealed (and so the largest plaintext open returns).
constexpr std::size_t MAX_SEAL_PLAINTEXT = 1024 * 1024;
// The largest envelope open decodes: the plaintext, the tag, an RSA-8192
// encapsulated key and the CBOR around them.
constexpr std::size_t MAX_ENVELOPE_SIZE = MAX_SEAL_PLAINTEXT + 2048;

enum class SealError {
    NoRecipientKey = 1, // the document's public_key is absent/empty
    BadRecipientKey,    // public_key is not an SPKI (DER/PEM) or EC point of a supported key
    TooLarge,           // plaintext over MAX_SEAL_PLAINTEXT, envelope over MAX_ENVELOPE_SIZE
    MalformedEnvelope,  // not the CBOR map above
    WrongKey,           // the envelope's alg is not for this private key's type
    DecryptionFailed,   // the envelope was not made for this key, or was modified
};

// The recipient key carried in a document's public_key: DER or PEM
// SubjectPublicKeyInfo, or an uncompressed EC point (65 bytes: P-256,
// 97 bytes: P-384).
ErrorOr<crypto::PublicKey> recipient_key(ByteView public_key_field);

ErrorOr<Bytes> seal(ByteView plaintext, crypto::PublicKey const& recipient);
ErrorOr<crypto::SecretBytes> open(ByteView envelope, crypto::PrivateKey const& key);

} // namespace qtbox::attest
