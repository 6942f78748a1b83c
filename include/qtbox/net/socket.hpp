// Socket addressing and set-up for the proxy and the VMM's vsock device:
// IP addresses and "ip:port" text, AF_VSOCK (linux/vm_sockets.h), the
// hybrid-vsock Unix listeners, and non-blocking connects. Every socket made
// here is non-blocking and close-on-exec: they are meant for an event loop.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/stat.h>

namespace qtbox::net {

// Failures callers tell apart (the others carry the errno of the call).
enum class SocketError {
    PathTooLong = 1, // a Unix socket path is empty or longer than sun_path
    InvalidAddress,  // "ip:port" text that does not parse
    AddressInUse,    // a live process already accepts on the hybrid socket
};

// Which address families a name may resolve to (qt-proxy -4 / -6).
enum class Family {
    Any,
    Ipv4,
    Ipv6,
};

struct IpAddress {
    bool is_v6 { false };
    // 4 bytes used for IPv4, 16 for IPv6, network order.
    std::array<std::uint8_t, 16> bytes {};

    // Numeric only: "192.0.2.1", "2001:db8::1" or "[2001:db8::1]". Zone ids
    // ("fe80::1%eth0") are refused.
    static std::optional<IpAddress> parse(std::string_view text);
    static IpAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d);
    bool matches(Family family) const { return family == Family::Any || (family == Family::Ipv6) == is_v6; }
    std::string to_string() const;
    bool operator==(IpAddress const&) const = default;
};

class SocketAddress {
public:
    SocketAddress() = default;
    static SocketAddress ip(IpAddress const& address, std::uint16_t port);
    static SocketAddress vsock(std::uint32_t cid, std::uint32_t port);
    static ErrorOr<SocketAddress> unix_path(std::string_view path);
    // Copies what accept()/getsockname() returned; length is clamped.
    static SocketAddress from_raw(sockaddr const* address, socklen_t length);
    // "192.0.2.1:80" or "[2001:db8::1]:80"; the port is 1-65535.
    static ErrorOr<SocketAddress> parse_ip_port(std::string_view text);

    sockaddr const* raw() const { return reinterpret_cast<sockaddr const*>(&m_storage); }
    socklen_t length() const { return m_length; }
    int family() const { return m_storage.ss_family; }
    // "192.0.2.1:80", "[2001:db8::1]:80", "vsock:3:8000", "unix:/path".
    std::string to_string() const;

private:
    sockaddr_storage m_storage {};
    socklen_t m_length { 0 };
};

// socket() with SOCK_NONBLOCK | SOCK_CLOEXEC, then connect(). in_progress
// means EINPROGRESS (TCP, vsock): wait for the fd to become writable and call
// finish_connect(). Unix sockets complete at once or fail (EAGAIN when the
// listener's backlog is full).
struct PendingConnect {
    UniqueFd fd;
    bool in_progress { false };
};
ErrorOr<PendingConnect> start_connect(SocketAddress const& address);
// The outcome of a connect that was in progress (SO_ERROR).
ErrorOr<void> finish_connect(int fd);

// A listening TCP socket (SO_REUSEADDR; IPV6_V6ONLY for IPv6 so that
// "[::]:p" and "0.0.0.0:p" are separate rules).
ErrorOr<UniqueFd> listen_tcp(SocketAddress const& address, int backlog);
// A listening AF_VSOCK socket on (cid, port); cid is usually VMADDR_CID_ANY.
ErrorOr<UniqueFd> listen_vsock(std::uint32_t cid, std::uint32_t port, int backlog);

// A listening hybrid-vsock Unix socket at `path`, mode 0660. A socket file
// left by a dead process is replaced; one that still accepts connections is
// not ("address in use"), so a second proxy cannot silently steal a port.
// `identity` receives the socket file's device and inode, so that the owner
// later removes only its own file (see remove_socket_file).
ErrorOr<UniqueFd> listen_hybrid(std::string const& path, int backlog, struct stat* identity = nullptr);
// Unlinks `path` if it still is the socket file described by `identity`.
void remove_socket_file(std::string const& path, struct stat const& identity);

// The local CID reported by /dev/vsock, or nullopt when no vsock transport
// is loaded (no /dev/vsock, or the kernel reports VMADDR_CID_ANY).
std::optional<std::uint32_t> local_cid();

} // namespace qtbox::net
