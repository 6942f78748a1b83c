#include "support.hpp"

#include <fmt/format.h>

#include <mbedtls/error.h>

namespace qtbox::crypto {

std::string_view failure_name(CryptoError failure)
{
    switch (failure) {
    case CryptoError::Malformed: return "malformed input";
    case CryptoError::Unsupported: return "unsupported algorithm or key";
    case CryptoError::WrongKeyType: return "wrong key type";
    case CryptoError::BadSignature: return "bad signature";
    case CryptoError::DecryptionFailed: return "decryption failed";
    case CryptoError::TooLarge: return "input too large";
    case CryptoError::RandomSource: return "random source failed";
    case CryptoError::Internal: return "internal error";
    }
    return "unknown failure";
}

Error mbedtls_error(CryptoError failure, std::string_view what, int code)
{
    char description[160] {};
    mbedtls_strerror(code, description, sizeof description);
    return Error::from_code(failure, fmt::format("{}: {} (-0x{:04x})", what, description, static_cast<unsigned>(-code)));
}

Error failure_error(CryptoError failure, std::string message)
{
    return Error::from_code(failure, std::move(message));
}

} // namespace qtbox::crypto
