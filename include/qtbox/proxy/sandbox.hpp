// The seccomp allow-list qt-proxy runs under once its listeners are bound.
//
// It allows what the event loop, the resolver and a SIGHUP reload need
// (sockets of the families AF_UNIX, AF_INET, AF_INET6 and AF_VSOCK only;
// bind/listen for new hybrid listeners, and unlinkat on the socket
// directory's fd alone for removed ones, proxy/socket_dir.hpp: no unlink,
// chmod, mkdir or rmdir by path at all; read-only opens for the
// configuration, hosts and resolv.conf files, which Landlock confines to
// their directories where the kernel has it, proxy/landlock.hpp;
// memory without PROT_EXEC) and nothing else: no exec, no ptrace, no
// writable opens, no ioctl, no new namespaces, no new threads or processes
// (clone is not allowed; the engine's worker threads are started before and
// the filter is loaded into every thread at once, SECCOMP_FILTER_FLAG_TSYNC).
//
// Action: SECCOMP_RET_TRAP. Any other system call is not executed; the
// kernel sends SIGSYS, whose handler writes one line naming the call and
// exits with SANDBOX_VIOLATION_EXIT. Trap rather than kill so that the
// operator gets a line naming the call instead of a bare "killed by SIGSYS";
// trap rather than errno because a proxy that reached a forbidden call is
// off its known paths and should not carry on. If SIGSYS is blocked or
// ignored when that happens, the kernel kills the process instead.
// PR_SET_NO_NEW_PRIVS is set first (required for an unprivileged filter,
// and it keeps any later exec from gaining privileges).
#pragma once

#include <qtbox/base/error.hpp>

namespace qtbox::proxy {

// 128 + SIGSYS, the status a shell shows for a process killed by SIGSYS.
constexpr int SANDBOX_VIOLATION_EXIT = 159;

// `socket_directory_fd`: the only directory fd unlinkat may use (-1: none).
ErrorOr<void> enter_proxy_sandbox(int socket_directory_fd);

} // namespace qtbox::proxy
