#include <qtbox/base/sys.hpp>
#include <qtbox/net/socket.hpp>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <unistd.h>

namespace qtbox::net {

std::optional<IpAddress> IpAddress::parse(std::string_view text)
{
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
        text = text.substr(1, text.size() - 2);
    // INET6_ADDRSTRLEN bounds every valid literal; longer text is not one.
    if (text.empty() || text.size() >= INET6_ADDRSTRLEN)
        return std::nullopt;
    char buffer[INET6_ADDRSTRLEN] {};
    std::memcpy(buffer, text.data(), text.size());
    IpAddress address;
    if (::inet_pton(AF_INET, buffer, address.bytes.data()) == 1)
        return address;
    address.is_v6 = true;
    if (::inet_pton(AF_INET6, buffer, address.bytes.data()) == 1)
        return address;
    return std::nullopt;
}

IpAddress IpAddress::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d)
{
    IpAddress address;
    address.bytes[0] = a;
    address.bytes[1] = b;
    address.bytes[2] = c;
    address.bytes[3] = d;
    return address;
}

std::string IpAddress::to_string() const
{
    char buffer[INET6_ADDRSTRLEN] {};
    ::inet_ntop(is_v6 ? AF_INET6 : AF_INET, bytes.data(), buffer, sizeof(buffer));
    return buffer;
}

SocketAddress SocketAddress::ip(IpAddress const& address, std::uint16_t port)
{
    SocketAddress result;
    if (address.is_v6) {
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&result.m_storage);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        std::memcpy(&v6->sin6_addr, address.bytes.data(), 16);
        result.m_length = sizeof(sockaddr_in6);
    } else {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&result.m_storage);
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        std::memcpy(&v4->sin_addr, address.bytes.data(), 4);
        result.m_length = sizeof(sockaddr_in);
    }
    return result;
}

SocketAddress SocketAddress::vsock(std::uint32_t cid, std::uint32_t port)
{
    SocketAddress result;
    auto* vm = reinterpret_cast<sockaddr_vm*>(&result.m_storage);
    vm->svm_family = AF_VSOCK;
    vm->svm_cid = cid;
    vm->svm_port = port;
    result.m_length = sizeof(sockaddr_vm);
    return result;
}

ErrorOr<SocketAddress> SocketAddress::unix_path(std::string_view path)
{
    SocketAddress result;
    auto* un = reinterpret_cast<sockaddr_un*>(&result.m_storage);
    if (path.empty() || path.size() >= sizeof(un->sun_path))
        return Error::from_code(SocketError::PathTooLong, fmt::format("socket path is empty or longer than {} bytes: {}", sizeof(un->sun_path) - 1, path));
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    result.m_length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return result;
}

SocketAddress SocketAddress::from_raw(sockaddr const* address, socklen_t length)
{
    SocketAddress result;
    auto size = std::min<std::size_t>(length, sizeof(result.m_storage));
    std::memcpy(&result.m_storage, address, size);
    result.m_length = static_cast<socklen_t>(size);
    return result;
}

ErrorOr<SocketAddress> SocketAddress::parse_ip_port(std::string_view text)
{
    auto invalid = [&](std::string_view why) {
        return Error::from_code(SocketError::InvalidAddress, fmt::format("invalid address '{}': {}", text, why));
    };
    std::string_view host;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return invalid("expected [IPv6]:port");
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
        auto address = IpAddress::parse(host);
        if (!address || !address->is_v6)
            return invalid("not a numeric IPv6 address");
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            return invalid("expected ip:port or [ipv6]:port");
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        auto address = IpAddress::parse(host);
        if (!address || address->is_v6)
            return invalid("not a numeric IPv4 address (write IPv6 as [address]:port)");
    }
    if (port_text.empty() || port_text.size() > 5 || (port_text.size() > 1 && port_text[0] == '0'))
        return invalid("the port must be a number from 1 to 65535");
    std::uint32_t port = 0;
    for (char c : port_text) {
        if (c < '0' || c > '9')
            return invalid("the port must be a number from 1 to 65535");
        port = port * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (port == 0 || port > 65535)
        return invalid("the port must be a number from 1 to 65535");
    return ip(*IpAddress::parse(host), static_cast<std::uint16_t>(port));
}

std::string SocketAddress::to_string() const
{
    switch (family()) {
    case AF_INET: {
        auto const* v4 = reinterpret_cast<sockaddr_in const*>(&m_storage);
        IpAddress address;
        std::memcpy(address.bytes.data(), &v4->sin_addr, 4);
        return fmt::format("{}:{}", address.to_string(), ntohs(v4->sin_port));
    }
    case AF_INET6: {
        auto const* v6 = reinterpret_cast<sockaddr_in6 const*>(&m_storage);
        IpAddress address;
        address.is_v6 = true;
        std::memcpy(address.bytes.data(), &v6->sin6_addr, 16);
        return fmt::format("[{}]:{}", address.to_string(), ntohs(v6->sin6_port));
    }
    case AF_VSOCK: {
        auto const* vm = reinterpret_cast<sockaddr_vm const*>(&m_storage);
        return fmt::format("vsock:{}:{}", vm->svm_cid, vm->svm_port);
    }
    case AF_UNIX: {
        auto const* un = reinterpret_cast<sockaddr_un const*>(&m_storage);
        auto max = m_length > offsetof(sockaddr_un, sun_path) ? m_length - offsetof(sockaddr_un, sun_path) : 0;
        return fmt::format("unix:{}", std::string_view(un->sun_path, strnlen(un->sun_path, max)));
    }
    default:
        return fmt::format("family-{}", family());
    }
}

ErrorOr<PendingConnect> start_connect(SocketAddress const& address)
{
    UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd)
        return Error::from_errno("socket");
    for (;;) {
        if (::connect(fd.get(), address.raw(), address.length()) == 0)
            return PendingConnect { std::move(fd), false };
        if (errno == EINTR)
            continue;
        if (errno == EINPROGRESS)
            return PendingConnect { std::move(fd), true };
        return Error::from_errno(fmt::format("connect {}", address.to_string()));
    }
}

ErrorOr<void> finish_connect(int fd)
{
    int error = 0;
    socklen_t length = sizeof(error);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
        return Error::from_errno("getsockopt SO_ERROR");
    if (error != 0)
        return Error::from_errno("connect", error);
    return {};
}

namespace {

ErrorOr<UniqueFd> bind_and_listen(SocketAddress const& address, int backlog, bool tcp)
{
    UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd)
        return Error::from_errno(fmt::format("socket for {}", address.to_string()));
    int on = 1;
    if (tcp && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0)
        return Error::from_errno("setsockopt SO_REUSEADDR");
    if (tcp && address.family() == AF_INET6 && ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)
        return Error::from_errno("setsockopt IPV6_V6ONLY");
    if (::bind(fd.get(), address.raw(), address.length()) < 0)
        return Error::from_errno(fmt::format("bind {}", address.to_string()));
    if (::listen(fd.get(), backlog) < 0)
        return Error::from_errno(fmt::format("listen {}", address.to_string()));
    return fd;
}

} // namespace

ErrorOr<UniqueFd> listen_tcp(SocketAddress const& address, int backlog)
{
    return bind_and_listen(address, backlog, true);
}

ErrorOr<UniqueFd> listen_vsock(std::uint32_t cid, std::uint32_t port, int backlog)
{
    return bind_and_listen(SocketAddress::vsock(cid, port), backlog, false);
}

ErrorOr<UniqueFd> listen_hybrid(std::string const& path, int backlog, struct stat* identity)
{
    // sys::unix_listen replaces any socket file at `path`. Probe it first:
    // only a file nobody accepts on (ECONNREFUSED) is stale.
    struct stat existing { };
    if (::lstat(path.c_str(), &existing) == 0 && S_ISSOCK(existing.st_mode)) {
        auto address = TRY(SocketAddress::unix_path(path));
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!probe)
            return Error::from_errno("socket");
        if (::connect(probe.get(), address.raw(), address.length()) == 0 || errno == EAGAIN)
            return Error::from_code(SocketError::AddressInUse, fmt::format("bind {}: another process is listening there", path));
        // Only a refused connect proves nobody listens; a socket we may not
        // even probe (EACCES...) is not ours to replace.
        if (errno != ECONNREFUSED && errno != ENOENT)
            return Error::from_errno(fmt::format("bind {}: probing the existing socket", path));
    }
    auto fd = TRY(sys::unix_listen(path, 0660, backlog));
    TRY(sys::set_nonblocking(fd.get()));
    if (identity != nullptr && ::lstat(path.c_str(), identity) < 0)
        return Error::from_errno(fmt::format("lstat {}", path));
    return fd;
}

void remove_socket_file(std::string const& path, struct stat const& identity)
{
    struct stat now { };
    if (::lstat(path.c_str(), &now) == 0 && S_ISSOCK(now.st_mode) && now.st_dev == identity.st_dev && now.st_ino == identity.st_ino)
        ::unlink(path.c_str());
}

std::optional<std::uint32_t> local_cid()
{
    int fd = ::open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return std::nullopt;
    UniqueFd owner(fd);
    std::uint32_t cid = VMADDR_CID_ANY;
    if (::ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0 || cid == VMADDR_CID_ANY)
        return std::nullopt;
    return cid;
}

} // namespace qtbox::net
