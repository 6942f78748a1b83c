// The seccomp allow-list qtsm-server runs under once its socket is bound and
// its upstream channel is connected (docs/FORMATS.md §5; the server handles requests
// from every local app, so it keeps only what its event loop needs).
//
// Allowed: reading and writing descriptors it already has, accept4 (new
// clients), epoll, the SO_PEERCRED lookup, memory without PROT_EXEC, the
// clock, futex, signals' return path, exit. Everything else (open, socket,
// connect, exec, ptrace, ...) kills the process: a server that reaches a
// call outside its loop is no longer on a path anyone reviewed.
// PR_SET_NO_NEW_PRIVS is set first (needed for an unprivileged filter).
#pragma once

#include <qtbox/base/error.hpp>

namespace qtbox::qtsm {

ErrorOr<void> enter_server_sandbox();

} // namespace qtbox::qtsm
