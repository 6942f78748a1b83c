// qt env: the resource pool from qt-enclave-env.conf. `show` prints the
// configuration and the applied pool; `apply` reserves the hugepages,
// chooses the CPUs and records the pool (qt-enclave-env.service runs it at
// boot). The rules live in src/enclave/env.cpp.
//
// See: docs/FORMATS.md §1 (QTBOX_ENV_CONF, QTBOX_RUN_DIR), §7 (qt env);
// docs/PLATFORMS.md §Q2 (the file's keys); include/qtbox/enclave/env.hpp; man qt(1).
#include "command.hpp"

#include <qtbox/enclave/env.hpp>
#include <qtbox/enclave/paths.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace qtbox::qt {

namespace {

// The file's keys, as the file spells them.
nlohmann::ordered_json config_json(enclave::EnvConfig const& config)
{
    nlohmann::ordered_json json;
    json["hugepage_size"] = config.hugepage_size_mib;
    json["memory_mib"] = config.memory_mib;
    if (config.cpu_list.empty())
        json["cpu_count"] = config.cpu_count;
    else
        json["cpu_list"] = enclave::format_cpu_ranges(config.cpu_list);
    json["max_enclaves"] = config.max_enclaves;
    return json;
}

nlohmann::ordered_json pool_json(enclave::ResourcePool const& pool)
{
    nlohmann::ordered_json json;
    json["HugepageSizeMiB"] = pool.hugepage_size_mib;
    json["MemoryMiB"] = pool.memory_mib;
    json["HugepagesReserved"] = pool.hugepages_reserved;
    json["CPUCount"] = pool.cpu_count;
    json["CPUs"] = pool.cpus;
    json["MaxEnclaves"] = pool.max_enclaves;
    return json;
}

ErrorOr<void> show()
{
    auto path = enclave::env_conf_path();
    auto config = TRY(enclave::load_env_config(path));
    auto run = enclave::run_dir();
    auto applied = TRY(enclave::read_applied_pool(run));
    nlohmann::ordered_json json;
    json["ConfigFile"] = path;
    json["ConfigFilePresent"] = config.present;
    json["Config"] = config_json(config);
    if (!config.present)
        json["Note"] = "the file is absent: these are QingTian's defaults";
    json["Applied"] = applied.has_value();
    json["Pool"] = applied ? pool_json(*applied) : nlohmann::ordered_json(nullptr);
    if (applied)
        json["PoolRecord"] = enclave::pool_path(run);
    fmt::print("{}\n", json.dump(2));
    return {};
}

ErrorOr<void> apply()
{
    auto config = TRY(enclave::load_env_config(enclave::env_conf_path()));
    auto run = enclave::run_dir();
    auto result = TRY(enclave::apply_pool(config, run, enclave::sysfs_files(enclave::sysfs_root())));
    auto json = pool_json(result.pool);
    json["HugepagesAdded"] = result.hugepages_added;
    json["HugepagesTotal"] = result.hugepages_total;
    json["PoolRecord"] = enclave::pool_path(run);
    fmt::print("{}\n", json.dump(2));
    return {};
}

} // namespace

CommandGroup env_commands(CLI::App& qt)
{
    auto* env = qt.add_subcommand("env", "The enclaves' resource pool (hugepages, CPUs) from qt-enclave-env.conf.");
    env->require_subcommand(1);
    auto* show_command = env->add_subcommand("show",
        "Print the configuration ($QTBOX_ENV_CONF, default /etc/qingtian/enclave/qt-enclave-env.conf) and the applied "
        "pool (JSON).");
    auto* apply_command = env->add_subcommand("apply",
        "Reserve the hugepages, choose the CPUs and record the pool in $QTBOX_RUN_DIR/pool.json (idempotent; run at "
        "boot).");
    return { env, [show_command, apply_command]() -> ErrorOr<void> {
                if (show_command->parsed())
                    return show();
                if (apply_command->parsed())
                    return apply();
                return {};
            } };
}

} // namespace qtbox::qt
