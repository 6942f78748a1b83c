#include <qtbox/eif/signature.hpp>

#include <qtbox/base/sys.hpp>
#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/encoder.hpp>
#include <qtbox/cose/sign1.hpp>
#include <qtbox/crypto/pem.hpp>

#include <fmt/format.h>

namespace qtbox::eif {

namespace {

constexpr char const* CERTIFICATE_KEY = "signing_certificate";
constexpr char const* SIGNATURE_KEY = "signature";
constexpr char const* INDEX_KEY = "register_index";
constexpr char const* VALUE_KEY = "register_value";

Error bad(std::string message)
{
    return Error::from_code(EifError::BadSignature, std::move(message));
}

// A byte field as qtbox writes it (bstr) or as serde_cbor writes a Vec<u8>
// (an array of unsigned integers below 256).
ErrorOr<Bytes> byte_field(cbor::Value const& map, char const* key, std::string_view what)
{
    auto const* value = map.find(key);
    if (!value)
        return bad(fmt::format("{}: \"{}\" is missing", what, key));
    if (value->is_bytes())
        return Bytes(value->as_bytes().begin(), value->as_bytes().end());
    if (value->is_array()) {
        Bytes bytes;
        bytes.reserve(value->as_array().size());
        for (auto const& item : value->as_array()) {
            if (!item.is_unsigned() || item.as_unsigned() > 0xff)
                return bad(fmt::format("{}: \"{}\" is an array that is not all bytes", what, key));
            bytes.push_back(static_cast<std::uint8_t>(item.as_unsigned()));
        }
        return bytes;
    }
    return bad(fmt::format("{}: \"{}\" is a {}, not bytes", what, key, cbor::type_name(value->type())));
}

Bytes register_payload(Pcr const& pcr0)
{
    auto payload = cbor::Value::map();
    payload.insert(cbor::Value::text_string(INDEX_KEY), cbor::Value::unsigned_integer(0));
    payload.insert(cbor::Value::text_string(VALUE_KEY), cbor::Value::byte_string(ByteView(pcr0)));
    return cbor::encode(payload);
}

} // namespace

ErrorOr<SigningIdentity> load_signing_identity(std::string const& key_path, std::string const& certificate_path)
{
    auto key_bytes = sys::read_file(key_path, crypto::MAX_KEY_INPUT_SIZE);
    if (key_bytes.is_error())
        return Error::from_code(EifError::MissingInput, fmt::format("private key {}", key_bytes.error().message()));
    auto key = crypto::PrivateKey::parse(key_bytes.value());
    secure_zero(key_bytes.value().data(), key_bytes.value().size());
    if (key.is_error())
        return Error::from_code(EifError::BadInput, fmt::format("private key {}: {}", key_path, key.error().message()));
    if (key.value().type() != crypto::KeyType::EcP384)
        return Error::from_code(EifError::BadInput,
            fmt::format("private key {} is {}; EIF signatures are ES384 and need an EC P-384 key (docs/FORMATS.md §3)", key_path, crypto::key_type_name(key.value().type())));

    auto certificate_bytes = sys::read_file(certificate_path, crypto::MAX_PEM_BLOCK_SIZE);
    if (certificate_bytes.is_error())
        return Error::from_code(EifError::MissingInput, fmt::format("signing certificate {}", certificate_bytes.error().message()));
    auto certificate = crypto::Certificate::parse(certificate_bytes.value());
    if (certificate.is_error())
        return Error::from_code(EifError::BadInput, fmt::format("signing certificate {}: {}", certificate_path, certificate.error().message()));
    if (!key.value().matches(certificate.value().public_key()))
        return Error::from_code(EifError::KeyMismatch,
            fmt::format("the private key {} does not match the certificate {}", key_path, certificate_path));
    return SigningIdentity { key.release_value(), certificate.release_value() };
}

ErrorOr<Bytes> make_signature_section(SigningIdentity const& identity, Pcr const& pcr0)
{
    auto cose = TRY(cose::sign_sign1(register_payload(pcr0), identity.key));
    auto pem = identity.certificate.pem();
    auto entry = cbor::Value::map();
    entry.insert(cbor::Value::text_string(CERTIFICATE_KEY), cbor::Value::byte_string(as_bytes(pem)));
    entry.insert(cbor::Value::text_string(SIGNATURE_KEY), cbor::Value::byte_string(std::move(cose)));
    auto section = cbor::encode(cbor::Value::array({ std::move(entry) }));
    if (section.size() > MAX_SIGNATURE_SIZE)
        return Error::from_code(EifError::LimitExceeded, "the signature section would exceed its size limit");
    return section;
}

ErrorOr<SignatureEntry> parse_signature_section(ByteView section)
{
    if (section.size() > MAX_SIGNATURE_SIZE)
        return Error::from_code(EifError::LimitExceeded, "signature section too large");
    cbor::DecodeOptions options;
    options.max_depth = 8;
    auto decoded = cbor::decode(section, options);
    if (decoded.is_error())
        return bad(fmt::format("signature section is not valid CBOR: {}", decoded.error().message()));
    auto const& value = decoded.value();
    if (!value.is_array())
        return bad("signature section is not a CBOR array");
    if (value.as_array().size() != 1)
        return bad(fmt::format("signature section holds {} signatures; exactly one (PCR0's) is expected", value.as_array().size()));
    auto const& entry = value.as_array()[0];
    if (!entry.is_map())
        return bad("signature section entry is not a map");
    SignatureEntry result;
    result.certificate_pem = TRY(byte_field(entry, CERTIFICATE_KEY, "signature section"));
    result.cose_sign1 = TRY(byte_field(entry, SIGNATURE_KEY, "signature section"));
    return result;
}

ErrorOr<Bytes> signing_certificate_der(ByteView section)
{
    auto entry = TRY(parse_signature_section(section));
    auto certificate = crypto::Certificate::parse(entry.certificate_pem);
    if (certificate.is_error())
        return bad(fmt::format("signing certificate: {}", certificate.error().message()));
    auto der = certificate.value().der();
    return Bytes(der.begin(), der.end());
}

ErrorOr<SignatureCheck> check_signature(ByteView section, Pcr const& pcr0, UnixMillis at)
{
    auto entry = TRY(parse_signature_section(section));
    auto certificate = crypto::Certificate::parse(entry.certificate_pem);
    if (certificate.is_error())
        return bad(fmt::format("signing certificate: {}", certificate.error().message()));
    auto message = cose::parse_sign1(entry.cose_sign1);
    if (message.is_error())
        return bad(fmt::format("signature: {}", message.error().message()));

    cbor::DecodeOptions options;
    options.max_depth = 4;
    auto payload = cbor::decode(message.value().payload, options);
    if (payload.is_error() || !payload.value().is_map())
        return bad("signature payload is not a CBOR map");
    auto const* index = payload.value().find(INDEX_KEY);
    if (!index || !index->is_unsigned())
        return bad("signature payload: \"register_index\" is missing or not an unsigned integer");
    auto value = TRY(byte_field(payload.value(), VALUE_KEY, "signature payload"));

    SignatureCheck check { certificate.value(), measure(certificate.value().der()) };
    check.register_index = index->as_unsigned();
    check.signature_valid = !cose::verify_sign1(message.value(), certificate.value().public_key()).is_error();
    check.pcr0_matches = check.register_index == 0 && constant_time_equal(value, pcr0);
    check.certificate_valid = certificate.value().is_valid_at(at);
    return check;
}

ErrorOr<void> require_valid(SignatureCheck const& check, UnixMillis at)
{
    if (!check.signature_valid)
        return bad("the signature does not verify with the signing certificate's key");
    if (!check.pcr0_matches)
        return Error::from_code(EifError::Pcr0Mismatch,
            check.register_index != 0 ? fmt::format("the signature is for PCR{}, not PCR0", check.register_index)
                                      : std::string("the signed PCR0 does not match the image"));
    if (!check.certificate_valid)
        return Error::from_code(EifError::CertificateTime,
            fmt::format("the signing certificate is not valid at {} (valid {} to {})", format_rfc3339(at),
                format_rfc3339(check.certificate.not_before()), format_rfc3339(check.certificate.not_after())));
    return {};
}

} // namespace qtbox::eif
