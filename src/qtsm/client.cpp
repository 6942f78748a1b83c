#include <qtbox/qtsm/client.hpp>

#include <qtbox/base/sys.hpp>
#include <qtbox/qtsm/framing.hpp>

#include <fmt/format.h>

#include <cstdlib>

namespace qtbox::qtsm {

std::string default_socket_path()
{
    char const* value = std::getenv(SOCKET_PATH_ENVIRONMENT);
    if (value && *value)
        return value;
    return std::string(DEFAULT_SOCKET_PATH);
}

ErrorOr<Client> Client::connect(std::string const& path, int timeout_ms)
{
    auto connected = sys::unix_connect(path);
    if (connected.is_error())
    {
        if (!connected.error().is_errno())
            return connected.release_error().context(fmt::format("connect to the QTSM at {}", path));
        return Error::from_errno(fmt::format("connect to the QTSM at {}", path), connected.error().errno_code());
    }
    auto fd = connected.release_value();
    TRY(set_socket_timeouts(fd.get(), timeout_ms));
    return Client(std::move(fd));
}

ErrorOr<Response> Client::call(Request const& request)
{
    auto name = request_name(request);
    auto encoded = encode_request(request);
    if (encoded.size() > MAX_REQUEST_SIZE)
        return Error::from_code(QtsmError::InputTooLarge,
            fmt::format("{}: the request has {} bytes (at most {})", name, encoded.size(), MAX_REQUEST_SIZE));
    auto written = write_frame(m_fd.get(), encoded);
    if (written.is_error())
        return written.release_error().context(fmt::format("{}: send", name));
    auto frame = read_frame(m_fd.get(), MAX_RESPONSE_SIZE);
    if (frame.is_error()) {
        auto error = frame.release_error();
        if (error.is_errno(EAGAIN) || error.is_errno(EWOULDBLOCK))
            return Error::from_errno(fmt::format("{}: no answer from the QTSM", name), ETIMEDOUT);
        return std::move(error).context(fmt::format("{}: receive", name));
    }
    if (!frame.value())
        return Error::from_string(fmt::format("{}: the QTSM closed the connection without answering", name));
    auto response = decode_response(*frame.value());
    if (response.is_error())
        return response.release_error().context(name);
    if (auto const* error = std::get_if<ErrorResponse>(&response.value()))
        return Error::from_code(error->code, fmt::format("{}: the QTSM answered {}", name, error_name(error->code)));
    if (!response_matches(request, response.value()))
        return Error::from_code(QtsmError::InvalidResponse, fmt::format("{}: the QTSM answered another request", name));
    return response.release_value();
}

ErrorOr<DescribePcrResponse> Client::describe_pcr(std::uint16_t index)
{
    auto response = TRY(call(DescribePcrRequest { index }));
    return std::get<DescribePcrResponse>(std::move(response));
}

ErrorOr<Bytes> Client::extend_pcr(std::uint16_t index, ByteView data)
{
    auto response = TRY(call(ExtendPcrRequest { index, Bytes(data.begin(), data.end()) }));
    return std::get<ExtendPcrResponse>(std::move(response)).data;
}

ErrorOr<void> Client::lock_pcr(std::uint16_t index)
{
    TRY(call(LockPcrRequest { index }));
    return {};
}

ErrorOr<void> Client::lock_pcrs(std::span<std::uint16_t const> indices)
{
    TRY(call(LockPcrsRequest { std::vector<std::uint16_t>(indices.begin(), indices.end()) }));
    return {};
}

ErrorOr<DescribeQtsmResponse> Client::describe()
{
    auto response = TRY(call(DescribeQtsmRequest {}));
    return std::get<DescribeQtsmResponse>(std::move(response));
}

ErrorOr<Bytes> Client::attestation(AttestationRequest const& request)
{
    auto response = TRY(call(request));
    return std::get<AttestationResponse>(std::move(response)).document;
}

ErrorOr<Bytes> Client::random(std::size_t count)
{
    Bytes output;
    output.reserve(count);
    while (output.size() < count) {
        auto response = TRY(call(GetRandomRequest {}));
        auto const& random = std::get<GetRandomResponse>(response).random;
        if (random.empty())
            return Error::from_code(QtsmError::InvalidResponse, "GetRandom: the QTSM answered no bytes");
        auto take = std::min(random.size(), count - output.size());
        output.insert(output.end(), random.begin(), random.begin() + static_cast<std::ptrdiff_t>(take));
    }
    return output;
}

} // namespace qtbox::qtsm
