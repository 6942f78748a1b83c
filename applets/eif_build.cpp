// eif-build: builds a reproducible enclave image file (EIF) from a host
// directory, a docker-archive or an OCI image layout (no Docker daemon
// needed; --docker-uri alone asks one for `docker save`), prints its PCRs,
// and signs it; `eif-build describe F` prints everything about an EIF.
//
// See: docs/FORMATS.md §2 (PCRs), §3 (EIF), §8 (this applet), §10 (errors);
// docs/PLATFORMS.md §N1.10, §N2; man eif-build(1). The engine is
// src/eif/build.cpp; this file parses, resolves defaults and prints.
#include "support/applet.hpp"
#include "support/log.hpp"
#include <qtbox/base/sys.hpp>
#include <qtbox/eif/build.hpp>
#include <qtbox/eif/describe.hpp>
#include <qtbox/image/docker.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <unistd.h>

using namespace qtbox;

namespace {

constexpr int EXIT_FAILURE_BUILD = 1;
constexpr std::uint64_t PROGRESS_THRESHOLD = 64ull << 20;
constexpr std::size_t MAX_BLOB_TEXT = 4096;

struct Options {
    std::string rootfs, docker_archive, oci, docker_uri, output;
    std::string kernel, modules, cmdline, entrypoint, cmd;
    std::vector<std::string> env;
    std::string name, version, private_key, signing_certificate, build_time;
    bool strict { false };
    bool have_cmdline { false }, have_entrypoint { false }, have_cmd { false };
    std::string describe_file, describe_at;
};

std::string trim(std::string_view text)
{
    auto start = text.find_first_not_of(" \t\r\n");
    if (start == std::string_view::npos)
        return {};
    auto end = text.find_last_not_of(" \t\r\n");
    return std::string(text.substr(start, end - start + 1));
}

ErrorOr<std::string> read_blob_text(std::string const& path)
{
    auto bytes = sys::read_file(path, MAX_BLOB_TEXT);
    if (bytes.is_error())
        return Error::from_string(fmt::format("{} (hint: run scripts/fetch-guest-kernel {}, set QTBOX_BLOBS, or pass the option)",
            bytes.error().message(), eif::default_blobs_directory()));
    return trim(as_chars(bytes.value()));
}

// SOURCE_DATE_EPOCH (reproducible-builds.org): decimal seconds.
ErrorOr<std::optional<std::uint32_t>> source_date_epoch()
{
    char const* value = std::getenv("SOURCE_DATE_EPOCH");
    if (!value || !*value)
        return std::optional<std::uint32_t> {};
    std::string_view text(value);
    std::uint32_t seconds = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (ec != std::errc() || end != text.data() + text.size())
        return Error::from_string(fmt::format("SOURCE_DATE_EPOCH='{}' is not a number of seconds below 2^32", text.substr(0, 32)));
    return std::optional<std::uint32_t>(seconds);
}

// One line on stderr, redrawn in place on a terminal, every quarter otherwise.
class Progress {
public:
    void operator()(std::uint64_t done, std::uint64_t total)
    {
        if (total < PROGRESS_THRESHOLD)
            return;
        unsigned percent = static_cast<unsigned>(done * 100 / total);
        bool tty = ::isatty(STDERR_FILENO);
        if (tty ? percent == m_last : percent / 25 == m_last / 25)
            return;
        m_last = percent;
        fmt::print(stderr, "{}eif-build: writing image: {:3}% ({} of {} MiB){}", tty ? "\r" : "", percent, done >> 20, total >> 20,
            tty && percent < 100 ? "" : "\n");
    }

private:
    unsigned m_last { 0 };
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

ErrorOr<eif::BuildRequest> make_request(Options const& options, int& exit_code)
{
    exit_code = EXIT_USAGE;
    eif::BuildRequest request;
    int inputs = !options.rootfs.empty() + !options.docker_archive.empty() + !options.oci.empty() + !options.docker_uri.empty();
    if (inputs != 1)
        return Error::from_string("give exactly one of --rootfs, --docker-archive, --oci and --docker-uri");
    if (options.output.empty())
        return Error::from_string("--output is required");
    if (options.private_key.empty() != options.signing_certificate.empty())
        return Error::from_string("--private-key and --signing-certificate go together");
    request.output = options.output;
    if (!options.docker_archive.empty()) {
        request.kind = eif::InputKind::DockerArchive;
        request.input = options.docker_archive;
    } else if (!options.oci.empty()) {
        request.kind = eif::InputKind::Oci;
        request.input = options.oci;
    } else {
        request.kind = eif::InputKind::Rootfs;
        request.input = options.rootfs;
    }
    if (options.have_entrypoint)
        request.overrides.entrypoint = TRY(eif::parse_command_words(options.entrypoint));
    if (options.have_cmd)
        request.overrides.cmd = TRY(eif::parse_command_words(options.cmd));
    request.overrides.env = options.env;
    if (!options.name.empty())
        request.name = options.name;
    if (!options.version.empty())
        request.version = options.version;
    if (!options.private_key.empty()) {
        request.private_key = options.private_key;
        request.signing_certificate = options.signing_certificate;
    }
    auto epoch = TRY(source_date_epoch());
    request.mtime = epoch.value_or(0);
    if (!options.build_time.empty()) {
        auto parsed = parse_rfc3339(options.build_time);
        if (parsed.is_error())
            return Error::from_string(fmt::format("--build-time: {}", parsed.error().message()));
        request.build_time = parsed.value();
    } else if (epoch) {
        request.build_time = static_cast<UnixMillis>(*epoch) * 1000;
    }

    // Blobs (docs/FORMATS.md §1): whatever was not given comes from QTBOX_BLOBS.
    exit_code = EXIT_FAILURE_BUILD;
    auto blobs = eif::default_blobs_directory();
    request.kernel = options.kernel.empty() ? blobs + "/bzImage" : options.kernel;
    if (options.modules.empty()) {
        request.modules = blobs + "/modules";
        request.kernel_release = TRY(read_blob_text(blobs + "/kernel.release"));
    } else {
        request.modules = options.modules;
        // An extracted lib/modules/<release> may have its release beside it.
        for (auto candidate : { options.modules + "/kernel.release", options.modules + "/../kernel.release" }) {
            if (::access(candidate.c_str(), R_OK) == 0) {
                request.kernel_release = TRY(read_blob_text(candidate));
                break;
            }
        }
    }
    if (options.kernel.empty() && ::access(request.kernel.c_str(), R_OK) != 0)
        return Error::from_string(fmt::format("kernel {} is missing (hint: run scripts/fetch-guest-kernel {}, set QTBOX_BLOBS, or pass --kernel)",
            request.kernel, blobs));
    request.cmdline = options.have_cmdline ? options.cmdline : TRY(read_blob_text(blobs + "/cmdline"));
    request.strict = options.strict;
    request.now = now_millis();
    return request;
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
    app.add_option("--rootfs", options.rootfs, "Use this directory as the enclave's root file system")->type_name("DIR");
    app.add_option("--docker-archive", options.docker_archive, "Use a 'docker save' archive (TAG picks one of several images)")->type_name("TAR[:TAG]");
    app.add_option("--oci", options.oci, "Use an OCI image layout (TAG: its org.opencontainers.image.ref.name)")->type_name("DIR[:TAG]");
    app.add_option("--docker-uri", options.docker_uri, "Ask the Docker daemon for this image (runs 'docker save')")->type_name("NAME");
    app.add_option("--output", options.output, "Write the EIF here (replaced only when complete)")->type_name("F");
    app.add_option("--kernel", options.kernel, "Guest kernel (default: $QTBOX_BLOBS/bzImage)")->type_name("BZIMAGE");
    app.add_option("--modules", options.modules, "Directory searched for the guest's virtio/vsock modules (default: $QTBOX_BLOBS/modules)")->type_name("DIR");
    auto* cmdline = app.add_option("--cmdline", options.cmdline, "Kernel command line (default: $QTBOX_BLOBS/cmdline)")->type_name("S");
    auto* entrypoint = app.add_option("--entrypoint", options.entrypoint, "Replace the image's ENTRYPOINT (JSON array or shell words); drops its CMD")->type_name("S");
    auto* cmd = app.add_option("--cmd", options.cmd, "Replace the image's CMD (JSON array or shell words)")->type_name("S");
    app.add_option("--env", options.env, "Set an environment variable (repeatable; replaces the image's)")->type_name("K=V");
    app.add_option("--name", options.name, "ImageName in the metadata")->type_name("S");
    app.add_option("--version", options.version, "ImageVersion in the metadata")->type_name("S");
    app.add_option("--private-key", options.private_key, "Sign with this EC P-384 key (PEM)")->type_name("PEM");
    app.add_option("--signing-certificate", options.signing_certificate, "The key's certificate (PEM); PCR8 measures it")->type_name("PEM");
    app.add_option("--build-time", options.build_time, "BuildTime in the metadata (default: SOURCE_DATE_EPOCH, else none)")->type_name("RFC3339");
    app.add_flag("--strict", options.strict, "Refuse a signing certificate outside its validity period (default: warn)");
    auto* describe_command = app.add_subcommand("describe", "Check an EIF and print its header, sections, CRC, PCRs, signature and metadata as JSON");
    describe_command->add_option("file", options.describe_file, "The EIF")->required()->type_name("F");
    describe_command->add_option("--at", options.describe_at, "Check the signing certificate's validity at this time (default: now)")->type_name("RFC3339");
    if (auto exit = parse_command_line(app, argc, argv))
        return *exit;
    if (describe_command->parsed())
        return describe(options);
    options.have_cmdline = cmdline->count() > 0;
    options.have_entrypoint = entrypoint->count() > 0;
    options.have_cmd = cmd->count() > 0;

    int exit_code = EXIT_USAGE;
    auto request = make_request(options, exit_code);
    if (request.is_error())
        return report(request.error(), exit_code);

    std::optional<image::TemporaryDirectory> saved;
    if (!options.docker_uri.empty()) {
        auto directory = image::TemporaryDirectory::create("eif-build-docker");
        if (directory.is_error())
            return report(directory.error(), EXIT_FAILURE_BUILD);
        saved.emplace(directory.release_value());
        auto archive = saved->path() + "/image.tar";
        auto result = image::docker_save(options.docker_uri, archive);
        if (result.is_error())
            return report(std::move(result.release_error()).context(fmt::format("--docker-uri {}", options.docker_uri)), EXIT_FAILURE_BUILD);
        request.value().kind = eif::InputKind::DockerArchive;
        request.value().input = archive;
    }
    Progress progress;
    request.value().progress = [&](std::uint64_t done, std::uint64_t total) { progress(done, total); };
    auto result = eif::build_eif(request.value());
    if (result.is_error())
        return report(std::move(result.release_error()).context(fmt::format("build {}", options.output)), EXIT_FAILURE_BUILD);
    for (auto const& warning : result.value().warnings)
        log::warn("{}", warning);
    nlohmann::ordered_json output;
    output["Measurements"] = eif::measurements_json(result.value().measurements);
    fmt::print("{}\n", output.dump(2));
    return 0;
}
