// What is left of the PS/2 controller in a VM: the CPU-reset line. With
// `reboot=k` Linux reboots (and, with `panic=N`, recovers from a panic) by
// writing 0xFE ("pulse output line 0") to the command port 0x64; that is how
// an enclave tells the VMM it is done (docs/PLATFORMS.md §V2.6, §V9.5: there is no ACPI
// S5).
//
// The status port reads 0x01: input buffer free (bit 1 clear, so the
// kernel's kb_wait() before the reset write never spins) and an output
// buffer that never drains. Linux's i8042 probe starts by flushing that
// buffer and gives up after 16 reads ("No controller found") instead of
// waiting out a 0.5 s timeout per command, each poll a VM exit, which costs
// seconds of boot time under nested virtualization. The data port reads 0.
#pragma once

#include <qtbox/devices/bus.hpp>

#include <functional>

namespace qtbox::devices {

class I8042 : public BusDevice {
public:
    using ResetHandler = std::function<void()>;

    // Inserted at port 0x60 with this length (0x60 data .. 0x64 command).
    static constexpr std::uint64_t PORT_COUNT = 5;
    static constexpr std::uint64_t COMMAND_OFFSET = 4;
    static constexpr std::uint8_t COMMAND_RESET = 0xFE;
    static constexpr std::uint8_t STATUS_OUTPUT_FULL = 0x01;

    explicit I8042(ResetHandler reset) : m_reset(std::move(reset)) { }

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, ByteView data) override;

private:
    ResetHandler m_reset;
};

} // namespace qtbox::devices
