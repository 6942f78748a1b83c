// The VMM proper (docs/ARCHITECTURE.md "Source layout"): Machine::create (the builder,
// src/vmm/builder.cpp) turns a config into a KVM VM with guest memory, an
// in-kernel irqchip and PIT, COM1 and the i8042 reset line, loads the guest,
// and sets every vCPU up for the 64-bit entry; Machine::run (the run loop,
// src/vmm/machine.cpp) starts one thread per vCPU and runs the event loop
// (console input and flushing, termination signals) on the caller's thread
// until the guest stops.
//
// How a run ends (Outcome::stop):
//   GuestReset     the guest rebooted (0xFE on port 0x64): the normal end
//                  of an enclave, whose init reboots when the app exits
//   GuestPanic     the console showed "Kernel panic - not syncing"; the VM
//                  is stopped when the guest resets or PANIC_GRACE later
//   TripleFault    KVM_EXIT_SHUTDOWN
//   Signal         SIGTERM, SIGINT or SIGHUP reached the VMM
//   Failure        KVM refused to run a vCPU or an exit cannot be handled
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/kvm/memory.hpp>
#include <qtbox/kvm/system.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace qtbox::vmm {

struct MachineConfig {
    ByteView kernel; // bzImage; only needed during create()
    std::vector<std::uint64_t> initrd_sizes;
    // Called once during create() with the guest bytes reserved for each
    // initrd (in order, each exactly its size) to fill them in place.
    std::function<ErrorOr<void>(std::span<std::span<std::uint8_t> const>)> fill_initrds;
    std::string cmdline;
    std::uint32_t cpus { 1 };
    std::uint64_t memory_bytes { 0 };
    int console_fd { -1 }; // guest console output; -1 discards it
    int input_fd { -1 };   // host bytes for the guest's COM1; -1 for none
    // Where to serve the console's ring to one reader (vmm/console_server.hpp,
    // docs/FORMATS.md §11); empty for nowhere.
    std::string console_socket;
    // Bound at console_socket beforehand (ConsoleServer::bind); empty: bound
    // during create().
    std::shared_ptr<devices::virtio::HostListener> console_listener;
    bool seccomp { true }; // per-thread seccomp filters once running
    // Guest memory in hugetlb pages of this many MiB, 2 or 1024 (the `qt env`
    // pool; kvm/memory.hpp); 0 for ordinary pages.
    std::uint32_t hugepage_size_mib { 0 };
    // Ordinary guest pages are locked as they are touched (kvm/memory.hpp);
    // Required refuses to start where RLIMIT_MEMLOCK forbids it.
    kvm::MemoryLock memory_lock { kvm::MemoryLock::BestEffort };
    // Host CPUs for the vCPU threads: vCPU i runs only on
    // cpu_affinity[i % size], set before its seccomp filter; empty: not pinned.
    std::vector<unsigned> cpu_affinity;

    // The enclave's virtio-vsock device (docs/FORMATS.md §6, §11): a
    // virtio-mmio device at VIRTIO_MMIO_BASE on GSI VIRTIO_FIRST_GSI,
    // described in the DSDT. Absent for guests that need none (the tiny
    // test guests of tests/applets/vmm).
    struct Vsock {
        std::uint64_t guest_cid { 4 };
        std::string listener_dir;     // <run>/vsock: guest → CID 3 port P goes to 3_P there
        std::string host_socket_path; // parent → guest: CONNECT P on this socket
        // Bound at host_socket_path beforehand (VsockDevice::bind_host_socket).
        std::shared_ptr<devices::virtio::HostListener> host_listener;
        int ready_fd { -1 };          // gets "ready\n" when the first heartbeat arrives
        // The QTSM on port 9001 (vmm/qtsm.hpp); absent: the port is
        // refused like any other that nobody serves.
        std::shared_ptr<devices::virtio::VsockService> qtsm;
    };
    std::optional<Vsock> vsock;
    // What the devices report while the VM runs (a guest's protocol
    // violation, say); the applet prints it.
    NoticeSink notice;
};

enum class Stop { GuestReset, GuestPanic, TripleFault, Signal, Failure };

struct Outcome {
    Stop stop { Stop::Failure };
    int signal { 0 };
    std::string detail;
};

// After the panic banner, how long the guest has to reboot by itself.
constexpr std::chrono::seconds PANIC_GRACE { 5 };
// Most vCPUs one VM may have (the MADT's xAPIC IDs; see boot/acpi.hpp).
constexpr std::uint32_t MAX_VCPUS = 254;

class Machine {
public:
    static ErrorOr<std::unique_ptr<Machine>> create(kvm::System const& system, MachineConfig const& config);
    ~Machine();
    Machine(Machine const&) = delete;
    Machine& operator=(Machine const&) = delete;

    // Blocks SIGTERM/SIGINT/SIGHUP for the process (they are read from a
    // signalfd), starts the vCPU threads and returns when the VM stopped
    // and every thread has been joined.
    ErrorOr<Outcome> run();

    // Empty when guest memory cannot be swapped out; else why it can
    // (MemoryLock::BestEffort only), for the applet to warn.
    std::string const& memory_unlocked_reason() const;

    struct State;

private:
    explicit Machine(std::unique_ptr<State> state);
    std::unique_ptr<State> m_state;
};

} // namespace qtbox::vmm
