#include <qtbox/boot/layout.hpp>

#include <algorithm>

namespace qtbox::boot {

std::vector<kvm::MemoryRegion> ram_regions(std::uint64_t memory_size)
{
    std::vector<kvm::MemoryRegion> regions;
    std::uint64_t low = std::min(memory_size, MMIO_HOLE_START);
    regions.push_back({ 0, low });
    if (memory_size > low)
        regions.push_back({ MMIO_HOLE_END, memory_size - low });
    return regions;
}

} // namespace qtbox::boot
