// The KVM structs that end in a flexible array (kvm_cpuid2, kvm_msrs),
// laid out by hand.
//
// linux/kvm.h declares their arrays with __DECLARE_FLEX_ARRAY, which in C++
// expands to a struct holding an empty struct, and an empty struct has size
// 1 in C++ (0 in C). So in C++ sizeof(kvm_cpuid2) is 12, not 8, the array
// starts at the wrong offset, and the ioctl numbers derived from the sizes
// (KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_SET_MSRS, ...) are not the
// kernel's. Everything here uses the C layout and the kernel's numbers
// (docs/PLATFORMS.md §V1.6 lists them; static_asserts below pin them).
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <sys/ioctl.h>

namespace qtbox::kvm::abi {

// C headers: {u32 nent; u32 padding;} {u32 nmsrs; u32 pad;}
constexpr std::size_t CPUID2_HEADER_SIZE = 8;
constexpr std::size_t MSRS_HEADER_SIZE = 8;

constexpr unsigned long GET_SUPPORTED_CPUID = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, CPUID2_HEADER_SIZE);
constexpr unsigned long SET_CPUID2 = _IOC(_IOC_WRITE, KVMIO, 0x90, CPUID2_HEADER_SIZE);
constexpr unsigned long SET_MSRS = _IOC(_IOC_WRITE, KVMIO, 0x89, MSRS_HEADER_SIZE);
static_assert(GET_SUPPORTED_CPUID == 0xC008AE05);
static_assert(SET_CPUID2 == 0x4008AE90);
static_assert(SET_MSRS == 0x4008AE89);
static_assert(sizeof(kvm_cpuid_entry2) == 40);
// The fixed-size ioctls used elsewhere in src/kvm: their structs have no
// flexible array, so the header's numbers are right; pinned all the same.
static_assert(KVM_GET_REGS == 0x8090AE81 && KVM_SET_REGS == 0x4090AE82);
static_assert(KVM_GET_SREGS == 0x8138AE83 && KVM_SET_SREGS == 0x4138AE84);
static_assert(KVM_SET_FPU == 0x41A0AE8D);
static_assert(KVM_GET_LAPIC == 0x8400AE8E && KVM_SET_LAPIC == 0x4400AE8F);
static_assert(KVM_IRQFD == 0x4020AE76 && KVM_CREATE_PIT2 == 0x4040AE77);
static_assert(KVM_SET_USER_MEMORY_REGION == 0x4020AE46 && KVM_SET_IDENTITY_MAP_ADDR == 0x4008AE48);
static_assert(KVM_RUN == 0xAE80 && KVM_CREATE_VCPU == 0xAE41 && KVM_CREATE_VM == 0xAE01);
static_assert(sizeof(kvm_msr_entry) == 16);

// A zeroed buffer of `header` bytes followed by `count` entries of Entry,
// 8-byte aligned; the leading u32 is the count field in both structs.
template<typename Entry>
class Flexible {
public:
    Flexible(std::size_t header, std::size_t count)
        : m_header(header), m_storage(new std::uint64_t[(header + count * sizeof(Entry) + 7) / 8]())
    {
    }
    void* data() { return m_storage.get(); }
    std::uint32_t count() const
    {
        std::uint32_t value;
        std::memcpy(&value, m_storage.get(), sizeof(value));
        return value;
    }
    void set_count(std::uint32_t value) { std::memcpy(m_storage.get(), &value, sizeof(value)); }
    Entry* entries() { return reinterpret_cast<Entry*>(reinterpret_cast<std::uint8_t*>(m_storage.get()) + m_header); }

private:
    std::size_t m_header;
    std::unique_ptr<std::uint64_t[]> m_storage;
};

} // namespace qtbox::kvm::abi
