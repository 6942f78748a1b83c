#include <qtbox/crypto/x509_write.hpp>

#include "support.hpp"

#include <qtbox/crypto/random.hpp>

#include <fmt/format.h>

#include <mbedtls/platform.h>
#include <mbedtls/x509_crt.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace qtbox::crypto {

namespace {

// Big enough for any certificate qtbox issues (a few hundred bytes) and
// far below MAX_CERTIFICATE_SIZE.
constexpr std::size_t CERTIFICATE_BUFFER_SIZE = 8 * 1024;
constexpr std::size_t RANDOM_SERIAL_SIZE = 16;
constexpr std::size_t MAX_SUBJECT_SIZE = 1024;
// 9999-12-31T23:59:59Z: the last instant a GeneralizedTime can hold.
constexpr UnixMillis LAST_X509_TIME = 253402300799000LL;

struct WriteContext {
    WriteContext() { mbedtls_x509write_crt_init(&context); }
    ~WriteContext() { mbedtls_x509write_crt_free(&context); }
    WriteContext(WriteContext const&) = delete;
    WriteContext& operator=(WriteContext const&) = delete;
    mbedtls_x509write_cert context;
};

UnixMillis floor_to_second(UnixMillis instant)
{
    return instant - ((instant % 1000) + 1000) % 1000;
}

// mbedTLS takes "YYYYMMDDhhmmss"; format_rfc3339 gives "YYYY-MM-DDThh:mm:ssZ".
std::string x509_time_text(UnixMillis instant)
{
    std::string text;
    for (char c : format_rfc3339(floor_to_second(instant))) {
        if (c >= '0' && c <= '9')
            text += c;
    }
    return text;
}

ErrorOr<void> check_profile(CertificateProfile const& profile)
{
    auto bad = [](std::string message) { return failure_error(CryptoError::Malformed, "certificate profile: " + message); };
    if (profile.subject.empty() || profile.subject.size() > MAX_SUBJECT_SIZE)
        return bad(fmt::format("the subject must have 1 to {} characters", MAX_SUBJECT_SIZE));
    if (profile.serial.size() > MAX_SERIAL_SIZE)
        return bad(fmt::format("serial of {} bytes, at most {} (RFC 5280 §4.1.2.2)", profile.serial.size(), MAX_SERIAL_SIZE));
    if (!profile.serial.empty() && (profile.serial[0] & 0x80) != 0)
        return bad("the serial must be positive (top bit clear)");
    if (!profile.serial.empty() && std::all_of(profile.serial.begin(), profile.serial.end(), [](auto byte) { return byte == 0; }))
        return bad("the serial must not be zero");
    if (profile.not_before < 0 || profile.not_after > LAST_X509_TIME)
        return bad("validity outside 1970..9999");
    if (floor_to_second(profile.not_after) < floor_to_second(profile.not_before))
        return bad("not_after is before not_before");
    if (profile.path_length.has_value() && !profile.is_ca)
        return bad("a path length needs a CA");
    if (profile.path_length.has_value() && *profile.path_length > 127)
        return bad("path length above 127");
    if (profile.key_usage == 0)
        return bad("no key usage");
    return {};
}

// The issuer name is copied from the issuer certificate's parsed subject,
// attribute by attribute with its original string type, so that the new
// certificate's issuer is byte-identical to the issuer's subject (what
// chain building compares). mbedTLS writes this list from its head
// backwards, so it is built in reverse order.
ErrorOr<void> copy_issuer_name(mbedtls_x509write_cert& context, mbedtls_x509_name const& subject)
{
    auto duplicate = [](mbedtls_asn1_buf& target, mbedtls_asn1_buf const& source) {
        target.tag = source.tag;
        target.len = source.len;
        target.p = static_cast<unsigned char*>(mbedtls_calloc(1, source.len == 0 ? 1 : source.len));
        if (target.p != nullptr && source.len > 0)
            std::memcpy(target.p, source.p, source.len);
        return target.p != nullptr;
    };
    for (auto const* name = &subject; name != nullptr; name = name->next) {
        if (name->oid.p == nullptr)
            continue;
        if (name->next_merged != 0)
            return failure_error(CryptoError::Unsupported, "issuer names with multi-valued RDNs are not supported");
        auto* node = static_cast<mbedtls_asn1_named_data*>(mbedtls_calloc(1, sizeof(mbedtls_asn1_named_data)));
        if (node == nullptr)
            return failure_error(CryptoError::Internal, "copy issuer name: out of memory");
        // Linked first so that mbedtls_x509write_crt_free releases it whatever happens next.
        node->next = context.issuer;
        context.issuer = node;
        if (!duplicate(node->oid, name->oid) || !duplicate(node->val, name->val))
            return failure_error(CryptoError::Internal, "copy issuer name: out of memory");
    }
    return {};
}

ErrorOr<Certificate> write_certificate(CertificateProfile const& profile, PublicKey const& subject_key,
    Certificate const* issuer, PrivateKey const& issuer_key)
{
    TRY(check_profile(profile));
    if (!issuer_key.is_ec())
        return failure_error(CryptoError::WrongKeyType, "issue certificate: the issuer key must be EC P-256 or P-384 (RSA issuers are not supported)");
    if (issuer != nullptr && !issuer_key.matches(issuer->public_key()))
        return failure_error(CryptoError::WrongKeyType, "issue certificate: the issuer key does not match the issuer certificate");

    WriteContext writer;
    auto& context = writer.context;
    mbedtls_x509write_crt_set_version(&context, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&context, issuer_key.type() == KeyType::EcP256 ? MBEDTLS_MD_SHA256 : MBEDTLS_MD_SHA384);

    Bytes serial = profile.serial;
    if (serial.empty()) {
        serial = TRY(random_bytes(RANDOM_SERIAL_SIZE));
        serial[0] = static_cast<std::uint8_t>((serial[0] & 0x7f) | 0x01); // positive, non-zero, full length
    }
    Mpi serial_number;
    if (mbedtls_mpi_read_binary(&serial_number.value, serial.data(), serial.size()) != 0)
        return failure_error(CryptoError::Internal, "issue certificate: out of memory");
    int result = mbedtls_x509write_crt_set_serial(&context, &serial_number.value);
    if (result != 0)
        return mbedtls_error(CryptoError::Malformed, "issue certificate: serial", result);

    result = mbedtls_x509write_crt_set_validity(&context, x509_time_text(profile.not_before).c_str(), x509_time_text(profile.not_after).c_str());
    if (result != 0)
        return mbedtls_error(CryptoError::Malformed, "issue certificate: validity", result);
    result = mbedtls_x509write_crt_set_subject_name(&context, profile.subject.c_str());
    if (result != 0)
        return mbedtls_error(CryptoError::Malformed, fmt::format("issue certificate: subject \"{}\"", profile.subject), result);
    if (issuer != nullptr) {
        TRY(copy_issuer_name(context, detail::KeyAccess::impl(*issuer).certificate.subject));
    } else {
        result = mbedtls_x509write_crt_set_issuer_name(&context, profile.subject.c_str());
        if (result != 0)
            return mbedtls_error(CryptoError::Malformed, fmt::format("issue certificate: issuer \"{}\"", profile.subject), result);
    }

    // Lock order: the public key, then the private key (never the reverse).
    auto& subject_impl = detail::KeyAccess::impl(subject_key);
    auto& issuer_impl = detail::KeyAccess::impl(issuer_key);
    std::lock_guard subject_lock(subject_impl.mutex);
    std::lock_guard issuer_lock(issuer_impl.mutex);
    mbedtls_x509write_crt_set_subject_key(&context, &subject_impl.context);
    mbedtls_x509write_crt_set_issuer_key(&context, &issuer_impl.context);

    // basicConstraints: mbedTLS marks it critical for CAs (RFC 5280 §4.2.1.9).
    result = mbedtls_x509write_crt_set_basic_constraints(&context, profile.is_ca ? 1 : 0,
        profile.path_length.has_value() ? static_cast<int>(*profile.path_length) : -1);
    if (result == 0)
        result = mbedtls_x509write_crt_set_key_usage(&context, profile.key_usage); // critical
    if (result == 0)
        result = mbedtls_x509write_crt_set_subject_key_identifier(&context);
    if (result == 0 && issuer != nullptr)
        result = mbedtls_x509write_crt_set_authority_key_identifier(&context);
    if (result != 0)
        return mbedtls_error(CryptoError::Malformed, "issue certificate: extensions", result);

    std::array<unsigned char, CERTIFICATE_BUFFER_SIZE> buffer {};
    int length = mbedtls_x509write_crt_der(&context, buffer.data(), buffer.size(), random_callback, nullptr);
    if (length < 0)
        return mbedtls_error(CryptoError::Internal, "issue certificate: sign", length);
    // DER is written at the end of the buffer.
    auto certificate = TRY(Certificate::parse_der(ByteView(buffer).last(static_cast<std::size_t>(length))));
    if (issuer != nullptr && certificate.issuer_der().size() != issuer->subject_der().size())
        return failure_error(CryptoError::Unsupported, "issue certificate: the issuer name could not be copied exactly");
    if (issuer != nullptr && !std::equal(certificate.issuer_der().begin(), certificate.issuer_der().end(), issuer->subject_der().begin()))
        return failure_error(CryptoError::Unsupported, "issue certificate: the issuer name could not be copied exactly");
    return certificate;
}

} // namespace

ErrorOr<Certificate> issue_certificate(CertificateProfile const& profile, PublicKey const& subject_key,
    Certificate const& issuer, PrivateKey const& issuer_key)
{
    return write_certificate(profile, subject_key, &issuer, issuer_key);
}

ErrorOr<Certificate> self_sign_certificate(CertificateProfile const& profile, PrivateKey const& key)
{
    return write_certificate(profile, key.public_key(), nullptr, key);
}

} // namespace qtbox::crypto
