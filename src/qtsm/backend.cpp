#include <qtbox/qtsm/backend.hpp>

#include <qtbox/attest/document.hpp>
#include <qtbox/crypto/random.hpp>
#include <qtbox/qtsm/framing.hpp>

#include <fmt/format.h>

#include <optional>

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
    cose::SignatureOrder order, crypto::EcdsaNonce* nonce)
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
    options.nonce = nonce;
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
    auto nonce = take_nonce();
    auto document = TRY(assemble_document(m_module_id, timestamp, pcrs, *leaf, request, m_signature_order,
        nonce ? &*nonce : nullptr));
    return Response(AttestationResponse { std::move(document) });
}

std::optional<crypto::EcdsaNonce> Backend::take_nonce()
{
    std::optional<crypto::EcdsaNonce> nonce;
    {
        std::lock_guard lock(m_nonces_mutex);
        m_nonces_wanted = true;
        if (!m_nonces.empty()) {
            nonce.emplace(std::move(m_nonces.back()));
            m_nonces.pop_back();
        }
    }
    m_nonce_room.notify_all();
    return nonce;
}

ErrorOr<bool> Backend::prepare_nonce()
{
    if (prepared_nonces() >= NONCE_POOL_SIZE)
        return false;
    auto failed = [](Error const& error) {
        return Error::from_code(QtsmError::InternalError, fmt::format("preparing a nonce: {}", error.message()));
    };
    {
        std::lock_guard lock(m_nonce_key_mutex);
        if (!m_nonce_key) {
            auto generated = crypto::PrivateKey::generate(crypto::KeyType::EcP384);
            if (generated.is_error())
                return failed(generated.error());
            m_nonce_key.emplace(generated.release_value());
        }
    }
    // Outside the pool's lock: the scalar multiplication is most of a
    // signature's time. m_nonce_key, once made, never changes.
    auto nonce = m_nonce_key->prepare_nonce();
    if (nonce.is_error())
        return failed(nonce.error());
    std::lock_guard lock(m_nonces_mutex);
    if (m_nonces.size() >= NONCE_POOL_SIZE)
        return false; // another thread filled it meanwhile; this one is dropped (and zeroised)
    m_nonces.push_back(nonce.release_value());
    return true;
}

bool Backend::wait_for_nonce_room()
{
    std::unique_lock lock(m_nonces_mutex);
    m_nonce_room.wait(lock, [this] { return m_stop_preparing || (m_nonces_wanted && m_nonces.size() < NONCE_POOL_SIZE); });
    return !m_stop_preparing;
}

void Backend::stop_preparing()
{
    {
        std::lock_guard lock(m_nonces_mutex);
        m_stop_preparing = true;
    }
    m_nonce_room.notify_all();
}

std::size_t Backend::prepared_nonces() const
{
    std::lock_guard lock(m_nonces_mutex);
    return m_nonces.size();
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
