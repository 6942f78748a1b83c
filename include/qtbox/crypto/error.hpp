// The reasons a crypto operation fails, for callers that branch on the cause
// (COSE tells a bad signature from a malformed key; the seal code tells a
// wrong key from a corrupted envelope). Errors returned by src/crypto carry
// one of these as Error::code(); check with error.is(crypto::CryptoError::X).
// Chain verification has its own enum (crypto::ChainError, chain.hpp)
// because attest-verify maps it to distinct exit codes (docs/FORMATS.md §9).
#pragma once

#include <string_view>

namespace qtbox::crypto {

enum class CryptoError {
    // The input is not a well-formed key, certificate, signature, PEM block
    // or ciphertext of the expected shape.
    Malformed = 1,
    // Well formed, but outside what qtbox accepts (a curve other than P-256
    // or P-384, an RSA modulus outside [2048, 8192] bits, an algorithm).
    Unsupported,
    // The key cannot do this (ECDSA with an RSA key, ECDH across curves,
    // an RSA-OAEP plaintext too long for the modulus).
    WrongKeyType,
    // A signature did not verify.
    BadSignature,
    // AES-GCM tag mismatch or RSA-OAEP padding failure: the ciphertext was
    // not made for this key, or it was modified.
    DecryptionFailed,
    // An input exceeds a named limit.
    TooLarge,
    // getrandom or the DRBG failed.
    RandomSource,
    // mbedTLS failed where it should not (out of memory, internal error).
    Internal,
};

// A short phrase naming the failure ("malformed input", "bad signature"...).
std::string_view failure_name(CryptoError failure);

} // namespace qtbox::crypto
