#include <qtbox/qtsm/backend.hpp>

#include <qtbox/attest/document.hpp>
#include <qtbox/crypto/random.hpp>
#include <qtbox/qtsm/framing.hpp>

#include <fmt/format.h>

namespace qtbox::qtsm {

namespace {

QtsmError error_code_of(Error const& error)
{
    if (error.is(PcrError::InvalidIndex))
        return QtsmError::InvalidIndex;
    if (error.is(PcrError::ReadOnlyIndex))
        return QtsmError::ReadOnlyIndex;
    if (error.is(PcrError::InvalidArgument))
        return QtsmError::InvalidArgument;
    return QtsmError::InternalError;
}

bool valid_instance_id(std::string_view id)
{
    if (id.empty() || id.size() > MAX_INSTANCE_ID_SIZE)
        return false;
    for (char c : id) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

} // namespace

ErrorOr<std::string> make_module_id(std::string_view instance_id)
{
    if (!valid_instance_id(instance_id))
        return Error::from_string(fmt::format(
            "instance id \"{}\": expected 1-{} characters of A-Z, a-z, 0-9 and '-' (a UUID)",
            instance_id.substr(0, 64), MAX_INSTANCE_ID_SIZE));
    auto suffix = TRY(crypto::random_bytes(8));
    return fmt::format("{}.enc-{}", instance_id, hex_encode(suffix));
}

ErrorOr<Bytes> assemble_document(std::string const& module_id, UnixMillis timestamp,
    std::vector<PcrEntry> const& pcrs, pki::Leaf const& leaf, AttestationRequest const& request,
    cose::SignatureOrder order)
{
    if (timestamp < 0)
        return Error::from_code(QtsmError::InternalError, "the clock is before 1970");
    attest::Document document;
    document.profile = attest::Profile::QingTian;
    document.module_id = module_id;
    document.timestamp = static_cast<std::uint64_t>(timestamp);
    document.digest = "SHA384";
    for (auto const& pcr : pcrs)
        document.pcrs.push_back({ pcr.index, Bytes(pcr.value.begin(), pcr.value.end()) });
    auto certificate = leaf.certificate.der();
    document.certificate.assign(certificate.begin(), certificate.end());
    document.cabundle = leaf.cabundle;
    // docs/FORMATS.md §4: absent optionals are empty byte strings.
    document.user_data = request.user_data.value_or(Bytes {});
    document.nonce = request.nonce.value_or(Bytes {});
    document.public_key = request.public_key.value_or(Bytes {});

    auto payload = attest::encode_qingtian_payload(document);
    cose::SignOptions options;
    options.order = order;
    // docs/FORMATS.md §4: protected = a1 01 38 22 (preferred serialisation of {1: -35}).
    options.protected_header = cose::algorithm_header(cose::Algorithm::ES384);
    auto signed_document = cose::sign_sign1(payload, leaf.key, options);
    if (signed_document.is_error())
        return Error::from_code(QtsmError::InternalError,
            fmt::format("signing the document: {}", signed_document.error().message()));
    if (signed_document.value().size() > MAX_DOCUMENT_SIZE)
        return Error::from_code(QtsmError::InternalError,
            fmt::format("the document has {} bytes (at most {})", signed_document.value().size(), MAX_DOCUMENT_SIZE));
    return signed_document.release_value();
}

ErrorOr<std::unique_ptr<Backend>> Backend::create(BackendConfig config, pki::Authority authority)
{
    auto issuer = TRY(pki::LeafIssuer::create(std::move(authority), config.module_id, config.clock));
    return std::unique_ptr<Backend>(new Backend(config, std::move(issuer)));
}

ErrorOr<Response> Backend::attest(AttestationRequest const& request)
{
    auto leaf = TRY(m_issuer->current());
    // The leaf was taken first: it was current at `timestamp` or just
    // before, and has at least two of its three hours left.
    auto timestamp = m_clock();
    auto pcrs = PcrBank::document_pcrs(m_pcrs.snapshot());
    auto document = TRY(assemble_document(m_module_id, timestamp, pcrs, *leaf, request, m_signature_order));
    return Response(AttestationResponse { std::move(document) });
}

Response Backend::execute(Request const& request, std::string* diagnostic)
{
    auto fail = [&](Error const& error, QtsmError code) {
        if (diagnostic)
            *diagnostic = fmt::format("{}: {}", request_name(request), error.message());
        return Response(ErrorResponse { code });
    };
    if (diagnostic)
        diagnostic->clear();
    return std::visit(
        [&](auto const& message) -> Response {
            using T = std::decay_t<decltype(message)>;
            if constexpr (std::is_same_v<T, DescribePcrRequest>) {
                auto state = m_pcrs.describe(message.index);
                if (state.is_error())
                    return fail(state.error(), error_code_of(state.error()));
                return DescribePcrResponse { state.value().locked,
                    Bytes(state.value().value.begin(), state.value().value.end()) };
            } else if constexpr (std::is_same_v<T, ExtendPcrRequest>) {
                auto value = m_pcrs.extend(message.index, message.data);
                if (value.is_error())
                    return fail(value.error(), error_code_of(value.error()));
                return ExtendPcrResponse { Bytes(value.value().begin(), value.value().end()) };
            } else if constexpr (std::is_same_v<T, LockPcrRequest>) {
                auto result = m_pcrs.lock(static_cast<std::size_t>(message.index));
                if (result.is_error())
                    return fail(result.error(), error_code_of(result.error()));
                return LockPcrResponse {};
            } else if constexpr (std::is_same_v<T, LockPcrsRequest>) {
                auto result = m_pcrs.lock(std::span<std::uint16_t const>(message.range));
                if (result.is_error())
                    return fail(result.error(), error_code_of(result.error()));
                return LockPcrsResponse {};
            } else if constexpr (std::is_same_v<T, DescribeQtsmRequest>) {
                DescribeQtsmResponse description;
                description.module_id = m_module_id;
                description.max_pcrs = PCR_COUNT;
                description.locked_pcrs = m_pcrs.locked_indices();
                description.digest = "SHA384";
                return description;
            } else if constexpr (std::is_same_v<T, AttestationRequest>) {
                auto response = attest(message);
                if (response.is_error())
                    return fail(response.error(), QtsmError::InternalError);
                return response.release_value();
            } else if constexpr (std::is_same_v<T, GetRandomRequest>) {
                auto random = crypto::random_bytes(RANDOM_SIZE);
                if (random.is_error())
                    return fail(random.error(), QtsmError::InternalError);
                return GetRandomResponse { random.release_value() };
            }
        },
        request);
}

Bytes Backend::handle(ByteView request, std::string* diagnostic)
{
    auto decoded = decode_request(request);
    if (decoded.is_error()) {
        if (diagnostic)
            *diagnostic = decoded.error().message();
        auto code = decoded.error().code_as<QtsmError>().value_or(QtsmError::InternalError);
        return encode_error(code);
    }
    auto response = encode_response(execute(decoded.value(), diagnostic));
    if (response.size() > MAX_RESPONSE_SIZE) {
        if (diagnostic)
            *diagnostic = fmt::format("the response has {} bytes (at most {})", response.size(), MAX_RESPONSE_SIZE);
        return encode_error(QtsmError::InternalError);
    }
    return response;
}

ErrorOr<void> Backend::serve(int fd)
{
    for (;;) {
        auto frame = read_frame(fd, MAX_REQUEST_SIZE);
        if (frame.is_error()) {
            auto const& error = frame.error();
            if (error.is(FrameError::Empty)) {
                TRY(write_frame(fd, encode_error(QtsmError::InvalidArgument)));
                continue;
            }
            if (error.is(FrameError::TooLarge)) {
                // Best effort: the peer may not be reading any more.
                (void)write_frame(fd, encode_error(QtsmError::InputTooLarge));
            }
            return frame.release_error();
        }
        if (!frame.value())
            return {};
        TRY(write_frame(fd, handle(*frame.value())));
    }
}

} // namespace qtbox::qtsm
