// Hybrid vsock addressing (docs/ARCHITECTURE.md "Hybrid vsock", docs/FORMATS.md §1 and §6).
//
// On the parent, enclaves are not reached through the kernel's AF_VSOCK but
// through Unix sockets, Firecracker style:
//   - a guest connection to CID 3 port P becomes a connection to the Unix
//     socket <vsock-dir>/3_P (enclave/paths.hpp names it), so one qt-proxy
//     listener serves every enclave, as AF_VSOCK would;
//   - a parent program reaches enclave port P by connecting to the enclave's
//     <state>/vsock.sock and writing "CONNECT P\n"; the VMM answers
//     "OK <n>\n" and the stream carries the guest's bytes from then on.
// These are the well-known CIDs and ports and the two-line handshake, shared
// by qt-proxy and the VMM's virtio-vsock device.
#pragma once

#include <qtbox/base/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qtbox::vsock {

// docs/FORMATS.md §6.
constexpr std::uint32_t HOST_CID = 2;
constexpr std::uint32_t PARENT_CID = 3;
constexpr std::uint32_t FIRST_ENCLAVE_CID = 4;
constexpr std::uint32_t LAST_ENCLAVE_CID = 0xFFFFFFFE;
constexpr std::uint32_t HEARTBEAT_PORT = 9000;
constexpr std::uint32_t QTSM_PORT = 9001;
// VMADDR_PORT_ANY: never a real port.
constexpr std::uint32_t PORT_ANY = 0xFFFFFFFF;

// The longest legal handshake line is "CONNECT 4294967295\n" (19 bytes); a
// peer that sends more than this without a newline is not speaking the
// protocol, and reading stops there.
constexpr std::size_t MAX_HANDSHAKE_LINE = 32;

// 9000 (heartbeat) and 9001 (QTSM) on CID 3 are served inside the VMM and
// never forwarded to <vsock-dir>/3_<port> (docs/FORMATS.md §6).
bool is_reserved_parent_port(std::uint32_t port);

// "CONNECT <port>\n" and "OK <port>\n".
std::string connect_request(std::uint32_t port);
std::string connect_reply(std::uint32_t port);

// A handshake that can never succeed: the peer is not speaking the protocol.
enum class HandshakeError {
    TooLong = 1, // no newline within MAX_HANDSHAKE_LINE bytes
    Malformed,   // not "<keyword> <port>"
};

// A handshake line found at the start of a buffer: the port it names and
// how many bytes it used (the newline included). Bytes after it belong to
// the stream.
struct HandshakeLine {
    std::uint32_t port { 0 };
    std::size_t length { 0 };
};

// Parse the line at the start of `buffer`. nullopt: no newline yet and the
// buffer is still shorter than MAX_HANDSHAKE_LINE (read more). An error: the
// bytes cannot become a valid line. Ports are decimal without sign or
// leading zeros and fit in 32 bits.
ErrorOr<std::optional<HandshakeLine>> parse_connect_request(std::string_view buffer);
// The VMM's answer. Its number is reported but not compared with the
// requested port: Firecracker-style VMMs put their own local port there.
ErrorOr<std::optional<HandshakeLine>> parse_connect_reply(std::string_view buffer);

} // namespace qtbox::vsock
