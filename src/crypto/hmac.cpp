#include <qtbox/crypto/hmac.hpp>

#include "support.hpp"

#include <fmt/format.h>

#include <mbedtls/hkdf.h>
#include <mbedtls/md.h>

namespace qtbox::crypto {

namespace {

mbedtls_md_info_t const* sha256_info()
{
    return mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
}

constexpr std::size_t SHA256_SIZE = 32;

} // namespace

Sha256Digest hmac_sha256(ByteView key, ByteView data)
{
    Sha256Digest mac {};
    // Fails only for a null md_info, which SHA-256 never is.
    mbedtls_md_hmac(sha256_info(), key.data(), key.size(), data.data(), data.size(), mac.data());
    return mac;
}

SecretBytes hkdf_sha256_extract(ByteView salt, ByteView input_key_material)
{
    SecretBytes prk(SHA256_SIZE);
    // RFC 5869 §2.2: mbedTLS substitutes HashLen zeros for an empty salt.
    mbedtls_hkdf_extract(sha256_info(), salt.data(), salt.size(), input_key_material.data(),
        input_key_material.size(), prk.data());
    return prk;
}

ErrorOr<SecretBytes> hkdf_sha256_expand(ByteView pseudorandom_key, ByteView info, std::size_t length)
{
    if (length > HKDF_SHA256_MAX_OUTPUT)
        return failure_error(CryptoError::TooLarge,
            fmt::format("HKDF-SHA256: {} bytes requested, at most {} (RFC 5869 §2.3)", length, HKDF_SHA256_MAX_OUTPUT));
    if (pseudorandom_key.size() < SHA256_SIZE)
        return failure_error(CryptoError::Malformed,
            fmt::format("HKDF-SHA256: the pseudorandom key has {} bytes, at least {} needed", pseudorandom_key.size(), SHA256_SIZE));
    SecretBytes output(length);
    if (length == 0)
        return output;
    int result = mbedtls_hkdf_expand(sha256_info(), pseudorandom_key.data(), pseudorandom_key.size(), info.data(),
        info.size(), output.data(), output.size());
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "HKDF-SHA256 expand", result);
    return output;
}

ErrorOr<SecretBytes> hkdf_sha256(ByteView salt, ByteView input_key_material, ByteView info, std::size_t length)
{
    auto prk = hkdf_sha256_extract(salt, input_key_material);
    return hkdf_sha256_expand(prk, info, length);
}

} // namespace qtbox::crypto
