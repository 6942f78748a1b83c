// X.509 certificates (RFC 5280), parsed by mbedTLS into an immutable object.
// Copies share the parsed certificate; a Certificate is safe to read from
// many threads. Chain verification is in chain.hpp, issuing in x509_write.hpp.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/crypto/hash.hpp>
#include <qtbox/crypto/keys.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::crypto {

// One certificate's DER: QingTian's QTSM_CERTIFICATE_MAX_SIZE is 4096; real
// CA certificates stay well under 16 KiB.
constexpr std::size_t MAX_CERTIFICATE_SIZE = 16 * 1024;
// Certificates in one PEM bundle.
constexpr std::size_t MAX_BUNDLE_CERTIFICATES = 64;

// keyUsage bits (RFC 5280 §4.2.1.3), numbered as in the DER bit string:
// digitalSignature is bit 0, the most significant bit of the first byte.
namespace key_usage {
constexpr std::uint16_t DIGITAL_SIGNATURE = 0x0080;
constexpr std::uint16_t NON_REPUDIATION = 0x0040;
constexpr std::uint16_t KEY_ENCIPHERMENT = 0x0020;
constexpr std::uint16_t DATA_ENCIPHERMENT = 0x0010;
constexpr std::uint16_t KEY_AGREEMENT = 0x0008;
constexpr std::uint16_t KEY_CERT_SIGN = 0x0004;
constexpr std::uint16_t CRL_SIGN = 0x0002;
constexpr std::uint16_t ENCIPHER_ONLY = 0x0001;
constexpr std::uint16_t DECIPHER_ONLY = 0x8000;
} // namespace key_usage

// "digitalSignature, keyCertSign" (RFC 5280 names, in bit order); "" for 0.
std::string key_usage_names(std::uint16_t bits);

class Certificate {
public:
    // Exactly one DER certificate, no trailing bytes. CryptoError::Malformed, or
    // CryptoError::TooLarge past MAX_CERTIFICATE_SIZE. The public key must be one
    // PublicKey accepts (CryptoError::Unsupported otherwise).
    static ErrorOr<Certificate> parse_der(ByteView der);
    // DER, or PEM holding exactly one CERTIFICATE block.
    static ErrorOr<Certificate> parse(ByteView der_or_pem);
    // Every CERTIFICATE block of a PEM text, in order (at least one, at
    // most MAX_BUNDLE_CERTIFICATES); other block labels are refused.
    static ErrorOr<std::vector<Certificate>> parse_pem_bundle(std::string_view pem);

    ByteView der() const;
    std::string pem() const;
    Sha256Digest sha256_fingerprint() const;

    // RFC 4514-like text as mbedTLS prints it, in DER order: "CN=qtbox-root, O=qtbox".
    std::string subject() const;
    std::string issuer() const;
    // The first commonName of the subject, if any.
    std::optional<std::string> subject_common_name() const;
    // Raw DER of the Name, for exact comparisons.
    ByteView subject_der() const;
    ByteView issuer_der() const;
    // Subject and issuer names are byte-identical (RFC 5280 §6.1 "self-issued").
    bool is_self_issued() const;

    // 1, 2 or 3.
    int version() const;
    // The serial number's content octets, big-endian, as encoded.
    Bytes serial() const;
    std::string serial_hex() const;

    UnixMillis not_before() const;
    UnixMillis not_after() const;
    // not_before ≤ at ≤ not_after (RFC 5280 §4.1.2.5: both ends inclusive).
    bool is_valid_at(UnixMillis at) const;

    // basicConstraints cA (false when the extension is absent).
    bool is_ca() const;
    // basicConstraints pathLenConstraint; nullopt when absent (unlimited).
    std::optional<unsigned> max_path_length() const;
    // keyUsage bits (key_usage::*); nullopt when the extension is absent.
    std::optional<std::uint16_t> key_usage() const;
    // Extended key usage OIDs in dotted form ("1.3.6.1.5.5.7.3.3").
    std::vector<std::string> extended_key_usage() const;

    PublicKey public_key() const;
    // "ECDSA with SHA384", "RSA with SHA-256", ... (mbedTLS's description).
    std::string signature_algorithm() const;
    // mbedTLS's multi-line description of every field, for `show` commands.
    std::string describe() const;

    // This certificate's issuer name equals `issuer`'s subject (byte for
    // byte) and its signature verifies with `issuer`'s key, under an
    // accepted algorithm: ECDSA or RSA PKCS#1 v1.5 with SHA-256/384/512
    // (not SHA-1, SHA-224, MD5 or RSASSA-PSS). CryptoError::BadSignature
    // otherwise. One signature verification; no other check (time,
    // constraints): that is verify_chain's job.
    ErrorOr<void> verify_signed_by(Certificate const& issuer) const;

    bool operator==(Certificate const& other) const;

    struct Impl;

private:
    friend struct detail::KeyAccess;
    explicit Certificate(std::shared_ptr<Impl const> impl) : m_impl(std::move(impl)) { }
    std::shared_ptr<Impl const> m_impl;
};

} // namespace qtbox::crypto
