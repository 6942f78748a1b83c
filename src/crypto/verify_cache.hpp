// Private to src/crypto: the process-wide ECDSA verification cache. Every
// ECDSA verification (PublicKey::verify, certificate signatures) runs on
// one shared group per curve whose table of multiples of the base point is
// computed once, on first use, and only read afterwards.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/crypto/keys.hpp>

#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>

namespace qtbox::crypto {

// The process-wide, read-only group of an EC key type, its table of
// multiples of G computed on first use (verify_cache.cpp explains why
// sharing it between threads is safe). Only for verification: nothing may
// pass it to an mbedTLS function that writes to the group. CryptoError::WrongKeyType for
// RSA, CryptoError::Internal if the precomputation failed.
ErrorOr<mbedtls_ecp_group*> verification_group(KeyType type);

// ECDSA verification of r, s over `digest` with an EC key, on its curve's
// verification_group. `digest` may have any length (SEC1 §4.1.4 truncates
// it to the order's bit length). CryptoError::BadSignature when it does not
// verify (r or s outside [1, n-1] included), CryptoError::WrongKeyType for RSA.
ErrorOr<void> ecdsa_verify(PublicKey const& key, ByteView digest, mbedtls_mpi const& r, mbedtls_mpi const& s);

} // namespace qtbox::crypto
