#include <qtbox/kvm/memory.hpp>
#include <qtbox/kvm/system.hpp>
#include <qtbox/kvm/vm.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <linux/mman.h>
#include <sys/mman.h>
#include <unistd.h>
#include <utility>

namespace qtbox::kvm {

namespace {

constexpr std::uint64_t PAGE_SIZE = 4096;

// Locks [base, +size) page by page as it is faulted in. Within
// RLIMIT_MEMLOCK, or with CAP_IPC_LOCK (in the initial user namespace). The
// vmm applet raises the limit while it still may; the setup filter allows
// mlock2 but not setrlimit (vmm/seccomp.hpp), so nothing is raised here.
ErrorOr<void> lock_on_fault(void* base, std::uint64_t size)
{
    if (::mlock2(base, size, MLOCK_ONFAULT) == 0)
        return {};
    int code = errno;
    return Error::from_code(KvmError::MemoryNotLocked,
        fmt::format("cannot lock {} MiB of guest memory: {}; raise RLIMIT_MEMLOCK (ulimit -l, systemd's LimitMEMLOCK=), "
                    "give the VMM CAP_IPC_LOCK, or use hugepages",
            size >> 20, std::strerror(code)));
}

} // namespace

ErrorOr<GuestMemory> GuestMemory::create(std::vector<MemoryRegion> regions, std::uint32_t hugepage_size_mib, MemoryLock lock)
{
    if (regions.empty())
        return Error::from_code(KvmError::InvalidLayout, "guest memory: no regions");
    if (hugepage_size_mib != 0 && hugepage_size_mib != 2 && hugepage_size_mib != 1024)
        return Error::from_code(KvmError::InvalidLayout, fmt::format("guest memory: {} MiB hugepages: the sizes are 2 and 1024 MiB", hugepage_size_mib));
    std::uint64_t page = hugepage_size_mib ? std::uint64_t(hugepage_size_mib) << 20 : PAGE_SIZE;
    std::uint64_t total = 0;
    std::uint64_t previous_end = 0;
    for (auto const& region : regions) {
        if (region.size == 0 || region.size % PAGE_SIZE != 0 || region.guest_address % PAGE_SIZE != 0)
            return Error::from_code(KvmError::InvalidLayout, fmt::format("guest memory: region {:#x}+{:#x} is not page aligned", region.guest_address, region.size));
        if (region.size % page != 0)
            return Error::from_code(KvmError::InvalidLayout, fmt::format("guest memory: region {:#x}+{:#x} is not a multiple of the {} MiB hugepage size",
                region.guest_address, region.size, hugepage_size_mib));
        if (region.guest_address < previous_end || region.guest_address + region.size < region.guest_address)
            return Error::from_code(KvmError::InvalidLayout, "guest memory: regions overlap or are not sorted");
        previous_end = region.guest_address + region.size;
        total += region.size;
    }
    void* base = MAP_FAILED;
    if (hugepage_size_mib == 0) {
        // MAP_NORESERVE: the guest touches its RAM lazily; overcommit policy
        // decides, as for any large anonymous mapping.
        base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED)
            return Error::from_errno(fmt::format("mmap {} MiB of guest memory", total >> 20));
    } else {
        // Without MAP_NORESERVE the kernel reserves every hugepage now, so a
        // short pool fails here (ENOMEM) and never as a SIGBUS later;
        // MAP_POPULATE faults them all in before the guest runs. EINVAL:
        // the kernel has no pages of this size.
        int size_flag = hugepage_size_mib == 2 ? MAP_HUGE_2MB : MAP_HUGE_1GB;
        base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | size_flag | MAP_POPULATE, -1, 0);
        if (base == MAP_FAILED) {
            int code = errno;
            auto error = Error::from_errno(fmt::format("mmap {} MiB of guest memory in {} MiB hugepages", total >> 20, hugepage_size_mib), code);
            if (code == ENOMEM || code == EINVAL)
                return Error::from_code(KvmError::HugepagesUnavailable, error.message());
            return error;
        }
    }
    GuestMemory memory(static_cast<std::uint8_t*>(base), total, std::move(regions), hugepage_size_mib);
    // Guest memory holds the enclave's secrets: never in a core dump, and
    // never written to swap.
    if (::madvise(base, total, MADV_DONTDUMP) < 0)
        return Error::from_errno("madvise MADV_DONTDUMP on guest memory");
    if (hugepage_size_mib == 0) {
        auto locked = lock_on_fault(base, total);
        if (locked.is_error()) {
            if (lock == MemoryLock::Required)
                return locked.release_error();
            memory.m_unlocked_reason = locked.error().message() + "; the guest's memory may be swapped out";
        }
    }
    return memory;
}

GuestMemory::~GuestMemory()
{
    if (m_base)
        ::munmap(m_base, m_size);
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : m_base(std::exchange(other.m_base, nullptr)), m_size(std::exchange(other.m_size, 0)),
      m_regions(std::move(other.m_regions)), m_hugepage_size_mib(other.m_hugepage_size_mib),
      m_unlocked_reason(std::move(other.m_unlocked_reason))
{
}

ErrorOr<void> GuestMemory::register_with(Vm& vm) const
{
    std::uint64_t offset = 0;
    for (std::uint32_t slot = 0; slot < m_regions.size(); ++slot) {
        auto const& region = m_regions[slot];
        TRY(vm.set_user_memory_region(slot, region.guest_address, region.size, m_base + offset));
        offset += region.size;
    }
    return {};
}

ErrorOr<std::span<std::uint8_t>> GuestMemory::slice(std::uint64_t guest_address, std::uint64_t length) const
{
    std::uint64_t offset = 0;
    for (auto const& region : m_regions) {
        if (guest_address >= region.guest_address && guest_address - region.guest_address < region.size) {
            std::uint64_t inside = guest_address - region.guest_address;
            if (length > region.size - inside)
                break;
            return std::span<std::uint8_t>(m_base + offset + inside, static_cast<std::size_t>(length));
        }
        offset += region.size;
    }
    return Error::from_code(KvmError::OutsideGuestMemory, fmt::format("guest range {:#x}+{:#x} is not inside guest RAM", guest_address, length));
}

ErrorOr<void> GuestMemory::write(std::uint64_t guest_address, ByteView bytes) const
{
    auto target = TRY(slice(guest_address, bytes.size()));
    if (!bytes.empty())
        std::memcpy(target.data(), bytes.data(), bytes.size());
    return {};
}

} // namespace qtbox::kvm
