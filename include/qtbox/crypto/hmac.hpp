// HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869), used by the seal
// envelope (docs/FORMATS.md §9: ECDH + HKDF-SHA256 + AES-256-GCM).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/crypto/hash.hpp>
#include <qtbox/crypto/secret.hpp>

#include <cstddef>

namespace qtbox::crypto {

// RFC 5869 §2.3: L ≤ 255 · HashLen.
constexpr std::size_t HKDF_SHA256_MAX_OUTPUT = 255 * 32;

Sha256Digest hmac_sha256(ByteView key, ByteView data);

// RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM); an empty salt means HashLen zeros.
SecretBytes hkdf_sha256_extract(ByteView salt, ByteView input_key_material);
// RFC 5869 §2.3: OKM of `length` bytes from a PRK of at least 32 bytes.
// Fails with CryptoError::TooLarge when length > HKDF_SHA256_MAX_OUTPUT and
// CryptoError::Malformed when the PRK is shorter than 32 bytes.
ErrorOr<SecretBytes> hkdf_sha256_expand(ByteView pseudorandom_key, ByteView info, std::size_t length);
// Extract then expand.
ErrorOr<SecretBytes> hkdf_sha256(ByteView salt, ByteView input_key_material, ByteView info, std::size_t length);

} // namespace qtbox::crypto
