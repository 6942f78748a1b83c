// Landlock (Linux 5.13+, Documentation/userspace-api/landlock.rst) for
// qt-proxy: after its set-up, the filesystem it may still touch is its
// socket directory (make and remove sockets) and the directories of the
// files it reads again on SIGHUP and for names (the configuration, hosts,
// resolv.conf: read only). Everything else of what the running kernel's
// Landlock ABI can restrict is denied: writing, truncating, creating,
// removing or executing any other file, reading any other file.
//
// Landlock restricts the calling thread and the threads it starts later, so
// the engine applies it before its workers start (proxy.cpp). Where the
// kernel has no Landlock (not built, or not in the `lsm=` list), nothing is
// restricted and restrict_filesystem() says so: the seccomp filter
// (proxy/sandbox.hpp) still forbids every path-based unlink, chmod and mkdir
// and allows unlinkat on the socket directory's fd only, but bind(2) and
// read-only opens by path stay possible (qt-proxy(1) "SANDBOX").
#pragma once

#include <qtbox/base/error.hpp>

#include <string>
#include <vector>

namespace qtbox::proxy {

enum class LandlockState {
    On,          // the rules are in force
    Unavailable, // the kernel has no Landlock: nothing restricted
};

struct FilesystemScope {
    std::string socket_directory;    // empty: the process makes no socket files
    std::vector<std::string> read_files; // read after set-up; their directories become readable
};

// Sets no_new_privs (Landlock needs it without CAP_SYS_ADMIN).
ErrorOr<LandlockState> restrict_filesystem(FilesystemScope const& scope);

} // namespace qtbox::proxy
