// ECDSA signature encodings: the raw fixed-size r‖s that COSE and qtbox's
// keys use (keys.hpp), and the DER ECDSA-Sig-Value (RFC 3279 §2.2.3) that
// X.509 and openssl use.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstddef>

namespace qtbox::crypto {

// Conversions between raw r‖s and DER. `half_size` is 32 (P-256) or 48
// (P-384). from_der refuses trailing bytes, negative or oversized integers.
ErrorOr<Bytes> ecdsa_signature_to_der(ByteView raw);
ErrorOr<Bytes> ecdsa_signature_from_der(ByteView der, std::size_t half_size);

} // namespace qtbox::crypto
