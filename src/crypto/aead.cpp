#include <qtbox/crypto/aead.hpp>

#include "support.hpp"

#include <fmt/format.h>

#include <mbedtls/gcm.h>

namespace qtbox::crypto {

namespace {

struct Gcm {
    Gcm() { mbedtls_gcm_init(&context); }
    ~Gcm() { mbedtls_gcm_free(&context); } // zeroises the key schedule
    Gcm(Gcm const&) = delete;
    Gcm& operator=(Gcm const&) = delete;
    mbedtls_gcm_context context;
};

ErrorOr<void> check_parameters(ByteView key, ByteView iv, std::size_t input_size)
{
    if (key.size() != AES256_GCM_KEY_SIZE)
        return failure_error(CryptoError::Malformed, fmt::format("AES-256-GCM: key of {} bytes, expected {}", key.size(), AES256_GCM_KEY_SIZE));
    if (iv.size() != AES256_GCM_IV_SIZE)
        return failure_error(CryptoError::Malformed, fmt::format("AES-256-GCM: IV of {} bytes, expected {}", iv.size(), AES256_GCM_IV_SIZE));
    if (input_size > AES256_GCM_MAX_INPUT)
        return failure_error(CryptoError::TooLarge, fmt::format("AES-256-GCM: {} bytes of input, at most {}", input_size, AES256_GCM_MAX_INPUT));
    return {};
}

ErrorOr<void> set_key(Gcm& gcm, ByteView key)
{
    int result = mbedtls_gcm_setkey(&gcm.context, MBEDTLS_CIPHER_ID_AES, key.data(), 8 * AES256_GCM_KEY_SIZE);
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "AES-256-GCM key setup", result);
    return {};
}

} // namespace

ErrorOr<Bytes> aes256_gcm_encrypt(ByteView key, ByteView iv, ByteView plaintext, ByteView associated_data)
{
    TRY(check_parameters(key, iv, plaintext.size()));
    Gcm gcm;
    TRY(set_key(gcm, key));
    Bytes output(plaintext.size() + AES256_GCM_TAG_SIZE);
    int result = mbedtls_gcm_crypt_and_tag(&gcm.context, MBEDTLS_GCM_ENCRYPT, plaintext.size(), iv.data(), iv.size(),
        associated_data.data(), associated_data.size(), plaintext.data(), output.data(), AES256_GCM_TAG_SIZE,
        output.data() + plaintext.size());
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "AES-256-GCM encrypt", result);
    return output;
}

ErrorOr<SecretBytes> aes256_gcm_decrypt(ByteView key, ByteView iv, ByteView ciphertext_and_tag, ByteView associated_data)
{
    TRY(check_parameters(key, iv, ciphertext_and_tag.size()));
    if (ciphertext_and_tag.size() < AES256_GCM_TAG_SIZE)
        return failure_error(CryptoError::Malformed,
            fmt::format("AES-256-GCM: {} bytes of ciphertext, shorter than the {}-byte tag", ciphertext_and_tag.size(), AES256_GCM_TAG_SIZE));
    std::size_t length = ciphertext_and_tag.size() - AES256_GCM_TAG_SIZE;
    Gcm gcm;
    TRY(set_key(gcm, key));
    SecretBytes plaintext(length);
    // mbedTLS compares the tag in constant time and wipes the output on a mismatch.
    int result = mbedtls_gcm_auth_decrypt(&gcm.context, length, iv.data(), iv.size(), associated_data.data(),
        associated_data.size(), ciphertext_and_tag.data() + length, AES256_GCM_TAG_SIZE, ciphertext_and_tag.data(),
        plaintext.data());
    if (result == MBEDTLS_ERR_GCM_AUTH_FAILED)
        return failure_error(CryptoError::DecryptionFailed, "AES-256-GCM: authentication tag mismatch (wrong key or modified data)");
    if (result != 0)
        return mbedtls_error(CryptoError::Internal, "AES-256-GCM decrypt", result);
    return plaintext;
}

} // namespace qtbox::crypto
