#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/vmm/console.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::vmm;

namespace {

void append(ConsoleRing& ring, std::string_view text) { ring.append(as_bytes(text)); }

std::string read_text(ConsoleRing& ring, std::uint64_t from, std::size_t max, ConsoleRing::Chunk& chunk)
{
    Bytes out;
    chunk = ring.read(from, max, out);
    return std::string(as_chars(out));
}

// The byte at stream position `i` of a test pattern that never repeats
// with a period dividing the ring size.
std::uint8_t pattern(std::uint64_t i) { return static_cast<std::uint8_t>((i * 131 + i / 251) & 0xFF); }

// Whether the eventfd was signalled; clears it.
bool signalled(int fd)
{
    std::uint64_t count = 0;
    return ::read(fd, &count, sizeof(count)) == sizeof(count) && count > 0;
}

} // namespace

TEST_CASE("console ring: an empty ring reads nothing and drops nothing")
{
    ConsoleRing ring(16);
    ConsoleRing::Chunk chunk;
    CHECK(read_text(ring, 0, 100, chunk).empty());
    CHECK(chunk.dropped == 0);
    CHECK(chunk.next == 0);
    CHECK(ring.begin() == 0);
    CHECK(ring.end() == 0);
}

TEST_CASE("console ring: bytes come back in order from any position, at most `max` at a time")
{
    ConsoleRing ring(16);
    append(ring, "hello ");
    append(ring, "world");
    ConsoleRing::Chunk chunk;
    CHECK(read_text(ring, 0, 100, chunk) == "hello world");
    CHECK(chunk.next == 11);
    CHECK(read_text(ring, 6, 3, chunk) == "wor");
    CHECK(chunk.next == 9);
    CHECK(chunk.dropped == 0);
    CHECK(read_text(ring, 11, 100, chunk).empty());
    CHECK(chunk.next == 11);
}

TEST_CASE("console ring: wrap-around keeps the newest bytes; a reader past them learns how many it lost")
{
    ConsoleRing ring(16);
    append(ring, "0123456789");
    append(ring, "abcdefghij"); // wraps: 20 bytes through a 16-byte ring
    CHECK(ring.end() == 20);
    CHECK(ring.begin() == 4);
    ConsoleRing::Chunk chunk;
    CHECK(read_text(ring, 0, 100, chunk) == "456789abcdefghij");
    CHECK(chunk.dropped == 4);
    CHECK(chunk.next == 20);
    // A read across the physical end of the buffer.
    CHECK(read_text(ring, 10, 4, chunk) == "abcd");
    CHECK(chunk.dropped == 0);
    // Position 5 is still held: nothing dropped.
    CHECK(read_text(ring, 5, 3, chunk) == "567");
    CHECK(chunk.dropped == 0);
}

TEST_CASE("console ring: one append larger than the ring counts every byte and keeps the last ones")
{
    ConsoleRing ring(8);
    append(ring, "ab");
    append(ring, "0123456789ABCDEF");
    CHECK(ring.end() == 18);
    CHECK(ring.begin() == 10);
    ConsoleRing::Chunk chunk;
    CHECK(read_text(ring, 2, 100, chunk) == "89ABCDEF");
    CHECK(chunk.dropped == 8);
    CHECK(chunk.next == 18);
}

TEST_CASE("console ring: the default ring holds exactly the last 1 MiB (docs/FORMATS.md §11)")
{
    CHECK(CONSOLE_RING_SIZE == 1048576);
    ConsoleRing ring;
    CHECK(ring.capacity() == CONSOLE_RING_SIZE);
    // 3 MiB and some, in uneven pieces, one byte at a time among them (the
    // UART's way).
    std::uint64_t total = 3 * CONSOLE_RING_SIZE + 12345;
    std::uint64_t written = 0;
    std::size_t piece = 1;
    while (written < total) {
        std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(piece, total - written));
        Bytes bytes(size);
        for (std::size_t i = 0; i < size; ++i)
            bytes[i] = pattern(written + i);
        if (size == 1)
            ring.append(bytes[0]);
        else
            ring.append(bytes);
        written += size;
        piece = piece * 7 % 65521 + 1;
    }
    REQUIRE(ring.end() == total);
    CHECK(ring.begin() == total - CONSOLE_RING_SIZE);

    // Read from the start, as a reader that just attached: the first read
    // skips what the ring no longer holds.
    Bytes tail;
    std::uint64_t position = 0;
    std::uint64_t dropped = 0;
    while (position < total) {
        auto chunk = ring.read(position, 65536, tail);
        dropped += chunk.dropped;
        REQUIRE(chunk.next > position);
        position = chunk.next;
    }
    CHECK(dropped == total - CONSOLE_RING_SIZE);
    REQUIRE(tail.size() == CONSOLE_RING_SIZE);
    bool same = true;
    for (std::size_t i = 0; i < tail.size(); ++i)
        same = same && tail[i] == pattern(total - CONSOLE_RING_SIZE + i);
    CHECK(same);
}

TEST_CASE("console ring: the wake fd is signalled once, on the first append after a read caught up")
{
    auto event = sys::eventfd();
    REQUIRE(!event.is_error());
    int fd = event.value().get();
    ConsoleRing ring(64);
    ring.set_wake_fd(fd);
    append(ring, "before any read");
    CHECK(!signalled(fd)); // nobody has read yet: nobody waits

    Bytes out;
    auto chunk = ring.read(0, 4, out); // not caught up: no wake armed
    append(ring, "x");
    CHECK(!signalled(fd));

    chunk = ring.read(chunk.next, 100, out); // caught up: armed
    CHECK(chunk.next == ring.end());
    append(ring, "y");
    CHECK(signalled(fd));
    append(ring, "z"); // already woken; the next read re-arms
    CHECK(!signalled(fd));

    ring.read(ring.end(), 100, out);
    ring.set_wake_fd(-1);
    append(ring, "after the server went");
    CHECK(!signalled(fd));
}
