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
//
// Whatever the sink, every byte also goes to a ring holding the last
// CONSOLE_RING_SIZE bytes, which `vmm --console-socket` replays to a reader
// before following the live output (docs/FORMATS.md §11; the server is
// vmm/console_server.hpp). The ring has a lock of its own that nobody holds
// across I/O: a vCPU thread appending never waits for a reader, a sink or
// the event loop's sends.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace qtbox::vmm {

// docs/FORMATS.md §11: how much console output `--console-socket` replays.
constexpr std::size_t CONSOLE_RING_SIZE = std::size_t(1) << 20;

// The last `capacity` bytes of a byte stream, addressed by their position
// in the whole stream (bytes since boot), so that a reader keeping its
// position learns how much it missed once the ring has moved past it.
// append() and read() may run on different threads; each holds the lock
// only for its copy.
class ConsoleRing {
public:
    explicit ConsoleRing(std::size_t capacity = CONSOLE_RING_SIZE);

    void append(ByteView bytes);
    void append(std::uint8_t byte) { append(ByteView(&byte, 1)); }

    // The position after the newest byte: every byte ever appended.
    std::uint64_t end() const;
    // The oldest position still held.
    std::uint64_t begin() const;
    std::size_t capacity() const { return m_capacity; }

    struct Chunk {
        std::uint64_t dropped { 0 }; // bytes from `from` on that the ring no longer holds
        std::uint64_t next { 0 };    // the position after the bytes copied
    };
    // Appends to `out` up to `max` bytes from position `from`, or from the
    // oldest byte held when the ring has moved past `from` (`dropped` says
    // by how much). A `from` beyond end() reads nothing. When the copy
    // reaches end(), the wake fd is armed: the next append signals it.
    Chunk read(std::uint64_t from, std::size_t max, Bytes& out);

    // An eventfd to signal (sys::signal_event) on the first append after a
    // read that caught up with end(); -1 for none. Set before any append
    // runs on another thread.
    void set_wake_fd(int fd);

private:
    std::size_t const m_capacity;
    std::unique_ptr<std::uint8_t[]> m_bytes; // written lazily: untouched pages cost nothing
    mutable std::mutex m_mutex;
    std::uint64_t m_end { 0 };
    int m_wake_fd { -1 };
    bool m_wake_armed { false };
};

class Console {
public:
    // `fd` < 0 discards the output (it is still scanned and kept in the
    // ring). The fd is not owned.
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

    // The last CONSOLE_RING_SIZE bytes of output, for --console-socket.
    ConsoleRing& ring() { return m_ring; }

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
    // Fed before m_mutex is taken, so that a vCPU thread waiting on a
    // stalled sink has already put its byte here.
    ConsoleRing m_ring;
};

} // namespace qtbox::vmm
