// `qt enclave start|stop|query|console|query-eif|make-img` (docs/FORMATS.md
// §7): QingTian's command names, flags, output and error codes. The logic is
// in src/enclave (lifecycle.hpp, console.hpp) and src/eif (make-img is
// eif-build's engine, query-eif its describe); this file parses and prints.
#include "command.hpp"

#include "../support/eif_inputs.hpp"
#include "../support/log.hpp"
#include <qtbox/base/sys.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/eif/build.hpp>
#include <qtbox/eif/describe.hpp>
#include <qtbox/enclave/console.hpp>
#include <qtbox/enclave/env.hpp>
#include <qtbox/enclave/lifecycle.hpp>
#include <qtbox/enclave/paths.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <unistd.h>

namespace qtbox::qt {

namespace {

using enclave::QtError;

struct EnclaveOptions {
    // start
    std::string eif;
    unsigned cpus { 2 };
    std::uint64_t memory_mib { 1024 };
    std::uint32_t cid { enclave::FIRST_CID };
    bool debug { false };
    bool attach_console { false };
    // stop, query, console
    std::uint64_t id { 0 };
    bool all { false };
    // make-img
    EifInputs build;
};

std::string_view launch_mode(bool debug)
{
    // QingTian prints "debug" or "normal" (docs/PLATFORMS.md §Q1).
    return debug ? "debug" : "normal";
}

nlohmann::ordered_json enclave_json(enclave::EnclaveRecord const& record, bool with_pid)
{
    nlohmann::ordered_json json;
    json["EnclaveID"] = record.id;
    if (with_pid)
        json["ProcessID"] = record.vmm.pid;
    json["EnclaveCID"] = record.cid;
    json["NumberOfCPUs"] = record.cpus;
    json["MemoryMiB"] = record.memory_mib;
    json["LaunchMode"] = launch_mode(record.debug);
    json["Status"] = enclave::status_name(record.status);
    return json;
}

ErrorOr<enclave::PoolLimits> pool_limits(std::string const& run)
{
    auto pool = TRY(enclave::current_pool(run));
    enclave::PoolLimits limits;
    limits.cpus = pool.cpu_count;
    limits.memory_mib = pool.memory_mib;
    limits.max_enclaves = pool.max_enclaves;
    limits.cpu_list = pool.cpus;
    limits.hugepage_size_mib = pool.applied ? pool.hugepage_size_mib : 0;
    return limits;
}

// SIGINT, SIGTERM and SIGHUP become readable on a signalfd: Ctrl-C detaches
// from the console instead of killing qt mid-write.
ErrorOr<UniqueFd> detach_signals()
{
    sigset_t signals;
    sigemptyset(&signals);
    for (int number : { SIGINT, SIGTERM, SIGHUP })
        sigaddset(&signals, number);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) < 0)
        return Error::from_errno("sigprocmask");
    // An ignored signal is never pending, so a signalfd would not see it:
    // a shell starts background commands with SIGINT ignored. Blocked, the
    // default action cannot run.
    for (int number : { SIGINT, SIGTERM, SIGHUP })
        ::signal(number, SIG_DFL);
    return sys::signalfd(signals);
}

ErrorOr<void> attach(std::string const& run, enclave::EnclaveRecord const& record)
{
    // docs/FORMATS.md §7: a production enclave's console is not reachable at all.
    if (!record.debug)
        return Error::from_code(QtError::NotDebugMode,
            fmt::format("enclave {} runs in production mode; its console is never exposed (hint: start it with "
                        "--debug-mode)",
                record.id));
    std::signal(SIGPIPE, SIG_IGN);
    auto stop = TRY(detach_signals());
    auto socket = enclave::enclave_dir(run, record.id) + "/console.sock";
    auto followed = enclave::follow_console(socket, STDOUT_FILENO, stop.get());
    if (followed.is_error()) {
        auto const& error = followed.error();
        if (error.is(enclave::ConsoleError::Busy))
            return Error::from_code(QtError::ConsoleRead,
                fmt::format("enclave {}: another console is attached (one reader at a time)", record.id));
        if (error.is(enclave::ConsoleError::NoConsole))
            return Error::from_code(QtError::NotRunning, fmt::format("enclave {}: {}", record.id, error.message()));
        return Error::from_code(QtError::ConsoleRead, fmt::format("enclave {}: {}", record.id, error.message()));
    }
    return {};
}

ErrorOr<enclave::EnclaveRecord> running_enclave(std::string const& run, std::uint64_t id)
{
    auto found = TRY(enclave::query(run));
    for (auto const& ended : found.ended)
        log::info("enclave {} ended: {}", ended.id, ended.reason);
    for (auto& record : found.enclaves) {
        if (record.id == id)
            return std::move(record);
    }
    return Error::from_code(QtError::NotRunning, fmt::format("no enclave {} (qt enclave query lists them)", id));
}

ErrorOr<void> run_start(EnclaveOptions const& options)
{
    auto run = enclave::run_dir();
    enclave::StartOptions start;
    start.run = run;
    start.eif = options.eif;
    start.cpus = options.cpus;
    start.memory_mib = options.memory_mib;
    start.cid = options.cid;
    start.debug = options.debug;
    start.pool = TRY(pool_limits(run));
    start.vmm_program = enclave::default_vmm_program();
    // Tests shorten the wait for the heartbeat.
    if (char const* seconds = std::getenv("QTBOX_START_TIMEOUT"); seconds && *seconds)
        start.timeout_ms = static_cast<int>(std::clamp(std::atol(seconds), 1L, 86'400L) * 1000);
    if (options.attach_console && !options.debug)
        return Error::from_code(QtError::NotDebugMode,
            "--attach-console: a production enclave's console is never exposed (hint: add --debug-mode)");
    auto record = TRY(enclave::start(start));
    fmt::print("Started enclave with EnclaveID : {}, EnclaveCID : {}, NumberOfCPUs : {}, MemoryMiB : {}\n", record.id,
        record.cid, record.cpus, record.memory_mib);
    fmt::print("{}\n", enclave_json(record, false).dump());
    std::fflush(stdout);
    if (options.attach_console)
        return attach(run, record);
    return {};
}

ErrorOr<void> run_stop(EnclaveOptions const& options, bool id_given)
{
    auto run = enclave::run_dir();
    std::vector<std::uint64_t> ids;
    if (options.all) {
        auto found = TRY(enclave::query(run));
        for (auto const& record : found.enclaves)
            ids.push_back(record.id);
    } else if (id_given) {
        ids.push_back(options.id);
    } else {
        return Error::from_code(QtError::MissingArgument, "give --enclave-id N or --all");
    }
    for (auto id : ids) {
        auto ended = TRY(enclave::stop(run, id));
        // QingTian's words (secGear looks for "success" on stdout).
        fmt::print("stop enclave {} successfully\n", id);
        fmt::print("{{\"EnclaveID\": {}}}\n", id);
        log::debug("enclave {}: {}", id, ended.reason);
    }
    return {};
}

ErrorOr<void> run_query(EnclaveOptions const& options, bool id_given)
{
    auto found = TRY(enclave::query(enclave::run_dir()));
    for (auto const& ended : found.ended)
        log::info("enclave {} ended: {}{}", ended.id, ended.reason,
            ended.last_log_line.empty() ? "" : fmt::format(" (vmm's log: {})", ended.last_log_line));
    auto array = nlohmann::ordered_json::array();
    for (auto const& record : found.enclaves) {
        if (!id_given || record.id == options.id)
            array.push_back(enclave_json(record, true));
    }
    fmt::print("{}\n", array.dump());
    return {};
}

ErrorOr<void> run_make_img(EnclaveOptions const& options)
{
    int exit_code = 0;
    auto result = build_from_inputs(options.build, "qt", exit_code);
    if (result.is_error())
        return Error::from_code(exit_code == EXIT_FAILURE_BUILD ? QtError::FileOperation : QtError::InvalidArgument,
            result.error().message());
    for (auto const& warning : result.value().warnings)
        log::warn("{}", warning);
    // QingTian's shape: digest, then the PCRs; PCR8 96 zeros when unsigned.
    auto const& measured = result.value().measurements;
    nlohmann::ordered_json json;
    json["digest"] = "SHA384";
    json["PCR0"] = hex_encode(measured.pcr0);
    json["PCR1"] = hex_encode(measured.pcr1);
    json["PCR2"] = hex_encode(measured.pcr2);
    json["PCR8"] = hex_encode(measured.pcr8.value_or(eif::Pcr {}));
    fmt::print("{}\n", json.dump(2));
    return {};
}

ErrorOr<void> run_query_eif(EnclaveOptions const& options)
{
    auto description = eif::describe_eif(options.eif, now_millis());
    if (description.is_error()) {
        auto const& error = description.error();
        return Error::from_code(error.is_errno() ? QtError::FileOperation : QtError::InvalidArgument,
            fmt::format("--eif {}: {}", options.eif, error.message()));
    }
    for (auto const& warning : description.value().warnings)
        log::warn("{}: {}", options.eif, warning);
    fmt::print("{}\n", description.value().json.dump(2));
    return {};
}

} // namespace

CommandGroup enclave_commands(CLI::App& qt)
{
    auto options = std::make_shared<EnclaveOptions>();
    auto* group = qt.add_subcommand("enclave", "Enclave life-circle management.");
    group->require_subcommand(1);

    auto* start = group->add_subcommand("start", "Start an enclave via an eif image.");
    start->add_option("--eif", options->eif, "the enclave image")->required()->type_name("F");
    start->add_option("--cpus", options->cpus, "vCPUs")->capture_default_str()->check(CLI::Range(1u, 254u));
    start->add_option("--mem", options->memory_mib, "memory in MiB (at least 128 and 4 times the EIF)")->capture_default_str();
    start->add_option("--cid", options->cid, "the enclave's vsock CID (4 or more, unique on this parent)")->capture_default_str();
    start->add_flag("--debug-mode", options->debug, "debug enclave: PCR0-15 are zeros and the console can be read");
    start->add_flag("--attach-console", options->attach_console, "follow the console once started (debug mode)");

    auto* stop = group->add_subcommand("stop", "Stop an enclave via the enclave-id.");
    auto* stop_id = stop->add_option("--enclave-id", options->id, "the enclave to stop");
    auto* stop_all = stop->add_flag("--all", options->all, "stop every enclave");
    stop_id->excludes(stop_all);

    auto* query = group->add_subcommand("query", "Query an enclave via the enclave-id or query all enclaves.");
    auto* query_id = query->add_option("--enclave-id", options->id, "only this enclave");

    auto* console = group->add_subcommand("console", "Console an enclave via the enclave-id while debugging.");
    console->add_option("--enclave-id", options->id, "the enclave (debug mode)")->required();

    auto* make_img = group->add_subcommand("make-img", "Make an eif image from a docker image.");
    add_eif_input_options(*make_img, options->build, "--eif");

    auto* query_eif = group->add_subcommand("query-eif", "Check an eif image and print its header, sections, PCRs and signature.");
    query_eif->add_option("--eif", options->eif, "the enclave image")->required()->type_name("F");

    return { group, [=]() -> ErrorOr<void> {
                if (start->parsed())
                    return run_start(*options);
                if (stop->parsed())
                    return run_stop(*options, stop_id->count() > 0);
                if (query->parsed())
                    return run_query(*options, query_id->count() > 0);
                if (console->parsed())
                    return attach(enclave::run_dir(), TRY(running_enclave(enclave::run_dir(), options->id)));
                if (query_eif->parsed())
                    return run_query_eif(*options);
                if (make_img->parsed())
                    return run_make_img(*options);
                return {};
            } };
}

} // namespace qtbox::qt
