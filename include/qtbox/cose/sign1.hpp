// COSE_Sign1 (RFC 9052 §4.2) with ECDSA: ES256 (P-256, SHA-256) and ES384
// (P-384, SHA-384) (RFC 9053 §2.1).
//
// Overview
// - parse_sign1 takes the encoded message, tagged (18) or untagged, and keeps
//   the protected header bstr byte for byte: Sig_structure (§4.4) is built
//   from those exact bytes, so a header written with non-preferred integer
//   widths (real QingTian documents: a1 1a00000001 3a00000022) verifies.
// - The signature is r‖s with fixed-size halves (RFC 9053 §2.1). RFC 9052
//   order is big-endian halves; QingTian's hypervisor writes each half
//   byte-reversed (docs/PLATFORMS.md §Q5). verify_sign1 accepts either and
//   reports which one verified; sign_sign1 writes either.
// - Used by the attestation document (docs/FORMATS.md §4: untagged, ES384, empty
//   unprotected map) and the EIF signature section (docs/FORMATS.md §3: payload
//   {"register_index": 0, "register_value": PCR0}).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/cbor/encoder.hpp>
#include <qtbox/cbor/value.hpp>
#include <qtbox/crypto/keys.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace qtbox::cose {

// RFC 9052 §4.2: the COSE_Sign1 tag.
constexpr std::uint64_t SIGN1_TAG = 18;
// RFC 9052 §3.1 header labels.
constexpr std::int64_t HEADER_ALGORITHM = 1;
constexpr std::int64_t HEADER_CRITICAL = 2;

// A COSE_Sign1 message larger than this is refused before decoding. The
// biggest user is an attestation document (QingTian: ≤ 0x6000 bytes, docs/FORMATS.md §4);
// EIF signatures are far smaller. Callers may pass a smaller limit.
constexpr std::size_t MAX_SIGN1_SIZE = 64 * 1024;
// Nesting inside the headers (Sign1 array, header maps, their values).
constexpr std::size_t MAX_SIGN1_DEPTH = 16;

// RFC 9053 §2.1 algorithm identifiers.
enum class Algorithm : std::int64_t {
    ES256 = -7,
    ES384 = -35,
};
std::string_view algorithm_name(Algorithm algorithm); // "ES256", "ES384"

enum class SignatureOrder {
    Rfc9052,  // r‖s, each half big-endian (RFC 9053 §2.1)
    QingTian, // r‖s, each half byte-reversed (little-endian)
};
// "rfc9052" / "qingtian": the spelling of vmm --signature-order and of
// attest-verify's "signature_order" claim.
std::string_view signature_order_name(SignatureOrder order);

// Error::code() of COSE failures.
enum class CoseError {
    Malformed = 1,        // not a COSE_Sign1, bad header, wrong signature size
    UnsupportedAlgorithm, // alg missing, not ES256/ES384, or a critical header
    KeyMismatch,          // the key's curve is not the algorithm's
    BadSignature,         // the signature verifies in neither byte order
};

struct Sign1 {
    Bytes protected_header;  // the bstr's content, verbatim (may be empty)
    cbor::Value unprotected; // a map
    Bytes payload;           // detached payloads (nil) are not supported
    Bytes signature;
    bool tagged { false };   // the message carried tag 18
};

// Decodes a COSE_Sign1: [bstr protected, map unprotected, bstr payload,
// bstr signature], optionally inside tag 18 (no other tag). Everything
// else is CoseError::Malformed: wrong shape or types, trailing bytes, more
// than max_size bytes, CBOR errors (the message says which and where).
ErrorOr<Sign1> parse_sign1(ByteView encoded, std::size_t max_size = MAX_SIGN1_SIZE);

// The algorithm from the protected header (RFC 9052 §3.1: label 1 in the
// protected bucket). CoseError::Malformed if the protected bytes are not one
// CBOR map, or alg also appears unprotected; CoseError::UnsupportedAlgorithm
// if alg is absent or not ES256/ES384, or a crit (label 2) header is
// present (no extension header is understood here, §3.1).
ErrorOr<Algorithm> sign1_algorithm(Sign1 const& message);

// RFC 9052 §4.4: ["Signature1", protected, external_aad, payload].
Bytes sig_structure(ByteView protected_header, ByteView payload, ByteView external_aad = {});

// The signature with each half byte-reversed: converts between the two
// orders (the operation is its own inverse). `signature` has an even size.
Bytes reverse_signature_halves(ByteView signature);

// Verifies with `key` and reports the order that verified (RFC 9052 order
// is tried first). CoseError::KeyMismatch when the key is not the algorithm's
// curve (ES256 ↔ P-256, ES384 ↔ P-384), CoseError::Malformed for a signature
// of the wrong size, CoseError::BadSignature when neither order verifies.
ErrorOr<SignatureOrder> verify_sign1(Sign1 const& message, crypto::PublicKey const& key,
    ByteView external_aad = {});
// The same, accepting the signature in `only` this byte order (one
// verification): BadSignature when it verifies only in the other.
ErrorOr<SignatureOrder> verify_sign1_in_order(Sign1 const& message, crypto::PublicKey const& key, SignatureOrder only,
    ByteView external_aad = {});

// The protected header {1: alg}, preferred serialisation (a1 01 38 22 for
// ES384), or with both integers forced to `width` (QingTian writes Byte4).
Bytes algorithm_header(Algorithm algorithm, cbor::Width width = cbor::Width::Preferred);

struct SignOptions {
    SignatureOrder order { SignatureOrder::Rfc9052 };
    bool tagged { false };
    // Verbatim protected header bytes; empty means algorithm_header() of
    // the key's algorithm. Must name that algorithm (checked).
    Bytes protected_header;
    // Unprotected header map; null means {}.
    cbor::Value unprotected;
    ByteView external_aad;
    // A prepared nonce of the key's curve to sign with (crypto::EcdsaNonce,
    // consumed); null or already used: RFC 6979, as PrivateKey::sign.
    crypto::EcdsaNonce* nonce { nullptr };
};

// Signs `payload` with an EC key (P-256 → ES256, P-384 → ES384) and returns
// the encoded COSE_Sign1. CoseError::KeyMismatch for an RSA key or a
// protected header naming another algorithm.
ErrorOr<Bytes> sign_sign1(ByteView payload, crypto::PrivateKey const& key, SignOptions const& options = {});

// Encodes a Sign1 (its protected bytes verbatim).
Bytes encode_sign1(Sign1 const& message);

} // namespace qtbox::cose
