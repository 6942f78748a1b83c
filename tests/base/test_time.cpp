#include <qtbox/base/time.hpp>

#include <doctest/doctest.h>

using namespace qtbox;

TEST_CASE("rfc3339: parses UTC, fractions and offsets")
{
    CHECK(parse_rfc3339("1970-01-01T00:00:00Z").value() == 0);
    CHECK(parse_rfc3339("2026-02-02T21:00:00Z").value() == 1770066000000);
    CHECK(parse_rfc3339("2026-02-02T21:00:00.5Z").value() == 1770066000500);
    CHECK(parse_rfc3339("2026-02-02T21:00:00.123456Z").value() == 1770066000123);
    CHECK(parse_rfc3339("2026-02-02T22:00:00+01:00").value() == 1770066000000);
    CHECK(parse_rfc3339("2026-02-02t20:30:00-00:30").value() == 1770066000000);
    CHECK(parse_rfc3339("2024-02-29T00:00:00Z").value() == 1709164800000);
}

TEST_CASE("rfc3339: rejects malformed and impossible times")
{
    for (char const* text : { "", "2026-02-02", "2026-02-02T21:00:00", "2026-13-01T00:00:00Z",
             "2025-02-29T00:00:00Z", "2026-02-02T24:00:00Z", "2026-02-02T23:59:60Z",
             "2026-02-02T21:00:00Zjunk", "2026-02-02T21:00:00.Z", "26-02-02T21:00:00Z", "2026-02-02T21:00:00+1:00" })
        CHECK_MESSAGE(parse_rfc3339(text).is_error(), text);
}

TEST_CASE("rfc3339: formats back")
{
    CHECK(format_rfc3339(1770066000000) == "2026-02-02T21:00:00Z");
    CHECK(format_rfc3339(1770065027502) == "2026-02-02T20:43:47.502Z");
    CHECK(format_rfc3339(-1000) == "1969-12-31T23:59:59Z");
    for (std::int64_t t : { 0LL, 951782400000LL, 4102444799999LL })
        CHECK(parse_rfc3339(format_rfc3339(t)).value() == t);
}

TEST_CASE("duration: units and sums")
{
    CHECK(parse_duration_ms("900").value() == 900000);
    CHECK(parse_duration_ms("500ms").value() == 500);
    CHECK(parse_duration_ms("15m").value() == 900000);
    CHECK(parse_duration_ms("1h30m").value() == 5400000);
    CHECK(parse_duration_ms("2d").value() == 172800000);
    CHECK(parse_duration_ms("0s").value() == 0);
}

TEST_CASE("duration: rejects junk, negatives, missing units and overflow")
{
    for (char const* text : { "", "-5s", "5x", "1h30", "s", "99999999999999999999d", "9223372036854775807d" })
        CHECK_MESSAGE(parse_duration_ms(text).is_error(), text);
}
