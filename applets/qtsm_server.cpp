// qtsm-server: runs inside the enclave, owns the enclave's one channel to
// the QTSM (vsock CID 3 port 9001, served by the VMM) and serves the same
// protocol to local apps, libqtsm and `qtsm` on a Unix socket. It refuses
// writes to the platform PCRs 0-15 and oversized requests itself,
// multiplexes any number of clients over the single channel, and logs every
// client's pid/uid/gid (the engine, src/qtsm/server.cpp, reports events; the
// lines are written here).
//
// See: docs/FORMATS.md §5 (protocol, paths), §6 (ports), §10 (errors); server.hpp for
// the design; man qtsm-server(8).
#include "support/applet.hpp"
#include <qtbox/base/event.hpp>
#include "support/log.hpp"
#include <qtbox/base/sys.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/qtsm/client.hpp>
#include <qtbox/qtsm/sandbox.hpp>
#include <qtbox/qtsm/server.hpp>
#include <qtbox/vsock/address.hpp>

#include <fmt/format.h>

#include <charconv>
#include <fcntl.h>
#include <limits>
#include <optional>
#include <sys/stat.h>
#include <unistd.h>
#include <csignal>
#include <poll.h>
#include <type_traits>
#include <variant>

using namespace qtbox;

QT_APPLET(qtsm_server, "qtsm-server", "serve the QTSM API to the enclave's apps on a Unix socket");

namespace {

constexpr int EXIT_FAILURE_RUNTIME = 1;
constexpr int CONNECT_TIMEOUT_MS = 10'000;

ErrorOr<std::uint32_t> parse_u32(std::string_view text, std::string_view what)
{
    std::uint32_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || error != std::errc() || end != text.data() + text.size())
        return Error::from_string(fmt::format("--device: {} \"{}\" is not a number", what, text));
    return value;
}

// "fd:N": a stream socket already connected to the QTSM, inherited from
// the parent process (init connects the channel itself, seeds the kernel's
// RNG from it, and hands it over).
ErrorOr<std::optional<UniqueFd>> inherited_device(std::string const& device)
{
    std::string_view text = device;
    if (!text.starts_with("fd:"))
        return std::optional<UniqueFd> {};
    auto number = TRY(parse_u32(text.substr(3), "descriptor"));
    if (number < 3 || number > static_cast<std::uint32_t>(std::numeric_limits<int>::max()))
        return Error::from_string(fmt::format("--device {}: not an inherited descriptor (3 or more)", device));
    int fd = static_cast<int>(number);
    auto status = sys::fstat(fd);
    if (status.is_error())
        return Error::from_string(fmt::format("--device {}: {}", device, status.error().message()));
    if (!S_ISSOCK(status.value().st_mode))
        return Error::from_string(fmt::format("--device {}: not a socket", device));
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return Error::from_errno(fmt::format("--device {}", device));
    return std::optional<UniqueFd>(UniqueFd(fd));
}

// "vsock:CID:PORT" or "unix:PATH".
ErrorOr<net::SocketAddress> parse_device(std::string const& device)
{
    std::string_view text = device;
    if (text.starts_with("unix:")) {
        auto path = text.substr(5);
        if (path.empty())
            return Error::from_string("--device unix:PATH needs a path");
        return net::SocketAddress::unix_path(path);
    }
    if (text.starts_with("vsock:")) {
        auto rest = text.substr(6);
        auto colon = rest.find(':');
        if (colon == std::string_view::npos)
            return Error::from_string(fmt::format("--device \"{}\": expected vsock:CID:PORT", device));
        auto cid = TRY(parse_u32(rest.substr(0, colon), "CID"));
        auto port = TRY(parse_u32(rest.substr(colon + 1), "port"));
        return net::SocketAddress::vsock(cid, port);
    }
    return Error::from_string(fmt::format("--device \"{}\": expected vsock:CID:PORT, unix:PATH or fd:N", device));
}

ErrorOr<UniqueFd> connect_upstream(net::SocketAddress const& address)
{
    auto pending = TRY(net::start_connect(address));
    if (pending.in_progress) {
        pollfd poll_fd { pending.fd.get(), POLLOUT, 0 };
        int ready = ::poll(&poll_fd, 1, CONNECT_TIMEOUT_MS);
        if (ready < 0)
            return Error::from_errno("poll");
        if (ready == 0)
            return Error::from_string(fmt::format("connect {}: timed out", address.to_string()));
        auto finished = net::finish_connect(pending.fd.get());
        if (finished.is_error())
            return Error::from_errno(fmt::format("connect {}", address.to_string()), finished.error().errno_code());
    }
    return std::move(pending.fd);
}

// SIGTERM and SIGINT become readable on a signalfd: the loop stops between
// events, never in the middle of a write.
ErrorOr<UniqueFd> stop_signals()
{
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) < 0)
        return Error::from_errno("sigprocmask");
    return sys::signalfd(signals);
}


// One line per client event (qtsm-server(8)); forwarded requests only with
// --verbose (debug level).
void log_event(qtsm::ServerEvent const& event)
{
    std::visit(
        [](auto const& happened) {
            using T = std::decay_t<decltype(happened)>;
            auto name = qtsm::client_name(happened.client);
            if constexpr (std::is_same_v<T, qtsm::ClientConnected>) {
                log::info("{} connected", name);
            } else if constexpr (std::is_same_v<T, qtsm::ClientDisconnected>) {
                log::info("{} disconnected{}{}", name, happened.reason.empty() ? "" : ": ", happened.reason);
            } else if constexpr (std::is_same_v<T, qtsm::RequestRefused>) {
                log::warn("{}: refused ({}): {}", name, qtsm::error_name(happened.code), happened.message);
            } else if constexpr (std::is_same_v<T, qtsm::RequestForwarded>) {
                log::debug("{}: {}", name, happened.request);
            } else if constexpr (std::is_same_v<T, qtsm::RequestAnswered>) {
                if (happened.error)
                    log::info("{}: {} answered {}", name, happened.request, qtsm::error_name(*happened.error));
            }
        },
        event);
}

} // namespace

int qtsm_server_main(int argc, char** argv)
{
    CLI::App app;
    configure_app(app, "Serve the QTSM API (docs/FORMATS.md §5) to local apps on a Unix socket, over the enclave's one QTSM channel.");
    app.name("qtsm-server");
    std::string device = fmt::format("vsock:{}:{}", vsock::PARENT_CID, vsock::QTSM_PORT);
    std::string socket_path(qtsm::DEFAULT_SOCKET_PATH);
    std::size_t max_clients = 256;
    bool verbose = false;
    int ready_fd = -1;
    app.add_option("--device", device, "the QTSM channel: vsock:CID:PORT, unix:PATH, or fd:N (an inherited connected socket)")->capture_default_str();
    app.add_option("--socket", socket_path, "the socket to serve (mode 0660)")->capture_default_str();
    app.add_option("--max-clients", max_clients, "clients served at once; more are refused")
        ->check(CLI::Range(1, 4096))
        ->capture_default_str();
    app.add_flag("--verbose", verbose, "log every request, not only connections and refusals");
    app.add_option("--ready-fd", ready_fd, "write the line 'ready' to this fd, then close it, once the socket is served")
        ->type_name("N")->check(CLI::Range(3, std::numeric_limits<int>::max()));
    if (auto exit = parse_command_line(app, argc, argv))
        return *exit;
    if (verbose)
        log::set_min_level(log::Level::Debug);
    std::signal(SIGPIPE, SIG_IGN);

    UniqueFd ready;
    if (ready_fd >= 0) {
        if (::fcntl(ready_fd, F_SETFD, FD_CLOEXEC) < 0)
            return report(Error::from_errno(fmt::format("--ready-fd {}", ready_fd)), EXIT_USAGE);
        ready = UniqueFd(ready_fd);
    }
    auto inherited = inherited_device(device);
    if (inherited.is_error())
        return report(inherited.error(), EXIT_USAGE);
    std::string upstream_name = device;
    UniqueFd upstream;
    if (inherited.value()) {
        upstream = std::move(*inherited.value());
    } else {
        auto address = parse_device(device);
        if (address.is_error())
            return report(address.error(), EXIT_USAGE);
        auto connected = connect_upstream(address.value());
        if (connected.is_error())
            return report(Error::from_string(fmt::format("cannot reach the QTSM: {}{}", connected.error().message(),
                                                 address.value().family() == AF_VSOCK
                                                     ? " (hint: is this an enclave with the vsock modules loaded?)"
                                                     : "")),
                EXIT_FAILURE_RUNTIME);
        upstream = connected.release_value();
        upstream_name = address.value().to_string();
    }
    auto stop = stop_signals();
    if (stop.is_error())
        return report(stop.error(), EXIT_FAILURE_RUNTIME);
    auto listener = sys::unix_listen(socket_path, 0660);
    if (listener.is_error())
        return report(Error::from_string(fmt::format("cannot serve {}: {}", socket_path, listener.error().message())),
            EXIT_FAILURE_RUNTIME);

    qtsm::ServerOptions options;
    options.max_clients = max_clients;
    options.stop_fd = stop.value().get();
    options.on_event = log_event;
    options.notice = log::write_notice;
    auto server = qtsm::Server::create(listener.release_value(), std::move(upstream), options);
    if (server.is_error())
        return report(server.error(), EXIT_FAILURE_RUNTIME);
    auto sandboxed = qtsm::enter_server_sandbox();
    if (sandboxed.is_error())
        return report(sandboxed.release_error().context("seccomp"), EXIT_FAILURE_RUNTIME);
    // From here on the lines are a daemon's log: timestamp them.
    log::set_timestamps(true);
    log::info("serving {} for the QTSM at {}", socket_path, upstream_name);
    if (ready) {
        // The starter (init) waits for this line before it starts the app.
        static constexpr std::string_view READY = "ready\n";
        [[maybe_unused]] auto written = ::write(ready.get(), READY.data(), READY.size());
        ready.reset();
    }
    auto result = server.value().run();
    if (result.is_error())
        return report(result.error(), EXIT_FAILURE_RUNTIME);
    log::info("stopped by a signal");
    return 0;
}
