// Storage for the KVM structs that end in a flexible array member
// (kvm_cpuid2, kvm_msrs, kvm_msr_list): the header plus `count` entries,
// zeroed and aligned for the struct.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace qtbox::kvm {

template<typename Header, typename Entry>
class Flexible {
public:
    explicit Flexible(std::size_t count)
        : m_storage(new std::uint64_t[(sizeof(Header) + count * sizeof(Entry) + 7) / 8]())
    {
    }
    Header* get() { return reinterpret_cast<Header*>(m_storage.get()); }
    Header* operator->() { return get(); }

private:
    std::unique_ptr<std::uint64_t[]> m_storage;
};

} // namespace qtbox::kvm
