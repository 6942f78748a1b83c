#include <qtbox/devices/bus.hpp>
#include <qtbox/devices/i8042.hpp>
#include <qtbox/devices/serial_8250.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>

using namespace qtbox;
using namespace qtbox::devices;

namespace {

struct Recorder : BusDevice {
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override
    {
        last_offset = offset;
        for (auto& byte : data)
            byte = 0xAB;
    }
    void write(std::uint64_t offset, ByteView data) override
    {
        last_offset = offset;
        written.assign(data.begin(), data.end());
    }
    std::uint64_t last_offset { ~0ull };
    Bytes written;
};

struct Uart {
    Uart()
        : serial([this](std::uint8_t byte) { output += static_cast<char>(byte); }, [this] { ++interrupts; })
    {
    }
    std::uint8_t in(std::uint64_t offset)
    {
        std::uint8_t value = 0xEE;
        serial.read(offset, { &value, 1 });
        return value;
    }
    void out(std::uint64_t offset, std::uint8_t value) { serial.write(offset, ByteView(&value, 1)); }

    std::string output;
    int interrupts { 0 };
    Serial8250 serial;
};

} // namespace

TEST_CASE("bus: dispatches by range with offsets, and unknown accesses read zero")
{
    Bus bus;
    Recorder a, b;
    REQUIRE(!bus.insert(0x3F8, 8, a).is_error());
    REQUIRE(!bus.insert(0x60, 5, b).is_error());

    std::uint8_t data[2] = { 0x11, 0x22 };
    CHECK(bus.read(0x3FD, { data, 1 }));
    CHECK(a.last_offset == 5);
    CHECK(data[0] == 0xAB);

    CHECK(bus.write(0x64, ByteView(data, 1)));
    CHECK(b.last_offset == 4);

    data[0] = data[1] = 0x55;
    CHECK(!bus.read(0x70, { data, 2 }));
    CHECK(data[0] == 0);
    CHECK(data[1] == 0);
    CHECK(!bus.write(0x80, ByteView(data, 1)));

    // An access straddling the end of a range is not the device's.
    data[0] = data[1] = 0x55;
    CHECK(!bus.read(0x3FF, { data, 2 }));
    CHECK(data[0] == 0);
    CHECK(!bus.read(0x3F7, { data, 2 }));
    CHECK(bus.read(0x3FE, { data, 2 }));
}

TEST_CASE("bus: overlapping, empty and wrapping ranges are refused")
{
    Bus bus;
    Recorder a;
    REQUIRE(!bus.insert(0x100, 0x10, a).is_error());
    CHECK(bus.insert(0x10F, 1, a).is_error());
    CHECK(bus.insert(0xF8, 0x9, a).is_error());
    CHECK(bus.insert(0x0, 0x1000, a).is_error());
    CHECK(bus.insert(0x200, 0, a).is_error());
    CHECK(bus.insert(~0ull - 1, 4, a).is_error());
    CHECK(!bus.insert(0x110, 1, a).is_error());
    CHECK(!bus.insert(0xFF, 1, a).is_error());
}

TEST_CASE("serial: passes Linux's 8250 probe (scratch, IER, loopback, FIFO)")
{
    Uart uart;
    uart.out(Serial8250::SCR, 0xA5);
    CHECK(uart.in(Serial8250::SCR) == 0xA5);
    uart.out(Serial8250::IER, 0);
    CHECK((uart.in(Serial8250::IER) & 0x0F) == 0);
    uart.out(Serial8250::IER, 0xFF);
    CHECK(uart.in(Serial8250::IER) == 0x0F);
    uart.out(Serial8250::IER, 0);
    // Loopback: MCR = LOOP | OUT2 | RTS must read MSR upper nibble DCD|CTS.
    uart.out(Serial8250::MCR, 0x1A);
    CHECK((uart.in(Serial8250::MSR) & 0xF0) == 0x90);
    uart.out(Serial8250::MCR, 0x1F);
    CHECK(uart.in(Serial8250::MSR) == 0xF0);
    uart.out(Serial8250::MCR, 0x08);
    CHECK(uart.in(Serial8250::MSR) == 0xB0);
    // FIFOs enabled: IIR bits 7:6 set, no interrupt pending.
    uart.out(Serial8250::IIR, 0x01);
    CHECK(uart.in(Serial8250::IIR) == 0xC1);
    CHECK(uart.in(Serial8250::LSR) == 0x60);
    CHECK(uart.in(Serial8250::LCR) == 0x03);
    // Only the moment IER enabled THRE with an empty holding register.
    CHECK(uart.interrupts == 1);
}

TEST_CASE("serial: output bytes reach the sink; loopback bytes come back as input instead")
{
    Uart uart;
    for (char c : std::string("hi\n"))
        uart.out(Serial8250::DATA, static_cast<std::uint8_t>(c));
    CHECK(uart.output == "hi\n");
    uart.out(Serial8250::MCR, 0x10);
    uart.out(Serial8250::DATA, 'x');
    CHECK(uart.output == "hi\n");
    CHECK(uart.in(Serial8250::LSR) == 0x61);
    CHECK(uart.in(Serial8250::DATA) == 'x');
    CHECK(uart.in(Serial8250::LSR) == 0x60);
}

TEST_CASE("serial: the divisor latch hides RBR/THR and IER while DLAB is set")
{
    Uart uart;
    uart.out(Serial8250::LCR, 0x83);
    CHECK(uart.in(Serial8250::DATA) == 0x0C);
    CHECK(uart.in(Serial8250::IER) == 0x00);
    uart.out(Serial8250::DATA, 0x01);
    uart.out(Serial8250::IER, 0x02);
    CHECK(uart.output.empty());
    CHECK(uart.in(Serial8250::DATA) == 0x01);
    CHECK(uart.in(Serial8250::IER) == 0x02);
    uart.out(Serial8250::LCR, 0x03);
    CHECK(uart.in(Serial8250::IER) == 0x00);
    CHECK(uart.interrupts == 0);
}

TEST_CASE("serial: THRE interrupts on enable and after each byte, cleared by reading IIR")
{
    Uart uart;
    uart.out(Serial8250::IER, Serial8250::IER_THRE);
    CHECK(uart.interrupts == 1);
    CHECK(uart.in(Serial8250::IIR) == 0xC2);
    CHECK(uart.in(Serial8250::IIR) == 0xC1);
    uart.out(Serial8250::DATA, 'a');
    CHECK(uart.interrupts == 2);
    uart.out(Serial8250::DATA, 'b'); // still pending: no new edge
    CHECK(uart.interrupts == 2);
    CHECK(uart.in(Serial8250::IIR) == 0xC2);
    uart.out(Serial8250::IER, 0);
    uart.out(Serial8250::DATA, 'c');
    CHECK(uart.interrupts == 2);
    CHECK(uart.in(Serial8250::IIR) == 0xC1);
    CHECK(uart.output == "abc");
}

TEST_CASE("serial: input raises RDA (over THRE), fills at most 64 bytes, drains in order")
{
    Uart uart;
    Bytes input(100);
    for (std::size_t i = 0; i < input.size(); ++i)
        input[i] = static_cast<std::uint8_t>(i);
    CHECK(uart.serial.enqueue_input(input) == 64);
    CHECK(uart.serial.input_space() == 0);
    CHECK(uart.interrupts == 0); // IER.RDA is off
    uart.out(Serial8250::IER, Serial8250::IER_RDA | Serial8250::IER_THRE);
    CHECK(uart.interrupts == 1);
    CHECK(uart.in(Serial8250::IIR) == 0xC4);
    for (int i = 0; i < 64; ++i) {
        REQUIRE((uart.in(Serial8250::LSR) & 1) == 1);
        REQUIRE(uart.in(Serial8250::DATA) == i);
    }
    CHECK((uart.in(Serial8250::LSR) & 1) == 0);
    CHECK(uart.in(Serial8250::DATA) == 0);
    CHECK(uart.in(Serial8250::IIR) == 0xC2); // THRE was pending behind RDA
    CHECK(uart.in(Serial8250::IIR) == 0xC1);
    CHECK(uart.serial.input_space() == 64);
    // A new byte after the FIFO drained is a new edge.
    int before = uart.interrupts;
    Bytes one = { 'z' };
    CHECK(uart.serial.enqueue_input(one) == 1);
    CHECK(uart.interrupts == before + 1);
}

TEST_CASE("serial: accesses wider than a byte and offsets past the chip are harmless")
{
    Uart uart;
    std::uint8_t wide[4] = { 1, 2, 3, 4 };
    uart.serial.read(Serial8250::LSR, { wide, 4 });
    CHECK(wide[0] == 0x60);
    CHECK(wide[1] == 0);
    CHECK(wide[3] == 0);
    uart.serial.read(9, { wide, 1 });
    CHECK(wide[0] == 0);
    uart.serial.write(9, ByteView(wide, 1));
    CHECK(uart.output.empty());
}

TEST_CASE("serial: a vCPU blocked in the output (a stalled console reader) holds up neither input nor the other registers")
{
    // The output blocks until released, as Console::write_byte does on a
    // full pipe whose reader stopped (issue: the event loop asked for
    // input_space() under the lock the blocked writer held, and SIGTERM
    // went unread).
    std::mutex mutex;
    std::condition_variable released_changed;
    bool released = false;
    bool writing = false;
    Serial8250 serial(
        [&](std::uint8_t) {
            std::unique_lock lock(mutex);
            writing = true;
            released_changed.notify_all();
            released_changed.wait(lock, [&] { return released; });
        },
        [] { });
    std::uint8_t byte = 'x';
    std::thread vcpu([&] { serial.write(Serial8250::DATA, ByteView(&byte, 1)); });
    {
        std::unique_lock lock(mutex);
        REQUIRE(released_changed.wait_for(lock, std::chrono::seconds(5), [&] { return writing; }));
    }
    // What the event loop and another vCPU do meanwhile must all return.
    auto others = std::async(std::launch::async, [&] {
        std::size_t space = serial.input_space();
        std::uint8_t input = 'y';
        std::size_t taken = serial.enqueue_input(ByteView(&input, 1));
        std::uint8_t lsr = 0;
        serial.read(Serial8250::LSR, { &lsr, 1 });
        return std::tuple(space, taken, lsr);
    });
    bool finished = others.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    {
        std::lock_guard lock(mutex);
        released = true;
    }
    released_changed.notify_all();
    vcpu.join();
    REQUIRE(finished);
    auto [space, taken, lsr] = others.get();
    CHECK(space == Serial8250::FIFO_SIZE);
    CHECK(taken == 1);
    CHECK((lsr & Serial8250::LSR_DATA_READY) != 0);
    CHECK(serial.input_space() == Serial8250::FIFO_SIZE - 1);
}

TEST_CASE("i8042: 0xFE on the command port resets; status shows a full output buffer, data reads 0")
{
    int resets = 0;
    I8042 controller([&] { ++resets; });
    std::uint8_t byte = 0xFE;
    controller.write(0, ByteView(&byte, 1));
    CHECK(resets == 0);
    byte = 0xD1;
    controller.write(I8042::COMMAND_OFFSET, ByteView(&byte, 1));
    CHECK(resets == 0);
    byte = 0xFE;
    controller.write(I8042::COMMAND_OFFSET, ByteView(&byte, 1));
    CHECK(resets == 1);
    std::uint8_t status = 0xFF;
    controller.read(I8042::COMMAND_OFFSET, { &status, 1 });
    CHECK(status == 0x01); // OBF set, IBF clear
    std::uint8_t data = 0xFF;
    controller.read(0, { &data, 1 });
    CHECK(data == 0);
    controller.read(1, { &data, 1 });
    CHECK(data == 0);
}
