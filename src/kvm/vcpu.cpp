#include <qtbox/kvm/vcpu.hpp>

#include "abi.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/ioctl.h>
#include <sys/mman.h>

namespace qtbox::kvm {

Vcpu::~Vcpu()
{
    if (m_run)
        ::munmap(m_run, m_run_size);
}

void Vcpu::kick() noexcept
{
    // volatile: only the kernel reads the byte, so nothing tells the
    // compiler the store matters; it must not be dropped or deferred.
    if (m_run)
        *static_cast<std::uint8_t volatile*>(&m_run->immediate_exit) = 1;
}

void Vcpu::clear_kick() noexcept
{
    if (m_run)
        *static_cast<std::uint8_t volatile*>(&m_run->immediate_exit) = 0;
}

ErrorOr<Exit> Vcpu::run()
{
    Exit exit;
    if (::ioctl(m_fd.get(), KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            exit.reason = ExitReason::Interrupted;
            return exit;
        }
        return Error::from_errno(fmt::format("KVM_RUN on vCPU {}", m_id));
    }
    auto* page = reinterpret_cast<std::uint8_t*>(m_run);
    exit.raw_reason = m_run->exit_reason;
    switch (m_run->exit_reason) {
    case KVM_EXIT_IO: {
        auto const& io = m_run->io;
        // The data offset and size come from the kernel, but a bounds check
        // against the mapping costs nothing and keeps a kernel bug from
        // becoming a wild pointer.
        std::uint64_t length = static_cast<std::uint64_t>(io.size) * io.count;
        if (io.data_offset > m_run_size || length > m_run_size - io.data_offset)
            return Error::from_string(fmt::format("vCPU {}: KVM_EXIT_IO data outside kvm_run", m_id));
        exit.reason = ExitReason::Io;
        exit.io.port = io.port;
        exit.io.size = io.size;
        exit.io.is_write = io.direction == KVM_EXIT_IO_OUT;
        exit.io.count = io.count;
        exit.io.data = { page + io.data_offset, static_cast<std::size_t>(length) };
        return exit;
    }
    case KVM_EXIT_MMIO: {
        auto& mmio = m_run->mmio;
        exit.reason = ExitReason::Mmio;
        exit.mmio.address = mmio.phys_addr;
        exit.mmio.is_write = mmio.is_write != 0;
        exit.mmio.data = { mmio.data, std::min<std::size_t>(mmio.len, sizeof(mmio.data)) };
        return exit;
    }
    case KVM_EXIT_SHUTDOWN:
        exit.reason = ExitReason::Shutdown;
        return exit;
    case KVM_EXIT_SYSTEM_EVENT:
        exit.reason = ExitReason::SystemEvent;
        exit.system_event = m_run->system_event.type;
        return exit;
    case KVM_EXIT_HLT:
        exit.reason = ExitReason::Halt;
        return exit;
    case KVM_EXIT_FAIL_ENTRY:
        exit.reason = ExitReason::FailEntry;
        exit.hardware_reason = m_run->fail_entry.hardware_entry_failure_reason;
        return exit;
    case KVM_EXIT_INTERNAL_ERROR:
        exit.reason = ExitReason::InternalError;
        exit.internal_suberror = m_run->internal.suberror;
        return exit;
    case KVM_EXIT_INTR:
        exit.reason = ExitReason::Interrupted;
        return exit;
    default:
        exit.reason = ExitReason::Other;
        return exit;
    }
}

ErrorOr<kvm_regs> Vcpu::get_regs() const
{
    kvm_regs regs {};
    if (::ioctl(m_fd.get(), KVM_GET_REGS, &regs) < 0)
        return Error::from_errno("KVM_GET_REGS");
    return regs;
}

ErrorOr<void> Vcpu::set_regs(kvm_regs const& regs)
{
    if (::ioctl(m_fd.get(), KVM_SET_REGS, &regs) < 0)
        return Error::from_errno("KVM_SET_REGS");
    return {};
}

ErrorOr<kvm_sregs> Vcpu::get_sregs() const
{
    kvm_sregs sregs {};
    if (::ioctl(m_fd.get(), KVM_GET_SREGS, &sregs) < 0)
        return Error::from_errno("KVM_GET_SREGS");
    return sregs;
}

ErrorOr<void> Vcpu::set_sregs(kvm_sregs const& sregs)
{
    if (::ioctl(m_fd.get(), KVM_SET_SREGS, &sregs) < 0)
        return Error::from_errno("KVM_SET_SREGS");
    return {};
}

ErrorOr<void> Vcpu::set_fpu(kvm_fpu const& fpu)
{
    if (::ioctl(m_fd.get(), KVM_SET_FPU, &fpu) < 0)
        return Error::from_errno("KVM_SET_FPU");
    return {};
}

ErrorOr<void> Vcpu::set_cpuid(std::span<kvm_cpuid_entry2 const> entries)
{
    abi::Flexible<kvm_cpuid_entry2> cpuid(abi::CPUID2_HEADER_SIZE, entries.size());
    cpuid.set_count(static_cast<std::uint32_t>(entries.size()));
    std::memcpy(cpuid.entries(), entries.data(), entries.size_bytes());
    if (::ioctl(m_fd.get(), abi::SET_CPUID2, cpuid.data()) < 0)
        return Error::from_errno("KVM_SET_CPUID2");
    return {};
}

ErrorOr<void> Vcpu::set_msrs(std::span<std::pair<std::uint32_t, std::uint64_t> const> msrs)
{
    abi::Flexible<kvm_msr_entry> list(abi::MSRS_HEADER_SIZE, msrs.size());
    list.set_count(static_cast<std::uint32_t>(msrs.size()));
    for (std::size_t i = 0; i < msrs.size(); ++i) {
        list.entries()[i].index = msrs[i].first;
        list.entries()[i].data = msrs[i].second;
    }
    // KVM_SET_MSRS returns how many entries it set, stopping at the first
    // one it refuses.
    int done = ::ioctl(m_fd.get(), abi::SET_MSRS, list.data());
    if (done < 0)
        return Error::from_errno("KVM_SET_MSRS");
    if (static_cast<std::size_t>(done) != msrs.size())
        return Error::from_string(fmt::format("KVM_SET_MSRS: KVM refused MSR {:#x}", msrs[static_cast<std::size_t>(done)].first));
    return {};
}

ErrorOr<kvm_lapic_state> Vcpu::get_lapic() const
{
    kvm_lapic_state lapic {};
    if (::ioctl(m_fd.get(), KVM_GET_LAPIC, &lapic) < 0)
        return Error::from_errno("KVM_GET_LAPIC");
    return lapic;
}

ErrorOr<void> Vcpu::set_lapic(kvm_lapic_state const& lapic)
{
    if (::ioctl(m_fd.get(), KVM_SET_LAPIC, &lapic) < 0)
        return Error::from_errno("KVM_SET_LAPIC");
    return {};
}

} // namespace qtbox::kvm
