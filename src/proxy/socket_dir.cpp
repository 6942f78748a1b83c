#include "socket_dir.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/net/socket.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qtbox::proxy {

namespace {

// Sockets are rw for the owner and the group (the VMM's user, docs/FORMATS.md §1).
constexpr mode_t SOCKET_UMASK = 0117;

bool stat_at(int directory, std::string const& name, struct stat& out)
{
    return ::fstatat(directory, name.c_str(), &out, AT_SYMLINK_NOFOLLOW) == 0;
}

} // namespace

ErrorOr<SocketDirectory> SocketDirectory::open(std::string path, std::optional<Owner> owner)
{
    // Parents it makes are 0755: vmm, as the service account, must pass
    // through them to reach the sockets.
    TRY(sys::make_socket_directory(path, 0750));
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return Error::from_errno(fmt::format("open {}", path));
    UniqueFd directory(fd);
    if (owner && ::geteuid() == 0 && ::fchown(directory.get(), owner->uid, owner->gid) < 0)
        return Error::from_errno(fmt::format("chown {}", path));
    return SocketDirectory(std::move(path), std::move(directory), owner);
}

ErrorOr<UniqueFd> SocketDirectory::listen(std::string const& name, int backlog, struct stat& identity) const
{
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        return Error::from_string(fmt::format("socket name {:?}: not a file name", name));
    std::string shown = m_path + "/" + name;
    // Through the directory fd, so the name cannot be resolved elsewhere.
    auto address = TRY(net::SocketAddress::unix_path(fmt::format("/proc/self/fd/{}/{}", m_fd.get(), name)));
    struct stat existing { };
    // Anything else at the name makes bind() fail: never removed.
    if (stat_at(m_fd.get(), name, existing) && S_ISSOCK(existing.st_mode)) {
        // Only a refused connect proves nobody listens there.
        UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!probe)
            return Error::from_errno("socket");
        if (::connect(probe.get(), address.raw(), address.length()) == 0 || errno == EAGAIN)
            return Error::from_code(net::SocketError::AddressInUse, fmt::format("bind {}: another process is listening there", shown));
        if (errno != ECONNREFUSED && errno != ENOENT)
            return Error::from_errno(fmt::format("bind {}: probing the existing socket", shown));
        if (::unlinkat(m_fd.get(), name.c_str(), 0) < 0 && errno != ENOENT)
            return Error::from_errno(fmt::format("unlink {}", shown));
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return Error::from_errno("socket");
    mode_t old_umask = ::umask(SOCKET_UMASK);
    int rc = ::bind(fd.get(), address.raw(), address.length());
    int bind_errno = errno;
    ::umask(old_umask);
    if (rc < 0)
        return Error::from_errno(fmt::format("bind {}", shown), bind_errno);
    if (m_owner && ::geteuid() == 0 && ::fchownat(m_fd.get(), name.c_str(), m_owner->uid, m_owner->gid, AT_SYMLINK_NOFOLLOW) < 0) {
        int code = errno;
        ::unlinkat(m_fd.get(), name.c_str(), 0);
        return Error::from_errno(fmt::format("chown {}", shown), code);
    }
    if (::listen(fd.get(), backlog) < 0 || !stat_at(m_fd.get(), name, identity)) {
        int code = errno;
        ::unlinkat(m_fd.get(), name.c_str(), 0);
        return Error::from_errno(fmt::format("listen {}", shown), code);
    }
    return fd;
}

void SocketDirectory::remove(std::string const& name, struct stat const& identity) const
{
    struct stat now { };
    if (stat_at(m_fd.get(), name, now) && S_ISSOCK(now.st_mode) && now.st_dev == identity.st_dev && now.st_ino == identity.st_ino)
        ::unlinkat(m_fd.get(), name.c_str(), 0);
}

} // namespace qtbox::proxy
