// Issuing X.509 v3 certificates (mbedTLS x509write): the local attestation
// PKI (src/pki, docs/FORMATS.md §4) and throw-away chains in tests. The signature uses
// the issuer key's curve hash: ECDSA-SHA256 for P-256, ECDSA-SHA384 for
// P-384 issuers; RSA issuers are not supported. Every certificate gets
// basicConstraints (critical for CAs, RFC 5280 §4.2.1.9), keyUsage
// (critical), subjectKeyIdentifier and, when issued by another certificate,
// authorityKeyIdentifier. The issuer name is copied from the issuer
// certificate byte for byte, as chain verification compares it.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/x509.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace qtbox::crypto {

// Serial numbers are at most 20 octets (RFC 5280 §4.1.2.2).
constexpr std::size_t MAX_SERIAL_SIZE = 20;

struct CertificateProfile {
    // Distinguished name in mbedTLS's syntax, most significant first:
    // "CN=qtbox-root,O=qtbox". Commas inside values are escaped with '\'.
    std::string subject;
    // Big-endian, positive, 1..20 bytes; empty means 16 random bytes
    // (positive, non-zero).
    Bytes serial;
    // Whole seconds are used (X.509 times have no fraction): both ends are
    // rounded down to the second.
    UnixMillis not_before { 0 };
    UnixMillis not_after { 0 };
    // basicConstraints: CA or end entity; path_length only with is_ca.
    bool is_ca { false };
    std::optional<unsigned> path_length;
    // key_usage::* bits.
    std::uint16_t key_usage { 0 };
};

// A certificate for `subject_key`, signed by `issuer_key`, whose certificate
// is `issuer` (its subject becomes the issuer name). Fails with
// CryptoError::Malformed for a bad profile (empty subject, not_after before
// not_before, path_length without is_ca), CryptoError::WrongKeyType when
// issuer_key does not match issuer or is RSA.
ErrorOr<Certificate> issue_certificate(CertificateProfile const& profile, PublicKey const& subject_key,
    Certificate const& issuer, PrivateKey const& issuer_key);

// Self-signed: subject = issuer, signed by `key` itself.
ErrorOr<Certificate> self_sign_certificate(CertificateProfile const& profile, PrivateKey const& key);

} // namespace qtbox::crypto
