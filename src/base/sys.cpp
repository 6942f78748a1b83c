#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace qtbox::sys {

ErrorOr<UniqueFd> open(std::string const& path, int flags, mode_t mode)
{
    for (;;) {
        int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
        if (fd >= 0)
            return UniqueFd(fd);
        if (errno != EINTR)
            return Error::from_errno(fmt::format("open {}", path));
    }
}

ErrorOr<struct stat> fstat(int fd)
{
    struct stat st { };
    if (::fstat(fd, &st) < 0)
        return Error::from_errno("fstat");
    return st;
}

ErrorOr<struct stat> stat(std::string const& path)
{
    struct stat st { };
    if (::stat(path.c_str(), &st) < 0)
        return Error::from_errno(fmt::format("stat {}", path));
    return st;
}

ErrorOr<struct stat> lstat(std::string const& path)
{
    struct stat st { };
    if (::lstat(path.c_str(), &st) < 0)
        return Error::from_errno(fmt::format("lstat {}", path));
    return st;
}

ErrorOr<std::size_t> read(int fd, void* buffer, std::size_t size)
{
    for (;;) {
        ssize_t n = ::read(fd, buffer, size);
        if (n >= 0)
            return static_cast<std::size_t>(n);
        if (errno != EINTR)
            return Error::from_errno("read");
    }
}

ErrorOr<void> read_exact(int fd, void* buffer, std::size_t size)
{
    auto* cursor = static_cast<std::uint8_t*>(buffer);
    while (size > 0) {
        std::size_t n = TRY(read(fd, cursor, size));
        if (n == 0)
            return Error::from_code(SysError::UnexpectedEnd, "read: unexpected end of file");
        cursor += n;
        size -= n;
    }
    return {};
}

ErrorOr<void> pread_exact(int fd, void* buffer, std::size_t size, std::uint64_t offset)
{
    auto* cursor = static_cast<std::uint8_t*>(buffer);
    while (size > 0) {
        ssize_t n = ::pread(fd, cursor, size, static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return Error::from_errno("pread");
        }
        if (n == 0)
            return Error::from_code(SysError::UnexpectedEnd, "pread: unexpected end of file");
        cursor += n;
        size -= static_cast<std::size_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
    return {};
}

ErrorOr<void> write_all(int fd, ByteView bytes)
{
    std::size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return Error::from_errno("write");
        }
        done += static_cast<std::size_t>(n);
    }
    return {};
}

ErrorOr<Bytes> read_fd(int fd, std::size_t max_size)
{
    Bytes bytes;
    std::size_t const chunk = 64 * 1024;
    for (;;) {
        std::size_t old_size = bytes.size();
        if (old_size > max_size)
            return Error::from_code(SysError::TooLarge, fmt::format("input is larger than the limit of {} bytes", max_size));
        bytes.resize(old_size + chunk);
        std::size_t n = TRY(read(fd, bytes.data() + old_size, chunk));
        bytes.resize(old_size + n);
        if (n == 0)
            break;
    }
    if (bytes.size() > max_size)
        return Error::from_code(SysError::TooLarge, fmt::format("input is larger than the limit of {} bytes", max_size));
    return bytes;
}

ErrorOr<Bytes> read_file(std::string const& path, std::size_t max_size)
{
    if (path == "-") {
        auto result = read_fd(STDIN_FILENO, max_size);
        if (result.is_error())
            return result.release_error().context("standard input");
        return result;
    }
    auto fd = TRY(open(path, O_RDONLY));
    auto result = read_fd(fd.get(), max_size);
    if (result.is_error())
        return result.release_error().context(path);
    return result;
}

ErrorOr<void> mkdir_p(std::string const& path, mode_t mode)
{
    if (path.empty())
        return Error::from_code(SysError::EmptyPath, "mkdir: empty path");
    std::string partial;
    std::size_t position = 0;
    while (position != std::string::npos) {
        position = path.find('/', position + 1);
        partial = path.substr(0, position);
        if (partial.empty())
            continue;
        if (::mkdir(partial.c_str(), mode) < 0 && errno != EEXIST)
            return Error::from_errno(fmt::format("mkdir {}", partial));
    }
    auto st = TRY(stat(path));
    if (!S_ISDIR(st.st_mode))
        return Error::from_code(SysError::NotADirectory, fmt::format("mkdir {}: exists and is not a directory", path));
    return {};
}

ErrorOr<void> make_socket_directory(std::string const& path, mode_t mode, std::optional<gid_t> group)
{
    std::string directory = path;
    while (directory.size() > 1 && directory.back() == '/')
        directory.pop_back();
    if (directory.empty())
        return Error::from_code(SysError::EmptyPath, "mkdir: empty path");
    std::size_t position = 0;
    while (position != std::string::npos) {
        position = directory.find('/', position + 1);
        auto partial = directory.substr(0, position);
        if (partial.empty() || partial == "/")
            continue;
        mode_t wanted = position == std::string::npos ? mode : 0755;
        if (::mkdir(partial.c_str(), wanted) < 0) {
            if (errno != EEXIST)
                return Error::from_errno(fmt::format("mkdir {}", partial));
            continue;
        }
        // Made here: exactly `wanted`, whatever the umask took away.
        auto made = TRY(open(partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (::fchmod(made.get(), wanted) < 0)
            return Error::from_errno(fmt::format("chmod {}", partial));
    }
    auto st = TRY(stat(directory));
    if (!S_ISDIR(st.st_mode))
        return Error::from_code(SysError::NotADirectory, fmt::format("mkdir {}: exists and is not a directory", directory));
    if (!group || ::geteuid() != 0)
        return {};
    auto fd = TRY(open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    auto own = TRY(fstat(fd.get()));
    if (own.st_uid == 0 && own.st_gid != *group && ::fchown(fd.get(), static_cast<uid_t>(-1), *group) < 0)
        return Error::from_errno(fmt::format("chgrp {}", directory));
    return {};
}

ErrorOr<void> unlink(std::string const& path)
{
    if (::unlink(path.c_str()) < 0)
        return Error::from_errno(fmt::format("unlink {}", path));
    return {};
}

ErrorOr<void> rename(std::string const& from, std::string const& to)
{
    if (::rename(from.c_str(), to.c_str()) < 0)
        return Error::from_errno(fmt::format("rename {} to {}", from, to));
    return {};
}

ErrorOr<void> fsync(int fd)
{
    if (::fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
        return Error::from_errno("fsync");
    return {};
}

std::string describe_wait_status(int status)
{
    if (WIFEXITED(status))
        return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        int number = WTERMSIG(status);
        char const* name = sigabbrev_np(number);
        return fmt::format("was killed by signal {} (SIG{}){}", number, name ? name : "?",
            WCOREDUMP(status) ? ", core dumped" : "");
    }
    return fmt::format("ended with wait status {:#x}", status);
}

ErrorOr<void> getrandom(void* buffer, std::size_t size)
{
    auto* cursor = static_cast<std::uint8_t*>(buffer);
    while (size > 0) {
        ssize_t n = ::getrandom(cursor, size, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return Error::from_errno("getrandom");
        }
        cursor += n;
        size -= static_cast<std::size_t>(n);
    }
    return {};
}

ErrorOr<void> set_nonblocking(int fd)
{
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0)
        return Error::from_errno("fcntl F_GETFL");
    if ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return Error::from_errno("fcntl F_SETFL O_NONBLOCK");
    return {};
}

ErrorOr<UniqueFd> signalfd(sigset_t const& signals)
{
    int fd = ::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return Error::from_errno("signalfd");
    return UniqueFd(fd);
}

ErrorOr<UniqueFd> eventfd()
{
    int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return Error::from_errno("eventfd");
    return UniqueFd(fd);
}

void signal_event(int fd)
{
    std::uint64_t one = 1;
    // Fails only when the counter would overflow (the event is pending
    // anyway) or on a bad fd (a bug the caller's tests catch).
    [[maybe_unused]] auto written = ::write(fd, &one, sizeof(one));
}

void clear_event(int fd)
{
    std::uint64_t count = 0;
    // EAGAIN: nothing was pending.
    [[maybe_unused]] auto taken = ::read(fd, &count, sizeof(count));
}

namespace {

ErrorOr<sockaddr_un> unix_address(std::string const& path)
{
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(address.sun_path))
        return Error::from_code(SysError::PathTooLong, fmt::format("socket path is empty or longer than {} bytes: {}", sizeof(address.sun_path) - 1, path));
    std::memcpy(address.sun_path, path.data(), path.size());
    return address;
}

} // namespace

ErrorOr<void> check_trusted_directory(std::string const& directory, std::string_view what)
{
    auto st = TRY(stat(directory));
    if (!S_ISDIR(st.st_mode))
        return Error::from_code(SysError::NotADirectory, fmt::format("{} {} is not a directory", what, directory));
    if (st.st_uid != ::geteuid() && st.st_uid != 0)
        return Error::from_code(SysError::UnsafeDirectory,
            fmt::format("{} {} is owned by uid {}, not by this user (uid {}) or root", what, directory, st.st_uid, ::geteuid()));
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return Error::from_code(SysError::UnsafeDirectory,
            fmt::format("{} {} is writable by {} (mode {:04o}); make it 0755 or stricter", what, directory,
                (st.st_mode & S_IWOTH) != 0 ? "everyone" : "its group", st.st_mode & 07777));
    return {};
}

ErrorOr<UniqueFd> unix_listen(std::string const& path, mode_t mode, int backlog)
{
    auto address = TRY(unix_address(path));
    auto slash = path.rfind('/');
    TRY(check_trusted_directory(slash == std::string::npos ? std::string(".") : path.substr(0, slash == 0 ? 1 : slash), "socket directory"));
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return Error::from_errno("socket");
    // A socket file left behind by a dead process would make bind() fail.
    // Remove it only if it is a socket: never delete a regular file.
    struct stat st { };
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        ::unlink(path.c_str());
    // The file bind() creates takes the socket inode's mode less the umask
    // (Linux's unix_bind), so it is born with `mode` and never changed by
    // path afterwards: a chmod by name could follow whatever replaced the
    // file in between. fchmod sets the inode's mode; the umask, for the
    // moment of the bind, removes exactly what `mode` does not grant (at
    // least every bit for others, for files other threads create then).
    mode = mode & 0770;
    if (::fchmod(fd.get(), mode) < 0)
        return Error::from_errno(fmt::format("fchmod the socket for {}", path));
    mode_t old_umask = ::umask(0777 & ~mode);
    int rc = ::bind(fd.get(), reinterpret_cast<sockaddr const*>(&address), sizeof(address));
    int bind_errno = errno;
    ::umask(old_umask);
    if (rc < 0)
        return Error::from_errno(fmt::format("bind {}", path), bind_errno);
    if (::listen(fd.get(), backlog) < 0)
        return Error::from_errno(fmt::format("listen {}", path));
    return fd;
}

ErrorOr<UniqueFd> unix_connect(std::string const& path)
{
    auto address = TRY(unix_address(path));
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return Error::from_errno("socket");
    for (;;) {
        if (::connect(fd.get(), reinterpret_cast<sockaddr const*>(&address), sizeof(address)) == 0)
            return fd;
        if (errno != EINTR)
            return Error::from_errno(fmt::format("connect {}", path));
    }
}

ErrorOr<AtomicFile> AtomicFile::create(std::string path, mode_t mode)
{
    auto slash = path.rfind('/');
    std::string directory = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.empty())
        return Error::from_code(SysError::IsADirectory, fmt::format("output path names a directory: {}", path));
    std::string temporary = (directory == "/" ? "" : directory) + "/." + base + ".XXXXXX";
    int fd = ::mkostemp(temporary.data(), O_CLOEXEC);
    if (fd < 0)
        return Error::from_errno(fmt::format("create a temporary file beside {}", path));
    return AtomicFile(std::move(path), std::move(temporary), UniqueFd(fd), mode);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : m_path(std::move(other.m_path))
    , m_temporary_path(std::move(other.m_temporary_path))
    , m_fd(std::move(other.m_fd))
    , m_mode(other.m_mode)
    , m_committed(other.m_committed)
{
    other.m_committed = true;
}

AtomicFile::~AtomicFile()
{
    if (!m_committed && !m_temporary_path.empty())
        ::unlink(m_temporary_path.c_str());
}

ErrorOr<void> AtomicFile::commit()
{
    if (::fchmod(m_fd.get(), m_mode) < 0)
        return Error::from_errno(fmt::format("chmod {}", m_temporary_path));
    TRY(fsync(m_fd.get()));
    m_fd.reset();
    TRY(rename(m_temporary_path, m_path));
    m_committed = true;
    return {};
}

ErrorOr<void> write_file_atomic(std::string const& path, ByteView bytes, mode_t mode)
{
    auto file = TRY(AtomicFile::create(path, mode));
    TRY(file.write(bytes));
    TRY(file.commit());
    return {};
}

} // namespace qtbox::sys
