// The device model (docs/ARCHITECTURE.md "Source layout"): a bus maps address ranges
// (I/O ports or guest-physical MMIO) to devices; the vCPU loop hands every
// port or MMIO exit to it. An access no device claims reads as zeros and
// writes are dropped (docs/PLATFORMS.md §V1.6: unknown ports must read 0, not 0xFF, so
// that probes such as the CMOS UIP bit do not spin).
//
// Devices are called from several vCPU threads at once and must lock their
// own state. The bus itself is immutable once the VM runs.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace qtbox::devices {

class BusDevice {
public:
    virtual ~BusDevice() = default;
    // `offset` is relative to the base the device was inserted at; `data`
    // is 1..8 bytes (1, 2 or 4 for ports).
    virtual void read(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write(std::uint64_t offset, ByteView data) = 0;
};

class Bus {
public:
    // Refuses empty, overflowing or overlapping ranges.
    ErrorOr<void> insert(std::uint64_t base, std::uint64_t length, BusDevice& device);

    // Dispatch one access. The whole access must fall inside one device's
    // range; otherwise reads fill `data` with zeros and writes are dropped.
    // Returns whether a device took it.
    bool read(std::uint64_t address, std::span<std::uint8_t> data) const;
    bool write(std::uint64_t address, ByteView data) const;

private:
    struct Range {
        std::uint64_t base;
        std::uint64_t length;
        BusDevice* device;
    };
    Range const* find(std::uint64_t address, std::uint64_t size) const;

    std::vector<Range> m_ranges; // sorted by base
};

} // namespace qtbox::devices
