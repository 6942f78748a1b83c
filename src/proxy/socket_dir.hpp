// The parent-mode proxy's socket directory (<run>/vsock, docs/FORMATS.md §1,
// §6), through one directory fd: every file the proxy makes or removes after
// its set-up is a socket `3_<port>` in this directory, reached as
// (fd, name), so that the seccomp filter can allow unlinkat only on this fd
// (proxy/sandbox.hpp) and no path-based unlink, chmod or mkdir at all.
//
// bind(2) takes no directory fd; the socket is bound at
// /proc/self/fd/<fd>/<name>, which names the same directory even if its path
// is renamed or replaced, and created with mode 0660 through the umask, so
// no chmod follows. Where Landlock is on, only this directory takes new
// sockets (proxy/sandbox.hpp).
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>

#include <optional>
#include <string>
#include <sys/stat.h>
#include <sys/types.h>

namespace qtbox::proxy {

class SocketDirectory {
public:
    struct Owner {
        uid_t uid;
        gid_t gid;
    };
    // Makes `path` (mode 0750) if it is missing and opens it. `owner`: the
    // service user the proxy becomes (qt-proxy(1) --user); the directory is
    // given to it now, and so is each socket made while this process is
    // still root.
    static ErrorOr<SocketDirectory> open(std::string path, std::optional<Owner> owner);

    // A listening socket named `name` (no '/'), mode 0660, replacing a
    // socket file nobody accepts on, refusing one another process serves
    // (net::SocketError::AddressInUse). `identity` gets the file's.
    ErrorOr<UniqueFd> listen(std::string const& name, int backlog, struct stat& identity) const;
    // Removes `name` if it is still the socket `identity` describes.
    void remove(std::string const& name, struct stat const& identity) const;

    int fd() const { return m_fd.get(); }
    std::string const& path() const { return m_path; }

private:
    SocketDirectory(std::string path, UniqueFd fd, std::optional<Owner> owner)
        : m_path(std::move(path)), m_fd(std::move(fd)), m_owner(owner) { }

    std::string m_path;
    UniqueFd m_fd;
    std::optional<Owner> m_owner;
};

} // namespace qtbox::proxy
