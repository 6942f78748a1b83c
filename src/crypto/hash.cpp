#include <qtbox/crypto/hash.hpp>

#include "sha512_blocks.hpp"

#include <algorithm>
#include <cstring>

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

// mbedtls_sha512_update_ret's bookkeeping (the byte count in total[], a
// partial block in buffer[]), with the blocks compressed by
// detail::sha512_blocks() (AVX2 where the CPU has it), so that mbedTLS's
// finish and clone work on the context as they would on their own.
void Sha384::update(ByteView data)
{
    auto& context = m_context->context;
    std::uint8_t const* input = data.data();
    std::size_t length = data.size();
    if (length == 0)
        return;
    constexpr std::size_t BLOCK = 128;
    std::size_t left = static_cast<std::size_t>(context.total[0] % BLOCK);
    context.total[0] += length;
    if (context.total[0] < length)
        ++context.total[1];
    auto compress = detail::sha512_blocks();
    if (left != 0) {
        std::size_t fill = BLOCK - left;
        if (length < fill) {
            std::memcpy(context.buffer + left, input, length);
            return;
        }
        std::memcpy(context.buffer + left, input, fill);
        compress(context.state, context.buffer, 1);
        input += fill;
        length -= fill;
    }
    if (std::size_t whole = length / BLOCK; whole != 0) {
        compress(context.state, input, whole);
        input += whole * BLOCK;
        length -= whole * BLOCK;
    }
    if (length != 0)
        std::memcpy(context.buffer, input, length);
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
