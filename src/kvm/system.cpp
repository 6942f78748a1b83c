#include <qtbox/kvm/system.hpp>
#include <qtbox/kvm/vm.hpp>

#include "abi.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <sys/ioctl.h>
#include <unistd.h>

namespace qtbox::kvm {

ErrorOr<System> System::open(std::string const& path)
{
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int code = errno;
        if (code == ENOENT || code == ENXIO || code == ENODEV)
            return Error::from_code(KvmError::DeviceMissing, fmt::format("cannot open {}: {}", path, std::strerror(code)));
        if (code == EACCES || code == EPERM)
            return Error::from_code(KvmError::NoPermission, fmt::format("cannot open {}: {}", path, std::strerror(code)));
        return Error::from_errno(fmt::format("cannot open {}", path), code);
    }
    System system { UniqueFd(fd) };
    int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != API_VERSION)
        return Error::from_code(KvmError::ApiVersion,
            fmt::format("{}: KVM API version {} (this VMM speaks version {})", path, version, API_VERSION));
    return system;
}

int System::check_extension(long capability) const
{
    int result = ::ioctl(m_fd.get(), KVM_CHECK_EXTENSION, capability);
    return result < 0 ? 0 : result;
}

ErrorOr<void> System::require_extension(long capability, char const* name) const
{
    if (check_extension(capability) <= 0)
        return Error::from_code(KvmError::MissingCapability, fmt::format("KVM lacks {}", name));
    return {};
}

ErrorOr<std::vector<kvm_cpuid_entry2>> System::supported_cpuid() const
{
    // kvm_cpuid2 ends in a flexible array: allocate the header plus room
    // for the bound, as raw storage aligned for the struct.
    abi::Flexible<kvm_cpuid_entry2> cpuid(abi::CPUID2_HEADER_SIZE, MAX_CPUID_ENTRIES);
    cpuid.set_count(MAX_CPUID_ENTRIES);
    if (::ioctl(m_fd.get(), abi::GET_SUPPORTED_CPUID, cpuid.data()) < 0)
        return Error::from_errno("KVM_GET_SUPPORTED_CPUID");
    if (cpuid.count() > MAX_CPUID_ENTRIES)
        return Error::from_string("KVM_GET_SUPPORTED_CPUID: the kernel returned more entries than asked for");
    return std::vector<kvm_cpuid_entry2>(cpuid.entries(), cpuid.entries() + cpuid.count());
}

ErrorOr<std::size_t> System::vcpu_mmap_size() const
{
    int size = ::ioctl(m_fd.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size < 0)
        return Error::from_errno("KVM_GET_VCPU_MMAP_SIZE");
    if (static_cast<std::size_t>(size) < sizeof(kvm_run))
        return Error::from_string(fmt::format("KVM_GET_VCPU_MMAP_SIZE: {} bytes is smaller than struct kvm_run", size));
    return static_cast<std::size_t>(size);
}

ErrorOr<Vm> System::create_vm() const
{
    // Firecracker retries KVM_CREATE_VM on EINTR: creating a VM can take a
    // while on a busy host and a signal may interrupt it.
    for (int attempt = 0;; ++attempt) {
        int fd = ::ioctl(m_fd.get(), KVM_CREATE_VM, 0);
        if (fd >= 0)
            return Vm(UniqueFd(fd));
        if (errno != EINTR || attempt >= 5)
            return Error::from_errno("KVM_CREATE_VM");
        ::usleep(1u << attempt);
    }
}

} // namespace qtbox::kvm
