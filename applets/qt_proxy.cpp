// qt-proxy: the enclave's only door to the network, in both directions.
//
// Parent mode forwards enclave connections to CID 3 (hybrid vsock sockets
// <run>/vsock/3_<port>, and AF_VSOCK where the host has it) to allowed TCP
// hosts, and parent TCP ports to enclave vsock ports. Enclave mode listens on
// 127.0.0.1 inside the enclave and tunnels to the parent over vsock, so
// unmodified apps just use TCP. The engine is src/proxy/; this file parses,
// does the process-wide set-up (descriptor limit, SIGPIPE, the signals the
// engine handles), wires, enters the sandbox, and writes the engine's events
// as log lines.
//
// See: docs/ARCHITECTURE.md "Hybrid vsock"; docs/FORMATS.md §1, §6, §10; docs/PLATFORMS.md §Q3
// (qt_proxy -l/-a/-p, qproxy's TOML); docs/PLATFORMS.md §N5 (vsock-proxy).
#include "support/applet.hpp"
#include <qtbox/base/event.hpp>
#include "support/log.hpp"
#include "support/service_user.hpp"
#include <qtbox/base/sys.hpp>
#include <qtbox/enclave/paths.hpp>
#include <qtbox/proxy/config.hpp>
#include <qtbox/proxy/proxy.hpp>
#include <qtbox/proxy/sandbox.hpp>

#include <fmt/format.h>

#include <csignal>
#include <cstdlib>
#include <map>
#include <sys/resource.h>

namespace {

using namespace qtbox;


// A log field value: quoted, with quotes, backslashes and bytes outside
// printable ASCII replaced, so that a peer's text can never forge a field
// or a line.
std::string quoted_field(std::string_view text)
{
    std::string result = "\"";
    for (char c : text.substr(0, 200)) {
        auto byte = static_cast<unsigned char>(c);
        result += (c == '"' || c == '\\' || byte < 0x20 || byte >= 0x7F) ? '?' : c;
    }
    return result + "\"";
}

// The one line of each connection (qt-proxy(1), LOGGING).
void log_connection(proxy::ConnectionClosed const& closed)
{
    std::string address = closed.address.empty() ? std::string() : fmt::format(" addr={}", closed.address);
    std::string error = closed.detail.empty() ? std::string() : fmt::format(" error={}", quoted_field(closed.detail));
    log::info("conn={} rule={} peer={} target={}{} up={} down={} ms={} close={}{}", closed.id, closed.rule, closed.peer,
        closed.target, address, closed.up, closed.down, closed.milliseconds, proxy::close_reason_name(closed.reason), error);
}

// Every connection needs up to six descriptors: use the hard limit. Returns
// the limit in force.
std::size_t raise_fd_limit()
{
    rlimit limit {};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return 1024;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
        ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur == RLIM_INFINITY ? (1u << 20) : static_cast<std::size_t>(limit.rlim_cur);
}

// SIGHUP reloads, SIGTERM and SIGINT stop: blocked here, before the engine
// starts its workers (they inherit the mask), and read from a signalfd by
// the engine's control loop.
ErrorOr<UniqueFd> engine_signals()
{
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGHUP);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) < 0)
        return Error::from_errno("sigprocmask");
    return sys::signalfd(signals);
}

} // namespace

QT_APPLET(qt_proxy, "qt-proxy", "forward enclave vsock connections to TCP hosts and TCP ports to enclaves")
{
    using namespace qtbox;
    using namespace qtbox::proxy;
    log::set_program("qt-proxy");

    CLI::App app;
    configure_app(app, "forward enclave vsock connections to TCP hosts and TCP ports to enclaves");
    app.name("qt-proxy");
    app.footer("Forms:\n"
               "  qt-proxy [-4|-6] -l VSOCK_PORT -a HOST -p PORT     QingTian's qt_proxy command line\n"
               "  qt-proxy [-4|-6] --config FILE [--check]           parent: rules from a TOML file\n"
               "  qt-proxy --enclave --config FILE [--vsock-dir DIR] inside the enclave\n"
               "Environment: QTBOX_RUN_DIR (default /run/qtbox), QTBOX_HOSTS, QTBOX_RESOLV_CONF.\n"
               "SIGHUP reloads the configuration file; SIGTERM and SIGINT stop.");
    std::uint64_t listen_port = 0;
    std::string address;
    std::uint64_t port = 0;
    std::string config_path;
    std::string vsock_dir;
    std::string af_vsock = "auto";
    bool enclave = false;
    bool ipv4 = false;
    bool ipv6 = false;
    bool check_only = false;
    std::uint32_t workers = 0;
    std::string user;
    auto* listen_option = app.add_option("-l,--listen-port", listen_port, "vsock port enclaves connect to on CID 3")->type_name("VSOCK_PORT");
    auto* address_option = app.add_option("-a,--address", address, "host to forward to (name or IP address)")->type_name("HOST");
    auto* port_option = app.add_option("-p,--port", port, "TCP port on HOST")->type_name("PORT");
    auto* config_option = app.add_option("--config", config_path, "TOML rules: [[outbound]], [[inbound]], [limits] (see qt-proxy(1))")->type_name("FILE");
    auto* ipv4_flag = app.add_flag("-4,--ipv4", ipv4, "resolve and connect over IPv4 only");
    auto* ipv6_flag = app.add_flag("-6,--ipv6", ipv6, "resolve and connect over IPv6 only");
    ipv4_flag->excludes(ipv6_flag);
    auto* enclave_flag = app.add_flag("--enclave", enclave, "enclave side: listen on 127.0.0.1:<enclave_port>, tunnel to CID 3");
    app.add_flag("--check", check_only, "check the configuration, print a summary and exit");
    app.add_option("--vsock-dir", vsock_dir,
           "hybrid vsock directory of 3_<port> sockets (parent default: $QTBOX_RUN_DIR/vsock; enclave: use it instead of AF_VSOCK)")
        ->type_name("DIR");
    app.add_option("--af-vsock", af_vsock, "parent mode: also listen on AF_VSOCK (auto: when the host has a vsock transport)")
        ->check(CLI::IsMember({ "auto", "on", "off" }))
        ->type_name("MODE");
    app.add_option("--workers", workers,
           fmt::format("event-loop threads (default: one per CPU this process may use, at most {})", Proxy::MAX_WORKERS))
        ->check(CLI::Range(1u, Proxy::MAX_WORKERS_EXPLICIT))
        ->type_name("N");
    app.add_option("--user", user,
           "started as root: run as this user once the listeners are bound (default: 'qtbox' if it exists; 'root' stays root)")
        ->type_name("NAME");
    listen_option->excludes(config_option);
    address_option->excludes(config_option);
    port_option->excludes(config_option);
    enclave_flag->needs(config_option);
    if (auto exit = parse_command_line(app, argc, argv))
        return *exit;

    auto usage = [&](std::string_view message) {
        log::error("{}", message);
        fmt::print(stderr, "Run 'qt-proxy --help' for more information.\n");
        return EXIT_USAGE;
    };
    bool single = listen_option->count() + address_option->count() + port_option->count() > 0;
    if (single && (listen_option->count() == 0 || address_option->count() == 0 || port_option->count() == 0))
        return usage("-l, -a and -p go together");
    if (!single && config_path.empty())
        return usage("give -l VSOCK_PORT -a HOST -p PORT, or --config FILE");

    ProxyMode mode = enclave ? ProxyMode::Enclave : ProxyMode::Parent;
    std::string source = single ? std::string("command line") : config_path;
    auto load = [&]() -> ErrorOr<ProxyConfig> {
        auto config = single ? single_rule_config(listen_port, address, port) : load_proxy_config(config_path);
        if (config.is_error())
            return config.release_error();
        TRY(check_proxy_config(config.value(), mode, source));
        return config;
    };
    auto config = load();
    if (config.is_error())
        return report(config.error(), 1);
    if (check_only) {
        fmt::print("{}: ok: {} outbound, {} inbound rules; max_connections {}, idle_timeout {}ms, connect_timeout {}ms\n", source,
            config.value().outbound.size(), config.value().inbound.size(), config.value().limits.max_connections,
            config.value().limits.idle_timeout_ms, config.value().limits.connect_timeout_ms);
        return 0;
    }

    auto service_user = choose_service_user(user);
    if (service_user.is_error())
        return report(service_user.error(), 1);

    ProxyOptions options;
    options.mode = mode;
    if (auto const& account = service_user.value().account)
        options.socket_owner = std::pair { account->uid, account->gid };
    options.confine_filesystem = true;
    if (!single)
        options.reread_files.push_back(config_path);
    options.run_dir = enclave::run_dir();
    options.vsock_dir = vsock_dir;
    if (mode == ProxyMode::Parent && options.vsock_dir.empty())
        options.vsock_dir = enclave::listener_dir(options.run_dir);
    options.af_vsock = af_vsock == "on" ? AfVsockUse::On : af_vsock == "off" ? AfVsockUse::Off : AfVsockUse::Auto;
    options.family = ipv4 ? net::Family::Ipv4 : ipv6 ? net::Family::Ipv6 : net::Family::Any;
    options.workers = workers;
    options.on_connection_closed = log_connection;
    options.notice = log::write_notice;
    // Test and container overrides for the resolver's files (qt-proxy(1)).
    if (char const* hosts = std::getenv("QTBOX_HOSTS"); hosts && *hosts)
        options.resolver.hosts_path = hosts;
    if (char const* resolv = std::getenv("QTBOX_RESOLV_CONF"); resolv && *resolv)
        options.resolver.resolv_conf_path = resolv;

    options.fd_limit = raise_fd_limit();
    // A peer that goes away mid-splice must give EPIPE, not kill us.
    struct sigaction ignore { };
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, nullptr);
    auto signals = engine_signals();
    if (signals.is_error())
        return report(signals.error(), 1);
    options.signal_fd = signals.value().get();
    auto proxy = Proxy::create(options, config.release_value());
    if (proxy.is_error())
        return report(proxy.error(), 1);
    if (auto const& account = service_user.value().account) {
        if (auto dropped = sys::drop_privileges(*account); dropped.is_error())
            return report(dropped.error(), 1);
    }
    auto sandbox = enter_proxy_sandbox(proxy.value()->socket_directory_fd());
    if (sandbox.is_error())
        return report(Error::from_string(fmt::format("seccomp: {}", sandbox.error().message())), 1);
    // From here on lines are events of a daemon: journald stamps them
    // itself; elsewhere (files, terminals) we do. Errors that end the
    // process keep the plain docs/FORMATS.md §10 shape.
    log::set_timestamps(std::getenv("JOURNAL_STREAM") == nullptr);
    if (auto const& account = service_user.value().account)
        log::info("running as user {} (uid {}, gid {})", account->name, account->uid, account->gid);
    else if (!service_user.value().note.empty())
        log::info("{}", service_user.value().note);
    if (!proxy.value()->landlock_on())
        log::info("landlock: not available in this kernel; the filesystem is confined by seccomp alone (qt-proxy(1) SANDBOX)");
    log::info("ready: {} mode, {} listeners, max_connections {}, {} workers, seccomp on, landlock {}",
        mode == ProxyMode::Parent ? "parent" : "enclave", proxy.value()->listener_count(), proxy.value()->effective_max_connections(),
        proxy.value()->worker_count(), proxy.value()->landlock_on() ? "on" : "off");
    auto result = proxy.value()->run(load);
    log::set_timestamps(false);
    if (result.is_error())
        return report(result.error(), 1);
    return 0;
}
