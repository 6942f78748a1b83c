// The half of init that touches the system (see init.hpp for the steps).
#include <qtbox/base/sys.hpp>
#include <qtbox/eif/app_config.hpp>
#include <qtbox/init/init.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/qtsm/client.hpp>
#include <qtbox/qtsm/framing.hpp>
#include <qtbox/vsock/address.hpp>
#include <qtbox/vsock/heartbeat.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/module.h>
#include <linux/random.h>
#include <net/if.h>
#include <optional>
#include <poll.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <ctime>
#include <unistd.h>

namespace qtbox::init {

namespace {

ErrorOr<void> ensure_directory(std::string const& path, mode_t mode)
{
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return Error::from_string(fmt::format("{} is a symbolic link, not a directory", path));
        if (!S_ISDIR(st.st_mode))
            return Error::from_string(fmt::format("{} is not a directory", path));
        return {};
    }
    if (::mkdir(path.c_str(), mode) < 0 && errno != EEXIST)
        return Error::from_errno(fmt::format("mkdir {}", path));
    // mkdir applies the umask; the sticky /tmp needs its mode exactly.
    if (::chmod(path.c_str(), mode) < 0)
        return Error::from_errno(fmt::format("chmod {}", path));
    return {};
}

ErrorOr<void> mount_fs(char const* source, std::string const& target, char const* type, unsigned long flags,
    char const* data)
{
    if (::mount(source, target.c_str(), type, flags, data) < 0)
        return Error::from_errno(fmt::format("mount {} on {}", type ? type : source, target));
    return {};
}

ErrorOr<std::string> read_optional(std::string const& path)
{
    auto bytes = sys::read_file(path, eif::MAX_FILE_SIZE);
    if (bytes.is_error()) {
        if (bytes.error().is_errno(ENOENT))
            return std::string();
        return bytes.release_error();
    }
    return std::string(as_chars(bytes.value()));
}

// Removes everything below `directory_fd` that lives on `device`, leaving
// `keep` (a top-level name) alone. Used to free the initramfs before the
// switch, as switch_root(8) does; mount points (other devices) are skipped.
void remove_tree(int directory_fd, dev_t device, char const* keep)
{
    int fd = ::dup(directory_fd);
    if (fd < 0)
        return;
    DIR* directory = ::fdopendir(fd);
    if (!directory) {
        ::close(fd);
        return;
    }
    while (auto* entry = ::readdir(directory)) {
        std::string_view name = entry->d_name;
        if (name == "." || name == ".." || (keep && name == keep))
            continue;
        struct stat st {};
        if (::fstatat(directory_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != device)
            continue;
        if (S_ISDIR(st.st_mode)) {
            int child = ::openat(directory_fd, entry->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (child >= 0) {
                remove_tree(child, device, nullptr);
                ::close(child);
            }
            ::unlinkat(directory_fd, entry->d_name, AT_REMOVEDIR);
        } else {
            ::unlinkat(directory_fd, entry->d_name, 0);
        }
    }
    ::closedir(directory);
}

void report(NoticeSink const& notice, Severity severity, std::string text)
{
    if (notice)
        notice({ severity, std::move(text) });
}

// execve with a PATH search in the app's own PATH (execvpe would use init's).
[[noreturn]] void exec_app(eif::AppConfig const& config, NoticeSink const& notice)
{
    std::vector<char*> argv;
    for (auto const& argument : config.argv)
        argv.push_back(const_cast<char*>(argument.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto const& entry : config.env)
        envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);

    std::string const& program = config.argv[0];
    int error = ENOENT;
    if (program.find('/') != std::string::npos) {
        ::execve(program.c_str(), argv.data(), envp.data());
        error = errno;
    } else {
        std::string path = eif::path_of(config.env);
        std::size_t start = 0;
        while (start <= path.size()) {
            auto colon = path.find(':', start);
            std::string directory = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
            std::string candidate = (directory.empty() ? std::string(".") : directory) + "/" + program;
            ::execve(candidate.c_str(), argv.data(), envp.data());
            // Keep the most telling error: a file that exists but cannot run.
            if (errno != ENOENT && errno != ENOTDIR)
                error = errno;
            if (colon == std::string::npos)
                break;
            start = colon + 1;
        }
    }
    report(notice, Severity::Error, fmt::format("cannot run {}: {}", program, std::strerror(error)));
    ::_exit(error == ENOENT ? 127 : 126);
}

[[noreturn]] void reboot_now()
{
    // Let the console transmit what is queued (the app's last words and
    // ours) before the kernel resets the machine.
    ::tcdrain(STDERR_FILENO);
    ::sync();
    ::reboot(RB_AUTOBOOT);
    // Still here: let the kernel panic ("Attempted to kill init"), which
    // with panic=1 reboots as well.
    ::_exit(1);
}

[[noreturn]] void fail(Events const& events, Error const& error)
{
    report(events.notice, Severity::Error, fmt::format("{}; rebooting", error.message()));
    reboot_now();
}

} // namespace

ErrorOr<void> mount_early_filesystems()
{
    TRY(ensure_directory("/proc", 0555));
    TRY(ensure_directory("/sys", 0555));
    TRY(ensure_directory("/dev", 0755));
    TRY(mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
    TRY(mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
    TRY(mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"));
    return {};
}

void attach_console()
{
    // The kernel opens /dev/console as fds 0-2 only when the initramfs has
    // the node; eif-build puts it there, but a hand-made initrd may not.
    if (::fcntl(STDERR_FILENO, F_GETFD) >= 0)
        return;
    int fd = ::open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0)
        return;
    for (int target = 0; target <= 2; ++target) {
        if (::fcntl(target, F_GETFD) < 0)
            ::dup2(fd, target);
    }
    if (fd > 2)
        ::close(fd);
}

ErrorOr<void> load_module(std::string const& path)
{
    auto fd = TRY(sys::open(path, O_RDONLY));
    Compression compression = module_compression(path);
    int flags = compression == Compression::None ? 0 : MODULE_INIT_COMPRESSED_FILE;
    if (::syscall(SYS_finit_module, fd.get(), "", flags) == 0 || errno == EEXIST)
        return {};
    int error = errno;
    // Without CONFIG_MODULE_DECOMPRESS (Debian 6.1) the kernel answers
    // EOPNOTSUPP, and before 5.17 EINVAL for the unknown flag: init
    // decompresses the module itself and hands over the image.
    if (compression != Compression::None && (error == EOPNOTSUPP || error == EINVAL)) {
        auto compressed = TRY(sys::read_file(path, MAX_MODULE_SIZE));
        auto image = decompress_module(compressed, compression);
        if (image.is_error())
            return image.release_error().context(fmt::format("cannot load {}", path));
        if (::syscall(SYS_init_module, image.value().data(), image.value().size(), "") < 0 && errno != EEXIST)
            return Error::from_errno(fmt::format("init_module {}", path));
        return {};
    }
    return Error::from_errno(fmt::format("finit_module {}", path), error);
}

ErrorOr<void> bring_up_loopback()
{
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return Error::from_errno("socket for lo");
    UniqueFd socket_fd(fd);
    ifreq request {};
    std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (::ioctl(fd, SIOCGIFFLAGS, &request) < 0)
        return Error::from_errno("SIOCGIFFLAGS lo");
    // Bringing lo up makes the kernel add 127.0.0.1/8 and ::1 itself.
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    if (::ioctl(fd, SIOCSIFFLAGS, &request) < 0)
        return Error::from_errno("SIOCSIFFLAGS lo");
    return {};
}

namespace {

std::int64_t milliseconds_left(std::chrono::steady_clock::time_point deadline)
{
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    return std::max<std::int64_t>(left, 0);
}

// Waits for `events` on `fd` until the deadline; false on timeout.
ErrorOr<bool> wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline)
{
    for (;;) {
        pollfd polled { fd, events, 0 };
        int ready = ::poll(&polled, 1, static_cast<int>(milliseconds_left(deadline)));
        if (ready > 0)
            return true;
        if (ready == 0)
            return false;
        if (errno != EINTR)
            return Error::from_errno("poll");
    }
}

// Errors of a connect that mean the vsock transport is not there yet.
bool transport_not_ready(Error const& error)
{
    return error.is_errno(ENODEV) || error.is_errno(ENETUNREACH) || error.is_errno(EHOSTUNREACH)
        || error.is_errno(EADDRNOTAVAIL) || error.is_errno(EAFNOSUPPORT);
}

ErrorOr<UniqueFd> connect_parent(std::uint32_t port, std::chrono::steady_clock::time_point deadline)
{
    auto address = net::SocketAddress::vsock(vsock::PARENT_CID, port);
    for (;;) {
        auto pending = net::start_connect(address);
        Error failure = Error::from_string("timed out");
        if (!pending.is_error()) {
            bool connected = !pending.value().in_progress;
            if (!connected) {
                if (!TRY(wait_for(pending.value().fd.get(), POLLOUT, deadline)))
                    return Error::from_string("connect: no answer in time");
                auto finished = net::finish_connect(pending.value().fd.get());
                connected = !finished.is_error();
                if (!connected)
                    failure = finished.release_error();
            }
            if (connected)
                return std::move(pending.value().fd);
        } else {
            failure = pending.release_error();
        }
        // The vsock transport may still be probing right after the modules
        // were loaded; anything else (a reset: nobody serves the port) is
        // final.
        if (!transport_not_ready(failure) || milliseconds_left(deadline) == 0)
            return std::move(failure).context("connect");
        ::poll(nullptr, 0, 50);
    }
}

} // namespace

ErrorOr<std::uint64_t> exchange_heartbeat(int timeout_ms)
{
    using Clock = std::chrono::steady_clock;
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    auto socket = TRY(connect_parent(vsock::HEARTBEAT_PORT, deadline));

    std::uint8_t magic = vsock::HEARTBEAT_MAGIC;
    if (!TRY(wait_for(socket.get(), POLLOUT, deadline)))
        return Error::from_string(fmt::format("send: not possible within {} ms", timeout_ms));
    if (::send(socket.get(), &magic, 1, MSG_NOSIGNAL) != 1)
        return Error::from_errno("send");

    std::array<std::uint8_t, vsock::HEARTBEAT_REPLY_SIZE> reply {};
    std::size_t received = 0;
    while (received < reply.size()) {
        if (!TRY(wait_for(socket.get(), POLLIN, deadline)))
            return Error::from_string(fmt::format("no reply within {} ms", timeout_ms));
        ssize_t n = ::recv(socket.get(), reply.data() + received, reply.size() - received, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return Error::from_errno("recv");
        }
        if (n == 0)
            return Error::from_string(fmt::format("the parent closed the connection after {} of {} bytes", received, reply.size()));
        received += static_cast<std::size_t>(n);
    }
    return vsock::parse_heartbeat_reply(ByteView(reply));
}

ErrorOr<void> set_wall_clock(std::uint64_t nanoseconds)
{
    timespec now {};
    now.tv_sec = static_cast<time_t>(nanoseconds / 1'000'000'000u);
    now.tv_nsec = static_cast<long>(nanoseconds % 1'000'000'000u);
    if (::clock_settime(CLOCK_REALTIME, &now) < 0)
        return Error::from_errno("clock_settime");
    return {};
}

ErrorOr<UniqueFd> open_qtsm_channel(int timeout_ms)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto socket = TRY(connect_parent(vsock::QTSM_PORT, deadline));
    // Blocking from here, with timeouts: qtsm::Client's calls, then
    // qtsm-server, which makes it non-blocking itself.
    int flags = ::fcntl(socket.get(), F_GETFL);
    if (flags < 0 || ::fcntl(socket.get(), F_SETFL, flags & ~O_NONBLOCK) < 0)
        return Error::from_errno("fcntl");
    TRY(qtsm::set_socket_timeouts(socket.get(), timeout_ms));
    return socket;
}

ErrorOr<UniqueFd> seed_kernel_random(UniqueFd channel)
{
    qtsm::Client client(std::move(channel));
    auto random = TRY(client.random(RANDOM_SEED_SIZE));
    // struct rand_pool_info: entropy_count (bits), buf_size (bytes), buf.
    alignas(rand_pool_info) std::array<std::uint8_t, sizeof(rand_pool_info) + RANDOM_SEED_SIZE> pool {};
    rand_pool_info header {};
    header.entropy_count = static_cast<int>(RANDOM_SEED_SIZE * 8);
    header.buf_size = static_cast<int>(RANDOM_SEED_SIZE);
    std::memcpy(pool.data(), &header, sizeof(header));
    std::copy(random.begin(), random.end(), pool.begin() + sizeof(rand_pool_info));
    int fd = ::open("/dev/random", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return Error::from_errno("open /dev/random");
    int result = ::ioctl(fd, RNDADDENTROPY, pool.data());
    int error = errno;
    ::close(fd);
    explicit_bzero(pool.data(), pool.size());
    explicit_bzero(random.data(), random.size());
    if (result < 0)
        return Error::from_errno("RNDADDENTROPY", error);
    // The kernel's pool must be ready now: getrandom() without waiting.
    std::uint8_t probe = 0;
    if (::getrandom(&probe, 1, GRND_NONBLOCK) != 1)
        return Error::from_errno("the kernel's random pool is still not initialised after seeding (getrandom)");
    return std::move(client).release_fd();
}

ErrorOr<pid_t> start_qtsm_server(int program_fd, UniqueFd channel, int timeout_ms)
{
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) < 0)
        return Error::from_errno("pipe2");
    UniqueFd ready_read(ready[0]);
    UniqueFd ready_write(ready[1]);
    pid_t pid = ::fork();
    if (pid < 0)
        return Error::from_errno("fork");
    if (pid == 0) {
        // The channel and the ready pipe are the only descriptors it
        // inherits besides the console (everything else is O_CLOEXEC).
        int channel_fd = ::fcntl(channel.get(), F_DUPFD, QTSM_SERVER_CHANNEL_FD);
        int ready_fd = ::fcntl(ready_write.get(), F_DUPFD, QTSM_SERVER_CHANNEL_FD + 1);
        if (channel_fd < 0 || ready_fd < 0)
            ::_exit(126);
        auto device = fmt::format("fd:{}", channel_fd);
        auto ready_arg = fmt::format("{}", ready_fd);
        char const* argv[] = { "qtsm-server", "--device", device.c_str(), "--socket", QTSM_SOCKET_PATH,
            "--ready-fd", ready_arg.c_str(), nullptr };
        char const* envp[] = { nullptr };
        ::setsid();
        ::fexecve(program_fd, const_cast<char* const*>(argv), const_cast<char* const*>(envp));
        ::_exit(127);
    }
    channel.reset();
    ready_write.reset();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::array<char, 16> line {};
    std::size_t have = 0;
    while (have < line.size()) {
        auto readable = wait_for(ready_read.get(), POLLIN, deadline);
        if (readable.is_error() || !readable.value()) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            return Error::from_string(fmt::format("qtsm-server did not start within {} ms", timeout_ms));
        }
        ssize_t n = ::read(ready_read.get(), line.data() + have, line.size() - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += static_cast<std::size_t>(n);
        if (std::string_view(line.data(), have).find('\n') != std::string_view::npos)
            break;
    }
    if (std::string_view(line.data(), have) != "ready\n") {
        int status = 0;
        ::waitpid(pid, &status, 0);
        return Error::from_string(fmt::format("qtsm-server {}", describe_wait_status(status)));
    }
    return pid;
}

ErrorOr<eif::AppConfig> read_app_config()
{
    auto cmd = TRY(read_optional(eif::CMD_PATH));
    auto env = TRY(read_optional(eif::ENV_PATH));
    auto workdir = TRY(read_optional(eif::WORKDIR_PATH));
    auto user = TRY(read_optional(eif::USER_PATH));
    return eif::parse_app_config(cmd, env, workdir, user);
}

ErrorOr<void> switch_to_rootfs()
{
    std::string const root = NEW_ROOT;
    struct stat old_root {};
    if (::stat("/", &old_root) < 0)
        return Error::from_errno("stat /");
    TRY(ensure_directory(root, 0755));

    for (char const* name : { "proc", "sys", "dev" }) {
        TRY(ensure_directory(root + "/" + name, name == std::string_view("dev") ? 0755 : 0555));
        TRY(mount_fs(fmt::format("/{}", name).c_str(), root + "/" + name, nullptr, MS_MOVE, nullptr));
    }
    TRY(ensure_directory(root + "/tmp", 01777));
    TRY(mount_fs("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
    TRY(ensure_directory(root + "/run", 0755));
    TRY(mount_fs("tmpfs", root + "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"));
    TRY(ensure_directory(root + "/dev/pts", 0755));
    TRY(mount_fs("devpts", root + "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"));
    TRY(ensure_directory(root + "/dev/shm", 01777));
    TRY(mount_fs("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));

    // Free the bootstrap files (init, modules, /cmd...): the old root is
    // unreachable after the switch but would keep its memory.
    int root_fd = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return Error::from_errno("open /");
    remove_tree(root_fd, old_root.st_dev, "rootfs");
    ::close(root_fd);

    TRY(mount_fs(root.c_str(), root, nullptr, MS_BIND | MS_REC, nullptr));
    if (::chdir(root.c_str()) < 0)
        return Error::from_errno(fmt::format("chdir {}", root));
    TRY(mount_fs(".", "/", nullptr, MS_MOVE, nullptr));
    if (::chroot(".") < 0)
        return Error::from_errno("chroot");
    if (::chdir("/") < 0)
        return Error::from_errno("chdir /");
    return {};
}

ErrorOr<int> run_app(eif::AppConfig const& config, NoticeSink const& notice, pid_t qtsm_server)
{
    sigset_t watched;
    sigemptyset(&watched);
    for (int number : { SIGCHLD, SIGTERM, SIGINT, SIGHUP })
        sigaddset(&watched, number);
    sigset_t previous;
    if (::sigprocmask(SIG_BLOCK, &watched, &previous) < 0)
        return Error::from_errno("sigprocmask");

    pid_t app = ::fork();
    if (app < 0)
        return Error::from_errno("fork");
    if (app == 0) {
        ::sigprocmask(SIG_SETMASK, &previous, nullptr);
        ::setsid();
        if (::chdir(config.working_dir.c_str()) < 0) {
            // Docker creates a missing WorkingDir; so do we.
            if (errno != ENOENT || sys::mkdir_p(config.working_dir, 0755).is_error()
                || ::chdir(config.working_dir.c_str()) < 0) {
                int error = errno;
                report(notice, Severity::Error,
                    fmt::format("cannot enter the working directory {}: {}", config.working_dir, std::strerror(error)));
                ::_exit(126);
            }
        }
        // The image's User (docs/FORMATS.md §3 /user): its ids and no
        // supplementary group, all three set or the app does not run.
        if (config.user != eif::UserIds {}) {
            gid_t gid = config.user.gid;
            if (::setgroups(1, &gid) < 0 || ::setresgid(gid, gid, gid) < 0 || ::setresuid(config.user.uid, config.user.uid, config.user.uid) < 0) {
                int error = errno;
                report(notice, Severity::Error,
                    fmt::format("cannot run the app as {}: {}", eif::encode_user(config.user), std::strerror(error)));
                ::_exit(126);
            }
        }
        exec_app(config, notice);
    }

    for (;;) {
        siginfo_t info {};
        int number = ::sigwaitinfo(&watched, &info);
        if (number < 0) {
            if (errno == EINTR)
                continue;
            return Error::from_errno("sigwaitinfo");
        }
        if (number == SIGCHLD) {
            int status = 0;
            pid_t reaped;
            std::optional<int> app_status;
            // Reap everything: orphans of the app are re-parented to us.
            while ((reaped = ::waitpid(-1, &status, WNOHANG)) > 0) {
                if (reaped == app)
                    app_status = status;
                if (reaped == qtsm_server && qtsm_server > 0)
                    report(notice, Severity::Warning,
                        fmt::format("qtsm-server {}; the app has no QTSM until the enclave restarts",
                            describe_wait_status(status)));
            }
            if (app_status)
                return *app_status;
            continue;
        }
        // SIGTERM/SIGINT/SIGHUP for PID 1 mean "stop the enclave's app".
        ::kill(app, number == SIGHUP ? SIGHUP : SIGTERM);
    }
}

void run(Events const& events)
{
    if (auto mounted = mount_early_filesystems(); mounted.is_error()) {
        attach_console();
        fail(events, mounted.error());
    }
    attach_console();

    auto list = read_optional(eif::MODULE_LIST_PATH);
    if (list.is_error())
        fail(events, list.release_error().context(fmt::format("reading {}", eif::MODULE_LIST_PATH)));
    auto modules = parse_module_list(list.value());
    if (modules.is_error())
        fail(events, modules.error());
    for (auto const& path : modules.value()) {
        if (auto loaded = load_module(path); loaded.is_error())
            fail(events, loaded.error());
    }
    if (auto up = bring_up_loopback(); up.is_error())
        fail(events, up.error());

    // The heartbeat tells the VMM (and `qt enclave start`) that the enclave
    // is up, and brings the parent's clock: an enclave has no RTC it may
    // trust, and TLS and attestation freshness need the right time.
    auto clock = exchange_heartbeat(HEARTBEAT_TIMEOUT_MS);
    if (clock.is_error())
        fail(events, clock.release_error().context("heartbeat to the parent (CID 3 port 9000)"));
    if (auto set = set_wall_clock(clock.value()); set.is_error())
        fail(events, set.error());

    // The enclave's one QTSM channel (docs/FORMATS.md §5, §6): first it
    // seeds the kernel's random pool, then qtsm-server gets it.
    auto channel = open_qtsm_channel(QTSM_TIMEOUT_MS);
    if (channel.is_error())
        fail(events, channel.release_error().context("the QTSM (CID 3 port 9001)"));
    auto seeded = seed_kernel_random(channel.release_value());
    if (seeded.is_error())
        fail(events, seeded.release_error().context("seeding the kernel's random pool from the QTSM"));
    // qtsm-server is this same program; the file goes with the bootstrap
    // root, so hold it open.
    int program = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (program < 0)
        fail(events, Error::from_errno("open /proc/self/exe"));

    auto config = read_app_config();
    if (config.is_error())
        fail(events, config.error());
    if (auto switched = switch_to_rootfs(); switched.is_error())
        fail(events, switched.error());
    auto server = start_qtsm_server(program, seeded.release_value(), QTSM_TIMEOUT_MS);
    ::close(program);
    if (server.is_error())
        fail(events, server.release_error());

    // An app that runs as another user reaches the QTSM through its group:
    // the socket is 0660 (qtsm-server), in /run, which only root may write.
    if (config.value().user != eif::UserIds {} && ::chown(QTSM_SOCKET_PATH, 0, config.value().user.gid) < 0)
        fail(events, Error::from_errno(fmt::format("chown {} to group {}", QTSM_SOCKET_PATH, config.value().user.gid)));
    auto status = run_app(config.value(), events.notice, server.value());
    if (status.is_error())
        fail(events, status.error());
    if (events.app_exited)
        events.app_exited({ config.value().argv[0], status.value() });
    reboot_now();
}

} // namespace qtbox::init
