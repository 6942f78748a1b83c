#include <qtbox/kvm/vm.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <sys/ioctl.h>
#include <sys/mman.h>

namespace qtbox::kvm {

int Vm::check_extension(long capability) const
{
    int result = ::ioctl(m_fd.get(), KVM_CHECK_EXTENSION, capability);
    return result < 0 ? 0 : result;
}

ErrorOr<void> Vm::set_tss_address(std::uint64_t address)
{
    if (::ioctl(m_fd.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(address)) < 0)
        return Error::from_errno("KVM_SET_TSS_ADDR");
    return {};
}

ErrorOr<void> Vm::set_identity_map_address(std::uint64_t address)
{
    __u64 value = address;
    if (::ioctl(m_fd.get(), KVM_SET_IDENTITY_MAP_ADDR, &value) < 0)
        return Error::from_errno("KVM_SET_IDENTITY_MAP_ADDR");
    return {};
}

ErrorOr<void> Vm::create_irqchip()
{
    if (::ioctl(m_fd.get(), KVM_CREATE_IRQCHIP, 0) < 0)
        return Error::from_errno("KVM_CREATE_IRQCHIP");
    return {};
}

ErrorOr<void> Vm::create_pit2(std::uint32_t flags)
{
    kvm_pit_config config {};
    config.flags = flags;
    if (::ioctl(m_fd.get(), KVM_CREATE_PIT2, &config) < 0)
        return Error::from_errno("KVM_CREATE_PIT2");
    return {};
}

ErrorOr<void> Vm::set_user_memory_region(std::uint32_t slot, std::uint64_t guest_address, std::uint64_t size,
    void* host_address)
{
    kvm_userspace_memory_region region {};
    region.slot = slot;
    region.guest_phys_addr = guest_address;
    region.memory_size = size;
    region.userspace_addr = reinterpret_cast<std::uint64_t>(host_address);
    if (::ioctl(m_fd.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return Error::from_errno(fmt::format("KVM_SET_USER_MEMORY_REGION (slot {}, {:#x}+{:#x})", slot, guest_address, size));
    return {};
}

ErrorOr<void> Vm::add_irqfd(int event_fd, std::uint32_t gsi)
{
    kvm_irqfd irqfd {};
    irqfd.fd = static_cast<__u32>(event_fd);
    irqfd.gsi = gsi;
    if (::ioctl(m_fd.get(), KVM_IRQFD, &irqfd) < 0)
        return Error::from_errno(fmt::format("KVM_IRQFD (GSI {})", gsi));
    return {};
}

bool Vm::supports_ioeventfd() const
{
    return check_extension(KVM_CAP_IOEVENTFD) > 0;
}

ErrorOr<void> Vm::add_ioeventfd(int event_fd, std::uint64_t address, std::uint32_t length,
    std::optional<std::uint64_t> datamatch)
{
    // api.rst: "len ... 1, 2, 4, or 8 bytes"; 0 ("any length") needs
    // KVM_CAP_IOEVENTFD_ANY_LENGTH and cannot match data, so it is not offered.
    if (length != 1 && length != 2 && length != 4 && length != 8)
        return Error::from_errno(fmt::format("KVM_IOEVENTFD ({:#x}): length {}", address, length), EINVAL);
    kvm_ioeventfd ioeventfd {};
    ioeventfd.addr = address;
    ioeventfd.len = length;
    ioeventfd.fd = event_fd;
    if (datamatch) {
        ioeventfd.datamatch = *datamatch;
        ioeventfd.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    }
    if (::ioctl(m_fd.get(), KVM_IOEVENTFD, &ioeventfd) < 0)
        return Error::from_errno(fmt::format("KVM_IOEVENTFD ({:#x}+{})", address, length));
    return {};
}

ErrorOr<Vcpu> Vm::create_vcpu(std::uint32_t id, std::size_t run_mmap_size)
{
    int fd = ::ioctl(m_fd.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0)
        return Error::from_errno(fmt::format("KVM_CREATE_VCPU {}", id));
    UniqueFd vcpu_fd(fd);
    void* run = ::mmap(nullptr, run_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED)
        return Error::from_errno(fmt::format("mmap kvm_run of vCPU {}", id));
    return Vcpu(std::move(vcpu_fd), static_cast<kvm_run*>(run), run_mmap_size, id);
}

} // namespace qtbox::kvm
