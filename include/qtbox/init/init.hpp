// The enclave's PID 1 (DESIGN.md "Boot path" 4; SPEC §3 ramdisk layout).
//
//   1. mount proc, sysfs and devtmpfs; make fds 0-2 the console
//   2. load the modules listed in /etc/qtbox/modules (finit_module; .ko,
//      and .ko.gz/.ko.xz/.ko.zst through the kernel's decompressor when it
//      has one, .ko.gz through zlib when it has not)
//   3. bring up lo
//   4. read /cmd, /env and /workdir (one entry a line, Nitro's layout)
//   5. move proc/sys/dev into /rootfs, mount tmpfs on its /tmp and /run
//      (plus devpts and /dev/shm), free the bootstrap files, make /rootfs
//      the root (bind, move onto /, chroot)
//   6. run the app in a new session, reap every child, forward SIGTERM/
//      SIGINT to the app, log its exit status on the console
//   7. reboot(RB_AUTOBOOT): with `reboot=k` the kernel writes 0xFE to port
//      0x64 and the VMM exits (there is no ACPI S5 to power off with)
//
// Any failure prints one "init: <what failed>: <why>" line on the console
// and reboots: init never hangs and never exits (PID 1 exiting panics the
// kernel). The heartbeat to the parent, qtsm-server and the clock sync come
// with the vsock issue and slot in between steps 3 and 6 (see init.cpp).
//
// The parsing is split out as pure functions so it can be unit tested on
// the build machine.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace qtbox::init {

// Named limits for the bootstrap files (they come from the EIF).
constexpr std::size_t MAX_LIST_FILE_SIZE = 1 << 20;    // /cmd, /env, module list
constexpr std::size_t MAX_ENTRIES = 4096;              // lines in one of them
constexpr std::size_t MAX_MODULE_SIZE = 64 << 20;      // one module, decompressed
constexpr char const* MODULE_LIST = "/etc/qtbox/modules";
constexpr char const* NEW_ROOT = "/rootfs";
// Docker's default, used when /env sets no PATH.
constexpr char const* DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// One entry per line, each ending in '\n' (a missing final newline is
// accepted). Empty lines are refused in /cmd (an empty argument cannot be
// told from a blank line) and skipped elsewhere when `skip_empty`.
ErrorOr<std::vector<std::string>> parse_lines(std::string_view text, std::string_view what, bool skip_empty);

struct AppConfig {
    std::vector<std::string> argv;
    std::vector<std::string> env; // "KEY=VALUE", PATH always present
    std::string working_dir { "/" };
};

// From the contents of /cmd, /env (empty when absent) and /workdir (empty
// when absent: "/").
ErrorOr<AppConfig> parse_app_config(std::string_view cmd, std::string_view env, std::string_view workdir);

// The value of PATH in `env` (DEFAULT_PATH when absent).
std::string path_of(std::vector<std::string> const& env);

// Module list: absolute paths, one a line, blank lines skipped.
ErrorOr<std::vector<std::string>> parse_module_list(std::string_view text);

// Why the image's /cmd, /env, /workdir or module list was refused.
enum class InitError {
    Malformed = 1,  // an entry or line that breaks the format
    TooManyEntries, // more than MAX_ENTRIES lines
};

enum class Compression { None, Gzip, Xz, Zstd };
Compression module_compression(std::string_view path);
// The module image inside a .ko.gz/.ko.xz/.ko.zst (a copy for None), at
// most `limit` bytes; corrupt, truncated or oversized input is an error.
ErrorOr<Bytes> decompress_module(ByteView compressed, Compression compression, std::size_t limit = MAX_MODULE_SIZE);

// "exited with status 3", "was killed by signal 9 (SIGKILL)".
std::string describe_wait_status(int status);

// The steps that touch the system; each returns a clear error.
ErrorOr<void> mount_early_filesystems();
void attach_console();
ErrorOr<void> load_module(std::string const& path);
ErrorOr<void> bring_up_loopback();
ErrorOr<AppConfig> read_app_config();
ErrorOr<void> switch_to_rootfs();
// Forks the app and supervises it until it exits; returns its wait status.
ErrorOr<int> run_app(AppConfig const& config);

// The whole of PID 1; never returns.
[[noreturn]] void run();

} // namespace qtbox::init
