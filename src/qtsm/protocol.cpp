// docs/FORMATS.md §5 messages; see protocol.hpp for the rules.
#include <qtbox/qtsm/protocol.hpp>

#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cbor/encoder.hpp>
#include <qtbox/cbor/value.hpp>

#include <fmt/format.h>

#include <array>
#include <initializer_list>
#include <utility>

namespace qtbox::qtsm {

namespace {

constexpr std::array<std::pair<QtsmError, std::string_view>, 8> ERROR_NAMES { {
    { QtsmError::InvalidIndex, "InvalidIndex" },
    { QtsmError::InvalidResponse, "InvalidResponse" },
    { QtsmError::InvalidArgument, "InvalidArgument" },
    { QtsmError::ReadOnlyIndex, "ReadOnlyIndex" },
    { QtsmError::InvalidOperation, "InvalidOperation" },
    { QtsmError::BufferTooSmall, "BufferTooSmall" },
    { QtsmError::InputTooLarge, "InputTooLarge" },
    { QtsmError::InternalError, "InternalError" },
} };

// Message names (docs/FORMATS.md §5).
constexpr std::string_view DESCRIBE_PCR = "DescribePCR";
constexpr std::string_view EXTEND_PCR = "ExtendPCR";
constexpr std::string_view LOCK_PCR = "LockPCR";
constexpr std::string_view LOCK_PCRS = "LockPCRs";
constexpr std::string_view DESCRIBE_QTSM = "DescribeQTSM";
constexpr std::string_view ATTESTATION = "Attestation";
constexpr std::string_view GET_RANDOM = "GetRandom";
constexpr std::string_view ERROR = "Error";

// A request nests at most two containers deep ({"LockPCRs": {"range": [..]}}),
// a response three (DescribeQTSM's locked_pcrs). The item bound covers the
// largest legal message (32 locked PCRs plus keys) with room to spare, and
// stops a 4 KiB request of 4000 one-byte items early.
cbor::DecodeOptions decode_options()
{
    cbor::DecodeOptions options;
    options.max_depth = 3;
    options.max_items = 128;
    options.allow_indefinite = false;
    return options;
}

Error argument_error(std::string message) { return Error::from_code(QtsmError::InvalidArgument, std::move(message)); }

// Every key of `body` is text and one of `allowed` (duplicates were refused
// by the decoder).
ErrorOr<void> check_keys(cbor::Value const& body, std::string_view name, std::initializer_list<std::string_view> allowed,
    QtsmError code)
{
    if (!body.is_map())
        return Error::from_code(code, fmt::format("{}: the body is a {}, not a map", name, cbor::type_name(body.type())));
    for (auto const& entry : body.as_map()) {
        if (!entry.key.is_text())
            return Error::from_code(code, fmt::format("{}: a key is a {}, not text", name, cbor::type_name(entry.key.type())));
        bool known = false;
        for (auto key : allowed)
            known = known || entry.key.as_text() == key;
        if (!known)
            return Error::from_code(code, fmt::format("{}: unknown field \"{}\"", name, entry.key.as_text()));
    }
    return {};
}

ErrorOr<cbor::Value const*> require(cbor::Value const& body, std::string_view name, std::string_view key, QtsmError code)
{
    auto const* value = body.find(key);
    if (!value)
        return Error::from_code(code, fmt::format("{}: missing field \"{}\"", name, key));
    return value;
}

ErrorOr<std::uint16_t> as_u16(cbor::Value const& value, std::string_view what, QtsmError code)
{
    if (!value.is_unsigned() || value.as_unsigned() > 0xFFFF)
        return Error::from_code(code, fmt::format("{} is not an unsigned 16-bit integer", what));
    return static_cast<std::uint16_t>(value.as_unsigned());
}

ErrorOr<std::uint16_t> index_field(cbor::Value const& body, std::string_view name)
{
    auto const* index = TRY(require(body, name, "index", QtsmError::InvalidArgument));
    return as_u16(*index, fmt::format("{}: index", name), QtsmError::InvalidArgument);
}

// An Attestation field: absent or null (nullopt), or a byte string of at
// most `limit` bytes.
ErrorOr<std::optional<Bytes>> optional_bytes(cbor::Value const& body, std::string_view key, std::size_t limit)
{
    auto const* value = body.find(key);
    if (!value || value->is_null())
        return std::optional<Bytes> {};
    if (!value->is_bytes())
        return argument_error(fmt::format("Attestation: {} is a {}, not a byte string or null", key,
            cbor::type_name(value->type())));
    if (value->as_bytes().size() > limit)
        return Error::from_code(QtsmError::InputTooLarge,
            fmt::format("Attestation: {} has {} bytes (at most {})", key, value->as_bytes().size(), limit));
    auto bytes = value->as_bytes();
    return std::optional<Bytes>(Bytes(bytes.begin(), bytes.end()));
}

ErrorOr<Request> decode_request_body(std::string_view name, cbor::Value const& body)
{
    auto constexpr code = QtsmError::InvalidArgument;
    if (name == DESCRIBE_PCR) {
        TRY(check_keys(body, name, { "index" }, code));
        return Request(DescribePcrRequest { TRY(index_field(body, name)) });
    }
    if (name == EXTEND_PCR) {
        TRY(check_keys(body, name, { "index", "data" }, code));
        auto index = TRY(index_field(body, name));
        auto const* data = TRY(require(body, name, "data", code));
        if (!data->is_bytes())
            return argument_error(fmt::format("ExtendPCR: data is a {}, not a byte string", cbor::type_name(data->type())));
        auto bytes = data->as_bytes();
        return Request(ExtendPcrRequest { index, Bytes(bytes.begin(), bytes.end()) });
    }
    if (name == LOCK_PCR) {
        TRY(check_keys(body, name, { "index" }, code));
        return Request(LockPcrRequest { TRY(index_field(body, name)) });
    }
    if (name == LOCK_PCRS) {
        TRY(check_keys(body, name, { "range" }, code));
        auto const* range = TRY(require(body, name, "range", code));
        if (!range->is_array())
            return argument_error(fmt::format("LockPCRs: range is a {}, not an array", cbor::type_name(range->type())));
        auto const& items = range->as_array();
        if (items.size() > MAX_LOCK_RANGE)
            return Error::from_code(QtsmError::InputTooLarge,
                fmt::format("LockPCRs: range has {} entries (at most {})", items.size(), MAX_LOCK_RANGE));
        LockPcrsRequest request;
        for (auto const& item : items)
            request.range.push_back(TRY(as_u16(item, "LockPCRs: a range entry", code)));
        return Request(std::move(request));
    }
    if (name == ATTESTATION) {
        TRY(check_keys(body, name, { "user_data", "nonce", "public_key" }, code));
        AttestationRequest request;
        request.user_data = TRY(optional_bytes(body, "user_data", MAX_USER_DATA_SIZE));
        request.nonce = TRY(optional_bytes(body, "nonce", MAX_NONCE_SIZE));
        request.public_key = TRY(optional_bytes(body, "public_key", MAX_PUBLIC_KEY_SIZE));
        return Request(std::move(request));
    }
    if (name == DESCRIBE_QTSM || name == GET_RANDOM)
        return argument_error(fmt::format("{} takes no fields: send it as a text string", name));
    return Error::from_code(QtsmError::InvalidOperation, fmt::format("unknown request \"{}\"", name));
}

void encode_optional_bytes(cbor::Encoder& encoder, std::optional<Bytes> const& value)
{
    if (value)
        encoder.byte_string(*value);
    else
        encoder.null();
}

void encode_u16_array(cbor::Encoder& encoder, std::vector<std::uint16_t> const& values)
{
    encoder.array_header(values.size());
    for (auto value : values)
        encoder.unsigned_integer(value);
}

Error response_error(std::string message) { return Error::from_code(QtsmError::InvalidResponse, std::move(message)); }

ErrorOr<Bytes> bytes_field(cbor::Value const& body, std::string_view name, std::string_view key)
{
    auto const* value = TRY(require(body, name, key, QtsmError::InvalidResponse));
    if (!value->is_bytes())
        return response_error(fmt::format("{}: {} is not a byte string", name, key));
    auto bytes = value->as_bytes();
    return Bytes(bytes.begin(), bytes.end());
}

ErrorOr<std::uint16_t> u16_field(cbor::Value const& body, std::string_view name, std::string_view key)
{
    auto const* value = TRY(require(body, name, key, QtsmError::InvalidResponse));
    return as_u16(*value, fmt::format("{}: {}", name, key), QtsmError::InvalidResponse);
}

ErrorOr<std::string> text_field(cbor::Value const& body, std::string_view name, std::string_view key)
{
    auto const* value = TRY(require(body, name, key, QtsmError::InvalidResponse));
    if (!value->is_text())
        return response_error(fmt::format("{}: {} is not text", name, key));
    return std::string(value->as_text());
}

ErrorOr<Response> decode_response_body(std::string_view name, cbor::Value const& body)
{
    auto constexpr code = QtsmError::InvalidResponse;
    if (name == ERROR) {
        if (!body.is_text())
            return response_error("Error: the code is not text");
        auto error = error_from_name(body.as_text());
        if (!error)
            return response_error(fmt::format("Error: unknown error code \"{}\"", body.as_text()));
        return Response(ErrorResponse { *error });
    }
    if (name == DESCRIBE_PCR) {
        TRY(check_keys(body, name, { "lock", "data" }, code));
        auto const* lock = TRY(require(body, name, "lock", code));
        if (!lock->is_bool())
            return response_error("DescribePCR: lock is not a boolean");
        return Response(DescribePcrResponse { lock->as_bool(), TRY(bytes_field(body, name, "data")) });
    }
    if (name == EXTEND_PCR) {
        TRY(check_keys(body, name, { "data" }, code));
        return Response(ExtendPcrResponse { TRY(bytes_field(body, name, "data")) });
    }
    if (name == DESCRIBE_QTSM) {
        TRY(check_keys(body, name,
            { "version_major", "version_minor", "version_patch", "module_id", "max_pcrs", "locked_pcrs", "digest" }, code));
        DescribeQtsmResponse description;
        description.version_major = TRY(u16_field(body, name, "version_major"));
        description.version_minor = TRY(u16_field(body, name, "version_minor"));
        description.version_patch = TRY(u16_field(body, name, "version_patch"));
        description.module_id = TRY(text_field(body, name, "module_id"));
        description.max_pcrs = TRY(u16_field(body, name, "max_pcrs"));
        auto const* locked = TRY(require(body, name, "locked_pcrs", code));
        if (!locked->is_array())
            return response_error("DescribeQTSM: locked_pcrs is not an array");
        for (auto const& item : locked->as_array())
            description.locked_pcrs.push_back(TRY(as_u16(item, "DescribeQTSM: a locked_pcrs entry", code)));
        description.digest = TRY(text_field(body, name, "digest"));
        return Response(std::move(description));
    }
    if (name == ATTESTATION) {
        TRY(check_keys(body, name, { "document" }, code));
        return Response(AttestationResponse { TRY(bytes_field(body, name, "document")) });
    }
    if (name == GET_RANDOM) {
        TRY(check_keys(body, name, { "random" }, code));
        return Response(GetRandomResponse { TRY(bytes_field(body, name, "random")) });
    }
    return response_error(fmt::format("unknown response \"{}\"", name));
}

} // namespace

std::string_view error_name(QtsmError code)
{
    for (auto const& [value, name] : ERROR_NAMES) {
        if (value == code)
            return name;
    }
    return code == QtsmError::NoError ? "NoError" : "InternalError";
}

std::optional<QtsmError> error_from_name(std::string_view name)
{
    for (auto const& [value, text] : ERROR_NAMES) {
        if (text == name)
            return value;
    }
    return std::nullopt;
}

std::string_view request_name(Request const& request)
{
    constexpr std::array<std::string_view, 7> names { DESCRIBE_PCR, EXTEND_PCR, LOCK_PCR, LOCK_PCRS, DESCRIBE_QTSM,
        ATTESTATION, GET_RANDOM };
    return names[request.index()];
}

Bytes encode_request(Request const& request)
{
    cbor::Encoder encoder;
    std::visit(
        [&](auto const& message) {
            using T = std::decay_t<decltype(message)>;
            if constexpr (std::is_same_v<T, DescribeQtsmRequest> || std::is_same_v<T, GetRandomRequest>) {
                encoder.text_string(request_name(request));
            } else {
                encoder.map_header(1).text_string(request_name(request));
                if constexpr (std::is_same_v<T, DescribePcrRequest> || std::is_same_v<T, LockPcrRequest>) {
                    encoder.map_header(1).text_string("index").unsigned_integer(message.index);
                } else if constexpr (std::is_same_v<T, ExtendPcrRequest>) {
                    encoder.map_header(2).text_string("index").unsigned_integer(message.index);
                    encoder.text_string("data").byte_string(message.data);
                } else if constexpr (std::is_same_v<T, LockPcrsRequest>) {
                    encoder.map_header(1).text_string("range");
                    encode_u16_array(encoder, message.range);
                } else if constexpr (std::is_same_v<T, AttestationRequest>) {
                    encoder.map_header(3).text_string("user_data");
                    encode_optional_bytes(encoder, message.user_data);
                    encoder.text_string("nonce");
                    encode_optional_bytes(encoder, message.nonce);
                    encoder.text_string("public_key");
                    encode_optional_bytes(encoder, message.public_key);
                }
            }
        },
        request);
    return encoder.take();
}

Bytes encode_response(Response const& response)
{
    cbor::Encoder encoder;
    std::visit(
        [&](auto const& message) {
            using T = std::decay_t<decltype(message)>;
            if constexpr (std::is_same_v<T, DescribePcrResponse>) {
                encoder.map_header(1).text_string(DESCRIBE_PCR).map_header(2);
                encoder.text_string("lock").boolean(message.lock);
                encoder.text_string("data").byte_string(message.data);
            } else if constexpr (std::is_same_v<T, ExtendPcrResponse>) {
                encoder.map_header(1).text_string(EXTEND_PCR).map_header(1);
                encoder.text_string("data").byte_string(message.data);
            } else if constexpr (std::is_same_v<T, LockPcrResponse>) {
                encoder.text_string(LOCK_PCR);
            } else if constexpr (std::is_same_v<T, LockPcrsResponse>) {
                encoder.text_string(LOCK_PCRS);
            } else if constexpr (std::is_same_v<T, DescribeQtsmResponse>) {
                encoder.map_header(1).text_string(DESCRIBE_QTSM).map_header(7);
                encoder.text_string("version_major").unsigned_integer(message.version_major);
                encoder.text_string("version_minor").unsigned_integer(message.version_minor);
                encoder.text_string("version_patch").unsigned_integer(message.version_patch);
                encoder.text_string("module_id").text_string(message.module_id);
                encoder.text_string("max_pcrs").unsigned_integer(message.max_pcrs);
                encoder.text_string("locked_pcrs");
                encode_u16_array(encoder, message.locked_pcrs);
                encoder.text_string("digest").text_string(message.digest);
            } else if constexpr (std::is_same_v<T, AttestationResponse>) {
                encoder.map_header(1).text_string(ATTESTATION).map_header(1);
                encoder.text_string("document").byte_string(message.document);
            } else if constexpr (std::is_same_v<T, GetRandomResponse>) {
                encoder.map_header(1).text_string(GET_RANDOM).map_header(1);
                encoder.text_string("random").byte_string(message.random);
            } else if constexpr (std::is_same_v<T, ErrorResponse>) {
                encoder.map_header(1).text_string(ERROR).text_string(error_name(message.code));
            }
        },
        response);
    return encoder.take();
}

ErrorOr<Request> decode_request(ByteView encoded)
{
    if (encoded.size() > MAX_REQUEST_SIZE)
        return Error::from_code(QtsmError::InputTooLarge,
            fmt::format("the request has {} bytes (at most {})", encoded.size(), MAX_REQUEST_SIZE));
    if (encoded.empty())
        return argument_error("the request is empty");
    cbor::DecodeFailure failure;
    auto decoded = cbor::decode(encoded, decode_options(), &failure);
    if (decoded.is_error()) {
        // Too many items is a size problem (a LockPCRs list far over the
        // limit), everything else a malformed request.
        return Error::from_code(failure.kind == cbor::DecodeError::ItemLimit ? QtsmError::InputTooLarge
                                                                             : QtsmError::InvalidArgument,
            fmt::format("the request is not one CBOR item: {}", decoded.error().message()));
    }
    auto const& value = decoded.value();
    if (value.is_text()) {
        auto name = value.as_text();
        if (name == DESCRIBE_QTSM)
            return Request(DescribeQtsmRequest {});
        if (name == GET_RANDOM)
            return Request(GetRandomRequest {});
        if (name == DESCRIBE_PCR || name == EXTEND_PCR || name == LOCK_PCR || name == LOCK_PCRS || name == ATTESTATION)
            return argument_error(fmt::format("{} needs its fields: send {{\"{}\": {{...}}}}", name, name));
        return Error::from_code(QtsmError::InvalidOperation, fmt::format("unknown request \"{}\"", name));
    }
    if (!value.is_map() || value.as_map().size() != 1 || !value.as_map()[0].key.is_text())
        return argument_error(fmt::format("a request is a text string or a one-entry map keyed by its name, not {}",
            cbor::to_diagnostic(value).substr(0, 64)));
    auto const& entry = value.as_map()[0];
    return decode_request_body(entry.key.as_text(), entry.value);
}

ErrorOr<Response> decode_response(ByteView encoded)
{
    if (encoded.size() > MAX_RESPONSE_SIZE)
        return response_error(fmt::format("the response has {} bytes (at most {})", encoded.size(), MAX_RESPONSE_SIZE));
    auto decoded = cbor::decode(encoded, decode_options());
    if (decoded.is_error())
        return response_error(fmt::format("the response is not one CBOR item: {}", decoded.error().message()));
    auto const& value = decoded.value();
    if (value.is_text()) {
        if (value.as_text() == LOCK_PCR)
            return Response(LockPcrResponse {});
        if (value.as_text() == LOCK_PCRS)
            return Response(LockPcrsResponse {});
        return response_error(fmt::format("unknown response \"{}\"", value.as_text()));
    }
    if (!value.is_map() || value.as_map().size() != 1 || !value.as_map()[0].key.is_text())
        return response_error("a response is a text string or a one-entry map keyed by its name");
    auto const& entry = value.as_map()[0];
    return decode_response_body(entry.key.as_text(), entry.value);
}

bool response_matches(Request const& request, Response const& response)
{
    if (std::holds_alternative<ErrorResponse>(response))
        return true;
    // The two variants list their alternatives in the same order.
    return request.index() == response.index();
}

} // namespace qtbox::qtsm
