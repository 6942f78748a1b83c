// A test-only QTSM: the real backend (src/qtsm) behind a Unix socket, so that
// qtsm-server, qtsm and libqtsm are tested on the host without a VM.
//
//   qtsm-test-backend serve --socket PATH --pki DIR [--instance-id ID]
//       [--signature-order rfc9052|qingtian] [--clock-file FILE]
//       [--debug-mode] [--once] [--ready-file FILE]
//     Serves the QTSM protocol; each connection gets its own thread (with
//     --once: exactly one connection, like the VMM's port 9001). PCR0 is
//     measure("qtsm-test-backend"), PCR4 measure(instance id), the others
//     zero (all zero with --debug-mode). --clock-file: the clock (documents
//     and leaf rotation) is the decimal milliseconds read from FILE at every
//     use, so a test can move time forward without waiting.
//
//   qtsm-test-backend document --pki DIR --issued-at MS --signed-at MS
//       --out FILE [--nonce HEX]
//     Issues one leaf at --issued-at and signs one document with it at
//     --signed-at, bypassing rotation: how a test makes the document a
//     backend that failed to rotate would make.
//
//   qtsm-test-backend rate --pki DIR [--seconds S]
//     For bench/qtsm: Attestation requests handled per second in this
//     process, one thread, no I/O (Backend::handle from request bytes to
//     response bytes), and per CPU-second of that thread.
#include "../../applets/support/applet.hpp"
#include <qtbox/base/bytes.hpp>
#include "../../applets/support/log.hpp"
#include <qtbox/base/sys.hpp>
#include <qtbox/pki/leaf.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/backend.hpp>

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <csignal>
#include <ctime>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace qtbox;

namespace {

constexpr std::string_view DEFAULT_INSTANCE_ID = "4662b7a3-7898-46c9-a6c5-20e9025e50bc";

ErrorOr<cose::SignatureOrder> parse_order(std::string const& text)
{
    if (text == "rfc9052")
        return cose::SignatureOrder::Rfc9052;
    if (text == "qingtian")
        return cose::SignatureOrder::QingTian;
    return Error::from_string(fmt::format("--signature-order: \"{}\" is neither rfc9052 nor qingtian", text));
}

UnixMillis read_clock_file(std::string const& path)
{
    auto content = sys::read_file(path, 64);
    if (content.is_error())
        return now_millis();
    auto text = as_chars(content.value());
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.remove_suffix(1);
    UnixMillis value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size())
        return now_millis();
    return value;
}

int serve(std::string const& socket_path, std::string const& pki_dir, std::string const& instance_id,
    std::string const& order_text, std::string const& clock_file, bool debug_mode, bool once,
    std::string const& ready_file)
{
    auto order = parse_order(order_text);
    if (order.is_error())
        return report(order.error(), 2);
    auto authority = pki::load(pki_dir);
    if (authority.is_error())
        return report(authority.error(), 1);
    auto module_id = qtsm::make_module_id(instance_id);
    if (module_id.is_error())
        return report(module_id.error(), 2);

    qtsm::BackendConfig config;
    if (!debug_mode) {
        config.system_pcrs[0] = qtsm::measure(as_bytes("qtsm-test-backend"));
        config.system_pcrs[4] = qtsm::measure(as_bytes(instance_id));
    }
    config.module_id = module_id.release_value();
    config.signature_order = order.value();
    if (!clock_file.empty())
        config.clock = [clock_file] { return read_clock_file(clock_file); };
    auto backend = qtsm::Backend::create(std::move(config), authority.release_value());
    if (backend.is_error())
        return report(backend.error(), 1);

    auto listener = sys::unix_listen(socket_path, 0600);
    if (listener.is_error())
        return report(listener.error(), 1);
    if (!ready_file.empty()) {
        auto written = sys::write_file_atomic(ready_file, as_bytes("ready\n"));
        if (written.is_error())
            return report(written.error(), 1);
    }
    auto* shared = backend.value().get();
    for (;;) {
        int fd = ::accept4(listener.value().get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            return report(Error::from_errno("accept"), 1);
        }
        auto work = [shared](UniqueFd connection) {
            auto served = shared->serve(connection.get());
            if (served.is_error())
                log::info("connection ended: {}", served.error().message());
        };
        if (once) {
            work(UniqueFd(fd));
            return 0;
        }
        std::thread(work, UniqueFd(fd)).detach();
    }
}

int document(std::string const& pki_dir, UnixMillis issued_at, UnixMillis signed_at, std::string const& out,
    std::string const& nonce_hex)
{
    auto authority = pki::load(pki_dir);
    if (authority.is_error())
        return report(authority.error(), 1);
    auto module_id = qtsm::make_module_id(DEFAULT_INSTANCE_ID);
    if (module_id.is_error())
        return report(module_id.error(), 1);
    auto leaf = pki::issue_leaf(authority.value(), module_id.value(), issued_at);
    if (leaf.is_error())
        return report(leaf.error(), 1);
    qtsm::AttestationRequest request;
    if (!nonce_hex.empty()) {
        auto nonce = hex_decode(nonce_hex);
        if (nonce.is_error())
            return report(nonce.error(), 2);
        request.nonce = nonce.release_value();
    }
    qtsm::SystemPcrs system {};
    qtsm::PcrBank bank(system);
    auto signed_document = qtsm::assemble_document(module_id.value(), signed_at,
        qtsm::PcrBank::document_pcrs(bank.snapshot()), *leaf.value(), request, cose::SignatureOrder::Rfc9052);
    if (signed_document.is_error())
        return report(signed_document.error(), 1);
    auto written = sys::write_file_atomic(out, signed_document.value());
    if (written.is_error())
        return report(written.error(), 1);
    return 0;
}

double thread_cpu_seconds()
{
    timespec now {};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

int rate(std::string const& pki_dir, double seconds)
{
    auto authority = pki::load(pki_dir);
    if (authority.is_error())
        return report(authority.error(), 1);
    qtsm::BackendConfig config;
    config.module_id = DEFAULT_INSTANCE_ID;
    config.module_id += ".enc-0000000000000000";
    auto backend = qtsm::Backend::create(std::move(config), authority.release_value());
    if (backend.is_error())
        return report(backend.error(), 1);
    using Clock = std::chrono::steady_clock;
    auto start = Clock::now();
    auto deadline = start + std::chrono::duration<double>(seconds);
    double cpu_start = thread_cpu_seconds();
    long count = 0;
    while (Clock::now() < deadline) {
        qtsm::AttestationRequest request;
        request.nonce = Bytes { static_cast<std::uint8_t>(count), static_cast<std::uint8_t>(count >> 8) };
        auto response = backend.value()->handle(qtsm::encode_request(request));
        if (response.size() < 1000)
            return report(Error::from_string("an Attestation request failed"), 1);
        ++count;
    }
    std::chrono::duration<double> elapsed = Clock::now() - start;
    double cpu = thread_cpu_seconds() - cpu_start;
    fmt::print("attestation handle/s: {:.1f}\nattestation handle per CPU-second: {:.1f}\n",
        static_cast<double>(count) / elapsed.count(), static_cast<double>(count) / cpu);
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    log::set_program("qtsm-test-backend");
    std::signal(SIGPIPE, SIG_IGN);
    CLI::App app;
    configure_app(app, "test-only QTSM backend");
    app.require_subcommand(1);

    std::string socket_path, pki_dir, instance_id(DEFAULT_INSTANCE_ID), order("rfc9052"), clock_file, ready_file;
    bool debug_mode = false, once = false;
    auto* serve_command = app.add_subcommand("serve", "serve the QTSM protocol on a Unix socket");
    serve_command->add_option("--socket", socket_path, "listening socket")->required();
    serve_command->add_option("--pki", pki_dir, "PKI directory (qt pki init)")->required();
    serve_command->add_option("--instance-id", instance_id, "parent instance id");
    serve_command->add_option("--signature-order", order, "rfc9052 or qingtian");
    serve_command->add_option("--clock-file", clock_file, "file holding the clock in ms");
    serve_command->add_flag("--debug-mode", debug_mode, "PCR0-15 all zero");
    serve_command->add_flag("--once", once, "serve exactly one connection");
    serve_command->add_option("--ready-file", ready_file, "written once the socket listens");

    std::string out, nonce;
    std::int64_t issued_at = 0, signed_at = 0;
    auto* document_command = app.add_subcommand("document", "sign one document with a leaf issued at a given time");
    document_command->add_option("--pki", pki_dir, "PKI directory")->required();
    document_command->add_option("--issued-at", issued_at, "leaf issue time, ms")->required();
    document_command->add_option("--signed-at", signed_at, "document time, ms")->required();
    document_command->add_option("--out", out, "output file")->required();
    document_command->add_option("--nonce", nonce, "nonce, hex");

    double seconds = 1;
    auto* rate_command = app.add_subcommand("rate", "Attestation requests handled per second, in process");
    rate_command->add_option("--pki", pki_dir, "PKI directory")->required();
    rate_command->add_option("--seconds", seconds, "how long to measure")->check(CLI::Range(0.1, 60.0));

    if (auto exit = parse_command_line(app, argc, argv))
        return *exit;
    if (rate_command->parsed())
        return rate(pki_dir, seconds);
    if (serve_command->parsed())
        return serve(socket_path, pki_dir, instance_id, order, clock_file, debug_mode, once, ready_file);
    return document(pki_dir, issued_at, signed_at, out, nonce);
}
