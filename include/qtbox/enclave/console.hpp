// The reader's side of a debug enclave's console socket, which its VMM
// serves (`vmm --console-socket`, vmm/console_server.hpp; the protocol is
// docs/FORMATS.md §11): what `qt enclave console` and
// `qt enclave start --attach-console` run (docs/FORMATS.md §7).
//
// The VMM answers a connection with one line: "qtbox-console 1" when this
// reader is attached (the last 1 MiB of output follows, then the live
// output until the enclave ends), or "busy: ..." when another reader is.
#pragma once

#include <qtbox/base/error.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace qtbox::enclave {

// Why follow_console failed, where a caller branches on it; anything else
// is an errno error (a socket that may not be connected to, an output that
// cannot be written).
enum class ConsoleError {
    Busy = 1,  // another reader is attached; one reader at a time
    NoConsole, // nothing serves the socket (no file, or refused: the enclave is not
               // running, or runs without --console-socket), or it closed before its greeting
    Protocol,  // the socket said something other than a greeting, or nothing within the timeout
};

// docs/FORMATS.md §11: the greeting line (without its "\n") and the start of
// a refusal line.
constexpr std::string_view CONSOLE_GREETING = "qtbox-console 1";
constexpr std::string_view CONSOLE_BUSY_PREFIX = "busy:";
// How long the VMM has to send its first line, and how long that line may be.
constexpr int CONSOLE_GREETING_TIMEOUT_MS = 5000;
constexpr std::size_t CONSOLE_GREETING_LIMIT = 256;

// Connects to `socket_path`, checks the greeting, then copies everything
// the VMM sends to `out_fd` until:
//   - the stream ends (the enclave stopped): success;
//   - `stop_fd` becomes readable or hung up (Ctrl-C: detach): success,
//     at any point, even while `out_fd` is not taking output; stop_fd is
//     only polled, never read; -1 for none;
//   - `out_fd`'s reader went away (EPIPE): success, as a detach (SIGPIPE
//     is blocked in the calling thread meanwhile, and the one raised is
//     taken back: it never kills the caller).
// Errors: ConsoleError codes as above, else an errno error.
ErrorOr<void> follow_console(std::string const& socket_path, int out_fd, int stop_fd);

} // namespace qtbox::enclave
