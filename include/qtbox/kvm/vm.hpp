// A KVM virtual machine fd (see system.hpp for the module overview).
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/kvm/vcpu.hpp>

#include <cstdint>
#include <optional>

namespace qtbox::kvm {

class Vm {
public:
    explicit Vm(UniqueFd fd) : m_fd(std::move(fd)) { }

    int fd() const { return m_fd.get(); }
    int check_extension(long capability) const;

    // Both must come before the first vCPU (api.rst).
    ErrorOr<void> set_tss_address(std::uint64_t address);
    ErrorOr<void> set_identity_map_address(std::uint64_t address);
    // In-kernel PIC + IOAPIC + per-vCPU LAPIC; before any vCPU.
    ErrorOr<void> create_irqchip();
    ErrorOr<void> create_pit2(std::uint32_t flags);
    ErrorOr<void> set_user_memory_region(std::uint32_t slot, std::uint64_t guest_address, std::uint64_t size,
        void* host_address);
    // Raising `event_fd` pulses `gsi` on the in-kernel irqchip.
    ErrorOr<void> add_irqfd(int event_fd, std::uint32_t gsi);
    // KVM_CAP_IOEVENTFD: whether add_ioeventfd can work on this host.
    bool supports_ioeventfd() const;
    // A guest write of `length` bytes (1, 2, 4 or 8) to the MMIO `address`
    // signals `event_fd` inside the kernel instead of exiting to the VMM;
    // with `datamatch`, only a write of that value does (a virtio-mmio
    // QueueNotify with the queue index, docs/PLATFORMS.md §V3). api.rst
    // KVM_IOEVENTFD.
    ErrorOr<void> add_ioeventfd(int event_fd, std::uint64_t address, std::uint32_t length,
        std::optional<std::uint64_t> datamatch);
    ErrorOr<Vcpu> create_vcpu(std::uint32_t id, std::size_t run_mmap_size);

private:
    UniqueFd m_fd;
};

} // namespace qtbox::kvm
