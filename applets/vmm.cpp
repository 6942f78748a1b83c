// vmm: the tiny KVM VMM that runs ONE enclave (docs/ARCHITECTURE.md "Boot path";
// docs/FORMATS.md §11). Normally started by `qt enclave start`; usable alone to debug
// an image or a kernel.
//
// See: docs/FORMATS.md §2 (PCRs), §3 (EIF, memory rule, default cmdline), §10, §11;
// docs/PLATFORMS.md §V; man/vmm.1.
#include "support/applet.hpp"
#include "support/log.hpp"
#include "support/service_user.hpp"
#include <qtbox/base/account.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/boot/layout.hpp>
#include <qtbox/enclave/paths.hpp>
#include <qtbox/kvm/system.hpp>
#include <qtbox/vmm/launch.hpp>
#include <qtbox/vmm/machine.hpp>
#include <qtbox/vmm/console_server.hpp>
#include <qtbox/vmm/qtsm.hpp>
#include <qtbox/vmm/seccomp.hpp>
#include <qtbox/pki/pki.hpp>

#include <map>

#include <csignal>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

QT_APPLET(vmm, "vmm", "Run one enclave in a KVM virtual machine");

namespace {

using namespace qtbox;

// Exit statuses (man/vmm.1 "EXIT STATUS").
constexpr int EXIT_START_FAILED = 1;
constexpr int EXIT_GUEST_CRASHED = 3;
constexpr int EXIT_VMM_FAILED = 4;

std::string kvm_hint(Error const& error)
{
    if (error.is(kvm::KvmError::DeviceMissing))
        return " (hint: load kvm-intel or kvm-amd and enable VT-x/AMD-V in the firmware; inside a VM, enable nested virtualization)";
    if (error.is(kvm::KvmError::NoPermission))
        return " (hint: add this user to the group that owns the KVM device, usually 'kvm', or run as root)";
    return {};
}

// --hugepages: how many pages of that size are free, and where they come from.
std::string hugepage_hint(Error const& error, std::uint32_t size_mib)
{
    if (!error.is(kvm::KvmError::HugepagesUnavailable))
        return {};
    auto directory = fmt::format("/sys/kernel/mm/hugepages/hugepages-{}kB", size_mib * 1024);
    auto free = sys::read_file(directory + "/free_hugepages", 64);
    if (free.is_error())
        return fmt::format(" (hint: this kernel has no {} MiB hugepages; use --hugepages 2)", size_mib);
    std::string count(as_chars(free.value()));
    count.erase(count.find_last_not_of(" \n") + 1);
    return fmt::format(" (hint: {} free {} MiB hugepages here; reserve them with 'qt env apply' (hugepage_size:{} in qt-enclave-env.conf) "
                       "or in {}/nr_hugepages)",
        count, size_mib, size_mib, directory);
}

// A socket bound before the inputs were parsed (vmm(1) "PRIVILEGES"): its
// file goes if the VMM fails before the machine takes the socket over.
struct Prebound {
    std::string path;
    std::shared_ptr<devices::virtio::HostListener> listener;
    ~Prebound()
    {
        if (listener && listener->fd) {
            listener->fd.reset();
            net::remove_socket_file(path, listener->identity);
        }
    }
};

int exit_status(vmm::Outcome const& outcome)
{
    switch (outcome.stop) {
    case vmm::Stop::GuestReset:
        log::info("enclave stopped: the guest rebooted");
        return 0;
    case vmm::Stop::GuestPanic:
        log::error("guest kernel panic: {}", outcome.detail.empty() ? "(no panic line on the console)" : outcome.detail);
        return EXIT_GUEST_CRASHED;
    case vmm::Stop::TripleFault:
        log::error("guest crashed: {}", outcome.detail);
        return EXIT_GUEST_CRASHED;
    case vmm::Stop::Signal:
        log::error("{}; the enclave was stopped", outcome.detail);
        return 128 + outcome.signal;
    case vmm::Stop::Failure:
        log::error("{}", outcome.detail);
        return EXIT_VMM_FAILED;
    }
    return EXIT_VMM_FAILED;
}

} // namespace

int vmm_main(int argc, char** argv)
{
    // Guest memory and, later, the attestation key live in this process:
    // no core dumps, no ptrace by the same user (docs/ARCHITECTURE.md "The trust picture").
    ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    // A closed console pipe must not kill the VMM (the console is dropped).
    ::signal(SIGPIPE, SIG_IGN);
    // Reading the console input from a terminal while in the background
    // must fail (EIO ends the input), not stop the VMM.
    ::signal(SIGTTIN, SIG_IGN);
    ::signal(SIGTTOU, SIG_IGN);

    CLI::App app;
    configure_app(app, "Run one enclave in a KVM virtual machine: boot an EIF, or a kernel and initrds.");
    vmm::LaunchOptions options;
    auto* eif = app.add_option("--eif", options.eif, "Enclave image file to boot (CRC, signature and PCRs checked first)")->type_name("F");
    auto* kernel = app.add_option("--kernel", options.kernel, "Raw mode: bzImage to boot")->type_name("BZIMAGE");
    auto* initrd = app.add_option("--initrd", options.initrds, "Raw mode: initrd (newc cpio); repeat for more, loaded in order")->type_name("FILE");
    auto* cmdline = app.add_option("--cmdline", options.cmdline, "Raw mode: kernel command line")->type_name("S");
    eif->excludes(kernel)->excludes(initrd)->excludes(cmdline);
    app.add_option("--cpus", options.cpus, "Number of vCPUs")->type_name("N")->capture_default_str()->check(CLI::Range(1u, vmm::MAX_VCPUS));
    app.add_option("--mem", options.memory_mib, "Guest memory in MiB (at least 128 and 4 times the image size)")->type_name("MiB")->capture_default_str();
    app.add_option("--console", options.console,
        "Guest console: a file (appended), '-' for stdout (with stdin as input), or 'none'; default '-' in raw mode and debug mode, else 'none'")->type_name("PATH|-|none");
    app.add_option("--console-socket", options.console_socket,
        "Serve the console, read-only, to one reader at a time on this Unix socket: the last 1 MiB, then live (debug and raw mode only)")->type_name("PATH");
    app.add_option("--hugepages", options.hugepage_size_mib,
        "Back guest memory with hugepages of this many MiB, reserved beforehand (qt env apply); --mem must be a multiple")
        ->type_name("2|1024");
    bool require_locked_memory = false;
    app.add_flag("--require-locked-memory", require_locked_memory,
        "Refuse to start when guest memory cannot be locked against swapping (RLIMIT_MEMLOCK); default: start with a warning");
    app.add_option("--cpu-list", options.cpu_list, "Pin the vCPU threads to these host CPUs, round robin (e.g. 2,3)")
        ->type_name("CPU,...")->delimiter(',')->allow_extra_args(false);
    app.add_flag("--debug-mode", options.debug_mode, "Debug enclave: allow its console to be seen");
    app.add_option("--cid", options.cid, "The enclave's vsock CID (4 or more; unique on this parent)")->type_name("CID")->capture_default_str();
    app.add_option("--vsock-socket", options.vsock_socket,
        "Where parent programs reach the enclave's vsock ports ('CONNECT <port>'); default $QTBOX_RUN_DIR/enclaves/cid-<CID>/vsock.sock")->type_name("PATH");
    app.add_option("--ready-fd", options.ready_fd, "Write the line 'ready' to this fd when the enclave's heartbeat arrives")->type_name("N");
    std::string instance_id, agency;
    cose::SignatureOrder signature_order = cose::SignatureOrder::Rfc9052;
    app.add_option("--instance-id", instance_id,
        "The parent instance id PCR4 measures and the module id starts with; default /etc/machine-id as a UUID")->type_name("ID");
    auto* agency_option = app.add_option("--agency", agency, "The agency (role) string PCR3 measures; default: PCR3 stays zeros")->type_name("S");
    app.add_option("--signature-order", signature_order, "Byte order of the document signature's halves")
        ->transform(CLI::CheckedTransformer(std::map<std::string, cose::SignatureOrder> {
            { "rfc9052", cose::SignatureOrder::Rfc9052 }, { "qingtian", cose::SignatureOrder::QingTian } }))
        ->type_name("rfc9052|qingtian")
        ->default_str("rfc9052");
    std::string user;
    bool no_seccomp = false;
    app.add_option("--user", user,
        "Started as root: run as this user once the KVM device, the inputs, the PKI and the sockets are open "
        "(default: 'qtbox' if it exists; 'root' stays root)")->type_name("NAME");
    app.add_flag("--no-seccomp", no_seccomp, "Debugging only: run WITHOUT the seccomp filters (logged as a warning)");
    if (auto status = parse_command_line(app, argc, argv))
        return *status;
    if (options.eif.empty() && options.kernel.empty()) {
        log::error("give --eif FILE, or --kernel FILE --initrd FILE --cmdline TEXT");
        return EXIT_USAGE;
    }
    if (!options.kernel.empty() && (options.initrds.empty() || cmdline->count() == 0)) {
        log::error("raw mode needs --kernel, at least one --initrd, and --cmdline");
        return EXIT_USAGE;
    }

    auto service_user = choose_service_user(user);
    if (service_user.is_error())
        return report(service_user.error(), EXIT_USAGE);
    if (no_seccomp)
        log::warn("--no-seccomp: this VMM runs WITHOUT its seccomp filters: the image, the guest and its devices meet "
                  "no sandbox; for debugging only, never for an enclave that matters");

    std::string run = enclave::run_dir();
    options.listener_dir = enclave::listener_dir(run);
    if (options.vsock_socket.empty())
        options.vsock_socket = enclave::enclave_socket_path_for_cid(run, options.cid);
    // The service account's group, when this VMM switches to it: the vsock
    // socket and the directory this VMM makes for it belong to that group,
    // so that qt-proxy, run as the same account, reaches the enclave
    // (vmm(1) --user).
    std::optional<gid_t> socket_group;
    if (auto const& account = service_user.value().account)
        socket_group = account->gid;
    if (auto slash = options.vsock_socket.rfind('/'); slash != std::string::npos && slash > 0) {
        // The directory of the socket: private to root and the service
        // group (the socket itself is 0660); parents it makes are 0755.
        if (auto made = sys::make_socket_directory(options.vsock_socket.substr(0, slash), 0750, socket_group); made.is_error()) {
            log::error("--vsock-socket: {}{}", made.error().message(),
                made.error().is_errno(EACCES) ? " (hint: set QTBOX_RUN_DIR to a directory you may write, or run as root)" : "");
            return EXIT_START_FAILED;
        }
    }
    options.notice = log::write_notice;

    // What needs this process's privileges happens before a byte of the
    // inputs is parsed (vmm/seccomp.hpp "setup filter"; vmm(1) "PRIVILEGES"):
    // the KVM device (its error is reported after the inputs', so a bad
    // image fails the same way on a machine without KVM), the PKI's keys,
    // the sockets; then the switch to the service user and the filter.
    char const* device = std::getenv("QTBOX_KVM_DEVICE");
    auto system = kvm::System::open(device && *device ? device : kvm::DEFAULT_DEVICE);
    auto preloaded_pki = std::make_shared<ErrorOr<pki::Authority>>(pki::load(pki::pki_directory()));
    Prebound vsock_listener { options.vsock_socket, nullptr };
    Prebound console_listener { options.console_socket, nullptr };
    options.before_parsing = [&]() -> ErrorOr<void> {
        {
            std::optional<sys::ScopedFileGroup> as_group;
            if (socket_group)
                as_group.emplace(TRY(sys::ScopedFileGroup::enter(*socket_group)));
            vsock_listener.listener = TRY(devices::virtio::VsockDevice::bind_host_socket(options.vsock_socket));
        }
        if (!options.console_socket.empty()) {
            auto bound = vmm::ConsoleServer::bind(options.console_socket);
            if (bound.is_error())
                return bound.release_error().context(fmt::format("console socket {}", options.console_socket));
            console_listener.listener = bound.release_value();
        }
        if (auto const& account = service_user.value().account) {
            // Guest memory may be locked (kvm/memory.hpp); the limit is
            // raised while that is still allowed.
            rlimit unlimited { RLIM_INFINITY, RLIM_INFINITY };
            ::setrlimit(RLIMIT_MEMLOCK, &unlimited);
            TRY(sys::drop_privileges(*account));
        }
        if (!no_seccomp) {
            if (auto filtered = vmm::install_setup_filter(); filtered.is_error())
                return filtered.release_error().context("seccomp");
        }
        return {};
    };
    auto prepared = vmm::prepare_launch(options);
    if (prepared.is_error())
        return report(prepared.error(), prepared.error().is(vmm::LaunchError::Usage) ? EXIT_USAGE : EXIT_START_FAILED);
    auto& launch = *prepared.value();

    // The QTSM's registers, instance id and leaf key, before KVM too.
    vmm::QtsmOptions qtsm_options;
    qtsm_options.production = !options.eif.empty() && !options.debug_mode;
    if (launch.eif)
        qtsm_options.measurements = launch.verification.measurements;
    qtsm_options.instance_id = instance_id;
    if (agency_option->count() > 0)
        qtsm_options.agency = agency;
    qtsm_options.pki_directory = pki::pki_directory();
    qtsm_options.preloaded_pki = preloaded_pki;
    qtsm_options.signature_order = signature_order;
    qtsm_options.notice = log::write_notice;
    qtsm_options.sandbox = !no_seccomp;
    auto qtsm = vmm::create_qtsm(qtsm_options);
    if (qtsm.is_error())
        return report(qtsm.error(), EXIT_START_FAILED);
    launch.machine.vsock->qtsm = qtsm.value().service;
    for (auto const& note : launch.notes)
        log::info("{}", note);

    if (system.is_error()) {
        log::error("{}{}", system.error().message(), kvm_hint(system.error()));
        return EXIT_START_FAILED;
    }
    launch.machine.seccomp = !no_seccomp;
    launch.machine.console_listener = console_listener.listener;
    if (launch.machine.vsock)
        launch.machine.vsock->host_listener = vsock_listener.listener;
    launch.machine.memory_lock = require_locked_memory ? kvm::MemoryLock::Required : kvm::MemoryLock::BestEffort;
    auto machine = vmm::Machine::create(system.value(), launch.machine);
    if (machine.is_error()) {
        log::error("{}{}", machine.error().message(), hugepage_hint(machine.error(), options.hugepage_size_mib));
        return EXIT_START_FAILED;
    }
    // A debug or raw-mode guest's memory is no secret (its console is
    // open): only a production enclave is warned about.
    if (auto const& reason = machine.value()->memory_unlocked_reason(); !reason.empty() && !options.eif.empty() && !options.debug_mode)
        log::warn("{}", reason);
    // Said once the enclave is sure to start, so that a failure to start
    // stays one line.
    for (auto const& note : qtsm.value().notes)
        log::info("{}", note);
    // Root staying root is not logged: a failure to start and a clean run
    // stay as terse as before (vmm(1) --user says when that happens).
    if (auto const& account = service_user.value().account)
        log::info("running as user {} (uid {}, gid {})", account->name, account->uid, account->gid);
    launch.release_inputs();
    auto outcome = machine.value()->run();
    if (outcome.is_error())
        return report(outcome.error(), EXIT_VMM_FAILED);
    return exit_status(outcome.value());
}
