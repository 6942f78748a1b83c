// Certificate chain verification at a given instant (RFC 5280 §6.1), as the
// attestation document needs it: the document is verified at --at or at
// its own time, not only "now" (docs/FORMATS.md §9).
//
// The chain is given in order: leaf ← intermediates[0] ← … ← intermediates[n-1]
// ← one of `roots`; no reordering, no skipped certificates. If the last
// intermediate is itself one of `roots` (a whole cabundle passed as is), it
// is dropped and the trusted copy is used. The checks, in this order, and
// the first failure is reported:
//  1. length: at most MAX_CHAIN_LENGTH certificates (TooLong);
//  2. links (Untrusted), one signature verification each: each
//     certificate's issuer name equals the next one's subject byte for byte,
//     its signature algorithm is in the profile below, and its signature
//     verifies with the next one's key (Certificate::verify_signed_by); the
//     top one is issued by a trusted root, tried only among the roots whose
//     subject is its issuer name; and no certificate below the top is
//     itself issued by a trusted root (the chain must stop there);
//  3. constraints (ConstraintViolated): every issuer, the root included, is
//     a CA (basicConstraints cA) whose keyUsage includes keyCertSign, and
//     whose pathLenConstraint, when present, is at least the number of
//     intermediates below it (self-issued ones included); the leaf is not a
//     CA and its keyUsage includes digitalSignature;
//  4. time: every certificate, the root included, is valid at `at`
//     (Expired / NotYetValid; both ends inclusive).
// The algorithm profile, for every certificate of the path:
//  - public keys: EC P-256 or P-384, or RSA of MIN_RSA_BITS..MAX_RSA_BITS
//    bits; anything else is refused when the certificate is parsed
//    (Certificate::parse_der, so verify_chain_der reports Malformed);
//  - signatures (the root's self-signature is not checked: the root is
//    trusted as given): ECDSA or RSA PKCS#1 v1.5 with SHA-256, SHA-384 or
//    SHA-512; SHA-1, SHA-224, MD5 and RSASSA-PSS are Untrusted.
// An unknown extension marked critical is refused at parse time too
// (mbedtls_x509_crt_parse_der, RFC 5280 §4.2).
// mbedtls_x509_crt_verify_with_profile is not run as well: with this profile
// its rules are the same as these or looser (names compared case-
// insensitively, a missing keyUsage allowing any use, v1 trusted roots
// exempt from basicConstraints, self-issued intermediates not counted
// against pathLenConstraint, path building that jumps to a trusted root as
// early as it can, which the last rule of step 2 refuses instead); it was
// never given a CRL. Where it picked among several certificates with the
// same name by the real clock, qtbox follows the order given.
// attest-verify maps Untrusted/ConstraintViolated/TooLong to exit 11 and
// Expired/NotYetValid to 13 (docs/FORMATS.md §9).
//
// A LinkCache lets a process that verifies many chains from one fleet
// (attest-verify --batch) check each distinct link's signature once. What a
// cached link stands for is step 2 for that pair of certificates: the
// issuer's name, the algorithm profile and the signature, all functions of
// the two certificates' DER alone; so the key is the exact DER of both, and
// a chain differing in any byte of either certificate is a miss and is
// verified in full. Steps 1, 3 and 4 (length, constraints, validity at
// `at`) never use the cache: they run for every chain.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/crypto/x509.hpp>

#include <cstddef>
#include <mutex>
#include <set>
#include <span>
#include <string>

namespace qtbox::crypto {

// Certificates in a chain, leaf and root included. QingTian's deepest chain
// is root → region → grid → instance → leaf (5; QTSM_CERTIFICATE_MAX_DEPTH 4
// plus the leaf); 8 leaves room without allowing absurd inputs.
constexpr std::size_t MAX_CHAIN_LENGTH = 8;
// Trusted roots offered at once.
constexpr std::size_t MAX_TRUSTED_ROOTS = 64;

enum class ChainError {
    // A certificate did not parse (verify_chain_der only), or no root given.
    Malformed = 1,
    // More than MAX_CHAIN_LENGTH certificates, or more than MAX_TRUSTED_ROOTS.
    TooLong,
    // A signature does not verify, an issuer name does not match, the chain
    // does not end at a trusted root, or an algorithm is not acceptable.
    Untrusted,
    // basicConstraints, pathLenConstraint or keyUsage violated.
    ConstraintViolated,
    // Some certificate's notAfter is before `at`.
    Expired,
    // Some certificate's notBefore is after `at`.
    NotYetValid,
};

std::string_view chain_failure_name(ChainError failure);

// Links (subject signed by issuer) already verified in this process. Only
// successes are kept, at most MAX_ENTRIES of them (then nothing more is
// added; every other link is verified as if there were no cache). Safe to
// share between threads.
class LinkCache {
public:
    static constexpr std::size_t MAX_ENTRIES = 4096;

    // Certificate::verify_signed_by, or the remembered success of the same
    // call for the same DER of `subject` and `issuer`.
    ErrorOr<void> verify_signed_by(Certificate const& subject, Certificate const& issuer);

    std::size_t size() const;
    // How many verify_signed_by calls were answered from the cache.
    std::size_t hits() const;

private:
    static std::string key(Certificate const& subject, Certificate const& issuer);

    mutable std::mutex m_mutex;
    std::set<std::string, std::less<>> m_verified;
    std::size_t m_hits { 0 };
};

// Errors carry a ChainError code (error.is(ChainError::Expired)) and a
// message naming the certificate ("certificate 1 of 3 (CN=...): expired at ...").
// With a `cache`, the links' signatures are checked through it.
ErrorOr<void> verify_chain(Certificate const& leaf, std::span<Certificate const> intermediates,
    std::span<Certificate const> roots, UnixMillis at, LinkCache* cache = nullptr);

// The same from DER, reporting unparsable certificates as ChainError::Malformed.
ErrorOr<void> verify_chain_der(ByteView leaf, std::span<Bytes const> intermediates,
    std::span<Bytes const> roots, UnixMillis at);

} // namespace qtbox::crypto
