#include "support.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/qtsm/framing.hpp>

#include <doctest/doctest.h>

#include <sys/socket.h>

using namespace qtbox;
using namespace qtbox::test;
using qtsm::FrameError;

namespace {

struct SocketPair {
    SocketPair()
    {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        a = UniqueFd(fds[0]);
        b = UniqueFd(fds[1]);
    }
    UniqueFd a;
    UniqueFd b;
};

} // namespace

TEST_CASE("qtsm: a frame is a u32 big-endian length and the item")
{
    CHECK(hex_encode(qtsm::make_frame(Bytes { 0xf6 })) == "00000001f6");
    CHECK(hex_encode(qtsm::make_frame(Bytes(0x102, 0))).substr(0, 8) == "00000102");
}

TEST_CASE("qtsm: FrameReader assembles a frame fed one byte at a time")
{
    qtsm::FrameReader reader(16);
    auto frame = qtsm::make_frame(Bytes { 1, 2, 3 });
    CHECK_FALSE(reader.in_progress());
    for (std::size_t i = 0; i < frame.size(); ++i) {
        auto space = reader.space();
        REQUIRE_FALSE(space.empty());
        space[0] = frame[i];
        bool complete = must(reader.commit(1));
        CHECK(complete == (i + 1 == frame.size()));
        if (!complete)
            CHECK(reader.in_progress());
    }
    CHECK(reader.take() == Bytes { 1, 2, 3 });
    CHECK_FALSE(reader.in_progress());
    // It never asks for more than the current frame needs.
    CHECK(reader.space().size() == 4);
}

TEST_CASE("qtsm: FrameReader refuses an over-long or empty frame as soon as the prefix says so")
{
    qtsm::FrameReader reader(16);
    auto space = reader.space();
    Bytes prefix { 0, 0, 0, 17 };
    std::copy(prefix.begin(), prefix.end(), space.begin());
    require_error(reader.commit(4), FrameError::TooLarge);

    qtsm::FrameReader empty(16);
    auto empty_space = empty.space();
    std::fill(empty_space.begin(), empty_space.end(), 0);
    require_error(empty.commit(4), FrameError::Empty);
}

TEST_CASE("qtsm: read_frame reads frames, a clean end, and reports truncation")
{
    SocketPair pair;
    must(qtsm::write_frame(pair.a.get(), Bytes { 7, 8 }));
    must(sys::write_all(pair.a.get(), Bytes { 0, 0, 0, 5, 1 }));
    auto first = must(qtsm::read_frame(pair.b.get(), 64));
    REQUIRE(first.has_value());
    CHECK(*first == Bytes { 7, 8 });
    pair.a.reset();
    require_error(qtsm::read_frame(pair.b.get(), 64), FrameError::Truncated);

    SocketPair clean;
    clean.a.reset();
    CHECK_FALSE(must(qtsm::read_frame(clean.b.get(), 64)).has_value());

    SocketPair half_prefix;
    must(sys::write_all(half_prefix.a.get(), Bytes { 0, 0 }));
    half_prefix.a.reset();
    require_error(qtsm::read_frame(half_prefix.b.get(), 64), FrameError::Truncated);

    SocketPair large;
    must(sys::write_all(large.a.get(), Bytes { 0, 1, 0, 0 }));
    require_error(qtsm::read_frame(large.b.get(), 64), FrameError::TooLarge);
}

TEST_CASE("qtsm: a read with a timeout fails instead of hanging")
{
    SocketPair pair;
    must(qtsm::set_socket_timeouts(pair.b.get(), 50));
    auto result = qtsm::read_frame(pair.b.get(), 64);
    REQUIRE(result.is_error());
    CHECK(result.error().is_errno());
    CHECK((result.error().is_errno(EAGAIN) || result.error().is_errno(EWOULDBLOCK)));
}
