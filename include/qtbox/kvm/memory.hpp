// Guest RAM: one private anonymous mapping of the VMM process (docs/ARCHITECTURE.md
// "The trust picture"), excluded from core dumps, carved into the guest
// physical regions the layout asks for. Every access by guest physical
// address is bounds checked: addresses come from guest-controlled data.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace qtbox::kvm {

class Vm;

struct MemoryRegion {
    std::uint64_t guest_address { 0 };
    std::uint64_t size { 0 };
};

class GuestMemory {
public:
    // Maps the sum of the regions' sizes once (MAP_PRIVATE|MAP_ANONYMOUS|
    // MAP_NORESERVE) and marks it MADV_DONTDUMP. Regions must be page
    // aligned, non-empty, sorted and non-overlapping.
    static ErrorOr<GuestMemory> create(std::vector<MemoryRegion> regions);
    ~GuestMemory();
    GuestMemory(GuestMemory&& other) noexcept;
    GuestMemory& operator=(GuestMemory&&) = delete;
    GuestMemory(GuestMemory const&) = delete;

    std::vector<MemoryRegion> const& regions() const { return m_regions; }
    std::uint64_t total_size() const { return m_size; }
    std::uint8_t* host_base() const { return m_base; }

    // KVM_SET_USER_MEMORY_REGION, one slot per region.
    ErrorOr<void> register_with(Vm& vm) const;

    // The host bytes behind [guest_address, +length), which must lie inside
    // one region.
    ErrorOr<std::span<std::uint8_t>> slice(std::uint64_t guest_address, std::uint64_t length) const;
    ErrorOr<void> write(std::uint64_t guest_address, ByteView bytes) const;

private:
    GuestMemory(std::uint8_t* base, std::uint64_t size, std::vector<MemoryRegion> regions)
        : m_base(base), m_size(size), m_regions(std::move(regions)) { }

    std::uint8_t* m_base { nullptr };
    std::uint64_t m_size { 0 };
    std::vector<MemoryRegion> m_regions;
};

} // namespace qtbox::kvm
