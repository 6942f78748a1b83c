// Guest RAM: one private anonymous mapping of the VMM process (docs/ARCHITECTURE.md
// "The trust picture"), excluded from core dumps, carved into the guest
// physical regions the layout asks for. Every access by guest physical
// address is bounds checked: addresses come from guest-controlled data.
//
// Backing: ordinary pages, touched lazily; or hugetlb pages of 2 MiB or
// 1 GiB (the `qt env` pool, `vmm --hugepages`), reserved when mapped and all
// faulted in before the guest runs. Hugetlb pages are never swapped
// (Documentation/admin-guide/mm/hugetlbpage.rst), so such guest memory
// stays resident, locked in all but name; mlock() would add nothing on a
// hugetlb mapping but still count against RLIMIT_MEMLOCK. Ordinary pages
// are locked as the guest first touches them (mlock2 MLOCK_ONFAULT), so
// guest memory never reaches swap either. Where RLIMIT_MEMLOCK is too low
// for that (an unprivileged user, a container without CAP_IPC_LOCK), MemoryLock
// decides: Required refuses (KvmError::MemoryNotLocked), BestEffort maps
// the memory unlocked and says why (unlocked_reason()).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace qtbox::kvm {

class Vm;

enum class MemoryLock { Required, BestEffort };

struct MemoryRegion {
    std::uint64_t guest_address { 0 };
    std::uint64_t size { 0 };
};

class GuestMemory {
public:
    // Maps the sum of the regions' sizes once and marks it MADV_DONTDUMP.
    // Regions must be page aligned, non-empty, sorted and non-overlapping.
    // hugepage_size_mib 0: MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE.
    // 2 or 1024: MAP_HUGETLB of that size with MAP_POPULATE, every region a
    // multiple of it; too few free hugepages is KvmError::HugepagesUnavailable.
    // Ordinary pages are locked on fault (see above), as `lock` asks.
    static ErrorOr<GuestMemory> create(std::vector<MemoryRegion> regions, std::uint32_t hugepage_size_mib = 0,
        MemoryLock lock = MemoryLock::BestEffort);
    ~GuestMemory();
    GuestMemory(GuestMemory&& other) noexcept;
    GuestMemory& operator=(GuestMemory&&) = delete;
    GuestMemory(GuestMemory const&) = delete;

    std::vector<MemoryRegion> const& regions() const { return m_regions; }
    std::uint64_t total_size() const { return m_size; }
    std::uint8_t* host_base() const { return m_base; }
    // 0 for ordinary pages.
    std::uint32_t hugepage_size_mib() const { return m_hugepage_size_mib; }
    // Empty when no guest page can be swapped out (locked, or hugetlb);
    // otherwise one line saying why the memory is not locked.
    std::string const& unlocked_reason() const { return m_unlocked_reason; }

    // KVM_SET_USER_MEMORY_REGION, one slot per region.
    ErrorOr<void> register_with(Vm& vm) const;

    // The host bytes behind [guest_address, +length), which must lie inside
    // one region.
    ErrorOr<std::span<std::uint8_t>> slice(std::uint64_t guest_address, std::uint64_t length) const;
    ErrorOr<void> write(std::uint64_t guest_address, ByteView bytes) const;

private:
    GuestMemory(std::uint8_t* base, std::uint64_t size, std::vector<MemoryRegion> regions, std::uint32_t hugepage_size_mib)
        : m_base(base), m_size(size), m_regions(std::move(regions)), m_hugepage_size_mib(hugepage_size_mib) { }

    std::uint8_t* m_base { nullptr };
    std::uint64_t m_size { 0 };
    std::vector<MemoryRegion> m_regions;
    std::uint32_t m_hugepage_size_mib { 0 };
    std::string m_unlocked_reason;
};

} // namespace qtbox::kvm
