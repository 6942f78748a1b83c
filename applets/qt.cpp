// qt: the parent-side CLI, with QingTian's command names and error format.
// This file holds the dispatcher (CLI11 parsing, QingTian's error format)
// and the `qt pki` group (the local attestation PKI); the other groups are
// in applets/qt/ (command.hpp says how they plug in).
//
// See: docs/FORMATS.md §7 (qt, error format), §4 and §1 (PKI layout, QTBOX_PKI_DIR),
// docs/PLATFORMS.md §Q1 (error table); man qt(1).
#include "support/applet.hpp"
#include "support/log.hpp"
#include "qt/command.hpp"
#include <qtbox/base/time.hpp>
#include <qtbox/pki/pki.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <array>
#include <functional>
#include <iostream>
#include <string>
#include <string_view>

using namespace qtbox;

QT_APPLET(qt, "qt", "enclave lifecycle and the local attestation PKI (QingTian CLI names)");

namespace {

using enclave::QtError;
using qt::CommandGroup;

// docs/FORMATS.md §7: "Error NN: <QingTian message>: <detail and hint>", exit NN.
int qt_error(QtError error, std::string_view detail)
{
    int code = static_cast<int>(error);
    if (code < 1 || code > static_cast<int>(QtError::CidInUse))
        code = static_cast<int>(QtError::InvalidArgument);
    fmt::print(stderr, "Error {:02}: {}: {}\n", code, enclave::qt_error_message(static_cast<QtError>(code)), detail);
    return code;
}

// ---- qt pki ----

nlohmann::json certificate_json(pki::CertificateSummary const& certificate)
{
    nlohmann::json json {
        { "Path", certificate.path },
        { "Subject", certificate.subject },
        { "Issuer", certificate.issuer },
        { "Serial", certificate.serial_hex },
        { "NotBefore", format_rfc3339(certificate.not_before) },
        { "NotAfter", format_rfc3339(certificate.not_after) },
        { "SHA256", certificate.sha256_fingerprint },
        { "CA", certificate.is_ca },
        { "PathLength", nullptr },
        { "KeyUsage", certificate.key_usage },
        { "KeyType", certificate.key_type },
        { "SignatureAlgorithm", certificate.signature_algorithm },
    };
    if (certificate.max_path_length)
        json["PathLength"] = *certificate.max_path_length;
    return json;
}

// PKI failures are file problems (QingTian 03), with the hint the library's
// message already carries ("use --force", "created by `qt pki init`").
Error pki_failure(Error const& error, std::string_view what)
{
    return Error::from_code(QtError::FileOperation, fmt::format("{}: {}", what, error.message()));
}

ErrorOr<void> print_summary(std::string const& directory)
{
    auto summary = pki::show(directory);
    if (summary.is_error())
        return pki_failure(summary.error(), "cannot read the PKI");
    nlohmann::json json {
        { "Directory", summary.value().directory },
        { "Root", certificate_json(summary.value().root) },
        { "Parent", certificate_json(summary.value().parent) },
    };
    fmt::print("{}\n", json.dump(2));
    return {};
}

struct PkiOptions {
    bool force { false };
    std::string parent_name { pki::DEFAULT_PARENT_NAME };
    std::string offline_root;
};

CommandGroup pki_commands(CLI::App& qt, PkiOptions& options)
{
    auto* pki_command = qt.add_subcommand("pki", "Local attestation PKI: the root and this parent's CA.");
    pki_command->require_subcommand(1);
    auto* init = pki_command->add_subcommand("init",
        "Create the root (self-signed P-384, 30 years) and the parent CA in $QTBOX_PKI_DIR (default /var/lib/qtbox/pki).");
    init->add_flag("--force", options.force, "replace an existing PKI (every document signed under it stops verifying)");
    init->add_option("--parent-name", options.parent_name, "the parent CA is \"CN=<NAME>.parent,O=qtbox\"")
        ->capture_default_str();
    init->add_option("--offline-root", options.offline_root,
            "write the root's private key (and a copy of root.pem) to DIR, e.g. removable media kept offline, not beside parent.key")
        ->type_name("DIR");
    auto* show = pki_command->add_subcommand("show", "Print the root and the parent CA (JSON).");
    return { pki_command, [init, show, &options]() -> ErrorOr<void> {
                auto directory = pki::pki_directory();
                if (init->parsed()) {
                    pki::InitOptions init_options;
                    init_options.parent_name = options.parent_name;
                    init_options.offline_root_directory = options.offline_root;
                    auto created = pki::init(directory, options.force, init_options);
                    if (created.is_error()) {
                        // A bad --parent-name is the caller's argument, not a file problem.
                        if (created.error().is(pki::PkiError::InvalidName))
                            return Error::from_code(QtError::InvalidArgument, created.error().message());
                        return pki_failure(created.error(), fmt::format("cannot create the PKI in {}", directory));
                    }
                    return print_summary(directory);
                }
                if (show->parsed())
                    return print_summary(directory);
                return {};
            } };
}

} // namespace

int qt_main(int argc, char** argv)
{
    CLI::App app;
    configure_app(app, "QingTian enclave CLI: enclave lifecycle and the local attestation PKI.");
    app.name("qt");
    app.require_subcommand(1);
    PkiOptions pki_options;
    std::array groups { pki_commands(app, pki_options), qt::enclave_commands(app), qt::env_commands(app) };

    try {
        app.parse(argc, argv);
    } catch (CLI::CallForHelp const&) {
        std::cout << app.help();
        return 0;
    } catch (CLI::CallForAllHelp const&) {
        std::cout << app.help("", CLI::AppFormatMode::All);
        return 0;
    } catch (CLI::RequiredError const& error) {
        return qt_error(QtError::MissingArgument, fmt::format("{} (run 'qt --help')", error.what()));
    } catch (CLI::ArgumentMismatch const& error) {
        return qt_error(QtError::MissingArgument, fmt::format("{} (run 'qt --help')", error.what()));
    } catch (CLI::ParseError const& error) {
        return qt_error(QtError::InvalidArgument, fmt::format("{} (run 'qt --help')", error.what()));
    }
    for (auto const& group : groups) {
        if (!group.command->parsed())
            continue;
        auto result = group.run();
        if (result.is_error())
            return qt_error(result.error().code_as<QtError>().value_or(QtError::InvalidArgument), result.error().message());
        return 0;
    }
    return qt_error(QtError::MissingArgument, "no command given (run 'qt --help')");
}
