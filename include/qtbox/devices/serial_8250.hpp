// A 16550A-compatible UART for COM1 (ports 0x3F8-0x3FF, GSI 4): enough of
// the chip for Linux's 8250 driver to probe it (scratch, IER and loopback
// tests), print the console by polling, and run ttyS0 with interrupts in
// both directions. Transmission completes instantly, so LSR always shows
// THRE|TEMT. See: docs/PLATFORMS.md §V6; the National PC16550D datasheet for the
// register and interrupt-identification semantics.
//
// The interrupt is edge-triggered (the DSDT says so): the device pulses its
// line whenever the pending interrupt goes from "none" to some cause, the
// way a level line would rise.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/devices/bus.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>

namespace qtbox::devices {

class Serial8250 : public BusDevice {
public:
    using Output = std::function<void(std::uint8_t)>;
    using Interrupt = std::function<void()>;

    static constexpr std::uint64_t PORT_COUNT = 8;
    static constexpr std::size_t FIFO_SIZE = 64;

    // Register offsets and bits.
    static constexpr std::uint64_t DATA = 0;   // RBR / THR, DLL with DLAB
    static constexpr std::uint64_t IER = 1;    // DLM with DLAB
    static constexpr std::uint64_t IIR = 2;    // FCR on write
    static constexpr std::uint64_t LCR = 3;
    static constexpr std::uint64_t MCR = 4;
    static constexpr std::uint64_t LSR = 5;
    static constexpr std::uint64_t MSR = 6;
    static constexpr std::uint64_t SCR = 7;
    static constexpr std::uint8_t IER_RDA = 0x01;
    static constexpr std::uint8_t IER_THRE = 0x02;
    static constexpr std::uint8_t IIR_NONE = 0x01;
    static constexpr std::uint8_t IIR_THRE = 0x02;
    static constexpr std::uint8_t IIR_RDA = 0x04;
    static constexpr std::uint8_t IIR_FIFO_ENABLED = 0xC0;
    static constexpr std::uint8_t LCR_DLAB = 0x80;
    static constexpr std::uint8_t MCR_LOOP = 0x10;
    static constexpr std::uint8_t LSR_DATA_READY = 0x01;
    static constexpr std::uint8_t LSR_THR_EMPTY = 0x20;
    static constexpr std::uint8_t LSR_IDLE = 0x40;
    static constexpr std::uint8_t MSR_DEFAULT = 0xB0; // DCD, DSR, CTS

    Serial8250(Output output, Interrupt interrupt)
        : m_output(std::move(output)), m_interrupt(std::move(interrupt)) { }

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, ByteView data) override;

    // Host → guest bytes. Accepts what fits in the 64-byte receive FIFO and
    // returns how many bytes that was; the caller keeps the rest for later.
    std::size_t enqueue_input(ByteView bytes);
    // Lock-free, so that the event loop never waits for a vCPU thread.
    std::size_t input_space() const;

private:
    std::uint8_t read_register(std::uint64_t offset);
    // Returns the byte to transmit, which write() hands to the output once
    // the lock is released: the output may block (a stalled console
    // reader), and the device's lock must never be held across it.
    std::optional<std::uint8_t> write_register(std::uint64_t offset, std::uint8_t value);
    std::uint8_t pending_interrupt() const;
    // Call with m_mutex held after any state change; pulses on a rise.
    void update_interrupt();

    Output m_output;
    Interrupt m_interrupt;
    mutable std::mutex m_mutex;
    std::deque<std::uint8_t> m_receive;
    std::atomic<std::size_t> m_receive_count { 0 }; // m_receive.size(), for input_space()
    std::uint8_t m_ier { 0 };
    std::uint8_t m_lcr { 0x03 }; // 8N1
    std::uint8_t m_mcr { 0x08 }; // OUT2
    std::uint8_t m_scr { 0 };
    std::uint8_t m_dll { 0x0C }; // 9600 baud
    std::uint8_t m_dlm { 0 };
    bool m_thre_pending { false };
    bool m_interrupt_raised { false };
};

} // namespace qtbox::devices
