// One KVM vCPU: its fd, the shared kvm_run page, the register ioctls,
// run(), which turns one KVM_RUN into an Exit the caller dispatches on, and
// kick()/clear_kick(), the only writes to the kvm_run page from outside.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace qtbox::kvm {

enum class ExitReason {
    Io,            // port I/O: `io` is valid
    Mmio,          // MMIO outside guest RAM: `mmio` is valid
    Shutdown,      // triple fault (KVM_EXIT_SHUTDOWN)
    SystemEvent,   // KVM_EXIT_SYSTEM_EVENT: `system_event` holds the type
    Halt,          // HLT reached user space (only without an in-kernel LAPIC)
    FailEntry,     // VM entry failed: `hardware_reason`
    InternalError, // KVM could not emulate: `internal_suberror`
    Interrupted,   // KVM_RUN returned EINTR (a kick or immediate_exit)
    Other,         // an exit the VMM does not handle: `raw_reason`
};

struct IoAccess {
    std::uint16_t port { 0 };
    std::uint8_t size { 0 };   // 1, 2 or 4
    bool is_write { false };
    std::uint32_t count { 0 }; // > 1 for rep ins/outs
    // size * count bytes inside the kvm_run page (bounds checked by run()).
    std::span<std::uint8_t> data;
};

struct MmioAccess {
    std::uint64_t address { 0 };
    bool is_write { false };
    std::span<std::uint8_t> data; // 1..8 bytes inside kvm_run
};

struct Exit {
    ExitReason reason { ExitReason::Other };
    IoAccess io;
    MmioAccess mmio;
    std::uint32_t system_event { 0 };
    std::uint64_t hardware_reason { 0 };
    std::uint32_t internal_suberror { 0 };
    std::uint32_t raw_reason { 0 };
};

class Vcpu {
public:
    Vcpu(UniqueFd fd, kvm_run* run, std::size_t run_size, std::uint32_t id)
        : m_fd(std::move(fd)), m_run(run), m_run_size(run_size), m_id(id) { }
    ~Vcpu();
    Vcpu(Vcpu&& other) noexcept
        : m_fd(std::move(other.m_fd)), m_run(std::exchange(other.m_run, nullptr)),
          m_run_size(std::exchange(other.m_run_size, 0)), m_id(other.m_id) { }
    Vcpu& operator=(Vcpu&&) = delete;
    Vcpu(Vcpu const&) = delete;

    std::uint32_t id() const { return m_id; }
    int fd() const { return m_fd.get(); }

    // Sets immediate_exit in the kvm_run page: the KVM_RUN in progress, or
    // the next one, returns Interrupted instead of running the guest.
    // Async-signal-safe (one byte stored, nothing else): the handler of the
    // signal that kicks a vCPU thread calls it on that thread, so a kick
    // that lands just before KVM_RUN is not lost.
    void kick() noexcept;
    // Clears immediate_exit after an Interrupted exit, so that the next
    // run() enters the guest again.
    void clear_kick() noexcept;

    // One KVM_RUN. EINTR and EAGAIN come back as Interrupted; other errors
    // are errors. The Exit's spans point into the kvm_run page and are valid
    // until the next run().
    ErrorOr<Exit> run();

    ErrorOr<kvm_regs> get_regs() const;
    ErrorOr<void> set_regs(kvm_regs const&);
    ErrorOr<kvm_sregs> get_sregs() const;
    ErrorOr<void> set_sregs(kvm_sregs const&);
    ErrorOr<void> set_fpu(kvm_fpu const&);
    ErrorOr<void> set_cpuid(std::span<kvm_cpuid_entry2 const> entries);
    // Sets every (index, value) pair; fails naming the first MSR KVM refused.
    ErrorOr<void> set_msrs(std::span<std::pair<std::uint32_t, std::uint64_t> const> msrs);
    ErrorOr<kvm_lapic_state> get_lapic() const;
    ErrorOr<void> set_lapic(kvm_lapic_state const&);

private:
    UniqueFd m_fd;
    kvm_run* m_run { nullptr };
    std::size_t m_run_size { 0 };
    std::uint32_t m_id { 0 };
};

} // namespace qtbox::kvm
