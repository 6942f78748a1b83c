// Public and private keys (mbedTLS pk contexts): EC P-256, EC P-384 and RSA
// with a 2048..8192-bit modulus; nothing else is accepted.
//
//  - PublicKey: parsed from SubjectPublicKeyInfo (RFC 5280 §4.1.2.7, DER or
//    PEM "PUBLIC KEY") or an uncompressed EC point; exported as SPKI. Copies
//    share one immutable key; cheap to copy.
//  - PrivateKey: generated here or parsed from PEM/DER (SEC1 "EC PRIVATE
//    KEY", PKCS#1 "RSA PRIVATE KEY", unencrypted PKCS#8 "PRIVATE KEY");
//    exported as SEC1/PKCS#1 PEM or DER. Move-only; the mbedTLS context is
//    freed (which zeroises the private values) when it is destroyed, and
//    every export comes back as SecretBytes.
//
// ECDSA signatures are the raw fixed-size r‖s of COSE (RFC 9052 §2 via
// RFC 8152 §8.1): 64 bytes for P-256, 96 for P-384, each half big-endian and
// zero-padded. Messages are hashed with SHA-256 for P-256 and SHA-384 for
// P-384 (ES256 / ES384). Signing is deterministic (RFC 6979) with blinding
// from the per-thread DRBG, so a weak RNG cannot leak the key. A signer that
// must answer quickly may instead prepare EcdsaNonce values while it is idle
// (below): then a signature costs no scalar multiplication, but it rests on
// the DRBG, as any non-deterministic ECDSA does.
//
// Threading: both types may be used from many threads at once. ECDSA
// verification takes no lock: it reads the key's point and runs on one
// process-wide group per curve whose table of multiples of the base point is
// computed once, on first use, and only read afterwards. The other
// operations on one key are serialised by a lock inside the key, because
// mbedTLS caches precomputed points in the key's own group and a shared
// context is therefore not read-only; different keys never contend.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/crypto/secret.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace qtbox::crypto {

enum class KeyType {
    EcP256,
    EcP384,
    Rsa,
};

// "P-256", "P-384", "RSA".
std::string_view key_type_name(KeyType type);

// Bounds on what qtbox accepts from outside.
constexpr std::size_t MIN_RSA_BITS = 2048;
constexpr std::size_t MAX_RSA_BITS = 8192;
// Larger than any DER or PEM key of the accepted types.
constexpr std::size_t MAX_KEY_INPUT_SIZE = 16 * 1024;

constexpr std::size_t P256_SIGNATURE_SIZE = 64;
constexpr std::size_t P384_SIGNATURE_SIZE = 96;

namespace detail {
struct KeyAccess; // src/crypto: reaches the mbedTLS context
}

class PublicKey {
public:
    // DER SubjectPublicKeyInfo. CryptoError::Malformed, or CryptoError::Unsupported
    // for another algorithm, curve or RSA size.
    static ErrorOr<PublicKey> from_spki_der(ByteView der);
    // PEM "PUBLIC KEY" (exactly one key block).
    static ErrorOr<PublicKey> from_spki_pem(std::string_view pem);
    // DER or PEM, told apart by looks_like_pem().
    static ErrorOr<PublicKey> parse(ByteView der_or_pem);
    // SEC1 §2.3.3 uncompressed point 04‖X‖Y on the curve of `type`
    // (EcP256 or EcP384); the point is checked to be on the curve.
    static ErrorOr<PublicKey> from_ec_point(KeyType type, ByteView point);

    KeyType type() const;
    bool is_ec() const { return type() != KeyType::Rsa; }
    // 256, 384, or the RSA modulus size.
    std::size_t bits() const;

    ByteView spki_der() const;
    std::string spki_pem() const;
    // 04‖X‖Y (65 or 97 bytes); CryptoError::WrongKeyType for RSA.
    ErrorOr<Bytes> ec_point() const;

    // Same key: equal SPKI DER.
    bool operator==(PublicKey const& other) const;

    // ECDSA over `message` hashed with the curve's hash (see above), and
    // over a precomputed digest of exactly that hash's length. `signature`
    // must be raw r‖s of the curve's size; r and s must lie in [1, n-1].
    // CryptoError::BadSignature when it does not verify, CryptoError::Malformed for a
    // wrong length, CryptoError::WrongKeyType for an RSA key.
    ErrorOr<void> verify(ByteView message, ByteView signature) const;
    ErrorOr<void> verify_digest(ByteView digest, ByteView signature) const;

    // RSAES-OAEP (RFC 8017 §7.1) with SHA-256 and MGF1-SHA256, empty label.
    // The plaintext may hold at most bits/8 - 66 bytes (190 for RSA-2048):
    // CryptoError::TooLarge past that, CryptoError::WrongKeyType for an EC key.
    ErrorOr<Bytes> rsa_oaep_encrypt(ByteView plaintext) const;

    struct Impl;

private:
    friend struct detail::KeyAccess;
    explicit PublicKey(std::shared_ptr<Impl> impl) : m_impl(std::move(impl)) { }
    std::shared_ptr<Impl> m_impl;
};

// A prepared ECDSA nonce (FIPS 186-5 §6.4.1's per-message secret k, with
// r = x(k·G) mod n): the scalar multiplication, about nine tenths of a
// signature's cost, done before the message is known. k comes uniformly from
// [1, n-1] out of the per-thread DRBG. Move-only; k is zeroised when the
// value is destroyed, and PrivateKey::sign_digest consumes it, so that no k
// ever signs twice. Any key on the same curve may use it.
class EcdsaNonce {
public:
    ~EcdsaNonce();
    EcdsaNonce(EcdsaNonce&&) noexcept;
    EcdsaNonce& operator=(EcdsaNonce&&) noexcept;
    EcdsaNonce(EcdsaNonce const&) = delete;
    EcdsaNonce& operator=(EcdsaNonce const&) = delete;

    KeyType type() const { return m_type; }
    // False once a signature used it (or it was moved from).
    bool usable() const { return m_impl != nullptr; }

    struct Impl;

private:
    friend class PrivateKey;
    EcdsaNonce(KeyType type, std::unique_ptr<Impl> impl);
    KeyType m_type;
    std::unique_ptr<Impl> m_impl;
};

class PrivateKey {
public:
    // A new key from the per-thread DRBG. For KeyType::Rsa: 2048 bits.
    static ErrorOr<PrivateKey> generate(KeyType type);
    // RSA with `bits` in [MIN_RSA_BITS, MAX_RSA_BITS], e = 65537.
    static ErrorOr<PrivateKey> generate_rsa(std::size_t bits);
    // PEM (SEC1, PKCS#1 or unencrypted PKCS#8; an "EC PARAMETERS" block
    // before the key, as `openssl ecparam -genkey` writes, is skipped) or
    // DER of the same. Encrypted keys are refused (CryptoError::Unsupported).
    static ErrorOr<PrivateKey> parse(ByteView der_or_pem);

    ~PrivateKey();
    PrivateKey(PrivateKey&&) noexcept;
    PrivateKey& operator=(PrivateKey&&) noexcept;
    PrivateKey(PrivateKey const&) = delete;
    PrivateKey& operator=(PrivateKey const&) = delete;

    KeyType type() const;
    bool is_ec() const { return type() != KeyType::Rsa; }
    std::size_t bits() const;

    PublicKey public_key() const;
    // True when `key` is this key's public half (equal SPKI DER). For a
    // certificate: key.matches(certificate.public_key()).
    bool matches(PublicKey const& key) const;

    // SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY". Callers write it
    // with mode 0600 (sys::AtomicFile).
    ErrorOr<SecretBytes> to_pem() const;
    ErrorOr<SecretBytes> to_der() const;

    // ECDSA, raw r‖s (see above). sign_digest takes a digest of exactly the
    // curve's hash length (32 for P-256, 48 for P-384), else CryptoError::Malformed.
    // s is always the low one (s <= n/2): (r, n - s) would verify too, and
    // qtbox's signatures (attestation documents, EIF signatures) have one
    // encoding each. Verification accepts either s, as real signers vary.
    ErrorOr<Bytes> sign(ByteView message) const;
    ErrorOr<Bytes> sign_digest(ByteView digest) const;
    // The same signature with a prepared nonce instead of RFC 6979's, which
    // it consumes (nonce.usable() is false afterwards, whatever the result).
    // CryptoError::WrongKeyType for a nonce of another curve,
    // CryptoError::Malformed for one already used.
    ErrorOr<Bytes> sign_digest(ByteView digest, EcdsaNonce& nonce) const;
    ErrorOr<Bytes> sign(ByteView message, EcdsaNonce& nonce) const;
    // A nonce for this key's curve, computed on this key's group (whose
    // table of multiples of the base point mbedTLS keeps after the first use).
    ErrorOr<EcdsaNonce> prepare_nonce() const;

    // RSAES-OAEP-SHA256 decryption (see PublicKey::rsa_oaep_encrypt).
    // CryptoError::DecryptionFailed for a ciphertext not made for this key.
    ErrorOr<SecretBytes> rsa_oaep_decrypt(ByteView ciphertext) const;

    // ECDH (SEC1 §3.3.1): the x-coordinate of d·Q_peer, 32 bytes for P-256 and
    // 48 for P-384, big-endian. The peer must be on the same curve
    // (CryptoError::WrongKeyType). An ephemeral key for it is just
    // PrivateKey::generate(KeyType::EcP384).
    ErrorOr<SecretBytes> ecdh(PublicKey const& peer) const;

    struct Impl;

private:
    friend struct detail::KeyAccess;
    explicit PrivateKey(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

} // namespace qtbox::crypto
