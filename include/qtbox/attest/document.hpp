// The attestation document (docs/FORMATS.md §4; docs/PLATFORMS.md §N4): model, parse
// and the QingTian-profile encoding.
//
// Overview
// - A document is a COSE_Sign1 (cose/sign1.hpp), ES384, whose payload is a
//   CBOR map with the keys module_id, timestamp, digest, pcrs, certificate,
//   cabundle, user_data, nonce and public_key.
// - Two profiles share that shape. QingTian (docs/FORMATS.md §4, docs/PLATFORMS.md
//   §Q5) writes a definite map in a fixed order, 48-byte PCRs 0..15 always,
//   and empty byte strings for absent optionals. Nitro (docs/PLATFORMS.md
//   §N4.2) writes an indefinite map in another order and null for absent
//   optionals. parse_document accepts either profile in any key order,
//   definite or indefinite, tagged or untagged, and tells them apart by the
//   module_id: Nitro module ids are an EC2 instance id followed by an
//   enclave id ("i-<hex>-enc<hex>", docs/PLATFORMS.md §N4.2); every other document is
//   held to the QingTian profile's rules.
// - Parsing is the "syntax and limits" step of verification (docs/FORMATS.md §9): every
//   field's type and size is checked against the profile's limits, every
//   certificate is parsed, duplicate keys, unknown keys and trailing data
//   are refused. Chain, signature and policy checks are in verify.hpp.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/cose/sign1.hpp>
#include <qtbox/crypto/x509.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::attest {

enum class Profile {
    QingTian,
    Nitro,
};
std::string_view profile_name(Profile profile); // "qingtian", "nitro"

// Limits (docs/FORMATS.md §4 "QingTian's"; docs/PLATFORMS.md §N4.2 for Nitro).
// Whole COSE document, QingTian: QTSM's 0x6000.
constexpr std::size_t QINGTIAN_MAX_DOCUMENT_SIZE = 0x6000;
// Whole COSE document, Nitro: the payload may be 16 KiB (docs/PLATFORMS.md §N4.1), plus
// the headers and signature.
constexpr std::size_t NITRO_MAX_DOCUMENT_SIZE = 0x4200;
// Nothing larger is even decoded.
constexpr std::size_t MAX_DOCUMENT_SIZE = QINGTIAN_MAX_DOCUMENT_SIZE;
constexpr std::size_t QINGTIAN_MAX_USER_DATA = 512;
constexpr std::size_t QINGTIAN_MAX_NONCE = 512;
constexpr std::size_t QINGTIAN_MAX_PUBLIC_KEY = 1024;
constexpr std::size_t NITRO_MAX_OPTIONAL_FIELD = 1024; // user_data, nonce, public_key each
// Certificates: QingTian's QTSM_CERTIFICATE_MAX_SIZE is 4096; Nitro's CDDL says 1024.
constexpr std::size_t QINGTIAN_MAX_CERTIFICATE = 4096;
constexpr std::size_t NITRO_MAX_CERTIFICATE = 1024;
// cabundle entries: root + intermediates; with the leaf the chain stays
// within crypto::MAX_CHAIN_LENGTH.
constexpr std::size_t MAX_CABUNDLE = 7;
constexpr std::size_t MAX_MODULE_ID = 128; // QTSM's describe struct holds module_id[128]
constexpr std::size_t PCR_COUNT = 32;      // docs/FORMATS.md §2
constexpr std::size_t PCR_SIZE = 48;       // SHA-384
// The PCRs a QingTian document always carries (docs/FORMATS.md §4: 0..15 always).
constexpr std::size_t QINGTIAN_SYSTEM_PCRS = 16;

struct Pcr {
    unsigned index { 0 };
    Bytes value;
    friend bool operator==(Pcr const&, Pcr const&) = default;
};

struct Document {
    Profile profile { Profile::QingTian };
    std::string module_id;
    std::uint64_t timestamp { 0 }; // milliseconds since the epoch
    std::string digest;            // "SHA384"
    std::vector<Pcr> pcrs;         // ascending index
    Bytes certificate;             // DER of the leaf
    std::vector<Bytes> cabundle;   // DER, root first, the leaf's issuer last
    // nullopt: null (Nitro). QingTian writes an empty byte string instead.
    std::optional<Bytes> user_data;
    std::optional<Bytes> nonce;
    std::optional<Bytes> public_key;

    Bytes const* pcr(unsigned index) const;
};

// The error kinds of parse_document: everything is a malformed document
// (attest-verify exit 10), told apart for tests and messages.
enum class ParseError {
    TooLarge = 1,    // over the document size limit of its profile
    Envelope,        // not a COSE_Sign1, not ES384, or the signature is not 96 bytes
    Payload,         // the payload is not valid CBOR or not a map
    MissingField,    // a required key is absent
    UnknownField,    // a key that is not one of the nine
    FieldType,       // a field of the wrong type (or null where null is not allowed)
    FieldValue,      // a field out of its range or size limit
    Certificate,     // certificate or a cabundle entry does not parse
};

struct ParsedDocument {
    cose::Sign1 envelope;
    Document document;
    crypto::Certificate leaf;                 // parsed `certificate`
    std::vector<crypto::Certificate> bundle;  // parsed `cabundle`, same order
};

// Raw COSE, or the same as base64 text (standard or URL-safe alphabet,
// whitespace ignored): input made only of base64 characters and ASCII
// whitespace is base64, anything else is taken as raw CBOR.
ErrorOr<Bytes> decode_input(ByteView input);

// The "syntax and limits" step (docs/FORMATS.md §9). Errors carry a ParseError code.
ErrorOr<ParsedDocument> parse_document(ByteView cose);

// The QingTian payload, exactly as docs/FORMATS.md §4 lays it out: a definite map of
// nine entries in the docs/FORMATS.md §4 order, timestamp in the 8-byte encoding, PCRs in
// ascending order, absent optionals as empty byte strings. Used by the
// QTSM (src/qtsm) and by tests.
Bytes encode_qingtian_payload(Document const& document);

} // namespace qtbox::attest
