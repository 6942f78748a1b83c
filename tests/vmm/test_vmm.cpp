#include "../support/pipe.hpp"
#include "support.hpp"

#include <qtbox/boot/acpi.hpp>
#include <qtbox/boot/layout.hpp>
#include <qtbox/kvm/memory.hpp>
#include <qtbox/vmm/console.hpp>
#include <qtbox/vmm/launch.hpp>
#include <qtbox/vmm/loader.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <pthread.h>
#include <string>
#include <thread>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::vmm;

namespace {

using test::Pipe;

// A pipe whose write end is blocking and already full: a reader that stalls.
void full_blocking_pipe(int fds[2])
{
    REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
    std::string fill(65536, 'f');
    while (::write(fds[1], fill.data(), fill.size()) > 0) { }
    REQUIRE(::fcntl(fds[1], F_SETFL, 0) == 0);
}

void feed(Console& console, std::string_view text)
{
    for (char c : text)
        console.write_byte(static_cast<std::uint8_t>(c));
}

std::uint64_t le(std::span<std::uint8_t const> bytes, std::size_t offset, int width)
{
    std::uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i)
        value = (value << 8) | bytes[offset + static_cast<std::size_t>(i)];
    return value;
}

} // namespace

TEST_CASE("console: whole lines reach the sink; a flush writes a partial line once")
{
    Pipe pipe(O_NONBLOCK);
    Console console(pipe.fds[1]);
    feed(console, "first line\nsecond");
    CHECK(pipe.drain() == "first line\n");
    console.flush(0);
    CHECK(pipe.drain() == "second");
    console.flush(0);
    CHECK(pipe.drain().empty());
    feed(console, " half\n");
    CHECK(pipe.drain() == " half\n");
}

TEST_CASE("console: the panic banner is found even when a flush splits its line")
{
    Pipe pipe(O_NONBLOCK);
    Console console(pipe.fds[1]);
    CHECK(!console.panic_line());
    feed(console, "[    3.28] Kernel pa");
    console.flush(0);
    feed(console, "nic - not syncing: VFS: Unable to mount root fs\r\n");
    REQUIRE(console.panic_line());
    CHECK(*console.panic_line() == "Kernel panic - not syncing: VFS: Unable to mount root fs");
    feed(console, "Kernel panic - not syncing: a second one\n");
    CHECK(*console.panic_line() == "Kernel panic - not syncing: VFS: Unable to mount root fs");
    CHECK(pipe.drain() == "[    3.28] Kernel panic - not syncing: VFS: Unable to mount root fs\r\nKernel panic - not syncing: a second one\n");
}

TEST_CASE("console: lines longer than the limit are written in pieces")
{
    Pipe pipe(O_NONBLOCK);
    Console console(pipe.fds[1]);
    feed(console, std::string(Console::LINE_LIMIT + 10, 'x'));
    CHECK(pipe.drain().size() == Console::LINE_LIMIT);
    console.flush(0);
    CHECK(pipe.drain().size() == 10);
}

TEST_CASE("console: a discarded or broken sink is still scanned for the banner")
{
    Console discarded(-1);
    feed(discarded, "Kernel panic - not syncing: nobody listens\n");
    REQUIRE(discarded.panic_line());

    ::signal(SIGPIPE, SIG_IGN);
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    ::close(fds[0]);
    Console broken(fds[1]);
    feed(broken, "lost\nKernel panic - not syncing: still seen\n");
    REQUIRE(broken.panic_line());
    CHECK(*broken.panic_line() == "Kernel panic - not syncing: still seen");
    ::close(fds[1]);
}

TEST_CASE("console: a writer blocked on a stalled reader holds up neither the panic check nor the flushes")
{
    // A vCPU thread writes a panic line into a full, blocking pipe that
    // nobody reads; the event loop must still see the panic and go on.
    struct sigaction kick {};
    kick.sa_handler = [](int) { };
    sigemptyset(&kick.sa_mask);
    REQUIRE(::sigaction(SIGUSR1, &kick, nullptr) == 0); // no SA_RESTART: the write sees EINTR
    int fds[2];
    full_blocking_pipe(fds);

    Console console(fds[1]);
    std::atomic<bool> done { false };
    std::thread writer([&] {
        feed(console, "Kernel panic - not syncing: stalled\n");
        done.store(true);
    });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!console.panic_line() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(console.panic_line());
    CHECK(*console.panic_line() == "Kernel panic - not syncing: stalled");
    console.try_flush();
    CHECK(!done.load());

    // The stop: abandon, then kick until the writer gives up.
    console.abandon();
    while (!done.load()) {
        ::pthread_kill(writer.native_handle(), SIGUSR1);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    writer.join();
    console.flush(0);
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_CASE("console: the last flush gives up on a full sink after its timeout")
{
    int fds[2];
    full_blocking_pipe(fds);
    Console console(fds[1]);
    feed(console, "a partial line");
    console.flush(100); // blocking here would hang the test (and fail it on the meson timeout)
    // Nothing was lost: once the reader drains the pipe, the line goes out.
    REQUIRE(::fcntl(fds[0], F_SETFL, O_NONBLOCK) == 0);
    char buffer[65536];
    while (::read(fds[0], buffer, sizeof(buffer)) > 0) { }
    console.flush(1000);
    ssize_t n = ::read(fds[0], buffer, sizeof(buffer));
    CHECK(std::string(buffer, static_cast<std::size_t>(std::max<ssize_t>(n, 0))) == "a partial line");
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_CASE("launch: the docs/FORMATS.md §3 memory rule in whole MiB")
{
    CHECK(minimum_memory_mib(0) == 128);
    CHECK(minimum_memory_mib(32 << 20) == 128);
    CHECK(minimum_memory_mib((32 << 20) + 1) == 129);
    CHECK(minimum_memory_mib(40 << 20) == 160);
    CHECK(minimum_memory_mib((40 << 20) + 5) == 161);
    CHECK(minimum_memory_mib(1ull << 40) == (4ull << 20));
}

TEST_CASE("loader: kernel, command line, tables, page tables, GDT and zero page land where the layout says")
{
    using namespace boot;
    Bytes image = test::tiny_bzimage(8192);
    auto parsed = parse_bzimage(image);
    REQUIRE(!parsed.is_error());
    auto memory = kvm::GuestMemory::create(ram_regions(128 * MIB));
    REQUIRE(!memory.is_error());
    auto const& ram = memory.value();
    std::vector<std::uint64_t> sizes = { 5, 4096 };
    AcpiConfig acpi;
    acpi.vcpu_count = 2;
    auto loaded = load_linux(ram, parsed.value(), sizes, "console=ttyS0 quiet", acpi);
    REQUIRE_MESSAGE(!loaded.is_error(), (loaded.is_error() ? loaded.error().message() : ""));
    auto const& guest = loaded.value();

    CHECK(guest.entry == 0x100200);
    // Initrds: back to back at the top of RAM, the second 4-byte aligned.
    REQUIRE(guest.initrds.size() == 2);
    CHECK(guest.initrd_size == 8 + 4096);
    CHECK(guest.initrd_address == 128 * MIB - 2 * PAGE_SIZE);
    CHECK(guest.initrds[0].address == guest.initrd_address);
    CHECK(guest.initrds[0].size == 5);
    CHECK(guest.initrds[1].address == guest.initrd_address + 8);
    CHECK(guest.initrds[1].size == 4096);

    std::span<std::uint8_t const> bytes(ram.host_base(), ram.total_size());
    CHECK(std::memcmp(bytes.data() + 0x100000, image.data() + 1024, 8192) == 0);
    CHECK(std::string(reinterpret_cast<char const*>(bytes.data() + CMDLINE_ADDRESS)) == "console=ttyS0 quiet");
    CHECK(std::memcmp(bytes.data() + RSDP_ADDRESS, "RSD PTR ", 8) == 0);
    CHECK(le(bytes, PML4_ADDRESS, 8) == (PDPT_ADDRESS | 3));
    CHECK(le(bytes, GDT_ADDRESS + 8, 8) == 0x00AF9B000000FFFF);
    CHECK(le(bytes, IDT_ADDRESS, 8) == 0);
    auto zero_page = bytes.subspan(ZERO_PAGE_ADDRESS, 4096);
    CHECK(le(zero_page, 0x202, 4) == 0x53726448);
    CHECK(le(zero_page, 0x218, 4) == guest.initrd_address);
    CHECK(le(zero_page, 0x21C, 4) == guest.initrd_size);
    CHECK(le(zero_page, 0x228, 4) == CMDLINE_ADDRESS);
    CHECK(le(zero_page, 0x070, 8) == RSDP_ADDRESS);
    CHECK(zero_page[0x1E8] == 3);
}

TEST_CASE("loader: no room for the initrd and a too-long command line are errors")
{
    using namespace boot;
    Bytes image = test::tiny_bzimage(4096);
    auto parsed = parse_bzimage(image);
    REQUIRE(!parsed.is_error());
    auto memory = kvm::GuestMemory::create(ram_regions(128 * MIB));
    REQUIRE(!memory.is_error());
    std::vector<std::uint64_t> huge = { 120 * MIB };
    auto no_room = load_linux(memory.value(), parsed.value(), huge, "x", AcpiConfig {});
    REQUIRE(no_room.is_error());
    CHECK(no_room.error().is(BootError::NoRoom));
    std::vector<std::uint64_t> small = { 16 };
    auto too_long = load_linux(memory.value(), parsed.value(), small, std::string(2048, 'x'), AcpiConfig {});
    REQUIRE(too_long.is_error());
    CHECK(too_long.error().is(BootError::CommandLineTooLong));
}
