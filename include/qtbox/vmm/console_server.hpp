// `vmm --console-socket PATH` (docs/FORMATS.md §11): the guest console,
// read-only, for one reader at a time, on a Unix stream socket served by
// the VMM's event loop.
//
// The protocol, all from the VMM to the reader (what a reader sends is
// read and dropped):
//
//   accepted:  "qtbox-console 1\n", then the ring's bytes (the last
//              CONSOLE_RING_SIZE bytes of output, vmm/console.hpp), then
//              the output as it comes, until the VMM exits: end of file
//   refused:   "busy: another reader is attached\n", then end of file
//
// A reader that falls behind by more than the ring skips ahead, and the
// bytes it lost are replaced by the line "[... N bytes dropped ...]" (on a
// line of its own). enclave/console.hpp is the client.
//
// Nothing here ever blocks: the reader's socket is written with sendmsg
// (MSG_DONTWAIT | MSG_NOSIGNAL) from a bounded buffer of one chunk copied
// out of the ring, and the ring is the only backlog. A stalled reader costs
// the vCPU threads nothing and the event loop one EPOLLOUT interest. New
// output wakes the loop through an eventfd that the ring signals on the
// first append after the reader caught up (ConsoleRing::set_wake_fd); the
// vCPU threads must be allowed to write it (wake_fd()).
//
// The socket file is mode 0600. A socket file nobody accepts on (left by a
// VMM that was killed) is replaced; one that another process serves is an
// error. The file is removed when the server goes, if it is still ours.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/vmm/console.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <vector>

namespace qtbox::vmm {

enum class ConsoleServerError {
    InUse = 1, // another live process serves the socket path
};

class ConsoleServer {
public:
    // docs/FORMATS.md §11: the first line a reader gets.
    static constexpr std::string_view GREETING = "qtbox-console 1\n";
    static constexpr std::string_view BUSY = "busy: another reader is attached\n";
    // The most bytes copied out of the ring for the reader at a time: what
    // one reader may have in flight besides the ring.
    static constexpr std::size_t CHUNK = 64 * 1024;
    // Chunks sent per wake before the loop serves its other fds.
    static constexpr int CHUNKS_PER_ROUND = 16;

    // Listens at `path` and registers with `loop`; the ring and the loop
    // must outlive the server, which sets the ring's wake fd.
    // `prebound`, when given, is the listener bind() made for `path`.
    static ErrorOr<std::unique_ptr<ConsoleServer>> create(std::string path, ConsoleRing& ring, net::EventLoop& loop,
        std::shared_ptr<devices::virtio::HostListener> prebound = {});
    // The listening socket at `path` as create() would make it, for a VMM
    // that must bind before it drops its privileges (vmm(1) --user).
    static ErrorOr<std::shared_ptr<devices::virtio::HostListener>> bind(std::string const& path);
    ~ConsoleServer();
    ConsoleServer(ConsoleServer const&) = delete;
    ConsoleServer& operator=(ConsoleServer const&) = delete;

    // The eventfd the ring signals from the vCPU threads.
    int wake_fd() const { return m_wake.get(); }
    // Whether a reader is attached (for tests and notices).
    bool has_reader() const { return m_reader != nullptr; }

    // Called after every wait of the loop: frees what the batch ended and
    // resumes accepting after a pause (net::EventLoop: handlers are
    // destroyed only between two waits).
    void settle();
    // The VM has stopped and the console is complete: sends the reader
    // what it has not had yet, waiting at most `timeout_ms` for it to
    // read, then closes it (the reader sees end of file), stops listening
    // and removes the socket file.
    void finish(int timeout_ms);

private:
    class Handler;
    struct Reader;

    ConsoleServer(std::string path, ConsoleRing& ring, net::EventLoop& loop);
    ErrorOr<void> start(std::shared_ptr<devices::virtio::HostListener> prebound);
    void on_listener();
    void on_wake();
    void on_reader(Reader& reader, std::uint32_t events);
    // Sends what is pending and refills from the ring, for a bounded
    // number of chunks; watches EPOLLOUT when it has to come back.
    void pump(Reader& reader);
    void watch(Reader& reader, std::uint32_t events);
    void end_reader();
    void refuse(UniqueFd client);
    void stop_listening();

    std::string m_path;
    ConsoleRing& m_ring;
    net::EventLoop& m_loop;
    UniqueFd m_listener;
    struct stat m_identity { };
    bool m_listener_in_loop { false };
    std::optional<std::chrono::steady_clock::time_point> m_accept_retry;
    UniqueFd m_wake;
    std::unique_ptr<Handler> m_listener_handler;
    std::unique_ptr<Handler> m_wake_handler;
    std::unique_ptr<Reader> m_reader;
    // Readers that ended during the current batch: their handlers may still
    // get an event fetched before they ended.
    std::vector<std::unique_ptr<Reader>> m_ended;
};

} // namespace qtbox::vmm
