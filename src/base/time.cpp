#include <qtbox/base/time.hpp>

#include <fmt/format.h>

#include <charconv>
#include <ctime>
#include <limits>

namespace qtbox {

std::int64_t days_from_civil(std::int64_t year, unsigned month, unsigned day)
{
    year -= month <= 2;
    std::int64_t const era = (year >= 0 ? year : year - 399) / 400;
    auto const year_of_era = static_cast<unsigned>(year - era * 400);
    unsigned const day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    unsigned const day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + static_cast<std::int64_t>(day_of_era) - 719468;
}

namespace {

struct Civil {
    std::int64_t year;
    unsigned month;
    unsigned day;
};

Civil civil_from_days(std::int64_t days)
{
    days += 719468;
    std::int64_t const era = (days >= 0 ? days : days - 146096) / 146097;
    auto const day_of_era = static_cast<unsigned>(days - era * 146097);
    unsigned const year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    unsigned const day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    unsigned const mp = (5 * day_of_year + 2) / 153;
    unsigned const day = day_of_year - (153 * mp + 2) / 5 + 1;
    unsigned const month = mp < 10 ? mp + 3 : mp - 9;
    return { static_cast<std::int64_t>(year_of_era) + era * 400 + (month <= 2), month, day };
}

bool is_leap(std::int64_t year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

unsigned days_in_month(std::int64_t year, unsigned month)
{
    static constexpr unsigned DAYS[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return month == 2 && is_leap(year) ? 29 : DAYS[month - 1];
}

// Reads exactly `width` decimal digits at `position`.
bool read_digits(std::string_view text, std::size_t& position, std::size_t width, unsigned& out)
{
    if (position + width > text.size())
        return false;
    unsigned value = 0;
    for (std::size_t i = 0; i < width; ++i) {
        char c = text[position + i];
        if (c < '0' || c > '9')
            return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    position += width;
    out = value;
    return true;
}

bool expect(std::string_view text, std::size_t& position, char c)
{
    if (position >= text.size() || text[position] != c)
        return false;
    ++position;
    return true;
}

} // namespace

ErrorOr<UnixMillis> parse_rfc3339(std::string_view text)
{
    auto invalid = [&](char const* why) {
        return Error::from_string(fmt::format("invalid RFC 3339 time '{}': {}", text, why));
    };
    std::size_t p = 0;
    unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!read_digits(text, p, 4, year) || !expect(text, p, '-') || !read_digits(text, p, 2, month)
        || !expect(text, p, '-') || !read_digits(text, p, 2, day))
        return invalid("expected YYYY-MM-DD");
    if (p >= text.size() || (text[p] != 'T' && text[p] != 't' && text[p] != ' '))
        return invalid("expected 'T' after the date");
    ++p;
    if (!read_digits(text, p, 2, hour) || !expect(text, p, ':') || !read_digits(text, p, 2, minute)
        || !expect(text, p, ':') || !read_digits(text, p, 2, second))
        return invalid("expected hh:mm:ss");
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
        return invalid("no such date");
    if (hour > 23 || minute > 59 || second > 59)
        return invalid("no such time of day (leap seconds are not accepted)");
    unsigned millis = 0;
    if (p < text.size() && text[p] == '.') {
        ++p;
        std::size_t digits = 0;
        while (p < text.size() && text[p] >= '0' && text[p] <= '9') {
            if (digits < 3)
                millis = millis * 10 + static_cast<unsigned>(text[p] - '0');
            ++digits;
            ++p;
        }
        if (digits == 0)
            return invalid("empty fraction of a second");
        for (std::size_t i = digits; i < 3; ++i)
            millis *= 10;
    }
    std::int64_t offset_minutes = 0;
    if (p < text.size() && (text[p] == 'Z' || text[p] == 'z')) {
        ++p;
    } else if (p < text.size() && (text[p] == '+' || text[p] == '-')) {
        bool negative = text[p] == '-';
        ++p;
        unsigned offset_hour = 0, offset_minute = 0;
        if (!read_digits(text, p, 2, offset_hour) || !expect(text, p, ':') || !read_digits(text, p, 2, offset_minute)
            || offset_hour > 23 || offset_minute > 59)
            return invalid("bad UTC offset");
        offset_minutes = (negative ? -1 : 1) * static_cast<std::int64_t>(offset_hour * 60 + offset_minute);
    } else {
        return invalid("missing time zone ('Z' or +hh:mm)");
    }
    if (p != text.size())
        return invalid("trailing characters");
    std::int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    return seconds * 1000 + millis;
}

std::string format_rfc3339(UnixMillis instant)
{
    std::int64_t millis = instant % 1000;
    std::int64_t seconds = instant / 1000;
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    std::int64_t days = seconds / 86400;
    std::int64_t rest = seconds % 86400;
    if (rest < 0) {
        rest += 86400;
        days -= 1;
    }
    Civil date = civil_from_days(days);
    std::string text = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", date.year, date.month, date.day,
        rest / 3600, rest / 60 % 60, rest % 60);
    if (millis != 0)
        text += fmt::format(".{:03}", millis);
    text += 'Z';
    return text;
}

ErrorOr<std::int64_t> parse_duration_ms(std::string_view text)
{
    auto invalid = [&](char const* why) {
        return Error::from_string(fmt::format("invalid duration '{}': {}", text, why));
    };
    if (text.empty())
        return invalid("empty");
    std::int64_t total = 0;
    std::size_t p = 0;
    bool first = true;
    while (p < text.size()) {
        std::int64_t number = 0;
        auto [end, ec] = std::from_chars(text.data() + p, text.data() + text.size(), number);
        if (ec != std::errc() || end == text.data() + p || number < 0)
            return invalid("expected a non-negative number");
        p = static_cast<std::size_t>(end - text.data());
        std::int64_t unit = 1000;
        if (p == text.size()) {
            // A bare number means seconds, but only on its own ("900").
            if (!first)
                return invalid("missing unit");
        } else if (text.substr(p).starts_with("ms")) {
            unit = 1;
            p += 2;
        } else {
            switch (text[p]) {
            case 's': unit = 1000; break;
            case 'm': unit = 60 * 1000; break;
            case 'h': unit = 3600 * 1000; break;
            case 'd': unit = 86400 * 1000; break;
            default: return invalid("unknown unit (use ms, s, m, h or d)");
            }
            ++p;
        }
        if (number > std::numeric_limits<std::int64_t>::max() / unit
            || total > std::numeric_limits<std::int64_t>::max() - number * unit)
            return invalid("too large");
        total += number * unit;
        first = false;
    }
    return total;
}

UnixMillis now_millis()
{
    timespec ts {};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<UnixMillis>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

} // namespace qtbox
