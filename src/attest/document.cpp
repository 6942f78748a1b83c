#include <qtbox/attest/document.hpp>

#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cbor/encoder.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace qtbox::attest {

std::string_view profile_name(Profile profile)
{
    return profile == Profile::Nitro ? "nitro" : "qingtian";
}

Bytes const* Document::pcr(unsigned index) const
{
    for (auto const& entry : pcrs) {
        if (entry.index == index)
            return &entry.value;
    }
    return nullptr;
}

namespace {

// The payload holds a map of PCRs and an array of certificates: three levels.
constexpr std::size_t PAYLOAD_MAX_DEPTH = 4;
// 9 entries, 32 PCRs, a few certificates, and string chunks of indefinite
// strings: far below this.
constexpr std::size_t PAYLOAD_MAX_ITEMS = 1024;

Error fail(ParseError kind, std::string why)
{
    return Error::from_code(kind, std::move(why));
}

bool is_base64_text(ByteView input)
{
    for (std::uint8_t byte : input) {
        bool base64 = (byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') || (byte >= '0' && byte <= '9')
            || byte == '+' || byte == '/' || byte == '-' || byte == '_' || byte == '=';
        bool space = byte == ' ' || byte == '\t' || byte == '\n' || byte == '\r' || byte == '\v' || byte == '\f';
        if (!base64 && !space)
            return false;
    }
    return true;
}

// docs/PLATFORMS.md §N4.2: "i-0340e0cb833504eb6-enc019c12d31f78864d".
bool is_nitro_module_id(std::string_view id)
{
    auto hex_run = [&](std::size_t& position) {
        std::size_t start = position;
        while (position < id.size()
            && ((id[position] >= '0' && id[position] <= '9') || (id[position] >= 'a' && id[position] <= 'f')))
            ++position;
        return position > start;
    };
    if (!id.starts_with("i-"))
        return false;
    std::size_t position = 2;
    if (!hex_run(position) || id.substr(position, 4) != "-enc")
        return false;
    position += 4;
    return hex_run(position) && position == id.size();
}

struct Fields {
    cbor::Value const* module_id { nullptr };
    cbor::Value const* timestamp { nullptr };
    cbor::Value const* digest { nullptr };
    cbor::Value const* pcrs { nullptr };
    cbor::Value const* certificate { nullptr };
    cbor::Value const* cabundle { nullptr };
    cbor::Value const* user_data { nullptr };
    cbor::Value const* nonce { nullptr };
    cbor::Value const* public_key { nullptr };
};

ErrorOr<Fields> collect_fields(cbor::Value const& payload)
{
    Fields fields;
    struct Known {
        std::string_view name;
        cbor::Value const* Fields::*slot;
    };
    static constexpr std::array<Known, 9> KNOWN { {
        { "module_id", &Fields::module_id },
        { "timestamp", &Fields::timestamp },
        { "digest", &Fields::digest },
        { "pcrs", &Fields::pcrs },
        { "certificate", &Fields::certificate },
        { "cabundle", &Fields::cabundle },
        { "user_data", &Fields::user_data },
        { "nonce", &Fields::nonce },
        { "public_key", &Fields::public_key },
    } };
    for (auto const& entry : payload.as_map()) {
        if (!entry.key.is_text())
            return fail(ParseError::UnknownField, fmt::format("payload key {} is not a text string",
                cbor::to_diagnostic(entry.key).substr(0, 64)));
        auto known = std::find_if(KNOWN.begin(), KNOWN.end(),
            [&](Known const& k) { return k.name == entry.key.as_text(); });
        if (known == KNOWN.end())
            return fail(ParseError::UnknownField, fmt::format("unknown payload key {}",
                cbor::to_diagnostic(entry.key).substr(0, 64)));
        // Duplicate keys were refused by the decoder.
        fields.*(known->slot) = &entry.value;
    }
    return fields;
}

ErrorOr<Bytes> byte_field(cbor::Value const* value, std::string_view name, std::size_t min_size, std::size_t max_size)
{
    if (!value->is_bytes())
        return fail(ParseError::FieldType, fmt::format("{}: {} instead of a byte string", name,
            cbor::type_name(value->type())));
    auto bytes = value->as_bytes();
    if (bytes.size() < min_size || bytes.size() > max_size)
        return fail(ParseError::FieldValue, fmt::format("{}: {} bytes, allowed {}..{}", name, bytes.size(),
            min_size, max_size));
    return Bytes(bytes.begin(), bytes.end());
}

// user_data, nonce, public_key: a byte string, or null in the Nitro profile.
ErrorOr<std::optional<Bytes>> optional_field(cbor::Value const* value, std::string_view name, Profile profile,
    std::size_t max_size)
{
    if (value == nullptr) {
        if (profile == Profile::QingTian)
            return fail(ParseError::MissingField, fmt::format("{}: missing (docs/FORMATS.md §4: always present)", name));
        return std::optional<Bytes> {};
    }
    if (value->is_null()) {
        if (profile == Profile::QingTian)
            return fail(ParseError::FieldType, fmt::format("{}: null in a QingTian document", name));
        return std::optional<Bytes> {};
    }
    return std::optional<Bytes> { TRY(byte_field(value, name, 0, max_size)) };
}

ErrorOr<std::vector<Pcr>> parse_pcrs(cbor::Value const* value, Profile profile)
{
    if (!value->is_map())
        return fail(ParseError::FieldType, fmt::format("pcrs: {} instead of a map", cbor::type_name(value->type())));
    auto const& entries = value->as_map();
    if (entries.empty() || entries.size() > PCR_COUNT)
        return fail(ParseError::FieldValue, fmt::format("pcrs: {} entries, allowed 1..{}", entries.size(), PCR_COUNT));
    std::vector<Pcr> pcrs;
    for (auto const& entry : entries) {
        if (!entry.key.is_unsigned() || entry.key.as_unsigned() >= PCR_COUNT)
            return fail(ParseError::FieldValue, fmt::format("pcrs: key {} is not an index below {}",
                cbor::to_diagnostic(entry.key).substr(0, 64), PCR_COUNT));
        auto index = static_cast<unsigned>(entry.key.as_unsigned());
        if (!entry.value.is_bytes())
            return fail(ParseError::FieldType, fmt::format("pcrs: PCR{} is a {}", index,
                cbor::type_name(entry.value.type())));
        auto size = entry.value.as_bytes().size();
        // docs/FORMATS.md §2: SHA-384 registers. Nitro's CDDL also allows 32 and 64.
        bool size_ok = size == PCR_SIZE || (profile == Profile::Nitro && (size == 32 || size == 64));
        if (!size_ok)
            return fail(ParseError::FieldValue, fmt::format("pcrs: PCR{} is {} bytes, expected {}", index, size,
                PCR_SIZE));
        auto bytes = entry.value.as_bytes();
        pcrs.push_back({ index, Bytes(bytes.begin(), bytes.end()) });
    }
    std::sort(pcrs.begin(), pcrs.end(), [](Pcr const& a, Pcr const& b) { return a.index < b.index; });
    if (profile == Profile::QingTian) {
        for (unsigned index = 0; index < QINGTIAN_SYSTEM_PCRS; ++index) {
            if (pcrs.size() <= index || pcrs[index].index != index)
                return fail(ParseError::FieldValue, fmt::format("pcrs: PCR{} missing (docs/FORMATS.md §4: 0..15 always)", index));
        }
    }
    return pcrs;
}

ErrorOr<crypto::Certificate> parse_certificate(ByteView der, std::string_view name)
{
    auto certificate = crypto::Certificate::parse_der(der);
    if (certificate.is_error())
        return fail(ParseError::Certificate, fmt::format("{}: {}", name, certificate.error().message()));
    return certificate.release_value();
}

} // namespace

ErrorOr<Bytes> decode_input(ByteView input)
{
    if (input.empty() || !is_base64_text(input))
        return Bytes(input.begin(), input.end());
    auto decoded = base64_decode(as_chars(input));
    if (decoded.is_error())
        return fail(ParseError::Envelope, decoded.error().message());
    return decoded.release_value();
}

ErrorOr<ParsedDocument> parse_document(ByteView cose)
{
    if (cose.size() > MAX_DOCUMENT_SIZE)
        return fail(ParseError::TooLarge, fmt::format("document of {} bytes exceeds the limit of {} (docs/FORMATS.md §4)",
            cose.size(), MAX_DOCUMENT_SIZE));
    auto envelope = cose::parse_sign1(cose, MAX_DOCUMENT_SIZE);
    if (envelope.is_error())
        return fail(ParseError::Envelope, envelope.error().message());
    auto algorithm = cose::sign1_algorithm(envelope.value());
    if (algorithm.is_error())
        return fail(ParseError::Envelope, algorithm.error().message());
    if (algorithm.value() != cose::Algorithm::ES384)
        return fail(ParseError::Envelope, fmt::format("COSE_Sign1: algorithm {} instead of ES384",
            cose::algorithm_name(algorithm.value())));
    if (envelope.value().signature.size() != crypto::P384_SIGNATURE_SIZE)
        return fail(ParseError::Envelope, fmt::format("COSE_Sign1: signature of {} bytes instead of {}",
            envelope.value().signature.size(), crypto::P384_SIGNATURE_SIZE));

    cbor::DecodeOptions options;
    options.max_depth = PAYLOAD_MAX_DEPTH;
    options.max_items = PAYLOAD_MAX_ITEMS;
    auto decoded = cbor::decode(envelope.value().payload, options);
    if (decoded.is_error())
        return fail(ParseError::Payload, "payload: " + decoded.error().message());
    cbor::Value const& payload = decoded.value();
    if (!payload.is_map())
        return fail(ParseError::Payload, fmt::format("payload: {} instead of a map", cbor::type_name(payload.type())));
    Fields fields = TRY(collect_fields(payload));

    using Required = std::pair<cbor::Value const*, std::string_view>;
    for (auto [field, name] : std::array<Required, 6> { { { fields.module_id, "module_id" },
             { fields.timestamp, "timestamp" }, { fields.digest, "digest" }, { fields.pcrs, "pcrs" },
             { fields.certificate, "certificate" }, { fields.cabundle, "cabundle" } } }) {
        if (field == nullptr)
            return fail(ParseError::MissingField, fmt::format("{}: missing", name));
    }

    Document document;
    if (!fields.module_id->is_text())
        return fail(ParseError::FieldType, "module_id: not a text string");
    document.module_id = std::string(fields.module_id->as_text());
    if (document.module_id.empty() || document.module_id.size() > MAX_MODULE_ID)
        return fail(ParseError::FieldValue, fmt::format("module_id: {} bytes, allowed 1..{}", document.module_id.size(),
            MAX_MODULE_ID));
    document.profile = is_nitro_module_id(document.module_id) ? Profile::Nitro : Profile::QingTian;
    Profile const profile = document.profile;
    if (profile == Profile::Nitro && cose.size() > NITRO_MAX_DOCUMENT_SIZE)
        return fail(ParseError::TooLarge, fmt::format("Nitro document of {} bytes exceeds the limit of {}",
            cose.size(), NITRO_MAX_DOCUMENT_SIZE));

    if (!fields.timestamp->is_unsigned())
        return fail(ParseError::FieldType, "timestamp: not an unsigned integer");
    document.timestamp = fields.timestamp->as_unsigned();
    if (document.timestamp == 0 || document.timestamp > static_cast<std::uint64_t>(INT64_MAX))
        return fail(ParseError::FieldValue, fmt::format("timestamp: {} is out of range", document.timestamp));

    if (!fields.digest->is_text())
        return fail(ParseError::FieldType, "digest: not a text string");
    if (fields.digest->as_text() != "SHA384")
        return fail(ParseError::FieldValue, fmt::format("digest: \"{}\" instead of \"SHA384\"",
            fields.digest->as_text().substr(0, 32)));
    document.digest = "SHA384";

    document.pcrs = TRY(parse_pcrs(fields.pcrs, profile));

    std::size_t const max_certificate = profile == Profile::Nitro ? NITRO_MAX_CERTIFICATE : QINGTIAN_MAX_CERTIFICATE;
    document.certificate = TRY(byte_field(fields.certificate, "certificate", 1, max_certificate));
    if (!fields.cabundle->is_array())
        return fail(ParseError::FieldType, "cabundle: not an array");
    auto const& bundle = fields.cabundle->as_array();
    if (bundle.empty() || bundle.size() > MAX_CABUNDLE)
        return fail(ParseError::FieldValue, fmt::format("cabundle: {} certificates, allowed 1..{}", bundle.size(),
            MAX_CABUNDLE));
    for (std::size_t i = 0; i < bundle.size(); ++i)
        document.cabundle.push_back(TRY(byte_field(&bundle[i], fmt::format("cabundle[{}]", i), 1, max_certificate)));

    bool const nitro = profile == Profile::Nitro;
    document.user_data = TRY(optional_field(fields.user_data, "user_data", profile,
        nitro ? NITRO_MAX_OPTIONAL_FIELD : QINGTIAN_MAX_USER_DATA));
    document.nonce = TRY(optional_field(fields.nonce, "nonce", profile,
        nitro ? NITRO_MAX_OPTIONAL_FIELD : QINGTIAN_MAX_NONCE));
    document.public_key = TRY(optional_field(fields.public_key, "public_key", profile,
        nitro ? NITRO_MAX_OPTIONAL_FIELD : QINGTIAN_MAX_PUBLIC_KEY));

    crypto::Certificate leaf = TRY(parse_certificate(document.certificate, "certificate"));
    std::vector<crypto::Certificate> certificates;
    certificates.reserve(document.cabundle.size());
    for (std::size_t i = 0; i < document.cabundle.size(); ++i)
        certificates.push_back(TRY(parse_certificate(document.cabundle[i], fmt::format("cabundle[{}]", i))));

    return ParsedDocument { envelope.release_value(), std::move(document), std::move(leaf), std::move(certificates) };
}

Bytes encode_qingtian_payload(Document const& document)
{
    auto optional = [](std::optional<Bytes> const& field) { return field ? ByteView(*field) : ByteView(); };
    cbor::Encoder encoder;
    encoder.map_header(9);
    encoder.text_string("module_id").text_string(document.module_id);
    // docs/FORMATS.md §4: "always the 8-byte encoding".
    encoder.text_string("timestamp").unsigned_integer(document.timestamp, cbor::Width::Byte8);
    encoder.text_string("digest").text_string(document.digest.empty() ? "SHA384" : document.digest);
    std::vector<Pcr> pcrs = document.pcrs;
    std::sort(pcrs.begin(), pcrs.end(), [](Pcr const& a, Pcr const& b) { return a.index < b.index; });
    encoder.text_string("pcrs").map_header(pcrs.size());
    for (auto const& pcr : pcrs)
        encoder.unsigned_integer(pcr.index).byte_string(pcr.value);
    encoder.text_string("certificate").byte_string(document.certificate);
    encoder.text_string("cabundle").array_header(document.cabundle.size());
    for (auto const& certificate : document.cabundle)
        encoder.byte_string(certificate);
    encoder.text_string("user_data").byte_string(optional(document.user_data));
    encoder.text_string("nonce").byte_string(optional(document.nonce));
    encoder.text_string("public_key").byte_string(optional(document.public_key));
    return encoder.take();
}

} // namespace qtbox::attest
