// One wrapper per system call (SerenityOS's Core::System): each retries on
// EINTR where that is safe and turns -1/errno into an Error that names the
// call and the object it worked on.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>

#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <sys/types.h>

namespace qtbox::sys {

// Failures that are not a system call's errno but that callers tell apart.
enum class SysError {
    UnexpectedEnd = 1, // the input ended before the bytes asked for
    TooLarge,          // more than the caller's limit (read_file, read_fd)
    NotADirectory,     // mkdir_p: the path exists and is not a directory
    IsADirectory,      // AtomicFile: the output path ends in '/'
    PathTooLong,       // a Unix socket path is empty or longer than sun_path
    EmptyPath,         // mkdir_p("")
    UnsafeDirectory,   // a socket directory others may write to, or owned by another user
};

ErrorOr<UniqueFd> open(std::string const& path, int flags, mode_t mode = 0);
ErrorOr<struct stat> fstat(int fd);
ErrorOr<struct stat> stat(std::string const& path);
ErrorOr<struct stat> lstat(std::string const& path);

// Reads up to `size` bytes once (EINTR retried). 0 means end of file.
ErrorOr<std::size_t> read(int fd, void* buffer, std::size_t size);
// Reads exactly `size` bytes or fails ("unexpected end of file").
ErrorOr<void> read_exact(int fd, void* buffer, std::size_t size);
ErrorOr<void> pread_exact(int fd, void* buffer, std::size_t size, std::uint64_t offset);
ErrorOr<void> write_all(int fd, ByteView bytes);
inline ErrorOr<void> write_all(int fd, std::string_view text) { return write_all(fd, as_bytes(text)); }

// Reads a whole file (or "-" for stdin), refusing anything larger than
// max_size so that an untrusted path cannot exhaust memory.
ErrorOr<Bytes> read_file(std::string const& path, std::size_t max_size);
ErrorOr<Bytes> read_fd(int fd, std::size_t max_size);

ErrorOr<void> mkdir_p(std::string const& path, mode_t mode);
// The directory of sockets that a service account must reach (vmm(1),
// qt-proxy(1) --user; docs/FORMATS.md §1): mkdir_p, except that the parents
// it creates are 0755, so that only the last directory is private (`mode`),
// whatever the umask. With `group`, when this process is root, that last
// directory gets the group if root owns it (fchown through a directory fd
// opened with O_NOFOLLOW, never by name).
ErrorOr<void> make_socket_directory(std::string const& path, mode_t mode, std::optional<gid_t> group = {});
ErrorOr<void> unlink(std::string const& path);
ErrorOr<void> rename(std::string const& from, std::string const& to);
ErrorOr<void> fsync(int fd);
ErrorOr<void> getrandom(void* buffer, std::size_t size);
// A waitpid(2) status in words: "exited with status 3", "was killed by
// signal 9 (SIGKILL)", "... , core dumped".
std::string describe_wait_status(int status);

// O_NONBLOCK on an fd made elsewhere (accepted sockets, pipes).
ErrorOr<void> set_nonblocking(int fd);
// A non-blocking, close-on-exec signalfd for `signals` (which the caller
// blocks first, so that they queue for the fd).
ErrorOr<UniqueFd> signalfd(sigset_t const& signals);
// A non-blocking, close-on-exec eventfd starting at 0, and the two halves of
// its use: signal_event adds 1 (an overflowing counter means the event is
// pending anyway), clear_event reads the counter back to 0.
ErrorOr<UniqueFd> eventfd();
void signal_event(int fd);
void clear_event(int fd);

// AF_UNIX stream sockets (SOCK_CLOEXEC). unix_listen() first checks the
// socket's directory (check_trusted_directory), replaces a stale socket
// file, and creates the new one with `mode` & 0770 (0660 by default: never
// world-accessible) from the start: the file is never chmod'ed by name.
ErrorOr<UniqueFd> unix_listen(std::string const& path, mode_t mode = 0660, int backlog = 128);
// A directory fit to hold a listening socket or a key: owned by this user
// or root, and writable by nobody else (SysError::UnsafeDirectory
// otherwise), so that nobody else can replace or redirect what is in it.
// `what` starts the message ("socket directory /run/x is writable by ...").
ErrorOr<void> check_trusted_directory(std::string const& directory, std::string_view what);
ErrorOr<UniqueFd> unix_connect(std::string const& path);

// Writes a file under a temporary name in the same directory and renames it
// into place on commit(); if commit() never runs, the temporary is removed.
// This is how every applet honours docs/FORMATS.md §10 ("no partial output files").
class AtomicFile {
public:
    static ErrorOr<AtomicFile> create(std::string path, mode_t mode = 0644);
    ~AtomicFile();
    AtomicFile(AtomicFile&& other) noexcept;
    AtomicFile& operator=(AtomicFile&&) = delete;
    AtomicFile(AtomicFile const&) = delete;

    int fd() const { return m_fd.get(); }
    std::string const& path() const { return m_path; }
    std::string const& temporary_path() const { return m_temporary_path; }
    ErrorOr<void> write(ByteView bytes) { return write_all(m_fd.get(), bytes); }
    // fsync, fchmod to the requested mode, rename into place.
    ErrorOr<void> commit();

private:
    AtomicFile(std::string path, std::string temporary_path, UniqueFd fd, mode_t mode)
        : m_path(std::move(path)), m_temporary_path(std::move(temporary_path)), m_fd(std::move(fd)), m_mode(mode) { }

    std::string m_path;
    std::string m_temporary_path;
    UniqueFd m_fd;
    mode_t m_mode { 0644 };
    bool m_committed { false };
};

// Convenience: AtomicFile::create + write + commit.
ErrorOr<void> write_file_atomic(std::string const& path, ByteView bytes, mode_t mode = 0644);

} // namespace qtbox::sys
