// The KVM API, one thin wrapper per ioctl (docs/ARCHITECTURE.md "Source layout"): System is
// /dev/kvm, Vm a VM fd, Vcpu a vCPU fd with its shared kvm_run page, and
// GuestMemory the host mapping that backs guest RAM. Nothing here knows how
// a guest boots; that is src/boot (pure data) and src/vmm (the builder).
//
// See: Linux Documentation/virt/kvm/api.rst; docs/PLATFORMS.md §V1.6.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

namespace qtbox::kvm {

// Causes a caller may branch on (Error::is()).
enum class KvmError {
    DeviceMissing = 1,  // /dev/kvm does not exist
    NoPermission,       // /dev/kvm exists but may not be opened
    ApiVersion,         // KVM_GET_API_VERSION is not 12
    MissingCapability,  // a KVM_CAP_* the VMM needs is absent
    OutsideGuestMemory, // a guest-physical range not inside guest RAM
    HugepagesUnavailable, // too few free hugepages of the size asked for, or none of that size
    MemoryNotLocked,    // guest memory could not be locked (RLIMIT_MEMLOCK) and locking was required
    InvalidLayout,      // guest memory regions empty, unaligned, overlapping or unsorted, or a bad hugepage size
};

constexpr char const* DEFAULT_DEVICE = "/dev/kvm";
// api.rst: "KVM_GET_API_VERSION ... must return 12"; anything else is a
// different, incompatible ABI.
constexpr int API_VERSION = 12;
// KVM_GET_SUPPORTED_CPUID fails with E2BIG when the array is too small; the
// kernel's own bound (KVM_MAX_CPUID_ENTRIES) is 256 since Linux 5.x.
constexpr std::uint32_t MAX_CPUID_ENTRIES = 256;

class Vm;

class System {
public:
    // Opens the KVM device and checks the API version. A missing device or
    // a permission problem is reported with its own KvmError code, so the
    // applet can print the matching hint (docs/FORMATS.md §10).
    static ErrorOr<System> open(std::string const& path = DEFAULT_DEVICE);

    int fd() const { return m_fd.get(); }
    // KVM_CHECK_EXTENSION on /dev/kvm: 0 when absent, else a positive value.
    int check_extension(long capability) const;
    ErrorOr<void> require_extension(long capability, char const* name) const;
    ErrorOr<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
    ErrorOr<std::size_t> vcpu_mmap_size() const;
    ErrorOr<Vm> create_vm() const;

private:
    explicit System(UniqueFd fd) : m_fd(std::move(fd)) { }
    UniqueFd m_fd;
};

} // namespace qtbox::kvm
