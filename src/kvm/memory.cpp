#include <qtbox/kvm/memory.hpp>
#include <qtbox/kvm/system.hpp>
#include <qtbox/kvm/vm.hpp>

#include <fmt/format.h>

#include <cstring>
#include <sys/mman.h>
#include <unistd.h>
#include <utility>

namespace qtbox::kvm {

namespace {

constexpr std::uint64_t PAGE_SIZE = 4096;

} // namespace

ErrorOr<GuestMemory> GuestMemory::create(std::vector<MemoryRegion> regions)
{
    if (regions.empty())
        return Error::from_string("guest memory: no regions");
    std::uint64_t total = 0;
    std::uint64_t previous_end = 0;
    for (auto const& region : regions) {
        if (region.size == 0 || region.size % PAGE_SIZE != 0 || region.guest_address % PAGE_SIZE != 0)
            return Error::from_string(fmt::format("guest memory: region {:#x}+{:#x} is not page aligned", region.guest_address, region.size));
        if (region.guest_address < previous_end || region.guest_address + region.size < region.guest_address)
            return Error::from_string("guest memory: regions overlap or are not sorted");
        previous_end = region.guest_address + region.size;
        total += region.size;
    }
    // MAP_NORESERVE: the guest touches its RAM lazily; overcommit policy
    // decides, as for any large anonymous mapping.
    void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return Error::from_errno(fmt::format("mmap {} MiB of guest memory", total >> 20));
    GuestMemory memory(static_cast<std::uint8_t*>(base), total, std::move(regions));
    // Guest memory holds the enclave's secrets: never in a core dump.
    if (::madvise(base, total, MADV_DONTDUMP) < 0)
        return Error::from_errno("madvise MADV_DONTDUMP on guest memory");
    return memory;
}

GuestMemory::~GuestMemory()
{
    if (m_base)
        ::munmap(m_base, m_size);
}

GuestMemory::GuestMemory(GuestMemory&& other) noexcept
    : m_base(std::exchange(other.m_base, nullptr)), m_size(std::exchange(other.m_size, 0)),
      m_regions(std::move(other.m_regions))
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
