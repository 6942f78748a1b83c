// Load test (issue 15): a guest that floods its console. Whatever it writes
// (one endless line, or lines as fast as it can, the panic banner among
// them), the VMM's memory for the console stays bounded: the ring holds
// CONSOLE_RING_SIZE bytes, the line buffer Console::LINE_LIMIT, and nothing
// else grows. Bound asserted: resident memory grows by less than the ring
// plus 4 MiB over 48 MiB of output, and the ring keeps exactly the last
// CONSOLE_RING_SIZE bytes.
#include "../support/sanitizers.hpp"

#include <qtbox/base/bytes.hpp>
#include <qtbox/vmm/console.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <fcntl.h>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::vmm;

namespace {

std::uint64_t resident_kib()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.starts_with("VmRSS:"))
            return std::stoull(line.substr(6));
    }
    return 0;
}

} // namespace

// Skipped in sanitizer builds, whose shadow memory and quarantine make
// resident memory say nothing about the console's own.
TEST_CASE("console flood: 48 MiB of guest output keep the console's memory bounded by its ring and one line"
    * doctest::skip(qtbox::test::SANITIZED))
{
    int sink = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    REQUIRE(sink >= 0);
    Console console(sink);
    // Touch the ring once so that its pages count in the baseline too.
    for (std::size_t i = 0; i < CONSOLE_RING_SIZE; ++i)
        console.write_byte('.');
    console.try_flush();
    std::uint64_t before = resident_kib();

    constexpr std::uint64_t ENDLESS_LINE = 16 << 20; // never a newline
    constexpr std::uint64_t SHORT_LINES = 32 << 20;  // "x...x\n", a panic banner among them
    for (std::uint64_t i = 0; i < ENDLESS_LINE; ++i)
        console.write_byte(static_cast<std::uint8_t>('a' + i % 26));
    std::string banner = std::string(Console::PANIC_BANNER) + ": flood\n";
    std::uint64_t written = 0;
    bool banner_written = false;
    while (written < SHORT_LINES) {
        if (!banner_written && written >= SHORT_LINES / 2) {
            banner_written = true;
            for (char c : banner)
                console.write_byte(static_cast<std::uint8_t>(c));
            written += banner.size();
            continue;
        }
        for (int i = 0; i < 79; ++i)
            console.write_byte('x');
        console.write_byte('\n');
        written += 80;
        if (written % (1 << 20) == 0)
            console.try_flush();
    }
    console.flush(100);
    std::uint64_t after = resident_kib();

    std::uint64_t total = CONSOLE_RING_SIZE + ENDLESS_LINE + written;
    CHECK(console.ring().end() == total);
    CHECK(console.ring().begin() == total - CONSOLE_RING_SIZE);
    CHECK(console.panic_line() == std::string(Console::PANIC_BANNER) + ": flood");
    INFO("resident before ", before, " KiB, after ", after, " KiB");
    CHECK(after < before + (CONSOLE_RING_SIZE >> 10) + 4096);
    ::close(sink);
}
