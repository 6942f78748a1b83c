// Wall-clock instants as milliseconds since the Unix epoch (the unit of the
// attestation document's `timestamp`, docs/FORMATS.md §4), RFC 3339 text, and durations.
#pragma once

#include <qtbox/base/error.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace qtbox {

using UnixMillis = std::int64_t;

// RFC 3339 §5.6 date-time: "2026-02-02T21:00:00Z", optional fraction
// (".123", truncated to milliseconds), "Z"/"z" or "+hh:mm"/"-hh:mm"; 't' or
// ' ' accepted as the separator. Leap seconds are refused.
ErrorOr<UnixMillis> parse_rfc3339(std::string_view text);
// "2026-02-02T21:00:00Z", or with ".mmm" when the instant has milliseconds.
std::string format_rfc3339(UnixMillis instant);

// "900" (seconds), "500ms", "90s", "15m", "2h", "1d", and sums such as
// "1h30m". Negative or overflowing values are refused.
ErrorOr<std::int64_t> parse_duration_ms(std::string_view text);

UnixMillis now_millis();

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
// days_from_civil); used by the RFC 3339 and X.509 time code.
std::int64_t days_from_civil(std::int64_t year, unsigned month, unsigned day);

} // namespace qtbox
