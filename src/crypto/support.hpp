// Internal to src/crypto: the glue every wrapper shares (error translation,
// the per-thread DRBG as an mbedTLS f_rng, access to the contexts behind the
// public types). Never included from outside src/crypto.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/x509.hpp>

#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/x509_crt.h>

#include <cstddef>
#include <mutex>
#include <optional>
#include <string_view>

namespace qtbox::crypto {

// "<what>: <mbedTLS's description> (-0x1234)" with `failure` as the code.
Error mbedtls_error(CryptoError failure, std::string_view what, int code);
Error failure_error(CryptoError failure, std::string message);

// mbedTLS f_rng drawing from the calling thread's Drbg; p_rng is unused.
int random_callback(void* unused, unsigned char* output, std::size_t size);

struct PublicKey::Impl {
    Impl() { mbedtls_pk_init(&context); }
    ~Impl() { mbedtls_pk_free(&context); }
    Impl(Impl const&) = delete;
    Impl& operator=(Impl const&) = delete;

    mbedtls_pk_context context;
    KeyType type { KeyType::EcP256 };
    std::size_t bits { 0 };
    Bytes spki_der;
    // Serialises the operations that write to `context` (RSA padding
    // settings, mbedTLS's caches); ECDSA verification only reads the point
    // Q and takes no lock (see verification_group).
    std::mutex mutex;
};

struct PrivateKey::Impl {
    Impl() { mbedtls_pk_init(&context); }
    // mbedtls_pk_free zeroises the private values (mbedtls_mpi_free).
    ~Impl() { mbedtls_pk_free(&context); }
    Impl(Impl const&) = delete;
    Impl& operator=(Impl const&) = delete;

    mbedtls_pk_context context;
    KeyType type { KeyType::EcP256 };
    std::size_t bits { 0 };
    std::optional<PublicKey> public_key;
    std::mutex mutex;
};

struct Certificate::Impl {
    Impl() { mbedtls_x509_crt_init(&certificate); }
    ~Impl() { mbedtls_x509_crt_free(&certificate); }
    Impl(Impl const&) = delete;
    Impl& operator=(Impl const&) = delete;

    // Read-only once parsed: nothing in src/crypto operates on its pk
    // context (public_key has its own), so sharing it between threads is safe.
    mbedtls_x509_crt certificate;
    std::optional<PublicKey> public_key;
};

namespace detail {
struct KeyAccess {
    static PublicKey::Impl& impl(PublicKey const& key) { return *key.m_impl; }
    static PrivateKey::Impl& impl(PrivateKey const& key) { return *key.m_impl; }
    static Certificate::Impl const& impl(Certificate const& certificate) { return *certificate.m_impl; }
    static PublicKey make_public_key(std::shared_ptr<PublicKey::Impl> impl) { return PublicKey(std::move(impl)); }
    static PrivateKey make_private_key(std::unique_ptr<PrivateKey::Impl> impl) { return PrivateKey(std::move(impl)); }
    static Certificate make_certificate(std::shared_ptr<Certificate::Impl const> impl) { return Certificate(std::move(impl)); }
};
} // namespace detail

// The EC or RSA context inside a pk context whose type the caller has
// checked (KeyType); mbedtls_pk_ec/_rsa would re-check and may return null.
inline mbedtls_ecp_keypair& ec_keypair(mbedtls_pk_context const& context)
{
    return *static_cast<mbedtls_ecp_keypair*>(context.pk_ctx);
}
inline mbedtls_rsa_context& rsa_context(mbedtls_pk_context const& context)
{
    return *static_cast<mbedtls_rsa_context*>(context.pk_ctx);
}

// Classifies a parsed pk context: P-256, P-384 or RSA within the size
// bounds, else CryptoError::Unsupported.
ErrorOr<KeyType> classify_key(mbedtls_pk_context const& context, std::size_t& bits);

// The curve of an EC key type (P-256 or P-384).
inline mbedtls_ecp_group_id curve_of(KeyType type)
{
    return type == KeyType::EcP256 ? MBEDTLS_ECP_DP_SECP256R1 : MBEDTLS_ECP_DP_SECP384R1;
}

// CryptoError::WrongKeyType: "<what>: needs an EC P-256 or P-384 key, not RSA".
Error not_ec(std::string_view what);

} // namespace qtbox::crypto

namespace qtbox::crypto {

// RAII for mbedtls_mpi; mbedtls_mpi_free zeroises the limbs.
struct Mpi {
    Mpi() { mbedtls_mpi_init(&value); }
    ~Mpi() { mbedtls_mpi_free(&value); }
    Mpi(Mpi const&) = delete;
    Mpi& operator=(Mpi const&) = delete;
    mbedtls_mpi value;
};

} // namespace qtbox::crypto
