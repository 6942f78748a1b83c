#include "eif_inputs.hpp"

#include "applet.hpp"
#include <qtbox/base/bytes.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/image/docker.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <optional>
#include <unistd.h>

namespace qtbox {

namespace {

constexpr std::uint64_t PROGRESS_THRESHOLD = 64ull << 20;
constexpr std::size_t MAX_BLOB_TEXT = 4096;

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
    explicit Progress(std::string_view program) : m_program(program) { }
    void operator()(std::uint64_t done, std::uint64_t total)
    {
        if (total < PROGRESS_THRESHOLD)
            return;
        unsigned percent = static_cast<unsigned>(done * 100 / total);
        bool tty = ::isatty(STDERR_FILENO);
        if (tty ? percent == m_last : percent / 25 == m_last / 25)
            return;
        m_last = percent;
        fmt::print(stderr, "{}{}: writing image: {:3}% ({} of {} MiB){}", tty ? "\r" : "", m_program, percent, done >> 20, total >> 20,
            tty && percent < 100 ? "" : "\n");
    }

private:
    std::string_view m_program;
    unsigned m_last { 0 };
};

ErrorOr<eif::BuildRequest> make_request(EifInputs const& options, int& exit_code)
{
    exit_code = EXIT_USAGE;
    eif::BuildRequest request;
    int inputs = !options.rootfs.empty() + !options.docker_archive.empty() + !options.oci.empty() + !options.docker_uri.empty();
    if (inputs != 1)
        return Error::from_string("give exactly one of --rootfs, --docker-archive, --oci and --docker-uri");
    if (options.output.empty())
        return Error::from_string(fmt::format("{} is required", options.output_flag));
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
    // The EIF's metadata is JSON, which holds UTF-8 only: refused here as a
    // usage error, before any input is read.
    auto check_utf8 = [](std::string_view flag, std::string const& value) -> ErrorOr<void> {
        auto offset = first_invalid_utf8(value);
        if (offset != std::string_view::npos)
            return Error::from_string(
                fmt::format("{} is not valid UTF-8 (byte 0x{:02X} at offset {})", flag, static_cast<unsigned char>(value[offset]), offset));
        return {};
    };
    TRY(check_utf8("--entrypoint", options.entrypoint));
    TRY(check_utf8("--cmd", options.cmd));
    for (auto const& entry : options.env)
        TRY(check_utf8("--env", entry));
    TRY(check_utf8("--name", options.name));
    TRY(check_utf8("--version", options.version));
    if ((options.entrypoint_option && options.entrypoint_option->count() > 0))
        request.overrides.entrypoint = TRY(eif::parse_command_words(options.entrypoint));
    if ((options.cmd_option && options.cmd_option->count() > 0))
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
    // docs/FORMATS.md §3's default, unless the blobs directory has its own.
    request.cmdline = (options.cmdline_option && options.cmdline_option->count() > 0) ? options.cmdline : TRY(eif::default_cmdline(blobs));
    request.strict = options.strict;
    request.now = now_millis();
    return request;
}

} // namespace

void add_eif_input_options(CLI::App& app, EifInputs& options, std::string const& output_flag)
{
    options.output_flag = output_flag;
    app.add_option("--rootfs", options.rootfs, "Use this directory as the enclave's root file system")->type_name("DIR");
    app.add_option("--docker-archive", options.docker_archive, "Use a 'docker save' archive (TAG picks one of several images)")->type_name("TAR[:TAG]");
    app.add_option("--oci", options.oci, "Use an OCI image layout (TAG: its org.opencontainers.image.ref.name)")->type_name("DIR[:TAG]");
    app.add_option("--docker-uri", options.docker_uri, "Ask the Docker daemon for this image (runs 'docker save')")->type_name("NAME");
    app.add_option(output_flag, options.output, "Write the EIF here (replaced only when complete)")->type_name("F");
    app.add_option("--kernel", options.kernel, "Guest kernel (default: $QTBOX_BLOBS/bzImage)")->type_name("BZIMAGE");
    app.add_option("--modules", options.modules, "Directory searched for the guest's virtio/vsock modules (default: $QTBOX_BLOBS/modules)")->type_name("DIR");
    options.cmdline_option = app.add_option("--cmdline", options.cmdline,
        "Kernel command line (default: $QTBOX_BLOBS/cmdline if it exists, else the built-in one, see eif-build(1))")->type_name("S");
    options.entrypoint_option = app.add_option("--entrypoint", options.entrypoint, "Replace the image's ENTRYPOINT (JSON array or shell words); drops its CMD")->type_name("S");
    options.cmd_option = app.add_option("--cmd", options.cmd, "Replace the image's CMD (JSON array or shell words)")->type_name("S");
    app.add_option("--env", options.env, "Set an environment variable (repeatable; replaces the image's)")->type_name("K=V");
    app.add_option("--name", options.name, "ImageName in the metadata")->type_name("S");
    app.add_option("--version", options.version, "ImageVersion in the metadata")->type_name("S");
    app.add_option("--private-key", options.private_key, "Sign with this EC P-384 key (PEM)")->type_name("PEM");
    app.add_option("--signing-certificate", options.signing_certificate, "The key's certificate (PEM); PCR8 measures it")->type_name("PEM");
    app.add_option("--build-time", options.build_time, "BuildTime in the metadata (default: SOURCE_DATE_EPOCH, else none)")->type_name("RFC3339");
    app.add_flag("--strict", options.strict, "Refuse a signing certificate outside its validity period (default: warn)");
}

ErrorOr<eif::BuildResult> build_from_inputs(EifInputs const& options, std::string_view program, int& exit_code)
{
    auto request = TRY(make_request(options, exit_code));
    exit_code = EXIT_FAILURE_BUILD;
    std::optional<image::TemporaryDirectory> saved;
    if (!options.docker_uri.empty()) {
        saved.emplace(TRY(image::TemporaryDirectory::create("eif-build-docker")));
        auto archive = saved->path() + "/image.tar";
        auto result = image::docker_save(options.docker_uri, archive);
        if (result.is_error())
            return std::move(result.release_error()).context(fmt::format("--docker-uri {}", options.docker_uri));
        request.kind = eif::InputKind::DockerArchive;
        request.input = archive;
    }
    Progress progress(program);
    request.progress = [&](std::uint64_t done, std::uint64_t total) { progress(done, total); };
    auto result = eif::build_eif(request);
    if (result.is_error())
        return std::move(result.release_error()).context(fmt::format("build {}", options.output));
    return result.release_value();
}

} // namespace qtbox
