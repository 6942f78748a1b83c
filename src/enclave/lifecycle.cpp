#include <qtbox/enclave/lifecycle.hpp>

#include <qtbox/base/sys.hpp>
#include <qtbox/eif/reader.hpp>
#include <qtbox/enclave/errors.hpp>
#include <qtbox/enclave/paths.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <poll.h>
#include <set>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace qtbox::enclave {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char const* VMM_PROGRAM_VARIABLE = "QTBOX_VMM";
constexpr char const* VMM_LOG = "vmm.log";
// The monitor's first report (vmm's pid) and its answer to an abort.
constexpr int MONITOR_REPORT_TIMEOUT_MS = 10'000;
// After SIGKILL, how long the monitor has to record the end.
constexpr int KILL_WAIT_MS = 5'000;
constexpr int POLL_MS = 50;
// vmm's fds: the ready pipe (docs/FORMATS.md §11 --ready-fd).
constexpr int VMM_READY_FD = 3;
// Fds the monitor moves its pipes to before it sets up vmm's 0-3.
constexpr int HIGH_FD = 10;

struct Pipe {
    UniqueFd read;
    UniqueFd write;
};

ErrorOr<Pipe> make_pipe()
{
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0)
        return Error::from_code(QtError::DefineSandbox, fmt::format("pipe2: {}", std::strerror(errno)));
    return Pipe { UniqueFd(fds[0]), UniqueFd(fds[1]) };
}

// What the monitor tells `start` first.
struct VmmStarted {
    pid_t pid { 0 };
    std::uint64_t start_ticks { 0 };
};

// Reads exactly `size` bytes within `timeout_ms`; false on EOF or timeout.
bool read_within(int fd, void* buffer, std::size_t size, int timeout_ms)
{
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    auto* cursor = static_cast<std::uint8_t*>(buffer);
    while (size > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0)
            return false;
        pollfd poll_fd { fd, POLLIN, 0 };
        int ready = ::poll(&poll_fd, 1, static_cast<int>(left));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return false;
        ssize_t n = ::read(fd, cursor, size);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return false;
        cursor += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

void write_byte(int fd, char byte)
{
    while (::write(fd, &byte, 1) < 0 && errno == EINTR) { }
}

// The last non-empty line of vmm's log, for error messages and exit.json.
std::string last_log_line(std::string const& run, std::uint64_t id)
{
    constexpr std::size_t TAIL = 4096;
    auto fd = sys::open(enclave_dir(run, id) + "/" + VMM_LOG, O_RDONLY | O_CLOEXEC);
    if (fd.is_error())
        return {};
    auto status = sys::fstat(fd.value().get());
    if (status.is_error())
        return {};
    auto size = static_cast<std::uint64_t>(status.value().st_size);
    std::uint64_t offset = size > TAIL ? size - TAIL : 0;
    std::string text(static_cast<std::size_t>(size - offset), '\0');
    if (sys::pread_exact(fd.value().get(), text.data(), text.size(), offset).is_error())
        return {};
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    auto newline = text.rfind('\n');
    return newline == std::string::npos ? text : text.substr(newline + 1);
}

std::string with_log(std::string message, std::string const& line)
{
    if (!line.empty())
        message += fmt::format("; vmm's log ends: \"{}\"", line);
    return message;
}

int status_of(int wait_status)
{
    if (WIFEXITED(wait_status))
        return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status))
        return 128 + WTERMSIG(wait_status);
    return 255;
}

ExitRecord exit_for(std::string const& run, EnclaveRecord const& record, int status, std::string reason)
{
    ExitRecord ended;
    ended.id = record.id;
    ended.cid = record.cid;
    ended.vmm_pid = record.vmm.pid;
    ended.ended_at = now_millis();
    ended.status = status;
    ended.reason = std::move(reason);
    ended.last_log_line = last_log_line(run, record.id);
    return ended;
}

// The sockets vmm serves. A vmm that switched to its service user cannot
// remove them from this root-owned directory, and one that was killed
// never does: whoever records its end removes them.
constexpr char const* VMM_SOCKETS[] = { "vsock.sock", "console.sock" };

void remove_sockets(std::string const& run, std::uint64_t id)
{
    auto directory = enclave_dir(run, id);
    for (char const* name : VMM_SOCKETS)
        ::unlink((directory + "/" + name).c_str());
}

// Under the lock: records whose monitor is gone (killed with its qt
// mid-start, or killed itself) are forgotten, with an exit record that
// says so; a vmm such a monitor left would have died with it.
std::vector<ExitRecord> forget_orphans(std::string const& run, std::vector<EnclaveRecord>& records)
{
    std::vector<ExitRecord> forgotten;
    std::erase_if(records, [&](EnclaveRecord const& record) {
        if (is_alive(record.monitor))
            return false;
        if (is_alive(record.vmm))
            ::kill(record.vmm.pid, SIGKILL);
        auto ended = exit_for(run, record, 255,
            record.status == EnclaveStatus::Starting ? "vanished while starting (the qt that started it was killed)"
                                                     : "vanished (its monitor was killed)");
        ended.reported = true;
        remove_sockets(run, record.id);
        (void)write_exit(run, ended);
        (void)remove_record(run, record.id);
        forgotten.push_back(std::move(ended));
        return true;
    });
    return forgotten;
}

// The files an earlier enclave with this id left.
void clear_directory(std::string const& run, std::uint64_t id)
{
    auto directory = enclave_dir(run, id);
    for (char const* name : { "exit.json", VMM_LOG, "state.json" })
        ::unlink((directory + "/" + name).c_str());
    remove_sockets(run, id);
}

std::string join_cpus(std::vector<unsigned> const& cpus)
{
    std::string text;
    for (auto cpu : cpus)
        text += (text.empty() ? "" : ",") + std::to_string(cpu);
    return text;
}

std::vector<std::string> vmm_arguments(StartOptions const& options, EnclaveRecord const& record)
{
    auto directory = enclave_dir(options.run, record.id);
    std::vector<std::string> argv { "vmm", "--eif", options.eif, "--cpus", std::to_string(options.cpus), "--mem",
        std::to_string(options.memory_mib), "--cid", std::to_string(options.cid), "--vsock-socket",
        directory + "/vsock.sock", "--ready-fd", std::to_string(VMM_READY_FD) };
    if (options.debug) {
        argv.insert(argv.end(), { "--debug-mode", "--console", "none", "--console-socket", directory + "/console.sock" });
    }
    if (!record.cpu_list.empty())
        argv.insert(argv.end(), { "--cpu-list", join_cpus(record.cpu_list) });
    if (options.pool.hugepage_size_mib != 0)
        argv.insert(argv.end(), { "--hugepages", std::to_string(options.pool.hugepage_size_mib) });
    return argv;
}

struct MonitorPipes {
    Pipe control; // start -> monitor: 'C' keep the enclave, anything else: abort
    Pipe report;  // monitor -> start: VmmStarted, then after an abort vmm's wait status
    Pipe ready;   // vmm -> start: "ready\n"
};

// Moves `fd` to HIGH_FD or above (keeps it across exec when `inherit`).
int move_high(int fd, bool inherit)
{
    int moved = ::fcntl(fd, inherit ? F_DUPFD : F_DUPFD_CLOEXEC, HIGH_FD);
    return moved < 0 ? fd : moved;
}

// In vmm's process, between fork and exec.
[[noreturn]] void exec_vmm(StartOptions const& options, EnclaveRecord const& record, int ready_fd, pid_t monitor)
{
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != monitor)
        ::_exit(127);
    int ready = move_high(ready_fd, true);
    auto log_path = enclave_dir(options.run, record.id) + "/" + VMM_LOG;
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0640);
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log < 0 || null < 0 || ::dup2(null, STDIN_FILENO) < 0 || ::dup2(log, STDOUT_FILENO) < 0
        || ::dup2(log, STDERR_FILENO) < 0 || ::dup2(ready, VMM_READY_FD) < 0)
        ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int number : { SIGPIPE, SIGTERM, SIGINT, SIGHUP })
        ::signal(number, SIG_DFL);
    auto arguments = vmm_arguments(options, record);
    std::vector<char*> argv;
    for (auto& argument : arguments)
        argv.push_back(argument.data());
    argv.push_back(nullptr);
    ::execv(options.vmm_program.c_str(), argv.data());
    auto line = fmt::format("qt: cannot run {}: {}\n", options.vmm_program, std::strerror(errno));
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, line.data(), line.size());
    ::_exit(127);
}

// The monitor: runs vmm, reports its pid, then either keeps it (records its
// end) or kills it (reports its wait status), as start says.
[[noreturn]] void run_monitor(StartOptions const& options, EnclaveRecord const& record, MonitorPipes& pipes,
    int lock_fd, pid_t parent)
{
    // Until start commits, this process dies with it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
        ::_exit(1);
    ::close(lock_fd);
    pipes.control.write.reset();
    pipes.report.read.reset();
    pipes.ready.read.reset();
    ::setsid();
    // Let no pipeline wait on a terminal or pipe this process holds.
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        ::dup2(null, STDIN_FILENO);
        ::dup2(null, STDOUT_FILENO);
        ::dup2(null, STDERR_FILENO);
    }
    if (::chdir("/") < 0)
        ::_exit(1);
    for (int number : { SIGINT, SIGHUP, SIGPIPE })
        ::signal(number, SIG_IGN);

    pid_t monitor = ::getpid();
    pid_t vmm = ::fork();
    if (vmm == 0)
        exec_vmm(options, record, pipes.ready.write.get(), monitor);
    pipes.ready.write.reset();
    VmmStarted started { vmm, vmm > 0 ? start_ticks_of(vmm).value_or(0) : 0 };
    [[maybe_unused]] auto sent = ::write(pipes.report.write.get(), &started, sizeof(started));
    if (vmm < 0)
        ::_exit(1);

    char decision = 'A';
    if (!read_within(pipes.control.read.get(), &decision, 1, std::numeric_limits<int>::max()))
        decision = 'A';
    int wait_status = 0;
    if (decision != 'C') {
        ::kill(vmm, SIGKILL);
        while (::waitpid(vmm, &wait_status, 0) < 0 && errno == EINTR) { }
        [[maybe_unused]] auto reported = ::write(pipes.report.write.get(), &wait_status, sizeof(wait_status));
        ::_exit(0);
    }
    // Kept: this process now lives as long as vmm. Only once it no longer
    // dies with start may start exit: it waits for this acknowledgement.
    ::prctl(PR_SET_PDEATHSIG, 0);
    write_byte(pipes.report.write.get(), 'K');
    pipes.report.write.reset();
    while (::waitpid(vmm, &wait_status, 0) < 0 && errno == EINTR) { }
    auto lock = StateLock::acquire(options.run);
    auto current = read_record(options.run, record.id);
    if (!current.is_error() && current.value() && current.value()->vmm.pid == vmm) {
        auto ended = exit_for(options.run, *current.value(), status_of(wait_status),
            fmt::format("vmm {}", describe_exit(wait_status)));
        remove_sockets(options.run, record.id);
        (void)write_exit(options.run, ended);
        (void)remove_record(options.run, record.id);
    }
    ::_exit(0);
}

Error capacity_error(std::string message)
{
    return Error::from_code(QtError::SandboxCapacity, std::move(message));
}

// Under the lock: the checks against the live enclaves and the pool; fills
// the record's id and CPUs.
ErrorOr<void> allocate(StartOptions const& options, std::vector<EnclaveRecord> const& live, EnclaveRecord& record)
{
    for (auto const& other : live) {
        if (other.cid == options.cid)
            return Error::from_code(QtError::CidInUse,
                fmt::format("CID {} is enclave {}'s (hint: --cid with another number, 4 or more)", options.cid, other.id));
    }
    if (live.size() >= options.pool.max_enclaves)
        return capacity_error(fmt::format("{} enclave{} running, and the pool allows {} (hint: qt enclave stop, or "
                                          "max_enclaves in qt-enclave-env.conf)",
            live.size(), live.size() == 1 ? " is" : "s are", options.pool.max_enclaves));
    unsigned cpus_used = 0;
    std::uint64_t memory_used = 0;
    std::set<unsigned> pinned;
    std::set<std::uint64_t> ids;
    for (auto const& other : live) {
        cpus_used += other.cpus;
        memory_used += other.memory_mib;
        pinned.insert(other.cpu_list.begin(), other.cpu_list.end());
        ids.insert(other.id);
    }
    if (options.cpus > options.pool.cpus || cpus_used > options.pool.cpus - options.cpus)
        return capacity_error(fmt::format("--cpus {}: the pool has {} CPUs and {} are in use (hint: qt env show)",
            options.cpus, options.pool.cpus, cpus_used));
    if (options.memory_mib > options.pool.memory_mib || memory_used > options.pool.memory_mib - options.memory_mib)
        return capacity_error(fmt::format("--mem {}: the pool has {} MiB and {} MiB are in use (hint: qt env show)",
            options.memory_mib, options.pool.memory_mib, memory_used));
    if (!options.pool.cpu_list.empty()) {
        for (auto cpu : options.pool.cpu_list) {
            if (record.cpu_list.size() < options.cpus && !pinned.contains(cpu))
                record.cpu_list.push_back(cpu);
        }
        if (record.cpu_list.size() < options.cpus)
            return capacity_error(fmt::format("--cpus {}: only {} of the pool's CPUs are free", options.cpus, record.cpu_list.size()));
    }
    std::uint64_t id = 0;
    while (ids.contains(id))
        ++id;
    record.id = id;
    return {};
}

ErrorOr<void> check_request(StartOptions const& options)
{
    if (options.cid < FIRST_CID || options.cid > LAST_CID)
        return Error::from_code(QtError::InvalidArgument,
            fmt::format("--cid {}: an enclave's CID is between {} and {}", options.cid, FIRST_CID, LAST_CID));
    if (options.cpus == 0)
        return Error::from_code(QtError::InvalidArgument, "--cpus 0: an enclave needs at least one CPU");
    auto reader = eif::EifReader::open(options.eif);
    if (reader.is_error()) {
        auto const& error = reader.error();
        if (error.is_errno())
            return Error::from_code(QtError::FileOperation, fmt::format("--eif {}: {}", options.eif, error.message()));
        return Error::from_code(QtError::InvalidArgument, fmt::format("--eif {}: {}", options.eif, error.message()));
    }
    auto minimum = eif::minimum_memory_mib(reader.value().file_size());
    if (options.memory_mib < minimum)
        return Error::from_code(QtError::MemoryTooSmall,
            fmt::format("--mem {} MiB: this EIF ({:.1f} MiB) needs at least {} MiB (128 MiB and 4 times the image)",
                options.memory_mib, static_cast<double>(reader.value().file_size()) / (1 << 20), minimum));
    if (options.pool.hugepage_size_mib != 0 && options.memory_mib % options.pool.hugepage_size_mib != 0)
        return Error::from_code(QtError::InvalidArgument,
            fmt::format("--mem {}: not a multiple of the pool's {} MiB hugepages", options.memory_mib,
                options.pool.hugepage_size_mib));
    return {};
}

int start_timeout_ms(StartOptions const& options)
{
    if (options.timeout_ms > 0)
        return options.timeout_ms;
    auto size = sys::stat(options.eif);
    std::uint64_t mib = size.is_error() ? 0 : static_cast<std::uint64_t>(size.value().st_size) >> 20;
    return START_TIMEOUT_BASE_MS + static_cast<int>(std::min<std::uint64_t>(mib, 3600) * START_TIMEOUT_PER_MIB_MS);
}

// The enclave did not come up: the monitor kills vmm; the record goes.
Error abandon(StartOptions const& options, EnclaveRecord const& record, MonitorPipes& pipes, pid_t monitor, bool timed_out,
    int timeout_ms)
{
    write_byte(pipes.control.write.get(), 'A');
    pipes.control.write.reset();
    int wait_status = 0;
    bool known = read_within(pipes.report.read.get(), &wait_status, sizeof(wait_status), MONITOR_REPORT_TIMEOUT_MS);
    int monitor_status = 0;
    while (::waitpid(monitor, &monitor_status, 0) < 0 && errno == EINTR) { }
    auto line = last_log_line(options.run, record.id);
    std::string reason = timed_out ? fmt::format("no heartbeat within {} s", timeout_ms / 1000)
        : known                    ? fmt::format("vmm {}", describe_exit(wait_status))
                                   : "vmm ended";
    if (auto lock = StateLock::acquire(options.run); !lock.is_error()) {
        auto ended = exit_for(options.run, record, known ? status_of(wait_status) : 255, reason);
        ended.reported = true;
        remove_sockets(options.run, record.id);
        (void)write_exit(options.run, ended);
        (void)remove_record(options.run, record.id);
    }
    if (timed_out)
        return Error::from_code(QtError::HeartbeatTimeout,
            with_log(fmt::format("{}; the enclave was stopped (hint: {}/vmm.log, and a debug enclave's console "
                                 "with --debug-mode --attach-console, show how far it got)",
                         reason, enclave_dir(options.run, record.id)),
                line));
    return Error::from_code(QtError::StartEnclave, with_log(reason + " before the enclave's heartbeat", line));
}

} // namespace

std::string describe_exit(int wait_status)
{
    return sys::describe_wait_status(wait_status);
}

std::string default_vmm_program()
{
    char const* value = std::getenv(VMM_PROGRAM_VARIABLE);
    if (value && *value)
        return value;
    return "/proc/self/exe";
}

ErrorOr<EnclaveRecord> start(StartOptions const& options)
{
    TRY(check_request(options));
    EnclaveRecord record;
    record.cid = options.cid;
    record.cpus = options.cpus;
    record.memory_mib = options.memory_mib;
    record.debug = options.debug;
    record.eif = options.eif;
    record.started_at = now_millis();

    MonitorPipes pipes;
    pid_t monitor = -1;
    {
        auto lock = TRY(StateLock::acquire(options.run));
        auto live = read_records(options.run);
        forget_orphans(options.run, live);
        TRY(allocate(options, live, record));
        auto directory = enclave_dir(options.run, record.id);
        if (auto made = make_state_directory(directory); made.is_error())
            return Error::from_code(QtError::FileOperation, fmt::format("{}: {}", directory, made.error().message()));
        clear_directory(options.run, record.id);
        pipes.control = TRY(make_pipe());
        pipes.report = TRY(make_pipe());
        pipes.ready = TRY(make_pipe());
        pid_t parent = ::getpid();
        monitor = ::fork();
        if (monitor < 0)
            return Error::from_code(QtError::DefineSandbox, fmt::format("fork: {}", std::strerror(errno)));
        if (monitor == 0)
            run_monitor(options, record, pipes, lock.fd(), parent);
        pipes.control.read.reset();
        pipes.report.write.reset();
        pipes.ready.write.reset();
        VmmStarted started;
        if (!read_within(pipes.report.read.get(), &started, sizeof(started), MONITOR_REPORT_TIMEOUT_MS) || started.pid <= 0) {
            ::kill(monitor, SIGKILL);
            ::waitpid(monitor, nullptr, 0);
            return Error::from_code(QtError::DefineSandbox, "the monitor could not start vmm");
        }
        record.monitor = { monitor, start_ticks_of(monitor).value_or(0) };
        record.vmm = { started.pid, started.start_ticks };
        if (auto written = write_record(options.run, record); written.is_error()) {
            write_byte(pipes.control.write.get(), 'A');
            ::waitpid(monitor, nullptr, 0);
            return written.release_error();
        }
    }

    int timeout_ms = start_timeout_ms(options);
    std::array<char, 6> ready {};
    bool came = read_within(pipes.ready.read.get(), ready.data(), ready.size(), timeout_ms)
        && std::string_view(ready.data(), ready.size()) == "ready\n";
    if (!came) {
        // EOF (vmm ended) or the timeout: tell which.
        pollfd poll_fd { pipes.ready.read.get(), POLLIN, 0 };
        bool ended = ::poll(&poll_fd, 1, 0) > 0;
        return abandon(options, record, pipes, monitor, !ended, timeout_ms);
    }
    {
        auto lock = TRY(StateLock::acquire(options.run));
        auto current = TRY(read_record(options.run, record.id));
        if (!current || current->vmm.pid != record.vmm.pid)
            return abandon(options, record, pipes, monitor, false, timeout_ms);
        record.status = EnclaveStatus::Running;
        if (auto written = write_record(options.run, record); written.is_error())
            return abandon(options, record, pipes, monitor, false, timeout_ms);
    }
    write_byte(pipes.control.write.get(), 'C');
    char acknowledged = 0;
    if (!read_within(pipes.report.read.get(), &acknowledged, 1, MONITOR_REPORT_TIMEOUT_MS) || acknowledged != 'K')
        return Error::from_code(QtError::DefineSandbox,
            fmt::format("enclave {}: its monitor did not take it over (qt enclave query shows whether it runs)", record.id));
    // The monitor lives on with vmm; it is not this process's to reap.
    return record;
}

ErrorOr<QueryResult> query(std::string const& run)
{
    QueryResult result;
    auto lock = TRY(StateLock::acquire(run));
    result.enclaves = read_records(run);
    result.ended = forget_orphans(run, result.enclaves);
    std::set<std::uint64_t> live;
    for (auto const& record : result.enclaves)
        live.insert(record.id);
    for (auto& ended : read_exits(run)) {
        if (ended.reported || live.contains(ended.id))
            continue;
        ended.reported = true;
        (void)write_exit(run, ended);
        result.ended.push_back(std::move(ended));
    }
    return result;
}

ErrorOr<ExitRecord> stop(std::string const& run, std::uint64_t id, int grace_ms)
{
    EnclaveRecord record;
    {
        auto lock = TRY(StateLock::acquire(run));
        auto live = read_records(run);
        forget_orphans(run, live);
        auto found = std::find_if(live.begin(), live.end(), [id](auto const& each) { return each.id == id; });
        if (found == live.end())
            return Error::from_code(QtError::NotRunning, fmt::format("no enclave {} (qt enclave query lists them)", id));
        record = *found;
    }
    auto gone = [&] {
        auto current = read_record(run, id);
        return !current.is_error() && (!current.value() || current.value()->vmm.pid != record.vmm.pid);
    };
    auto wait_gone = [&](int milliseconds) {
        auto deadline = Clock::now() + std::chrono::milliseconds(milliseconds);
        while (!gone() && Clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(POLL_MS));
        return gone();
    };
    if (is_alive(record.vmm))
        ::kill(record.vmm.pid, SIGTERM);
    if (!wait_gone(grace_ms)) {
        if (is_alive(record.vmm))
            ::kill(record.vmm.pid, SIGKILL);
        if (!wait_gone(KILL_WAIT_MS)) {
            // The monitor did not record it: do it here.
            auto lock = TRY(StateLock::acquire(run));
            auto ended = exit_for(run, record, 255, "stopped; its monitor did not record the end");
            TRY(write_exit(run, ended));
            TRY(remove_record(run, id));
        }
    }
    auto ended = TRY(read_exit(run, id));
    if (!ended)
        return Error::from_code(QtError::FileOperation, fmt::format("enclave {} stopped, but left no exit record", id));
    if (!ended->reported) {
        ended->reported = true;
        (void)write_exit(run, *ended);
    }
    return *ended;
}

} // namespace qtbox::enclave
