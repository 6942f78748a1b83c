// AES-256-GCM (NIST SP 800-38D) with a 12-byte IV and a 16-byte tag.
// The ciphertext format is ciphertext ‖ tag (the tag appended, as in
// RFC 5116 §5.1), which is what the seal envelope's "ct" carries (docs/FORMATS.md §9).
// An IV must never repeat under one key: callers draw it from random_bytes
// or use each key once.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/crypto/secret.hpp>

#include <cstddef>

namespace qtbox::crypto {

constexpr std::size_t AES256_GCM_KEY_SIZE = 32;
constexpr std::size_t AES256_GCM_IV_SIZE = 12;
constexpr std::size_t AES256_GCM_TAG_SIZE = 16;
// Far below GCM's own limit (2^39 - 256 bits); bigger inputs are refused
// with CryptoError::TooLarge rather than buffered.
constexpr std::size_t AES256_GCM_MAX_INPUT = 1024 * 1024 * 1024;

// Returns ciphertext ‖ tag (plaintext.size() + 16 bytes). CryptoError::Malformed
// for a key that is not 32 bytes or an IV that is not 12.
ErrorOr<Bytes> aes256_gcm_encrypt(ByteView key, ByteView iv, ByteView plaintext, ByteView associated_data = {});
// Takes ciphertext ‖ tag. CryptoError::DecryptionFailed when the tag does not
// match (wrong key, IV, associated data, or modified ciphertext); no
// plaintext is returned then. CryptoError::Malformed when shorter than the tag.
ErrorOr<SecretBytes> aes256_gcm_decrypt(ByteView key, ByteView iv, ByteView ciphertext_and_tag, ByteView associated_data = {});

} // namespace qtbox::crypto
