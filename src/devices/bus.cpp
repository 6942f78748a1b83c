#include <qtbox/devices/bus.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace qtbox::devices {

ErrorOr<void> Bus::insert(std::uint64_t base, std::uint64_t length, BusDevice& device)
{
    if (length == 0 || base + length < base)
        return Error::from_string(fmt::format("bus: invalid range {:#x}+{:#x}", base, length));
    for (auto const& range : m_ranges) {
        if (base < range.base + range.length && range.base < base + length)
            return Error::from_string(fmt::format("bus: {:#x}+{:#x} overlaps {:#x}+{:#x}", base, length, range.base, range.length));
    }
    auto position = std::lower_bound(m_ranges.begin(), m_ranges.end(), base,
        [](Range const& range, std::uint64_t key) { return range.base < key; });
    m_ranges.insert(position, Range { base, length, &device });
    return {};
}

Bus::Range const* Bus::find(std::uint64_t address, std::uint64_t size) const
{
    auto position = std::upper_bound(m_ranges.begin(), m_ranges.end(), address,
        [](std::uint64_t key, Range const& range) { return key < range.base; });
    if (position == m_ranges.begin())
        return nullptr;
    Range const& range = *std::prev(position);
    std::uint64_t offset = address - range.base;
    if (offset >= range.length || size > range.length - offset)
        return nullptr;
    return &range;
}

bool Bus::read(std::uint64_t address, std::span<std::uint8_t> data) const
{
    Range const* range = find(address, data.size());
    if (!range) {
        std::memset(data.data(), 0, data.size());
        return false;
    }
    range->device->read(address - range->base, data);
    return true;
}

bool Bus::write(std::uint64_t address, ByteView data) const
{
    Range const* range = find(address, data.size());
    if (!range)
        return false;
    range->device->write(address - range->base, data);
    return true;
}

} // namespace qtbox::devices
