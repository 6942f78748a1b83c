// Building an EIF from an image (docs/FORMATS.md §3, §8): the engine behind
// `eif-build` and `qt enclave make-img`.
//
//   ramdisk0 (bootstrap)   dev/, dev/console (c 5 1), etc/qtbox/modules,
//                          init (the running qtbox), lib/modules/<release>/...
//   ramdisk1 (application) rootfs/... (the image, with rootfs/{dev,proc,sys,
//                          run,tmp} added when absent), cmd, env, workdir
//
// /cmd, /env, /workdir and etc/qtbox/modules: the format init reads,
// app_config.hpp. The working directory is "/" when the image sets none;
// the command is ENTRYPOINT followed by CMD, as Docker runs it.
//
// Every byte is streamed: the kernel and layer contents go from their files
// through the EIF writer (CRC, PCRs) to the output; nothing the size of the
// image is held in memory. The output appears only when complete
// (AtomicFile).
#pragma once

#include <qtbox/base/time.hpp>
#include <qtbox/eif/app_config.hpp>
#include <qtbox/eif/pcr.hpp>
#include <qtbox/image/image.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::eif {

// Default blobs directory: $QTBOX_BLOBS, else /usr/share/qtbox/blobs (docs/FORMATS.md §1).
std::string default_blobs_directory();

// docs/FORMATS.md §3: the kernel command line of an image built without --cmdline.
constexpr std::string_view DEFAULT_CMDLINE = "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.nopnp "
                                             "i8042.dumbkbd random.trust_cpu=on cryptomgr.notests quiet";
// The command line to build with when none is given: the text of
// <blobs_directory>/cmdline (blanks and the final newline trimmed) when
// that file exists, else DEFAULT_CMDLINE, so that --kernel and --modules
// alone build an image without any blobs directory. A cmdline file that
// exists but cannot be read, or is over 4 KiB, is EifError::MissingInput;
// build_eif checks the text as it checks any command line.
ErrorOr<std::string> default_cmdline(std::string const& blobs_directory);

// The command and environment the enclave's init runs.
struct RunConfig {
    std::vector<std::string> argv;
    std::vector<std::string> env;   // "KEY=VALUE"
    std::string working_dir;        // absolute
};

struct RunOverrides {
    std::optional<std::vector<std::string>> entrypoint;
    std::optional<std::vector<std::string>> cmd;
    std::vector<std::string> env;   // "KEY=VALUE", replacing the image's KEY
};

// Docker's rules: argv = Entrypoint ‖ Cmd. An overriding entrypoint drops
// the image's Cmd (as `docker run --entrypoint` does) unless a cmd is given
// too. PATH defaults to Docker's when the image sets none. Refuses an empty
// command, and entries that cannot be one line of /cmd or /env.
ErrorOr<RunConfig> resolve_run_config(image::ImageConfig const& image, RunOverrides const& overrides);

// The image's User (OCI image-spec config.md: "user", "uid", "user:group",
// "uid:gid", "uid:group", "user:gid") as numbers, names looked up in the
// image's own etc/passwd and etc/group under `root` in `tree`, as Docker
// does: without a group, the user's primary group from etc/passwd, else 0.
// nullopt when the result is root (0:0) or User is empty. A name that is
// not there is EifError::BadInput: the app never runs as root instead.
ErrorOr<std::optional<UserIds>> resolve_user(std::string_view user, image::FileTree const& tree, std::string const& root);

// --entrypoint/--cmd syntax: a JSON array of strings ('["/bin/app", "-v"]',
// exec form), or else shell-style words: blanks separate words, '...' and
// "..." quote (backslash escapes \ " $ ` and newline inside double quotes),
// a backslash outside quotes takes the next character literally. Nothing is
// expanded. An empty string gives an empty list.
ErrorOr<std::vector<std::string>> parse_command_words(std::string_view text);

enum class InputKind { Rootfs, DockerArchive, Oci };

struct BuildRequest {
    InputKind kind { InputKind::Rootfs };
    std::string input;             // DIR, TAR[:TAG] or DIR[:TAG]
    std::string output;
    std::string kernel;            // bzImage path
    std::string modules;           // directory searched for the guest modules
    std::optional<std::string> kernel_release;   // the blobs' kernel.release
    std::string cmdline;
    std::string init { "/proc/self/exe" };
    RunOverrides overrides;
    std::optional<std::string> name;
    std::optional<std::string> version;
    std::optional<std::string> private_key;
    std::optional<std::string> signing_certificate;
    std::optional<UnixMillis> build_time;   // metadata BuildTime
    std::uint32_t mtime { 0 };              // cpio mtime (SOURCE_DATE_EPOCH)
    bool strict { false };                  // refuse a certificate outside its validity
    UnixMillis now { 0 };                   // for the certificate check
    std::string build_tool { "eif-build" };
    bool parallel_hashing { true };
    // Called with (bytes copied, total bytes to copy) as the image is written.
    std::function<void(std::uint64_t, std::uint64_t)> progress;
};

struct BuildResult {
    Measurements measurements;
    RunConfig run;
    std::optional<UserIds> user;   // written to /user; nullopt: root
    std::string image_name;
    std::string image_version;
    std::string kernel_release;
    std::vector<std::string> warnings;
    std::uint64_t input_bytes { 0 };
};

ErrorOr<BuildResult> build_eif(BuildRequest const& request);

// {"HashAlgorithm": "Sha384", "PCR0": hex, "PCR1": ..., "PCR2": ..., "PCR8"?}
nlohmann::ordered_json measurements_json(Measurements const& measurements);

} // namespace qtbox::eif
