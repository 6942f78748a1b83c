#include "support.hpp"

#include <fmt/format.h>

#include <mbedtls/error.h>

namespace qtbox::crypto {

std::string_view failure_name(Failure failure)
{
    switch (failure) {
    case Failure::Malformed: return "malformed input";
    case Failure::Unsupported: return "unsupported algorithm or key";
    case Failure::WrongKeyType: return "wrong key type";
    case Failure::BadSignature: return "bad signature";
    case Failure::DecryptionFailed: return "decryption failed";
    case Failure::TooLarge: return "input too large";
    case Failure::RandomSource: return "random source failed";
    case Failure::Internal: return "internal error";
    }
    return "unknown failure";
}

Error mbedtls_error(Failure failure, std::string_view what, int code)
{
    char description[160] {};
    mbedtls_strerror(code, description, sizeof description);
    return Error::from_code(failure, fmt::format("{}: {} (-0x{:04x})", what, description, static_cast<unsigned>(-code)));
}

Error failure_error(Failure failure, std::string message)
{
    return Error::from_code(failure, std::move(message));
}

} // namespace qtbox::crypto
