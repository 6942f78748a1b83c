#include <qtbox/crypto/x509.hpp>

#include "support.hpp"
#include "verify_cache.hpp"

#include <qtbox/crypto/pem.hpp>

#include <fmt/format.h>

#include <mbedtls/asn1.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/rsa.h>
#include <mbedtls/x509.h>

#include <algorithm>
#include <array>
#include <vector>

namespace qtbox::crypto {

static_assert(key_usage::DIGITAL_SIGNATURE == MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
static_assert(key_usage::NON_REPUDIATION == MBEDTLS_X509_KU_NON_REPUDIATION);
static_assert(key_usage::KEY_ENCIPHERMENT == MBEDTLS_X509_KU_KEY_ENCIPHERMENT);
static_assert(key_usage::DATA_ENCIPHERMENT == MBEDTLS_X509_KU_DATA_ENCIPHERMENT);
static_assert(key_usage::KEY_AGREEMENT == MBEDTLS_X509_KU_KEY_AGREEMENT);
static_assert(key_usage::KEY_CERT_SIGN == MBEDTLS_X509_KU_KEY_CERT_SIGN);
static_assert(key_usage::CRL_SIGN == MBEDTLS_X509_KU_CRL_SIGN);
static_assert(key_usage::ENCIPHER_ONLY == MBEDTLS_X509_KU_ENCIPHER_ONLY);
static_assert(key_usage::DECIPHER_ONLY == MBEDTLS_X509_KU_DECIPHER_ONLY);

std::string key_usage_names(std::uint16_t bits)
{
    struct Name {
        std::uint16_t bit;
        std::string_view name;
    };
    // RFC 5280 §4.2.1.3 order.
    static constexpr Name NAMES[] = {
        { key_usage::DIGITAL_SIGNATURE, "digitalSignature" },
        { key_usage::NON_REPUDIATION, "nonRepudiation" },
        { key_usage::KEY_ENCIPHERMENT, "keyEncipherment" },
        { key_usage::DATA_ENCIPHERMENT, "dataEncipherment" },
        { key_usage::KEY_AGREEMENT, "keyAgreement" },
        { key_usage::KEY_CERT_SIGN, "keyCertSign" },
        { key_usage::CRL_SIGN, "cRLSign" },
        { key_usage::ENCIPHER_ONLY, "encipherOnly" },
        { key_usage::DECIPHER_ONLY, "decipherOnly" },
    };
    std::string text;
    for (auto const& name : NAMES) {
        if ((bits & name.bit) == 0)
            continue;
        if (!text.empty())
            text += ", ";
        text += name.name;
    }
    return text;
}

namespace {

UnixMillis to_unix_millis(mbedtls_x509_time const& time)
{
    std::int64_t days = days_from_civil(time.year, static_cast<unsigned>(time.mon), static_cast<unsigned>(time.day));
    return ((days * 24 + time.hour) * 60 + time.min) * 60000LL + time.sec * 1000LL;
}

// mbedtls_x509_dn_gets with a buffer that grows until the name fits.
std::string name_text(mbedtls_x509_name const& name)
{
    for (std::size_t size = 512; size <= 64 * 1024; size *= 4) {
        std::string buffer(size, '\0');
        int length = mbedtls_x509_dn_gets(buffer.data(), buffer.size(), &name);
        if (length >= 0) {
            buffer.resize(static_cast<std::size_t>(length));
            return buffer;
        }
    }
    return "(name too long)";
}

} // namespace

ErrorOr<Certificate> Certificate::parse_der(ByteView der)
{
    if (der.size() > MAX_CERTIFICATE_SIZE)
        return failure_error(CryptoError::TooLarge, fmt::format("certificate of {} bytes, at most {}", der.size(), MAX_CERTIFICATE_SIZE));
    auto impl = std::make_shared<Impl>();
    int result = mbedtls_x509_crt_parse_der(&impl->certificate, der.data(), der.size());
    if (result != 0) {
        bool unsupported = result == MBEDTLS_ERR_X509_UNKNOWN_SIG_ALG || result == MBEDTLS_ERR_X509_FEATURE_UNAVAILABLE
            || result == MBEDTLS_ERR_PK_UNKNOWN_PK_ALG || result == MBEDTLS_ERR_X509_UNKNOWN_VERSION;
        return mbedtls_error(unsupported ? CryptoError::Unsupported : CryptoError::Malformed, "parse certificate", result);
    }
    if (impl->certificate.raw.len != der.size())
        return failure_error(CryptoError::Malformed, "parse certificate: trailing bytes after the certificate");
    auto const& raw_key = impl->certificate.pk_raw;
    auto key = PublicKey::from_spki_der({ raw_key.p, raw_key.len });
    if (key.is_error())
        return std::move(key.release_error()).context("certificate public key");
    impl->public_key = key.release_value();
    return Certificate(std::move(impl));
}

ErrorOr<Certificate> Certificate::parse(ByteView der_or_pem)
{
    if (!looks_like_pem(der_or_pem))
        return parse_der(der_or_pem);
    auto certificates = TRY(parse_pem_bundle(as_chars(der_or_pem)));
    if (certificates.size() != 1)
        return failure_error(CryptoError::Malformed, fmt::format("expected one certificate, found {}", certificates.size()));
    return std::move(certificates.front());
}

ErrorOr<std::vector<Certificate>> Certificate::parse_pem_bundle(std::string_view pem)
{
    auto blocks = TRY(pem_decode(pem));
    if (blocks.empty())
        return failure_error(CryptoError::Malformed, "no PEM \"CERTIFICATE\" block");
    if (blocks.size() > MAX_BUNDLE_CERTIFICATES)
        return failure_error(CryptoError::TooLarge, fmt::format("more than {} certificates", MAX_BUNDLE_CERTIFICATES));
    std::vector<Certificate> certificates;
    certificates.reserve(blocks.size());
    for (std::size_t index = 0; index < blocks.size(); ++index) {
        if (blocks[index].label != "CERTIFICATE")
            return failure_error(CryptoError::Malformed,
                fmt::format("PEM block {}: \"{}\" where a \"CERTIFICATE\" was expected", index + 1, blocks[index].label));
        auto certificate = parse_der(blocks[index].der);
        if (certificate.is_error())
            return std::move(certificate.release_error()).context(fmt::format("PEM certificate {}", index + 1));
        certificates.push_back(certificate.release_value());
    }
    return certificates;
}

ByteView Certificate::der() const
{
    auto const& raw = m_impl->certificate.raw;
    return { raw.p, raw.len };
}

std::string Certificate::pem() const { return pem_encode("CERTIFICATE", der()); }
Sha256Digest Certificate::sha256_fingerprint() const { return sha256(der()); }
std::string Certificate::subject() const { return name_text(m_impl->certificate.subject); }
std::string Certificate::issuer() const { return name_text(m_impl->certificate.issuer); }

std::optional<std::string> Certificate::subject_common_name() const
{
    for (auto const* name = &m_impl->certificate.subject; name != nullptr; name = name->next) {
        if (name->oid.p == nullptr || MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &name->oid) != 0)
            continue;
        std::string value(reinterpret_cast<char const*>(name->val.p), name->val.len);
        // As mbedtls_x509_dn_gets does: never hand control characters to a terminal.
        for (auto& c : value) {
            if (static_cast<unsigned char>(c) < 32 || c == 127)
                c = '?';
        }
        return value;
    }
    return std::nullopt;
}

ByteView Certificate::subject_der() const
{
    auto const& raw = m_impl->certificate.subject_raw;
    return { raw.p, raw.len };
}

ByteView Certificate::issuer_der() const
{
    auto const& raw = m_impl->certificate.issuer_raw;
    return { raw.p, raw.len };
}

bool Certificate::is_self_issued() const
{
    auto subject = subject_der();
    auto issuer = issuer_der();
    return std::equal(subject.begin(), subject.end(), issuer.begin(), issuer.end());
}

int Certificate::version() const { return m_impl->certificate.version; }

Bytes Certificate::serial() const
{
    auto const& serial = m_impl->certificate.serial;
    return Bytes(serial.p, serial.p + serial.len);
}

std::string Certificate::serial_hex() const { return hex_encode(serial()); }
UnixMillis Certificate::not_before() const { return to_unix_millis(m_impl->certificate.valid_from); }
UnixMillis Certificate::not_after() const { return to_unix_millis(m_impl->certificate.valid_to); }
bool Certificate::is_valid_at(UnixMillis at) const { return not_before() <= at && at <= not_after(); }

bool Certificate::is_ca() const
{
    auto const& certificate = m_impl->certificate;
    return (certificate.ext_types & MBEDTLS_X509_EXT_BASIC_CONSTRAINTS) != 0 && certificate.ca_istrue != 0;
}

std::optional<unsigned> Certificate::max_path_length() const
{
    auto const& certificate = m_impl->certificate;
    // mbedTLS stores pathLenConstraint + 1, and 0 when absent.
    if ((certificate.ext_types & MBEDTLS_X509_EXT_BASIC_CONSTRAINTS) == 0 || certificate.max_pathlen <= 0)
        return std::nullopt;
    return static_cast<unsigned>(certificate.max_pathlen - 1);
}

std::optional<std::uint16_t> Certificate::key_usage() const
{
    auto const& certificate = m_impl->certificate;
    if ((certificate.ext_types & MBEDTLS_X509_EXT_KEY_USAGE) == 0)
        return std::nullopt;
    return static_cast<std::uint16_t>(certificate.key_usage);
}

std::vector<std::string> Certificate::extended_key_usage() const
{
    std::vector<std::string> oids;
    auto const& certificate = m_impl->certificate;
    if ((certificate.ext_types & MBEDTLS_X509_EXT_EXTENDED_KEY_USAGE) == 0)
        return oids;
    for (auto const* entry = &certificate.ext_key_usage; entry != nullptr; entry = entry->next) {
        if (entry->buf.p == nullptr)
            continue;
        char buffer[128] {};
        int length = mbedtls_oid_get_numeric_string(buffer, sizeof buffer, &entry->buf);
        oids.emplace_back(length > 0 ? std::string(buffer, static_cast<std::size_t>(length)) : std::string("(invalid OID)"));
    }
    return oids;
}

PublicKey Certificate::public_key() const { return *m_impl->public_key; }

std::string Certificate::signature_algorithm() const
{
    char const* description = nullptr;
    if (mbedtls_oid_get_sig_alg_desc(&m_impl->certificate.sig_oid, &description) != 0 || description == nullptr)
        return "unknown";
    return description;
}

std::string Certificate::describe() const
{
    std::string buffer(16 * 1024, '\0');
    int length = mbedtls_x509_crt_info(buffer.data(), buffer.size(), "", &m_impl->certificate);
    if (length < 0)
        return "(description too long)";
    buffer.resize(static_cast<std::size_t>(length));
    return buffer;
}

namespace {

// The signature hashes accepted on certificates: SHA-1, MD5 and SHA-224 are not.
bool acceptable_hash(mbedtls_md_type_t type)
{
    return type == MBEDTLS_MD_SHA256 || type == MBEDTLS_MD_SHA384 || type == MBEDTLS_MD_SHA512;
}

// The signature schemes accepted: ECDSA (RFC 5758 §3.2) and RSA PKCS#1
// v1.5 (RFC 4055 §5); RSASSA-PSS is not.
bool acceptable_scheme(mbedtls_pk_type_t type)
{
    return type == MBEDTLS_PK_ECDSA || type == MBEDTLS_PK_RSA;
}

// A DER ECDSA-Sig-Value (RFC 3279 §2.2.3), read as mbedtls_ecdsa_read_signature
// reads it (so exactly the same signatures are accepted as before), then
// verified on the curve's shared group.
ErrorOr<void> verify_ecdsa_der(PublicKey const& key, ByteView digest, mbedtls_x509_buf const& signature)
{
    auto bad = [] { return failure_error(CryptoError::BadSignature, "malformed ECDSA signature"); };
    unsigned char* cursor = signature.p;
    unsigned char const* end = signature.p + signature.len;
    std::size_t length = 0;
    if (mbedtls_asn1_get_tag(&cursor, end, &length, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0
        || length != static_cast<std::size_t>(end - cursor))
        return bad();
    Mpi r, s;
    if (mbedtls_asn1_get_mpi(&cursor, end, &r.value) != 0 || mbedtls_asn1_get_mpi(&cursor, end, &s.value) != 0 || cursor != end)
        return bad();
    return ecdsa_verify(key, digest, r.value, s.value);
}

} // namespace

ErrorOr<void> Certificate::verify_signed_by(Certificate const& issuer) const
{
    auto child_issuer = issuer_der();
    auto parent_subject = issuer.subject_der();
    if (!std::equal(child_issuer.begin(), child_issuer.end(), parent_subject.begin(), parent_subject.end()))
        return failure_error(CryptoError::BadSignature, fmt::format("issuer \"{}\" is not \"{}\"", this->issuer(), issuer.subject()));
    auto const& certificate = m_impl->certificate;
    if (!acceptable_hash(certificate.sig_md) || !acceptable_scheme(certificate.sig_pk))
        return failure_error(CryptoError::BadSignature, fmt::format("signature algorithm {} is not accepted", signature_algorithm()));
    auto const* md = mbedtls_md_info_from_type(certificate.sig_md);
    std::array<unsigned char, MBEDTLS_MD_MAX_SIZE> digest {};
    if (md == nullptr || mbedtls_md(md, certificate.tbs.p, certificate.tbs.len, digest.data()) != 0)
        return failure_error(CryptoError::Internal, "cannot hash the certificate");
    ByteView digest_view(digest.data(), mbedtls_md_get_size(md));
    auto const& key = *issuer.m_impl->public_key;
    auto mismatch = [&] {
        return failure_error(CryptoError::BadSignature, fmt::format("signature does not verify with the key of \"{}\"", issuer.subject()));
    };
    if (certificate.sig_pk == MBEDTLS_PK_ECDSA) {
        if (!key.is_ec())
            return mismatch();
        auto verified = verify_ecdsa_der(key, digest_view, certificate.sig);
        if (verified.is_error() && verified.error().is(CryptoError::BadSignature))
            return mismatch();
        return verified;
    }
    if (key.type() != KeyType::Rsa)
        return mismatch();
    auto& rsa_key = detail::KeyAccess::impl(key);
    std::lock_guard lock(rsa_key.mutex);
    auto& rsa = rsa_context(rsa_key.context);
    if (certificate.sig.len != mbedtls_rsa_get_len(&rsa))
        return mismatch();
    // PKCS#1 v1.5 explicitly: mbedtls_pk_verify would follow the context's
    // padding setting, which rsa_oaep_encrypt leaves at v2.1 (PSS).
    int result = mbedtls_rsa_rsassa_pkcs1_v15_verify(&rsa, nullptr, nullptr, MBEDTLS_RSA_PUBLIC, certificate.sig_md,
        static_cast<unsigned>(digest_view.size()), digest_view.data(), certificate.sig.p);
    if (result != 0)
        return mismatch();
    return {};
}

bool Certificate::operator==(Certificate const& other) const
{
    auto a = der();
    auto b = other.der();
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

} // namespace qtbox::crypto
