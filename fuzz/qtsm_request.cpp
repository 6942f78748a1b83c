// libFuzzer target: what a QTSM peer sends (docs/FORMATS.md §5). The input is a byte
// stream as it arrives on vsock port 9001 or qtsm-server's socket: frames
// (u32 big-endian length, one CBOR item) cut by FrameReader, each item
// decoded by the strict request decoder and answered by a Backend. Every
// input starts from a pristine PCR bank, so a run does not depend on the
// runs before it: the backend is replaced after any input that extended or
// locked a register (issuing a leaf is slow, so it is kept otherwise). Each
// item is also given to the client's response decoder, which reads what a
// QTSM answers.
//
// Properties checked beyond "no crash, no hang, no leak":
//   - every answer fits MAX_RESPONSE_SIZE and decodes as a response;
//   - a request the decoder refuses is answered {"Error": NAME} with the
//     decoder's own code, one of the four docs/FORMATS.md §5 gives for bad input;
//   - an accepted request is answered with its own kind or an error
//     (response_matches), and re-encodes to bytes that decode and re-encode
//     identically; the same holds for an accepted response;
//   - an attestation document parses with attest-verify's parser and
//     carries the request's user_data, nonce and public_key.
#include "support.hpp"

#include <qtbox/attest/document.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/backend.hpp>
#include <qtbox/qtsm/framing.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

namespace {

using namespace qtbox;
using fuzz::require;

// 2026-03-01T12:00:00Z; the PKI starts an hour before.
constexpr UnixMillis NOW = 1772366400000;
constexpr std::int64_t HOUR = 3600 * 1000;
// Attestations sign with P-384: bound the work one input can ask for.
constexpr std::size_t MAX_FRAMES = 16;

// Made once per process (P-384 keys take a while); each backend gets a copy.
pki::Authority authority()
{
    static pki::Authority const made = [] {
        auto directory = (std::filesystem::temp_directory_path() / "qtbox-fuzz-qtsm-XXXXXX").string();
        require(::mkdtemp(directory.data()) != nullptr);
        pki::InitOptions options;
        options.now = NOW - HOUR;
        auto created = pki::init(directory + "/pki", false, options);
        std::filesystem::remove_all(directory);
        require(!created.is_error());
        return created.release_value();
    }();
    auto key = made.parent_key.to_der();
    require(!key.is_error());
    auto parent_key = crypto::PrivateKey::parse(key.value());
    require(!parent_key.is_error());
    return pki::Authority { made.root, made.parent, parent_key.release_value() };
}

std::unique_ptr<qtsm::Backend> make_backend()
{
    qtsm::BackendConfig config;
    config.system_pcrs[0] = qtsm::measure(as_bytes("image"));
    auto module_id = qtsm::make_module_id("4662b7a3-7898-46c9-a6c5-20e9025e50bc");
    require(!module_id.is_error());
    config.module_id = module_id.release_value();
    config.clock = [] { return NOW; };
    auto backend = qtsm::Backend::create(std::move(config), authority());
    require(!backend.is_error());
    return backend.release_value();
}

Bytes or_empty(std::optional<Bytes> const& field)
{
    return field ? *field : Bytes {};
}

bool is_request_error(std::optional<qtsm::QtsmError> code)
{
    if (!code)
        return false;
    auto error = *code;
    return error == qtsm::QtsmError::InvalidArgument || error == qtsm::QtsmError::InputTooLarge
        || error == qtsm::QtsmError::InvalidIndex || error == qtsm::QtsmError::InvalidOperation;
}

void check_document(qtsm::Backend const& backend, qtsm::AttestationRequest const& request, Bytes const& document)
{
    require(document.size() <= qtsm::MAX_DOCUMENT_SIZE);
    auto parsed = attest::parse_document(document);
    require(!parsed.is_error());
    auto const& fields = parsed.value().document;
    require(fields.module_id == backend.module_id());
    require(fields.timestamp == static_cast<std::uint64_t>(NOW));
    require(or_empty(fields.user_data) == or_empty(request.user_data));
    require(or_empty(fields.nonce) == or_empty(request.nonce));
    require(or_empty(fields.public_key) == or_empty(request.public_key));
}

// Returns whether the backend's PCR bank may have changed.
bool serve_item(qtsm::Backend& backend, Bytes const& item)
{
    auto decoded = qtsm::decode_request(item);
    std::string diagnostic;
    Bytes answer = backend.handle(item, &diagnostic);
    require(answer.size() <= qtsm::MAX_RESPONSE_SIZE);
    auto response = qtsm::decode_response(answer);
    require(!response.is_error());
    auto const* error = std::get_if<qtsm::ErrorResponse>(&response.value());
    require((error != nullptr) == !diagnostic.empty());
    if (decoded.is_error()) {
        require(is_request_error(decoded.error().code_as<qtsm::QtsmError>()));
        require(error && error->code == decoded.error().code_as<qtsm::QtsmError>());
        return false;
    }
    require(qtsm::response_matches(decoded.value(), response.value()));
    Bytes encoded = qtsm::encode_request(decoded.value());
    auto again = qtsm::decode_request(encoded);
    require(!again.is_error() && qtsm::encode_request(again.value()) == encoded);
    if (auto const* attestation = std::get_if<qtsm::AttestationResponse>(&response.value()))
        check_document(backend, std::get<qtsm::AttestationRequest>(decoded.value()), attestation->document);
    return std::holds_alternative<qtsm::ExtendPcrResponse>(response.value())
        || std::holds_alternative<qtsm::LockPcrResponse>(response.value())
        || std::holds_alternative<qtsm::LockPcrsResponse>(response.value());
}

void decode_as_response(Bytes const& item)
{
    auto decoded = qtsm::decode_response(item);
    if (decoded.is_error()) {
        require(decoded.error().is(qtsm::QtsmError::InvalidResponse));
        return;
    }
    Bytes encoded = qtsm::encode_response(decoded.value());
    auto again = qtsm::decode_response(encoded);
    require(!again.is_error() && qtsm::encode_response(again.value()) == encoded);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    static std::unique_ptr<qtsm::Backend> backend;
    bool changed = false;
    qtsm::FrameReader reader(qtsm::MAX_REQUEST_SIZE);
    std::size_t consumed = 0;
    std::size_t frames = 0;
    while (consumed < size && frames < MAX_FRAMES) {
        auto space = reader.space();
        require(!space.empty());
        std::size_t count = std::min(space.size(), size - consumed);
        std::memcpy(space.data(), data + consumed, count);
        consumed += count;
        auto complete = reader.commit(count);
        if (complete.is_error()) {
            // The stream is out of step (TooLarge) or holds an empty item;
            // the frames before it are what this input tests.
            require(complete.error().is(qtsm::FrameError::TooLarge) || complete.error().is(qtsm::FrameError::Empty));
            break;
        }
        if (!complete.value())
            continue;
        Bytes item = reader.take();
        require(!item.empty() && item.size() <= qtsm::MAX_REQUEST_SIZE);
        ++frames;
        if (!backend)
            backend = make_backend();
        changed = serve_item(*backend, item) || changed;
        decode_as_response(item);
    }
    if (changed)
        backend.reset();
    return 0;
}
