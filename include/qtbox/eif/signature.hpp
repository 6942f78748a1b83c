// The EIF signature section (docs/FORMATS.md §3; docs/PLATFORMS.md §N2.7):
//
//   [ { "signing_certificate": bstr (the certificate PEM),
//       "signature":           bstr (COSE_Sign1, untagged, ES384) } ]
//
// The COSE payload is the CBOR map {"register_index": 0, "register_value":
// bstr(PCR0)}. qtbox writes byte strings, as docs/FORMATS.md §3 says. Nitro's Rust
// code serialises these Vec<u8> fields without serde_bytes, i.e. as CBOR
// arrays of small unsigned integers; the reader accepts both forms for
// each of the three byte fields, so EIFs from either tool can be checked.
#pragma once

#include <qtbox/base/time.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/x509.hpp>
#include <qtbox/eif/pcr.hpp>

#include <string>

namespace qtbox::eif {

struct SigningIdentity {
    crypto::PrivateKey key;
    crypto::Certificate certificate;
};

// Reads a PEM/DER EC P-384 private key and its certificate; refuses a key
// that is not the certificate's (EifError::KeyMismatch) or not P-384.
ErrorOr<SigningIdentity> load_signing_identity(std::string const& key_path, std::string const& certificate_path);

// The whole signature section for an image whose PCR0 is `pcr0`.
ErrorOr<Bytes> make_signature_section(SigningIdentity const& identity, Pcr const& pcr0);

struct SignatureEntry {
    Bytes certificate_pem;
    Bytes cose_sign1;
};
// Structure only (EifError::BadSignature when it is not the layout above).
ErrorOr<SignatureEntry> parse_signature_section(ByteView section);
// The DER of the signing certificate (what PCR8 measures).
ErrorOr<Bytes> signing_certificate_der(ByteView section);

struct SignatureCheck {
    crypto::Certificate certificate;
    Pcr pcr8 {};
    bool signature_valid { false };   // COSE ES384 with the certificate's key
    bool pcr0_matches { false };      // the signed register_value equals PCR0
    bool certificate_valid { false }; // not_before <= at <= not_after
    std::uint64_t register_index { 0 };
};
// Parses and checks everything; a malformed section is an error, a failed
// check is reported in the result.
ErrorOr<SignatureCheck> check_signature(ByteView section, Pcr const& pcr0, UnixMillis at);
// Turns a failed check into an error: EifError::BadSignature,
// EifError::Pcr0Mismatch or EifError::CertificateTime, in that order.
ErrorOr<void> require_valid(SignatureCheck const& check, UnixMillis at);

} // namespace qtbox::eif
