// Helpers shared by the crypto unit tests: fixture files (tests/crypto/data,
// see its README) and throw-away certificate chains. must and unhex come from
// tests/support/.
#pragma once

#include "../support/hex.hpp"
#include "../support/must.hpp"

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/x509.hpp>
#include <qtbox/crypto/x509_write.hpp>

#include <doctest/doctest.h>

#include <string>

namespace qtbox::test {

inline Bytes read_data(std::string const& name)
{
    auto bytes = sys::read_file(std::string(QTBOX_CRYPTO_TEST_DATA) + "/" + name, 1 << 20);
    REQUIRE_MESSAGE(!bytes.is_error(), name);
    return bytes.release_value();
}

// The crypto::CryptoError an expected error carries.
template<typename T>
crypto::CryptoError expect_failure(ErrorOr<T> result)
{
    REQUIRE(result.is_error());
    return result.error().template code_as<crypto::CryptoError>().value();
}

inline UnixMillis at(std::string_view rfc3339) { return must(parse_rfc3339(rfc3339)); }

// 2026-01-01T00:00:00Z
constexpr UnixMillis T0 = 1767225600000;
constexpr std::int64_t HOUR = 3600 * 1000;
constexpr std::int64_t DAY = 24 * HOUR;

inline crypto::CertificateProfile ca_profile(std::string subject, std::optional<unsigned> path_length = std::nullopt)
{
    crypto::CertificateProfile profile;
    profile.subject = std::move(subject);
    profile.not_before = T0;
    profile.not_after = T0 + 365 * DAY;
    profile.is_ca = true;
    profile.path_length = path_length;
    profile.key_usage = crypto::key_usage::KEY_CERT_SIGN | crypto::key_usage::CRL_SIGN;
    return profile;
}

inline crypto::CertificateProfile leaf_profile(std::string subject)
{
    crypto::CertificateProfile profile;
    profile.subject = std::move(subject);
    profile.not_before = T0 + HOUR;
    profile.not_after = T0 + 4 * HOUR;
    profile.key_usage = crypto::key_usage::DIGITAL_SIGNATURE;
    return profile;
}

struct Issued {
    crypto::PrivateKey key;
    crypto::Certificate certificate;
};

inline Issued self_signed(crypto::CertificateProfile const& profile, crypto::KeyType type = crypto::KeyType::EcP384)
{
    auto key = must(crypto::PrivateKey::generate(type));
    auto certificate = must(crypto::self_sign_certificate(profile, key));
    return { std::move(key), std::move(certificate) };
}

inline Issued issued_by(Issued const& issuer, crypto::CertificateProfile const& profile,
    crypto::KeyType type = crypto::KeyType::EcP384)
{
    auto key = must(crypto::PrivateKey::generate(type));
    auto certificate = must(crypto::issue_certificate(profile, key.public_key(), issuer.certificate, issuer.key));
    return { std::move(key), std::move(certificate) };
}

} // namespace qtbox::test
