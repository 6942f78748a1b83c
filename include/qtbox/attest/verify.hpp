// Verification of an attestation document, in the order docs/FORMATS.md §9 fixes:
//   1. syntax and limits (parse_document)                          → Malformed (10)
//   2. chain: cabundle[0] is the pinned root (DER or SHA-256
//      fingerprint, compared in constant time), and leaf ←
//      cabundle[n-1] ← … ← cabundle[0] verifies at `at`              → Chain (11), Time (13)
//   3. the COSE_Sign1 signature with the leaf's key, in either byte
//      order (the order that verified is reported)                  → Signature (12)
//   4. freshness: the document's timestamp is at most max_age before
//      `at` and at most MAX_CLOCK_SKEW_MS after it                  → Time (13)
//   5. nonce                                                        → Nonce (15)
//   6. PCRs                                                         → Policy (14)
// The first failure stops the pipeline. Its Error carries the VerifyError as
// code(), whose value is attest-verify's exit status.
#pragma once

#include <qtbox/attest/document.hpp>
#include <qtbox/attest/policy.hpp>
#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/cose/sign1.hpp>
#include <qtbox/crypto/chain.hpp>
#include <qtbox/crypto/hash.hpp>
#include <qtbox/crypto/x509.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qtbox::attest {

// The values are attest-verify's exit statuses (docs/FORMATS.md §9).
enum class VerifyError {
    Malformed = 10,
    Chain = 11,
    Signature = 12,
    Time = 13,
    Policy = 14,
    Nonce = 15,
};

// How far a document's timestamp may lie after `at` when a maximum age is
// checked (clocks of parent, enclave and relying party differ; docs/PLATFORMS.md
// §N3.4 reports seconds of drift per week).
constexpr std::int64_t MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

struct TrustAnchor {
    // Either pinned certificates (cabundle[0] must be one of them, DER
    // equality), or the SHA-256 of cabundle[0]'s DER.
    std::vector<crypto::Certificate> roots;
    std::optional<crypto::Sha256Digest> fingerprint;
};

struct VerifyOptions {
    TrustAnchor anchor;
    UnixMillis at { 0 }; // the instant the chain and freshness are judged at
    Expectations expectations;
    // Links verified by earlier documents (crypto/chain.hpp's LinkCache):
    // a batch of documents from one fleet checks each CA link once. Every
    // certificate's validity at `at` and the CA constraints are still
    // checked for every document.
    crypto::LinkCache* link_cache { nullptr };
    // Accept the COSE signature in this byte order only (a relying party
    // that knows its fleet's signer); either order when unset.
    std::optional<cose::SignatureOrder> signature_order;
};

struct VerifiedDocument {
    Document document;
    crypto::Certificate leaf;
    crypto::Certificate root;
    cose::SignatureOrder signature_order { cose::SignatureOrder::Rfc9052 };
};

ErrorOr<VerifiedDocument> verify_document(ByteView cose, VerifyOptions const& options);

// A debug-mode or raw-mode enclave's document: PCR0 is all zeros (docs/FORMATS.md
// §2: such an enclave has PCR0-15 zero, and a measured image never has a
// zero PCR0). The parent can read a debug enclave's console, and nothing
// it runs was measured. The claims say "debug": true.
bool is_debug_document(Document const& document);

// docs/FORMATS.md §9 --seal: a secret goes only to a document held to at
// least one PCR requirement (without one, any enclave whose chain verifies
// would get it), and never to a debug document unless `allow_debug`.
// VerifyError::Policy otherwise.
ErrorOr<void> check_seal_recipient(VerifiedDocument const& verified, Expectations const& expectations, bool allow_debug);

// The JSON claims attest-verify prints (docs/FORMATS.md §9): profile, module_id,
// timestamp (ms) and time (RFC 3339), digest, pcrs {"N": hex}, public_key,
// user_data and nonce (hex, null when null), certificate {subject, issuer,
// serial, not_before, not_after, sha256}, root_sha256, signature_order,
// debug (is_debug_document).
std::string claims_json(VerifiedDocument const& verified, int indent = 2);

} // namespace qtbox::attest
