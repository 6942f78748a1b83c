// eif-build: builds a reproducible enclave image file (EIF) from a host
// directory, a docker-archive or an OCI image layout (no Docker daemon
// needed; --docker-uri alone asks one for `docker save`), prints its PCRs,
// and signs it; `eif-build describe F` prints everything about an EIF.
//
// See: docs/FORMATS.md §2 (PCRs), §3 (EIF), §8 (this applet), §10 (errors);
// docs/PLATFORMS.md §N1.10, §N2; man eif-build(1). The engine is
// src/eif/build.cpp; this file parses, resolves defaults and prints.
#include "support/applet.hpp"
#include "support/eif_inputs.hpp"
#include "support/log.hpp"
#include <qtbox/eif/build.hpp>
#include <qtbox/eif/describe.hpp>

#include <fmt/format.h>


using namespace qtbox;

namespace {

constexpr std::string_view PROGRAM = "eif-build";

struct Options {
    EifInputs build;
    std::string describe_file, describe_at;
};

int describe(Options const& options)
{
    UnixMillis at = now_millis();
    if (!options.describe_at.empty()) {
        auto parsed = parse_rfc3339(options.describe_at);
        if (parsed.is_error())
            return report(Error::from_string(fmt::format("--at: {}", parsed.error().message())), EXIT_USAGE);
        at = parsed.value();
    }
    auto description = eif::describe_eif(options.describe_file, at);
    if (description.is_error())
        return report(std::move(description.release_error()).context(fmt::format("describe {}", options.describe_file)), EXIT_FAILURE_BUILD);
    for (auto const& warning : description.value().warnings)
        log::warn("{}: {}", options.describe_file, warning);
    fmt::print("{}\n", description.value().json.dump(2));
    return 0;
}

} // namespace

QT_APPLET(eif_build, "eif-build", "build a reproducible enclave image (EIF) from a rootfs, docker-archive or OCI layout")
{
    log::set_program("eif-build");
    CLI::App app;
    configure_app(app,
        "build a reproducible enclave image (EIF) from a rootfs, docker-archive or OCI layout\n\n"
        "  eif-build (--rootfs DIR | --docker-archive TAR[:TAG] | --oci DIR[:TAG] | --docker-uri NAME) --output F [OPTIONS]\n"
        "  eif-build describe F [--at RFC3339]");
    app.name("eif-build");
    Options options;
    add_eif_input_options(app, options.build, "--output");
    auto* describe_command = app.add_subcommand("describe", "Check an EIF and print its header, sections, CRC, PCRs, signature and metadata as JSON");
    describe_command->add_option("file", options.describe_file, "The EIF")->required()->type_name("F");
    describe_command->add_option("--at", options.describe_at, "Check the signing certificate's validity at this time (default: now)")->type_name("RFC3339");
    if (auto exit = parse_command_line(app, argc, argv))
        return *exit;
    if (describe_command->parsed())
        return describe(options);
    int exit_code = EXIT_USAGE;
    auto result = build_from_inputs(options.build, PROGRAM, exit_code);
    if (result.is_error())
        return report(result.error(), exit_code);
    for (auto const& warning : result.value().warnings)
        log::warn("{}", warning);
    nlohmann::ordered_json output;
    output["Measurements"] = eif::measurements_json(result.value().measurements);
    fmt::print("{}\n", output.dump(2));
    return 0;
}
