#include <qtbox/enclave/state.hpp>

#include <qtbox/base/account.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/enclave/errors.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <thread>
#include <unistd.h>

namespace qtbox::enclave {

namespace {

constexpr std::size_t MAX_STATE_FILE = 64 * 1024;
constexpr char const* STATE_FILE = "state.json";
constexpr char const* EXIT_FILE = "exit.json";
constexpr char const* LOCK_FILE = ".lock";
constexpr int LOCK_POLL_MS = 20;

Error state_error(std::string message)
{
    return Error::from_code(QtError::WriteConfiguration, std::move(message));
}

std::optional<std::uint64_t> parse_id(std::string_view name)
{
    std::uint64_t value = 0;
    if (name.empty() || name.size() > 19 || (name.size() > 1 && name[0] == '0'))
        return std::nullopt;
    auto [end, error] = std::from_chars(name.data(), name.data() + name.size(), value);
    if (error != std::errc() || end != name.data() + name.size())
        return std::nullopt;
    return value;
}

std::vector<std::uint64_t> enclave_ids(std::string const& run)
{
    std::vector<std::uint64_t> ids;
    DIR* directory = ::opendir(enclaves_dir(run).c_str());
    if (directory == nullptr)
        return ids;
    while (auto* entry = ::readdir(directory)) {
        if (auto id = parse_id(entry->d_name))
            ids.push_back(*id);
    }
    ::closedir(directory);
    std::sort(ids.begin(), ids.end());
    return ids;
}

nlohmann::json process_json(ProcessRef const& process)
{
    return { { "pid", process.pid }, { "start_ticks", process.start_ticks } };
}

ProcessRef process_from(nlohmann::json const& json)
{
    return { json.at("pid").get<pid_t>(), json.at("start_ticks").get<std::uint64_t>() };
}

template<typename T, typename Parse>
ErrorOr<std::optional<T>> read_json_file(std::string const& path, Parse parse)
{
    auto bytes = sys::read_file(path, MAX_STATE_FILE);
    if (bytes.is_error()) {
        if (bytes.error().is_errno(ENOENT))
            return std::optional<T> {};
        return bytes.release_error().context(path);
    }
    auto parsed = parse(as_chars(bytes.value()));
    if (parsed.is_error())
        return parsed.release_error().context(path);
    return std::optional<T>(parsed.release_value());
}

} // namespace

std::optional<std::uint64_t> start_ticks_of(pid_t pid)
{
    if (pid <= 0)
        return std::nullopt;
    auto bytes = sys::read_file(fmt::format("/proc/{}/stat", pid), 4096);
    if (bytes.is_error())
        return std::nullopt;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses;
    // the fields restart after the last ')'. starttime is field 22.
    auto text = as_chars(bytes.value());
    auto close = text.rfind(')');
    if (close == std::string_view::npos)
        return std::nullopt;
    text.remove_prefix(close + 1);
    int field = 2;
    std::size_t at = 0;
    while (at < text.size()) {
        while (at < text.size() && text[at] == ' ')
            ++at;
        auto end = text.find(' ', at);
        if (end == std::string_view::npos)
            end = text.size();
        ++field;
        if (field == 22) {
            std::uint64_t ticks = 0;
            auto [ptr, error] = std::from_chars(text.data() + at, text.data() + end, ticks);
            if (error != std::errc())
                return std::nullopt;
            return ticks;
        }
        // Field 3 is the state: a zombie is not alive.
        if (field == 3 && text.substr(at, end - at) == "Z")
            return std::nullopt;
        at = end;
    }
    return std::nullopt;
}

bool is_alive(ProcessRef const& process)
{
    auto ticks = start_ticks_of(process.pid);
    return ticks && *ticks == process.start_ticks;
}

ProcessRef self_process()
{
    pid_t pid = ::getpid();
    return { pid, start_ticks_of(pid).value_or(0) };
}

std::string_view status_name(EnclaveStatus status)
{
    return status == EnclaveStatus::Running ? "Running" : "Starting";
}

std::string enclaves_dir(std::string const& run)
{
    return run + "/enclaves";
}

std::string enclave_dir(std::string const& run, std::uint64_t id)
{
    return fmt::format("{}/enclaves/{}", run, id);
}

ErrorOr<void> make_state_directory(std::string const& directory)
{
    return sys::make_socket_directory(directory, 0750, sys::service_group());
}

ErrorOr<StateLock> StateLock::acquire(std::string const& run, int timeout_ms)
{
    auto directory = enclaves_dir(run);
    if (auto made = make_state_directory(directory); made.is_error())
        return Error::from_code(QtError::LockAcquire,
            fmt::format("{}: {}{}", directory, made.error().message(),
                made.error().is_errno(EACCES) ? " (hint: run as root, or set QTBOX_RUN_DIR to a directory you may write)" : ""));
    auto path = directory + "/" + LOCK_FILE;
    auto opened = sys::open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (opened.is_error())
        return Error::from_code(QtError::LockAcquire, fmt::format("{}: {}", path, opened.error().message()));
    auto fd = opened.release_value();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0)
            return StateLock(std::move(fd));
        if (errno != EWOULDBLOCK && errno != EINTR)
            return Error::from_code(QtError::LockAcquire, fmt::format("flock {}: {}", path, std::strerror(errno)));
        if (std::chrono::steady_clock::now() >= deadline)
            return Error::from_code(QtError::LockAcquire,
                fmt::format("{} is held by another qt for more than {} s", path, timeout_ms / 1000));
        std::this_thread::sleep_for(std::chrono::milliseconds(LOCK_POLL_MS));
    }
}

std::string record_json(EnclaveRecord const& record)
{
    nlohmann::json json {
        { "id", record.id },
        { "cid", record.cid },
        { "cpus", record.cpus },
        { "memory_mib", record.memory_mib },
        { "debug", record.debug },
        { "status", std::string(status_name(record.status)) },
        { "eif", record.eif },
        { "cpu_list", record.cpu_list },
        { "monitor", process_json(record.monitor) },
        { "vmm", process_json(record.vmm) },
        { "started_at", record.started_at },
    };
    return json.dump(2) + "\n";
}

ErrorOr<EnclaveRecord> parse_record(std::string_view text)
{
    try {
        auto json = nlohmann::json::parse(text);
        EnclaveRecord record;
        record.id = json.at("id").get<std::uint64_t>();
        record.cid = json.at("cid").get<std::uint32_t>();
        record.cpus = json.at("cpus").get<unsigned>();
        record.memory_mib = json.at("memory_mib").get<std::uint64_t>();
        record.debug = json.at("debug").get<bool>();
        auto status = json.at("status").get<std::string>();
        if (status != "Starting" && status != "Running")
            return Error::from_string(fmt::format("unknown status \"{}\"", status));
        record.status = status == "Running" ? EnclaveStatus::Running : EnclaveStatus::Starting;
        record.eif = json.at("eif").get<std::string>();
        record.cpu_list = json.at("cpu_list").get<std::vector<unsigned>>();
        record.monitor = process_from(json.at("monitor"));
        record.vmm = process_from(json.at("vmm"));
        record.started_at = json.at("started_at").get<UnixMillis>();
        return record;
    } catch (nlohmann::json::exception const& error) {
        return Error::from_string(fmt::format("not an enclave record: {}", error.what()));
    }
}

std::string exit_json(ExitRecord const& record)
{
    nlohmann::json json {
        { "id", record.id },
        { "cid", record.cid },
        { "vmm_pid", record.vmm_pid },
        { "ended_at", record.ended_at },
        { "ended", format_rfc3339(record.ended_at) },
        { "status", record.status },
        { "reason", record.reason },
        { "last_log_line", record.last_log_line },
        { "reported", record.reported },
    };
    return json.dump(2) + "\n";
}

ErrorOr<ExitRecord> parse_exit(std::string_view text)
{
    try {
        auto json = nlohmann::json::parse(text);
        ExitRecord record;
        record.id = json.at("id").get<std::uint64_t>();
        record.cid = json.at("cid").get<std::uint32_t>();
        record.vmm_pid = json.at("vmm_pid").get<pid_t>();
        record.ended_at = json.at("ended_at").get<UnixMillis>();
        record.status = json.at("status").get<int>();
        record.reason = json.at("reason").get<std::string>();
        record.last_log_line = json.at("last_log_line").get<std::string>();
        record.reported = json.at("reported").get<bool>();
        return record;
    } catch (nlohmann::json::exception const& error) {
        return Error::from_string(fmt::format("not an exit record: {}", error.what()));
    }
}

std::vector<EnclaveRecord> read_records(std::string const& run, std::vector<std::string>* problems)
{
    std::vector<EnclaveRecord> records;
    for (auto id : enclave_ids(run)) {
        auto record = read_record(run, id);
        if (record.is_error()) {
            if (problems)
                problems->push_back(record.error().message());
            continue;
        }
        if (record.value())
            records.push_back(std::move(*record.value()));
    }
    return records;
}

ErrorOr<std::optional<EnclaveRecord>> read_record(std::string const& run, std::uint64_t id)
{
    return read_json_file<EnclaveRecord>(enclave_dir(run, id) + "/" + STATE_FILE, parse_record);
}

ErrorOr<void> write_record(std::string const& run, EnclaveRecord const& record)
{
    auto directory = enclave_dir(run, record.id);
    if (auto made = make_state_directory(directory); made.is_error())
        return state_error(fmt::format("{}: {}", directory, made.error().message()));
    auto written = sys::write_file_atomic(directory + "/" + STATE_FILE, as_bytes(record_json(record)), 0640);
    if (written.is_error())
        return state_error(fmt::format("{}/{}: {}", directory, STATE_FILE, written.error().message()));
    return {};
}

ErrorOr<void> remove_record(std::string const& run, std::uint64_t id)
{
    auto path = enclave_dir(run, id) + "/" + STATE_FILE;
    if (::unlink(path.c_str()) < 0 && errno != ENOENT)
        return state_error(fmt::format("unlink {}: {}", path, std::strerror(errno)));
    return {};
}

ErrorOr<std::optional<ExitRecord>> read_exit(std::string const& run, std::uint64_t id)
{
    return read_json_file<ExitRecord>(enclave_dir(run, id) + "/" + EXIT_FILE, parse_exit);
}

ErrorOr<void> write_exit(std::string const& run, ExitRecord const& record)
{
    auto directory = enclave_dir(run, record.id);
    if (auto made = make_state_directory(directory); made.is_error())
        return state_error(fmt::format("{}: {}", directory, made.error().message()));
    auto written = sys::write_file_atomic(directory + "/" + EXIT_FILE, as_bytes(exit_json(record)), 0640);
    if (written.is_error())
        return state_error(fmt::format("{}/{}: {}", directory, EXIT_FILE, written.error().message()));
    return {};
}

std::vector<ExitRecord> read_exits(std::string const& run)
{
    std::vector<ExitRecord> exits;
    for (auto id : enclave_ids(run)) {
        auto record = read_exit(run, id);
        if (!record.is_error() && record.value())
            exits.push_back(std::move(*record.value()));
    }
    return exits;
}

} // namespace qtbox::enclave
