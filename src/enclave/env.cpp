#include <qtbox/enclave/env.hpp>

#include <qtbox/base/sys.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/enclave/errors.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fcntl.h>
#include <sys/file.h>

namespace qtbox::enclave {

namespace {

constexpr char const* POOL_FILE = "pool.json";
constexpr char const* POOL_LOCK_FILE = ".pool.lock";
constexpr std::size_t MAX_POOL_FILE = 64 * 1024;
// Sysfs attributes are short; this bounds what a fake tree can make us read.
constexpr std::size_t MAX_SYSFS_ATTRIBUTE = 64 * 1024;
// The kernel's largest CONFIG_NR_CPUS: bounds a range read from sysfs.
constexpr unsigned MAX_KERNEL_CPU_ID = 8191;
constexpr std::uint64_t MAX_HUGEPAGE_COUNT = 1ull << 40;
constexpr char const* CPU_ONLINE = "devices/system/cpu/online";

constexpr std::array<std::string_view, 5> KEYS { "hugepage_size", "memory_mib", "cpu_count", "cpu_list",
    "max_enclaves" };
constexpr char const* KEY_HINT
    = "hint: the keys are hugepage_size, memory_mib, cpu_count or cpu_list, and max_enclaves";

std::string_view trim(std::string_view text)
{
    auto start = text.find_first_not_of(" \t\r");
    if (start == std::string_view::npos)
        return {};
    auto end = text.find_last_not_of(" \t\r");
    return text.substr(start, end - start + 1);
}

template <typename Unsigned> std::optional<Unsigned> parse_decimal(std::string_view text)
{
    Unsigned value = 0;
    if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size())
        return std::nullopt;
    return value;
}

// Where each key was found, for messages.
struct Seen {
    std::array<unsigned, KEYS.size()> line {};
};

std::size_t key_index(std::string_view key)
{
    return static_cast<std::size_t>(std::find(KEYS.begin(), KEYS.end(), key) - KEYS.begin());
}

Error invalid(std::string_view path, unsigned line, std::string_view what)
{
    return Error::from_code(QtError::InvalidConfiguration, fmt::format("{}:{}: {}", path, line, what));
}

Error missing(std::string_view path, std::string_view what)
{
    return Error::from_code(QtError::MissingConfiguration, fmt::format("{}: {}", path, what));
}

std::string hugepage_dir(unsigned size_mib)
{
    return fmt::format("kernel/mm/hugepages/hugepages-{}kB", static_cast<std::uint64_t>(size_mib) * 1024);
}

ErrorOr<std::uint64_t> read_count(SysfsAccess const& sysfs, std::string const& relative)
{
    auto text = TRY(sysfs.read(relative));
    auto value = parse_decimal<std::uint64_t>(trim(text.substr(0, text.find('\n'))));
    if (!value || *value > MAX_HUGEPAGE_COUNT)
        return Error::from_string(fmt::format("{}: '{}' is not a page count", relative, trim(text).substr(0, 32)));
    return *value;
}

Error add_memory(std::string message)
{
    return Error::from_code(QtError::AddMemory, std::move(message));
}

// The pool's CPUs (see the header).
ErrorOr<std::vector<unsigned>> choose_cpus(EnvConfig const& config, SysfsAccess const& sysfs)
{
    auto online_text = sysfs.read(CPU_ONLINE);
    if (online_text.is_error())
        return Error::from_code(
            QtError::AddCpu, fmt::format("cannot tell which CPUs are online: {}", online_text.error().message()));
    auto online = parse_cpu_ranges(trim(online_text.value().substr(0, online_text.value().find('\n'))));
    if (online.is_error())
        return Error::from_code(QtError::AddCpu, fmt::format("{}: {}", CPU_ONLINE, online.error().message()));
    auto const& ids = online.value();
    if (!config.cpu_list.empty()) {
        for (unsigned cpu : config.cpu_list) {
            if (!std::binary_search(ids.begin(), ids.end(), cpu))
                return Error::from_code(QtError::AddCpu,
                    fmt::format("{}: cpu_list names CPU {}, which is not online (online: {}; hint: name online CPUs "
                                "other than 0)",
                        config.path, cpu, format_cpu_ranges(ids)));
        }
        return config.cpu_list;
    }
    std::vector<unsigned> candidates;
    for (unsigned cpu : ids) {
        if (cpu != 0 && cpu <= MAX_CPU_ID)
            candidates.push_back(cpu);
    }
    if (candidates.size() < config.cpu_count)
        return Error::from_code(QtError::AddCpu,
            fmt::format("{}: cpu_count {} but only {} CPU{} online besides CPU 0 (online: {}; hint: lower cpu_count, "
                        "CPU 0 stays with the parent)",
                config.path, config.cpu_count, candidates.size(), candidates.size() == 1 ? " is" : "s are",
                format_cpu_ranges(ids)));
    return std::vector<unsigned>(candidates.end() - config.cpu_count, candidates.end());
}

nlohmann::json pool_json(ResourcePool const& pool, std::string const& config_path)
{
    return nlohmann::json {
        { "HugepageSizeMiB", pool.hugepage_size_mib },
        { "MemoryMiB", pool.memory_mib },
        { "CPUCount", pool.cpu_count },
        { "CPUs", pool.cpus },
        { "MaxEnclaves", pool.max_enclaves },
        { "HugepagesReserved", pool.hugepages_reserved },
        { "Config", config_path },
        { "AppliedAt", format_rfc3339(now_millis()) },
    };
}

ErrorOr<ResourcePool> pool_from_json(nlohmann::json const& json)
{
    try {
        ResourcePool pool;
        pool.applied = true;
        pool.hugepage_size_mib = json.at("HugepageSizeMiB").get<unsigned>();
        pool.memory_mib = json.at("MemoryMiB").get<std::uint64_t>();
        pool.cpus = json.at("CPUs").get<std::vector<unsigned>>();
        pool.cpu_count = static_cast<unsigned>(pool.cpus.size());
        pool.max_enclaves = json.at("MaxEnclaves").get<unsigned>();
        pool.hugepages_reserved = json.at("HugepagesReserved").get<std::uint64_t>();
        bool sane = (pool.hugepage_size_mib == 2 || pool.hugepage_size_mib == 1024) && pool.memory_mib > 0
            && pool.memory_mib <= MAX_POOL_MEMORY_MIB && pool.memory_mib % pool.hugepage_size_mib == 0
            && !pool.cpus.empty() && std::is_sorted(pool.cpus.begin(), pool.cpus.end())
            && pool.cpus.back() <= MAX_CPU_ID && pool.max_enclaves >= 1 && pool.max_enclaves <= MAX_MAX_ENCLAVES
            && pool.hugepages_reserved <= MAX_HUGEPAGE_COUNT;
        if (!sane)
            return Error::from_string("a value is out of range");
        return pool;
    } catch (nlohmann::json::exception const& error) {
        return Error::from_string(error.what());
    }
}

// flock(2) on <run>/.pool.lock for the length of one apply.
ErrorOr<UniqueFd> lock_pool(std::string const& run)
{
    auto fd = sys::open(fmt::format("{}/{}", run, POOL_LOCK_FILE), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd.is_error())
        return Error::from_code(QtError::LockAcquire, fd.error().message());
    int rc;
    do
        rc = ::flock(fd.value().get(), LOCK_EX);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return Error::from_code(
            QtError::LockAcquire, Error::from_errno(fmt::format("flock {}/{}", run, POOL_LOCK_FILE)).message());
    return fd.release_value();
}

// Sets nr_hugepages of `dir` to `target`; returns what the kernel kept.
ErrorOr<std::uint64_t> set_hugepages(SysfsAccess const& sysfs, std::string const& dir, std::uint64_t target)
{
    TRY(sysfs.write(dir + "/nr_hugepages", fmt::format("{}\n", target)));
    return read_count(sysfs, dir + "/nr_hugepages");
}

} // namespace

std::string env_conf_path()
{
    char const* value = std::getenv(ENV_CONF_VARIABLE);
    return value && *value ? std::string(value) : std::string(DEFAULT_ENV_CONF);
}

std::string sysfs_root()
{
    char const* value = std::getenv(SYSFS_ROOT_VARIABLE);
    return value && *value ? std::string(value) : std::string(DEFAULT_SYSFS_ROOT);
}

std::string pool_path(std::string_view run)
{
    return fmt::format("{}/{}", run, POOL_FILE);
}

ErrorOr<std::vector<unsigned>> parse_cpu_ranges(std::string_view text)
{
    std::vector<unsigned> cpus;
    if (trim(text).empty())
        return Error::from_string("no CPU ids");
    while (true) {
        auto comma = text.find(',');
        auto item = trim(text.substr(0, comma));
        auto dash = item.find('-');
        auto first = parse_decimal<unsigned>(trim(item.substr(0, dash)));
        auto last = dash == std::string_view::npos ? first : parse_decimal<unsigned>(trim(item.substr(dash + 1)));
        if (!first || !last || *first > MAX_KERNEL_CPU_ID || *last > MAX_KERNEL_CPU_ID || *last < *first)
            return Error::from_string(
                fmt::format("'{}' is not a CPU id or a range of them (like 2,3 or 2-5)", item.substr(0, 32)));
        for (unsigned cpu = *first; cpu <= *last; ++cpu)
            cpus.push_back(cpu);
        if (comma == std::string_view::npos)
            break;
        text.remove_prefix(comma + 1);
    }
    std::sort(cpus.begin(), cpus.end());
    if (auto twice = std::adjacent_find(cpus.begin(), cpus.end()); twice != cpus.end())
        return Error::from_string(fmt::format("CPU {} is listed twice", *twice));
    return cpus;
}

std::string format_cpu_ranges(std::vector<unsigned> const& cpus)
{
    std::string text;
    for (std::size_t i = 0; i < cpus.size();) {
        std::size_t j = i;
        while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1)
            ++j;
        if (!text.empty())
            text += ',';
        text += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
        i = j + 1;
    }
    return text;
}

ErrorOr<EnvConfig> parse_env_config(std::string_view text, std::string_view path)
{
    EnvConfig config;
    config.path = std::string(path);
    config.present = true;
    Seen seen;
    std::optional<unsigned> cpu_count;
    unsigned line_number = 0;
    while (!text.empty()) {
        auto newline = text.find('\n');
        std::string_view line = text.substr(0, newline);
        text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
        ++line_number;
        line = trim(line.substr(0, line.find('#')));
        if (line.empty())
            continue;
        auto colon = line.find(':');
        if (colon == std::string_view::npos)
            return invalid(
                path, line_number, fmt::format("'{}' is not a key:value line ({})", line.substr(0, 64), KEY_HINT));
        auto key = trim(line.substr(0, colon));
        auto value = trim(line.substr(colon + 1));
        auto index = key_index(key);
        if (index == KEYS.size())
            return invalid(path, line_number, fmt::format("unknown key '{}' ({})", key.substr(0, 64), KEY_HINT));
        if (seen.line[index] != 0)
            return invalid(path, line_number,
                fmt::format("{} is given twice (lines {} and {}; hint: keep one)", key, seen.line[index], line_number));
        seen.line[index] = line_number;
        if (value.empty())
            return Error::from_code(QtError::MissingConfiguration,
                fmt::format("{}:{}: {} has no value (hint: for instance '{}:{}')", path, line_number, key, key,
                    key == "cpu_list"           ? "2,3"
                        : key == "cpu_count"    ? "2"
                        : key == "max_enclaves" ? "2"
                                                : "1024"));
        if (key == "hugepage_size") {
            auto size = parse_decimal<unsigned>(value);
            if (!size || (*size != 2 && *size != 1024))
                return invalid(path, line_number,
                    fmt::format(
                        "hugepage_size '{}' must be 2 or 1024 (MiB: 2 MiB or 1 GiB pages)", value.substr(0, 32)));
            config.hugepage_size_mib = *size;
        } else if (key == "memory_mib") {
            auto memory = parse_decimal<std::uint64_t>(value);
            if (!memory || *memory < MIN_POOL_MEMORY_MIB || *memory > MAX_POOL_MEMORY_MIB)
                return invalid(path, line_number,
                    fmt::format("memory_mib '{}' must be a number of MiB from {} to {}", value.substr(0, 32),
                        MIN_POOL_MEMORY_MIB, MAX_POOL_MEMORY_MIB));
            config.memory_mib = *memory;
        } else if (key == "cpu_count") {
            auto count = parse_decimal<unsigned>(value);
            if (!count || *count == 0 || *count > MAX_CPU_ID)
                return invalid(path, line_number,
                    fmt::format(
                        "cpu_count '{}' must be a number of CPUs from 1 to {}", value.substr(0, 32), MAX_CPU_ID));
            cpu_count = *count;
        } else if (key == "cpu_list") {
            auto cpus = parse_cpu_ranges(value);
            if (cpus.is_error())
                return invalid(path, line_number, fmt::format("cpu_list: {}", cpus.error().message()));
            if (cpus.value().front() == 0)
                return invalid(
                    path, line_number, "cpu_list names CPU 0, which stays with the parent (hint: list other CPUs)");
            if (cpus.value().back() > MAX_CPU_ID)
                return invalid(path, line_number,
                    fmt::format("cpu_list names CPU {}; the highest id is {}", cpus.value().back(), MAX_CPU_ID));
            config.cpu_list = cpus.release_value();
        } else {
            auto count = parse_decimal<unsigned>(value);
            if (!count || *count == 0 || *count > MAX_MAX_ENCLAVES)
                return invalid(path, line_number,
                    fmt::format("max_enclaves '{}' must be from 1 to {}", value.substr(0, 32), MAX_MAX_ENCLAVES));
            config.max_enclaves = *count;
        }
    }
    auto line_of = [&](std::string_view key) { return seen.line[key_index(key)]; };
    if (line_of("cpu_count") && line_of("cpu_list"))
        return invalid(path, line_of("cpu_list"),
            fmt::format("cpu_count (line {}) and cpu_list (line {}) exclude each other (hint: keep one)",
                line_of("cpu_count"), line_of("cpu_list")));
    if (!line_of("hugepage_size"))
        return missing(path,
            "no hugepage_size line (hint: add 'hugepage_size:1024' for 1 GiB pages or 'hugepage_size:2' for 2 MiB "
            "pages)");
    if (!line_of("memory_mib"))
        return missing(path, "no memory_mib line (hint: add 'memory_mib:1024', a multiple of hugepage_size)");
    if (!line_of("cpu_count") && !line_of("cpu_list"))
        return missing(path, "neither cpu_count nor cpu_list (hint: add 'cpu_count:2' or 'cpu_list:2,3')");
    if (config.memory_mib % config.hugepage_size_mib != 0)
        return invalid(path, line_of("memory_mib"),
            fmt::format("memory_mib {} is not a multiple of hugepage_size {} (line {}; hint: memory_mib:{})",
                config.memory_mib, config.hugepage_size_mib, line_of("hugepage_size"),
                std::max<std::uint64_t>(config.hugepage_size_mib,
                    config.memory_mib / config.hugepage_size_mib * config.hugepage_size_mib)));
    config.cpu_count = cpu_count.value_or(0);
    return config;
}

ErrorOr<EnvConfig> load_env_config(std::string const& path)
{
    auto bytes = sys::read_file(path, MAX_ENV_CONF_SIZE);
    if (bytes.is_error()) {
        if (bytes.error().is_errno(ENOENT)) {
            EnvConfig defaults;
            defaults.path = path;
            return defaults;
        }
        if (bytes.error().is(sys::SysError::TooLarge))
            return Error::from_code(
                QtError::InvalidConfiguration, fmt::format("{}: larger than {} KiB", path, MAX_ENV_CONF_SIZE / 1024));
        return Error::from_code(QtError::FileOperation, bytes.error().message());
    }
    return parse_env_config(as_chars(bytes.value()), path);
}

ErrorOr<std::optional<ResourcePool>> read_applied_pool(std::string const& run)
{
    auto path = pool_path(run);
    auto bytes = sys::read_file(path, MAX_POOL_FILE);
    if (bytes.is_error()) {
        if (bytes.error().is_errno(ENOENT))
            return std::optional<ResourcePool> {};
        return Error::from_code(QtError::FileOperation, bytes.error().message());
    }
    auto text = as_chars(bytes.value());
    auto json = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    auto pool = json.is_discarded() ? ErrorOr<ResourcePool>(Error::from_string("not JSON")) : pool_from_json(json);
    if (pool.is_error())
        return Error::from_code(QtError::FileOperation,
            fmt::format("{}: not a pool record: {} (hint: remove it and run 'qt env apply'; the hugepages it recorded "
                        "stay reserved)",
                path, pool.error().message()));
    return std::optional<ResourcePool>(pool.release_value());
}

ErrorOr<ResourcePool> current_pool(std::string const& run)
{
    if (auto applied = TRY(read_applied_pool(run)))
        return *applied;
    auto config = TRY(load_env_config(env_conf_path()));
    ResourcePool pool;
    pool.hugepage_size_mib = config.hugepage_size_mib;
    pool.memory_mib = config.memory_mib;
    pool.cpus = config.cpu_list;
    pool.cpu_count = config.cpu_list.empty() ? config.cpu_count : static_cast<unsigned>(config.cpu_list.size());
    pool.max_enclaves = config.max_enclaves;
    pool.applied = false;
    return pool;
}

SysfsAccess sysfs_files(std::string root)
{
    SysfsAccess access;
    access.read = [root](std::string const& relative) -> ErrorOr<std::string> {
        auto bytes = TRY(sys::read_file(fmt::format("{}/{}", root, relative), MAX_SYSFS_ATTRIBUTE));
        return std::string(as_chars(bytes));
    };
    access.write = [root](std::string const& relative, std::string const& text) -> ErrorOr<void> {
        // A sysfs attribute takes the whole value in one write(2), in place.
        auto fd = TRY(sys::open(fmt::format("{}/{}", root, relative), O_WRONLY | O_TRUNC | O_CLOEXEC));
        return sys::write_all(fd.get(), text);
    };
    return access;
}

ErrorOr<ApplyResult> apply_pool(EnvConfig const& config, std::string const& run, SysfsAccess const& sysfs)
{
    if (auto made = sys::mkdir_p(run, 0755); made.is_error())
        return Error::from_code(QtError::FileOperation,
            fmt::format("{}{}", made.error().message(),
                made.error().is_errno(EACCES) ? " (hint: run as root, or set QTBOX_RUN_DIR)" : ""));
    auto lock = TRY(lock_pool(run));
    auto previous = TRY(read_applied_pool(run));
    auto cpus = TRY(choose_cpus(config, sysfs));

    // Memory: the pages the pool still lacks, on top of what is there.
    unsigned size = config.hugepage_size_mib;
    std::string dir = hugepage_dir(size);
    auto before = read_count(sysfs, dir + "/nr_hugepages");
    if (before.is_error())
        return add_memory(
            fmt::format("this kernel offers no {} MiB hugepages: {} (hint: {})", size, before.error().message(),
                size == 1024 ? "use hugepage_size:2, or a CPU and kernel with 1 GiB pages (pdpe1gb)"
                             : "build the kernel with CONFIG_HUGETLBFS"));
    std::uint64_t pages = config.memory_mib / size;
    bool same_size = previous && previous->hugepage_size_mib == size;
    std::uint64_t ours = same_size ? previous->hugepages_reserved : 0;
    std::uint64_t now = before.value();
    if (pages != ours) {
        std::uint64_t target = pages > ours ? now + (pages - ours) : now - std::min(now, ours - pages);
        auto kept = set_hugepages(sysfs, dir, target);
        if (kept.is_error()) {
            return add_memory(fmt::format("cannot set {}/nr_hugepages: {}{}", dir, kept.error().message(),
                kept.error().is_errno(EACCES) || kept.error().is_errno(EPERM) ? " (hint: run as root)" : ""));
        }
        if (pages > ours && kept.value() < target) {
            // Undo: the pool is all or nothing.
            (void)set_hugepages(sysfs, dir, now);
            return add_memory(fmt::format("asked the kernel for {} more {} MiB hugepages, it gave {} (hint: memory is "
                                          "too fragmented; apply right after boot, "
                                          "as qt-enclave-env.service does, or lower memory_mib{})",
                pages - ours, size, kept.value() > now ? kept.value() - now : 0,
                size == 2 ? "" : ", or use hugepage_size:2"));
        }
        now = kept.value();
    }

    ApplyResult result;
    result.pool.hugepage_size_mib = size;
    result.pool.memory_mib = config.memory_mib;
    result.pool.cpus = cpus;
    result.pool.cpu_count = static_cast<unsigned>(cpus.size());
    result.pool.max_enclaves = config.max_enclaves;
    result.pool.applied = true;
    result.pool.hugepages_reserved = pages;
    result.hugepages_added = static_cast<std::int64_t>(pages) - static_cast<std::int64_t>(ours);
    result.hugepages_total = now;

    auto text = pool_json(result.pool, config.path).dump(2) + "\n";
    if (auto written = sys::write_file_atomic(pool_path(run), as_bytes(text), 0644); written.is_error()) {
        if (pages > ours)
            (void)set_hugepages(sysfs, dir, before.value());
        return Error::from_code(QtError::FileOperation, written.error().message());
    }

    // A pool of the other page size gives its pages back, now that the new
    // ones are there and recorded.
    if (previous && !same_size && previous->hugepages_reserved > 0) {
        std::string old_dir = hugepage_dir(previous->hugepage_size_mib);
        auto old = read_count(sysfs, old_dir + "/nr_hugepages");
        auto released = old.is_error()
            ? ErrorOr<std::uint64_t>(old.release_error())
            : set_hugepages(sysfs, old_dir, old.value() - std::min(old.value(), previous->hugepages_reserved));
        if (released.is_error())
            return add_memory(
                fmt::format("the new pool is recorded, but the previous pool's {} {} MiB hugepages stay reserved: {}",
                    previous->hugepages_reserved, previous->hugepage_size_mib, released.error().message()));
    }
    return result;
}

} // namespace qtbox::enclave
