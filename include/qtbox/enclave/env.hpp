// The resource pool (`qt env show|apply`; docs/FORMATS.md §1, §7;
// docs/PLATFORMS.md §Q2): what a parent sets aside for its enclaves, read
// from QingTian's qt-enclave-env.conf and, once applied, recorded in
// <run>/pool.json.
//
// The configuration file ($QTBOX_ENV_CONF, default
// /etc/qingtian/enclave/qt-enclave-env.conf) is `key:value` lines; `#`
// starts a comment, blank lines are ignored, blanks around keys and values
// too. QingTian's keys, plus one of qtbox's own:
//
//   hugepage_size   2 or 1024: the pool's hugepages, in MiB     (required)
//   memory_mib      the pool's memory, a multiple of hugepage_size,
//                   at least 128 and at most 1 TiB              (required)
//   cpu_count       how many CPUs the pool takes                 (one of the two)
//   cpu_list        which: ids or ranges, "2,3" or "2-5,8";
//                   never CPU 0, which stays with the parent
//   max_enclaves    qtbox's: enclaves running at once (1-64; default 2)
//
// A bad value is QtError::InvalidConfiguration (06), a missing key
// QtError::MissingConfiguration (07), both naming the file and the line.
// A missing file is not an error: the defaults (1024 MiB pages, 1024 MiB,
// 2 CPUs, 2 enclaves) apply and `present` says the file is absent.
//
// apply_pool() makes the pool real:
//   - memory: raises <sysfs>/kernel/mm/hugepages/hugepages-<kB>kB/nr_hugepages
//     by the pages the pool still lacks, reads back what the kernel really
//     gave, and undoes the raise and fails with QtError::AddMemory (09) when
//     it is short (fragmentation). The pages it added are recorded, so a
//     second apply with the same file adds nothing, a smaller memory_mib
//     gives the difference back, and a new hugepage_size gives the old
//     size's pages back once the new ones are there. Pages that were
//     reserved before (on the kernel command line, by another program) are
//     never counted as the pool's.
//   - CPUs: cpu_list as given, once every id is online; for cpu_count, the
//     highest-numbered online CPUs except 0. Nothing else is done to them:
//     vmm pins its vCPU threads there (`vmm --cpu-list`), and keeping other
//     processes off them (isolcpus=, a cpuset) is the administrator's
//     choice. A CPU that is not online is QtError::AddCpu (11).
//   - the record: <run>/pool.json, written atomically.
//
// current_pool() is what `qt enclave start` checks an enclave against: the
// applied pool, or, when nothing was applied (no pool.json, e.g. after a
// reboot without qt-enclave-env.service), the configuration file's values
// with applied = false. Without an applied pool there are no reserved
// hugepages: `qt` then starts vmm without --hugepages and the guest gets
// ordinary (swappable) anonymous memory. The accounting (which CPUs and
// how much memory running enclaves hold, how many run) is the lifecycle's.
//
// The sysfs root is $QTBOX_SYSFS_ROOT (default /sys), so tests run apply
// against a fake tree without root; SysfsAccess lets unit tests play a
// kernel that gives fewer pages than asked.
#pragma once

#include <qtbox/base/error.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::enclave {

// docs/FORMATS.md §1.
constexpr std::string_view DEFAULT_ENV_CONF = "/etc/qingtian/enclave/qt-enclave-env.conf";
constexpr char const* ENV_CONF_VARIABLE = "QTBOX_ENV_CONF";
constexpr std::string_view DEFAULT_SYSFS_ROOT = "/sys";
constexpr char const* SYSFS_ROOT_VARIABLE = "QTBOX_SYSFS_ROOT";

// QingTian's defaults (docs/PLATFORMS.md §Q2) and qtbox's max_enclaves.
constexpr unsigned DEFAULT_HUGEPAGE_SIZE_MIB = 1024;
constexpr std::uint64_t DEFAULT_POOL_MEMORY_MIB = 1024;
constexpr unsigned DEFAULT_POOL_CPU_COUNT = 2;
constexpr unsigned DEFAULT_MAX_ENCLAVES = 2;

// Limits on what the file may ask for.
constexpr std::size_t MAX_ENV_CONF_SIZE = 64 * 1024;
constexpr std::uint64_t MIN_POOL_MEMORY_MIB = 128; // one enclave's minimum (docs/FORMATS.md §3)
constexpr std::uint64_t MAX_POOL_MEMORY_MIB = 1024 * 1024; // 1 TiB, vmm's ceiling
constexpr unsigned MAX_CPU_ID = 1023; // what a cpu_set_t holds (CPU_SETSIZE)
constexpr unsigned MAX_MAX_ENCLAVES = 64;

struct EnvConfig {
    std::string path; // the file read
    bool present { false }; // false: the file is absent and these are the defaults
    unsigned hugepage_size_mib { DEFAULT_HUGEPAGE_SIZE_MIB };
    std::uint64_t memory_mib { DEFAULT_POOL_MEMORY_MIB };
    // Exactly one is set: cpu_count > 0 and cpu_list empty, or cpu_count 0
    // and cpu_list the ids (ascending, no duplicates, no 0).
    unsigned cpu_count { DEFAULT_POOL_CPU_COUNT };
    std::vector<unsigned> cpu_list;
    unsigned max_enclaves { DEFAULT_MAX_ENCLAVES };
};

// What enclaves may use.
struct ResourcePool {
    unsigned hugepage_size_mib { DEFAULT_HUGEPAGE_SIZE_MIB };
    std::uint64_t memory_mib { DEFAULT_POOL_MEMORY_MIB };
    // How many CPUs the pool holds (cpus.size() whenever cpus is not empty).
    unsigned cpu_count { DEFAULT_POOL_CPU_COUNT };
    // The pool's CPU ids, ascending: what `vmm --cpu-list` pins to. Empty
    // when nothing was applied and the file gives cpu_count alone (then
    // nothing is pinned).
    std::vector<unsigned> cpus;
    unsigned max_enclaves { DEFAULT_MAX_ENCLAVES };
    // true: recorded by apply_pool, its hugepages reserved (`vmm
    // --hugepages hugepage_size_mib`). false: the configuration file's
    // values; no hugepages, ordinary memory.
    bool applied { false };
    // Applied pools: the hugepages apply_pool added for the pool.
    std::uint64_t hugepages_reserved { 0 };
};

// $QTBOX_ENV_CONF when set and not empty, else DEFAULT_ENV_CONF.
std::string env_conf_path();
// $QTBOX_SYSFS_ROOT when set and not empty, else /sys.
std::string sysfs_root();
// <run>/pool.json.
std::string pool_path(std::string_view run);

// The file's text, `path` naming it in errors. Errors: QtError
// InvalidConfiguration / MissingConfiguration, "<path>:<line>: ..." with a hint.
ErrorOr<EnvConfig> parse_env_config(std::string_view text, std::string_view path);
// Reads and parses `path`; an absent file gives the defaults with
// present = false. An unreadable one is QtError::FileOperation.
ErrorOr<EnvConfig> load_env_config(std::string const& path);

// Linux's cpulist format ("0-3,8"), as in .../cpu/online; the ids ascending.
ErrorOr<std::vector<unsigned>> parse_cpu_ranges(std::string_view text);
// The inverse, shortest form: {1,2,3,5} -> "1-3,5".
std::string format_cpu_ranges(std::vector<unsigned> const& cpus);

// The applied pool recorded in <run>/pool.json; nullopt when there is none.
// A record that cannot be read is QtError::FileOperation.
ErrorOr<std::optional<ResourcePool>> read_applied_pool(std::string const& run);

// For `qt enclave start`: the applied pool, else the configuration file's
// values (env_conf_path()) with applied = false; cpus is then cpu_list.
ErrorOr<ResourcePool> current_pool(std::string const& run);

// Reading and writing sysfs attributes by path relative to the sysfs root
// ("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages").
struct SysfsAccess {
    std::function<ErrorOr<std::string>(std::string const& relative)> read;
    std::function<ErrorOr<void>(std::string const& relative, std::string const& text)> write;
};
// The files under `root`.
SysfsAccess sysfs_files(std::string root);

struct ApplyResult {
    ResourcePool pool;
    // Pages of pool.hugepage_size_mib this apply added (negative: gave back).
    std::int64_t hugepages_added { 0 };
    // nr_hugepages of that size afterwards.
    std::uint64_t hugepages_total { 0 };
};

// Reserves the pool `config` describes and records it in <run>/pool.json
// (see the overview). On failure nothing is changed.
ErrorOr<ApplyResult> apply_pool(EnvConfig const& config, std::string const& run, SysfsAccess const& sysfs);

} // namespace qtbox::enclave
