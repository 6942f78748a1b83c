// The enclave's PID 1 (docs/ARCHITECTURE.md "Boot path" 4; docs/FORMATS.md §3 ramdisk layout).
//
//   1. mount proc, sysfs and devtmpfs; make fds 0-2 the console
//   2. load the modules listed in /etc/qtbox/modules (finit_module; .ko,
//      and .ko.gz/.ko.xz/.ko.zst through the kernel's decompressor when it
//      has one, .ko.gz through zlib when it has not)
//   3. bring up lo
//   4. read /cmd, /env and /workdir (one entry a line, Nitro's layout:
//      eif/app_config.hpp, shared with eif-build, which writes them)
//   5. move proc/sys/dev into /rootfs, mount tmpfs on its /tmp and /run
//      (plus devpts and /dev/shm), free the bootstrap files, make /rootfs
//      the root (bind, move onto /, chroot)
//   6. run the app in a new session, reap every child, forward SIGTERM/
//      SIGINT to the app, report its exit status (Events::app_exited)
//   7. reboot(RB_AUTOBOOT): with `reboot=k` the kernel writes 0xFE to port
//      0x64 and the VMM exits (there is no ACPI S5 to power off with)
//
// Any failure is reported as one notice, "<what failed>: <why>; rebooting"
// (the applet prints it on the console as "init: ..."), and init reboots:
// it never hangs and never exits (PID 1 exiting panics the kernel). The
// heartbeat to the parent, qtsm-server and the clock sync come with the
// vsock issue and slot in between steps 3 and 6 (see init.cpp).
//
// The parsing is split out as pure functions so it can be unit tested on
// the build machine.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/eif/app_config.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::init {

// Named limits for the bootstrap files (they come from the EIF); /cmd, /env
// and the module list are read up to eif::MAX_FILE_SIZE.
constexpr std::size_t MAX_MODULE_SIZE = 64 << 20;      // one module, decompressed
constexpr char const* NEW_ROOT = "/rootfs";
// The heartbeat's whole budget: the VMM answers as soon as the packet
// arrives; this covers a slow emulated boot.
constexpr int HEARTBEAT_TIMEOUT_MS = 30'000;
// Connecting to the QTSM, each of its answers, and qtsm-server's start.
constexpr int QTSM_TIMEOUT_MS = 30'000;
// GetRandom bytes credited to the kernel's pool (the crng needs 256 bits).
constexpr std::size_t RANDOM_SEED_SIZE = 64;
// docs/FORMATS.md §5: inside the app's root, on the tmpfs init mounts at /run.
constexpr char const* QTSM_SOCKET_PATH = "/run/qtsm.sock";
// Where qtsm-server finds its channel (and, next, its ready pipe).
constexpr int QTSM_SERVER_CHANNEL_FD = 3;

// eif::MODULE_LIST_PATH: absolute paths, one a line, blank lines skipped.
// Refusals carry eif::AppConfigError, as for /cmd and /env.
ErrorOr<std::vector<std::string>> parse_module_list(std::string_view text);

enum class Compression { None, Gzip, Xz, Zstd };
Compression module_compression(std::string_view path);
// The module image inside a .ko.gz/.ko.xz/.ko.zst (a copy for None), at
// most `limit` bytes; corrupt, truncated or oversized input is an error.
ErrorOr<Bytes> decompress_module(ByteView compressed, Compression compression, std::size_t limit = MAX_MODULE_SIZE);

// "exited with status 3", "was killed by signal 9 (SIGKILL)".
using sys::describe_wait_status;

// How the app ended: its argv[0] and wait status.
struct AppExit {
    std::string program;
    int wait_status { 0 };
};

// What PID 1 reports; applets/init.cpp words and prints it on the console.
// Empty callbacks drop the reports.
struct Events {
    // A step failed ("<what failed>: <why>; rebooting"; init reboots when
    // the call returns), or, from the app's child process between fork and
    // exec, why the app could not be started ("cannot run ...").
    NoticeSink notice;
    // The app has ended; init reboots when the call returns.
    std::function<void(AppExit const&)> app_exited;
};

// The steps that touch the system; each returns a clear error.
ErrorOr<void> mount_early_filesystems();
void attach_console();
ErrorOr<void> load_module(std::string const& path);
ErrorOr<void> bring_up_loopback();
// The heartbeat (docs/FORMATS.md §6): connects to CID 3 port 9000 over
// AF_VSOCK, sends 0xB7 and returns the parent's wall clock from the reply.
// Waits at most `timeout_ms` in all; while the vsock transport is still
// coming up (no device yet) the connect is retried.
ErrorOr<std::uint64_t> exchange_heartbeat(int timeout_ms);
// CLOCK_REALTIME from nanoseconds since the epoch.
ErrorOr<void> set_wall_clock(std::uint64_t nanoseconds);
ErrorOr<eif::AppConfig> read_app_config();
ErrorOr<void> switch_to_rootfs();
// The QTSM channel, AF_VSOCK to CID 3 port 9001, blocking with timeouts.
ErrorOr<UniqueFd> open_qtsm_channel(int timeout_ms);
// RANDOM_SEED_SIZE bytes of QTSM GetRandom into the kernel's pool
// (RNDADDENTROPY, credited in full), then a check that getrandom() no
// longer waits; returns the channel for qtsm-server.
ErrorOr<UniqueFd> seed_kernel_random(UniqueFd channel);
// Runs qtsm-server (the program open at `program_fd`, this binary) on the
// channel, serving QTSM_SOCKET_PATH in the current root, and waits for its
// "ready" line; returns its pid.
ErrorOr<pid_t> start_qtsm_server(int program_fd, UniqueFd channel, int timeout_ms);
// Forks the app and supervises it until it exits; returns its wait status.
// `notice` hears, from the child, why the app could not be started, and
// that qtsm-server (pid `qtsm_server`) ended, if it does.
ErrorOr<int> run_app(eif::AppConfig const& config, NoticeSink const& notice, pid_t qtsm_server = -1);

// The whole of PID 1; never returns.
[[noreturn]] void run(Events const& events);

} // namespace qtbox::init
