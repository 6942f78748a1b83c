// The guest's serial console as the VMM sees it: bytes from the UART go to
// one sink (a file, stdout, or nowhere, per `--console`), line-buffered so
// that the log reads well and a byte-per-syscall guest costs one write per
// line. Whatever the sink, the console is scanned for the kernel's panic
// banner: a guest booted with `panic=1 reboot=k` reboots after a panic
// exactly as after a clean shutdown, and this is how the VMM tells the two
// apart (issue 5: a panicking kernel must make vmm exit non-zero).
//
// The guest controls these bytes: an app printing the banner is reported as
// a panic. That only affects how its own end is reported.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace qtbox::vmm {

class Console {
public:
    // `fd` < 0 discards the output (it is still scanned). The fd is not owned.
    explicit Console(int fd) : m_fd(fd) { }

    // Longest line kept before it is written out in pieces.
    static constexpr std::size_t LINE_LIMIT = 4096;
    // What Linux's panic() prints first (kernel/panic.c).
    static constexpr std::string_view PANIC_BANNER = "Kernel panic - not syncing";

    void write_byte(std::uint8_t byte);
    // Writes out a partial line (a prompt, say); called periodically by the
    // event loop. Skips the round when a vCPU thread is busy writing, and
    // writes only what the sink takes without blocking: a stalled reader
    // must not keep the event loop from its signals.
    void try_flush();
    // The VM has stopped: writes what is left, waiting at most `timeout_ms`
    // for the sink to take it.
    void flush(int timeout_ms);
    // The VM is stopping: a write that a signal interrupts gives up and
    // drops the console instead of waiting for a reader that may never come.
    void abandon() { m_abandoned.store(true); }

    // The first panic line seen, without its line ending.
    std::optional<std::string> panic_line() const;

private:
    void write_out_locked();
    void write_ready_locked(int timeout_ms);
    // Nothing more goes to the sink; the current line counts as written.
    void drop_sink_locked();
    void end_line_locked();

    int m_fd;
    // Held by a vCPU thread across a (blocking) write to the sink.
    mutable std::mutex m_mutex;
    std::string m_line;          // the current line, for the banner scan
    std::size_t m_written { 0 }; // how much of m_line the sink already has
    bool m_panic_seen { false };
    bool m_sink_broken { false };
    // Never held across a write, so the event loop can ask for the panic
    // line while a vCPU thread waits on a stalled reader.
    mutable std::mutex m_panic_mutex;
    std::optional<std::string> m_panic;
    std::atomic<bool> m_abandoned { false };
};

} // namespace qtbox::vmm
