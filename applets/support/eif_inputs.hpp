// The inputs of an EIF build as a command line gives them, shared by
// `eif-build` and `qt enclave make-img` (docs/FORMATS.md §7, §8): the
// options, the defaults from the blobs directory (docs/FORMATS.md §1) and
// SOURCE_DATE_EPOCH, `docker save` for --docker-uri, and the progress line.
// The engine is src/eif/build.cpp.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/eif/build.hpp>

#include <CLI/CLI.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace qtbox {

// eif-build's exit status for a failed build (usage errors are EXIT_USAGE).
constexpr int EXIT_FAILURE_BUILD = 1;

struct EifInputs {
    std::string rootfs, docker_archive, oci, docker_uri, output;
    std::string kernel, modules, cmdline, entrypoint, cmd;
    std::vector<std::string> env;
    std::string name, version, private_key, signing_certificate, build_time;
    bool strict { false };
    std::string output_flag { "--output" };
    // Given on the command line (an empty value is a value).
    CLI::Option* cmdline_option { nullptr };
    CLI::Option* entrypoint_option { nullptr };
    CLI::Option* cmd_option { nullptr };
};

// Adds the input, output and image options to `app`; the output file is
// `output_flag` (eif-build's --output, make-img's --eif).
void add_eif_input_options(CLI::App& app, EifInputs& inputs, std::string const& output_flag);

// Builds the EIF the options describe. `program` names the progress line's
// writer. On failure `exit_code` is EXIT_USAGE for contradictory options,
// else EXIT_FAILURE_BUILD.
ErrorOr<eif::BuildResult> build_from_inputs(EifInputs const& inputs, std::string_view program, int& exit_code);

} // namespace qtbox
