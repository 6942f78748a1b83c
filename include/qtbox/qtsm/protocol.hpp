// The QTSM protocol (docs/FORMATS.md §5): requests and responses, their CBOR encoding,
// and the strict decoders both ends use.
//
// Messages follow the NSM convention (docs/PLATFORMS.md §N3.2): a request or
// response without fields is a text string ("DescribeQTSM", "GetRandom",
// "LockPCR", "LockPCRs"); one with fields is a one-entry map
// {name: {field: value, ...}}; a failure is {"Error": NAME} with NAME from
// QingTian's error_code enum. Unlike NSM, LockPCRs takes an explicit list
// ({"range": [u16, ...]}), as QingTian's qtsm_lock_pcrs does.
//
// Decoding is strict, because the QTSM and qtsm-server take requests from
// code they do not trust: definite lengths only, exactly the documented keys,
// the documented types (a PCR index is an unsigned integer ≤ 0xFFFF), and the
// QingTian size limits; what breaks a rule gets the error_code a QingTian
// application expects (InputTooLarge for sizes, InvalidIndex for a register
// that does not exist, InvalidOperation for an unknown request, and
// InvalidArgument for everything else).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace qtbox::qtsm {

// docs/FORMATS.md §5 and docs/PLATFORMS.md §Q4 (QTSM_REQUEST_MAX_SIZE, the driver's
// response cap) and §4 of docs/FORMATS.md (document fields).
constexpr std::size_t MAX_REQUEST_SIZE = 4096;
constexpr std::size_t MAX_RESPONSE_SIZE = 0x8000;
constexpr std::size_t MAX_USER_DATA_SIZE = 512;  // QTSM_USER_DATA_MAX_SIZE
constexpr std::size_t MAX_NONCE_SIZE = 512;      // QTSM_NONCE_MAX_SIZE
constexpr std::size_t MAX_PUBLIC_KEY_SIZE = 1024; // QTSM_PUBLIC_KEY_MAX_SIZE
constexpr std::size_t MAX_DOCUMENT_SIZE = 0x6000;
// LockPCRs: one entry per register at most (duplicates are pointless).
constexpr std::size_t MAX_LOCK_RANGE = 32;
// GetRandom answers this many bytes (docs/FORMATS.md §5: at least 32).
constexpr std::size_t RANDOM_SIZE = 256;
// The version DescribeQTSM reports.
constexpr std::uint16_t VERSION_MAJOR = 1;
constexpr std::uint16_t VERSION_MINOR = 0;
constexpr std::uint16_t VERSION_PATCH = 0;

// QingTian's error_code enum (docs/PLATFORMS.md §Q4), same values, so
// that libqtsm returns them unchanged. Error::code() of protocol failures.
enum class QtsmError : int {
    NoError = 0,
    InvalidIndex = 1,
    InvalidResponse = 2,
    InvalidArgument = 3,
    ReadOnlyIndex = 4,
    InvalidOperation = 5,
    BufferTooSmall = 6,
    InputTooLarge = 7,
    InternalError = 8,
};

// "InvalidIndex", ... (the NAME of {"Error": NAME}).
std::string_view error_name(QtsmError code);
std::optional<QtsmError> error_from_name(std::string_view name);

// ---- requests ----
struct DescribePcrRequest {
    std::uint16_t index { 0 };
};
struct ExtendPcrRequest {
    std::uint16_t index { 0 };
    Bytes data;
};
struct LockPcrRequest {
    std::uint16_t index { 0 };
};
struct LockPcrsRequest {
    std::vector<std::uint16_t> range;
};
struct DescribeQtsmRequest { };
struct AttestationRequest {
    // nullopt is sent as null; an empty value means the same as absent.
    std::optional<Bytes> user_data;
    std::optional<Bytes> nonce;
    std::optional<Bytes> public_key;
};
struct GetRandomRequest { };

using Request = std::variant<DescribePcrRequest, ExtendPcrRequest, LockPcrRequest, LockPcrsRequest,
    DescribeQtsmRequest, AttestationRequest, GetRandomRequest>;

// "DescribePCR", "ExtendPCR", ... (the CBOR name).
std::string_view request_name(Request const& request);

// ---- responses ----
struct DescribePcrResponse {
    bool lock { false };
    Bytes data;
};
struct ExtendPcrResponse {
    Bytes data;
};
struct LockPcrResponse { };
struct LockPcrsResponse { };
struct DescribeQtsmResponse {
    std::uint16_t version_major { VERSION_MAJOR };
    std::uint16_t version_minor { VERSION_MINOR };
    std::uint16_t version_patch { VERSION_PATCH };
    std::string module_id;
    std::uint16_t max_pcrs { 0 };
    std::vector<std::uint16_t> locked_pcrs;
    std::string digest; // "SHA384"
};
struct AttestationResponse {
    Bytes document;
};
struct GetRandomResponse {
    Bytes random;
};
struct ErrorResponse {
    QtsmError code { QtsmError::InternalError };
};

using Response = std::variant<DescribePcrResponse, ExtendPcrResponse, LockPcrResponse, LockPcrsResponse,
    DescribeQtsmResponse, AttestationResponse, GetRandomResponse, ErrorResponse>;

// Encodings (preferred serialisation, fields in the order above).
Bytes encode_request(Request const& request);
Bytes encode_response(Response const& response);
inline Bytes encode_error(QtsmError code) { return encode_response(ErrorResponse { code }); }

// The QTSM's decoder. Error::code() is the QtsmError to answer with; the
// message says what was wrong (for logs, never sent to the peer).
ErrorOr<Request> decode_request(ByteView encoded);

// The client's decoder: {"Error": NAME} decodes to an ErrorResponse (not an
// error); anything that is not a well-formed response of the documented
// shapes is an Error with QtsmError::InvalidResponse.
ErrorOr<Response> decode_response(ByteView encoded);

// True when `response` is the answer to a request of `request`'s kind (or an
// ErrorResponse): a client checks this before trusting the fields.
bool response_matches(Request const& request, Response const& response);

} // namespace qtbox::qtsm
