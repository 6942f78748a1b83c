#include <qtbox/crypto/hash.hpp>

#include <algorithm>

#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>

namespace qtbox::crypto {

// mbedTLS 2.28: the *_ret functions return non-zero only on hardware
// accelerator failures, which the software implementation never has.

struct Sha256::Context {
    Context() { mbedtls_sha256_init(&context); mbedtls_sha256_starts_ret(&context, 0); }
    ~Context() { mbedtls_sha256_free(&context); }
    mbedtls_sha256_context context;
};

Sha256::Sha256() : m_context(std::make_unique<Context>()) { }
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(ByteView data)
{
    mbedtls_sha256_update_ret(&m_context->context, data.data(), data.size());
}

Sha256Digest Sha256::finish()
{
    Sha256Digest digest {};
    mbedtls_sha256_finish_ret(&m_context->context, digest.data());
    return digest;
}

struct Sha384::Context {
    Context() { mbedtls_sha512_init(&context); mbedtls_sha512_starts_ret(&context, 1); }
    ~Context() { mbedtls_sha512_free(&context); }
    mbedtls_sha512_context context;
};

Sha384::Sha384() : m_context(std::make_unique<Context>()) { }
Sha384::~Sha384() = default;
Sha384::Sha384(Sha384&&) noexcept = default;
Sha384& Sha384::operator=(Sha384&&) noexcept = default;

void Sha384::update(ByteView data)
{
    mbedtls_sha512_update_ret(&m_context->context, data.data(), data.size());
}

Sha384Digest Sha384::finish()
{
    std::array<std::uint8_t, 64> full {};
    mbedtls_sha512_finish_ret(&m_context->context, full.data());
    Sha384Digest digest {};
    std::copy_n(full.begin(), digest.size(), digest.begin());
    return digest;
}

Sha384Digest Sha384::digest_so_far() const
{
    Context copy;
    mbedtls_sha512_clone(&copy.context, &m_context->context);
    std::array<std::uint8_t, 64> full {};
    mbedtls_sha512_finish_ret(&copy.context, full.data());
    Sha384Digest digest {};
    std::copy_n(full.begin(), digest.size(), digest.begin());
    return digest;
}

Sha256Digest sha256(ByteView data)
{
    Sha256 hasher;
    hasher.update(data);
    return hasher.finish();
}

Sha384Digest sha384(ByteView data)
{
    Sha384 hasher;
    hasher.update(data);
    return hasher.finish();
}

} // namespace qtbox::crypto
