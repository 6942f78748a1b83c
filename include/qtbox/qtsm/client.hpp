// The client side of the QTSM protocol (docs/FORMATS.md §5) over qtsm-server's Unix
// socket: what the `qtsm` shell client uses. (C programs use lib/qtsm.)
//
// One Client is one connection; each call writes one request frame and
// reads its response frame, with a timeout so that a stuck server is an
// error, not a hang. A response of the wrong shape or kind is
// QtsmError::InvalidResponse; {"Error": NAME} from the QTSM becomes an Error
// whose code() is that QtsmError.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/qtsm/protocol.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace qtbox::qtsm {

// docs/FORMATS.md §5: the socket apps see; QTSM_SOCKET overrides it (tests, and apps
// whose root is elsewhere).
constexpr std::string_view DEFAULT_SOCKET_PATH = "/run/qtsm.sock";
constexpr char const* SOCKET_PATH_ENVIRONMENT = "QTSM_SOCKET";
// How long a call waits for its answer (signing takes milliseconds; this is
// for a server that stopped answering).
constexpr int DEFAULT_CALL_TIMEOUT_MS = 30'000;

// $QTSM_SOCKET when set and not empty, else DEFAULT_SOCKET_PATH.
std::string default_socket_path();

class Client {
public:
    static ErrorOr<Client> connect(std::string const& path, int timeout_ms = DEFAULT_CALL_TIMEOUT_MS);
    // Wraps a connected stream (tests, the backend directly).
    explicit Client(UniqueFd fd) : m_fd(std::move(fd)) { }

    // One round trip. An {"Error": NAME} answer is returned as an Error
    // (code = that QtsmError, message "<Request>: the QTSM answered NAME").
    ErrorOr<Response> call(Request const& request);

    ErrorOr<DescribePcrResponse> describe_pcr(std::uint16_t index);
    ErrorOr<Bytes> extend_pcr(std::uint16_t index, ByteView data);
    ErrorOr<void> lock_pcr(std::uint16_t index);
    ErrorOr<void> lock_pcrs(std::span<std::uint16_t const> indices);
    ErrorOr<DescribeQtsmResponse> describe();
    ErrorOr<Bytes> attestation(AttestationRequest const& request);
    // `count` random bytes, in as many GetRandom calls as it takes.
    ErrorOr<Bytes> random(std::size_t count);

    int fd() const { return m_fd.get(); }
    // The connection, for a caller that hands it on (init gives its QTSM
    // channel to qtsm-server after GetRandom).
    UniqueFd release_fd() && { return std::move(m_fd); }

private:
    UniqueFd m_fd;
};

} // namespace qtbox::qtsm
