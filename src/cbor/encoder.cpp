#include <qtbox/cbor/encoder.hpp>
#include <qtbox/base/verify.hpp>

#include "float16.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace qtbox::cbor {

namespace {

constexpr std::uint8_t MAJOR_UNSIGNED = 0;
constexpr std::uint8_t MAJOR_NEGATIVE = 1;
constexpr std::uint8_t MAJOR_BYTES = 2;
constexpr std::uint8_t MAJOR_TEXT = 3;
constexpr std::uint8_t MAJOR_ARRAY = 4;
constexpr std::uint8_t MAJOR_MAP = 5;
constexpr std::uint8_t MAJOR_TAG = 6;
constexpr std::uint8_t MAJOR_SIMPLE = 7;

constexpr std::uint8_t INDEFINITE = 31;
constexpr std::uint8_t BREAK = 0xff;

Width width_needed(std::uint64_t argument)
{
    if (argument < 24)
        return Width::Preferred;
    if (argument <= 0xff)
        return Width::Byte1;
    if (argument <= 0xffff)
        return Width::Byte2;
    if (argument <= 0xffffffff)
        return Width::Byte4;
    return Width::Byte8;
}

void append_big_endian(Bytes& out, std::uint64_t value, unsigned size)
{
    for (unsigned i = size; i-- > 0;)
        out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

} // namespace

void Encoder::head(std::uint8_t major, std::uint64_t argument, Width width)
{
    // Never truncate: a forced width only ever makes the head longer.
    Width needed = width_needed(argument);
    if (width < needed)
        width = needed;
    std::uint8_t initial = static_cast<std::uint8_t>(major << 5);
    switch (width) {
    case Width::Preferred:
        m_output.push_back(static_cast<std::uint8_t>(initial | argument));
        break;
    case Width::Byte1:
        m_output.push_back(initial | 24);
        append_big_endian(m_output, argument, 1);
        break;
    case Width::Byte2:
        m_output.push_back(initial | 25);
        append_big_endian(m_output, argument, 2);
        break;
    case Width::Byte4:
        m_output.push_back(initial | 26);
        append_big_endian(m_output, argument, 4);
        break;
    case Width::Byte8:
        m_output.push_back(initial | 27);
        append_big_endian(m_output, argument, 8);
        break;
    }
}

Encoder& Encoder::unsigned_integer(std::uint64_t value, Width width)
{
    head(MAJOR_UNSIGNED, value, width);
    return *this;
}

Encoder& Encoder::negative_integer(std::uint64_t argument, Width width)
{
    head(MAJOR_NEGATIVE, argument, width);
    return *this;
}

Encoder& Encoder::integer(std::int64_t value, Width width)
{
    if (value >= 0)
        return unsigned_integer(static_cast<std::uint64_t>(value), width);
    return negative_integer(static_cast<std::uint64_t>(-(value + 1)), width);
}

Encoder& Encoder::byte_string(ByteView bytes)
{
    head(MAJOR_BYTES, bytes.size());
    m_output.insert(m_output.end(), bytes.begin(), bytes.end());
    return *this;
}

Encoder& Encoder::text_string(std::string_view text)
{
    head(MAJOR_TEXT, text.size());
    m_output.insert(m_output.end(), text.begin(), text.end());
    return *this;
}

Encoder& Encoder::array_header(std::uint64_t count)
{
    head(MAJOR_ARRAY, count);
    return *this;
}

Encoder& Encoder::map_header(std::uint64_t entry_count)
{
    head(MAJOR_MAP, entry_count);
    return *this;
}

Encoder& Encoder::tag(std::uint64_t number)
{
    head(MAJOR_TAG, number);
    return *this;
}

Encoder& Encoder::boolean(bool value)
{
    return simple(value ? SIMPLE_TRUE : SIMPLE_FALSE);
}

Encoder& Encoder::null()
{
    return simple(SIMPLE_NULL);
}

Encoder& Encoder::undefined()
{
    return simple(SIMPLE_UNDEFINED);
}

Encoder& Encoder::simple(std::uint8_t value)
{
    // RFC 8949 §3.3: simple values 24-31 are reserved and have no encoding.
    VERIFY(value < 24 || value >= 32);
    head(MAJOR_SIMPLE, value);
    return *this;
}

Encoder& Encoder::floating(double value)
{
    constexpr std::uint8_t HALF = (MAJOR_SIMPLE << 5) | 25;
    constexpr std::uint8_t SINGLE = (MAJOR_SIMPLE << 5) | 26;
    constexpr std::uint8_t DOUBLE = (MAJOR_SIMPLE << 5) | 27;
    // §4.2.2: every NaN is written as the quiet half-precision NaN.
    if (std::isnan(value)) {
        m_output.insert(m_output.end(), { HALF, 0x7e, 0x00 });
        return *this;
    }
    auto single = static_cast<float>(value);
    if (static_cast<double>(single) == value) {
        if (auto half = float_to_half_exact(single)) {
            m_output.push_back(HALF);
            append_big_endian(m_output, *half, 2);
        } else {
            m_output.push_back(SINGLE);
            append_big_endian(m_output, std::bit_cast<std::uint32_t>(single), 4);
        }
    } else {
        m_output.push_back(DOUBLE);
        append_big_endian(m_output, std::bit_cast<std::uint64_t>(value), 8);
    }
    return *this;
}

Encoder& Encoder::begin_indefinite_array()
{
    m_output.push_back((MAJOR_ARRAY << 5) | INDEFINITE);
    return *this;
}

Encoder& Encoder::begin_indefinite_map()
{
    m_output.push_back((MAJOR_MAP << 5) | INDEFINITE);
    return *this;
}

Encoder& Encoder::begin_indefinite_byte_string()
{
    m_output.push_back((MAJOR_BYTES << 5) | INDEFINITE);
    return *this;
}

Encoder& Encoder::begin_indefinite_text_string()
{
    m_output.push_back((MAJOR_TEXT << 5) | INDEFINITE);
    return *this;
}

Encoder& Encoder::end_indefinite()
{
    m_output.push_back(BREAK);
    return *this;
}

Encoder& Encoder::raw(ByteView encoded)
{
    m_output.insert(m_output.end(), encoded.begin(), encoded.end());
    return *this;
}

Encoder& Encoder::value(Value const& item)
{
    switch (item.type()) {
    case Type::Unsigned:
        return unsigned_integer(item.as_unsigned());
    case Type::Negative:
        return negative_integer(item.negative_argument());
    case Type::Bytes:
        return byte_string(item.as_bytes());
    case Type::Text:
        return text_string(item.as_text());
    case Type::Array:
        array_header(item.as_array().size());
        for (auto const& element : item.as_array())
            value(element);
        return *this;
    case Type::Map:
        map_header(item.as_map().size());
        for (auto const& entry : item.as_map()) {
            value(entry.key);
            value(entry.value);
        }
        return *this;
    case Type::Tag:
        tag(item.tag_number());
        return value(item.tag_content());
    case Type::Simple:
        return simple(item.simple_value());
    case Type::Float:
        return floating(item.as_double());
    }
    return *this;
}

Bytes encode(Value const& item)
{
    Encoder encoder;
    encoder.value(item);
    return encoder.take();
}

namespace {

void encode_sorted(Encoder& encoder, Value const& item)
{
    switch (item.type()) {
    case Type::Array:
        encoder.array_header(item.as_array().size());
        for (auto const& element : item.as_array())
            encode_sorted(encoder, element);
        break;
    case Type::Map: {
        struct Encoded {
            Bytes key;
            Bytes value;
        };
        std::vector<Encoded> entries;
        entries.reserve(item.as_map().size());
        for (auto const& entry : item.as_map()) {
            Encoder key;
            encode_sorted(key, entry.key);
            Encoder value;
            encode_sorted(value, entry.value);
            entries.push_back({ key.take(), value.take() });
        }
        // §4.2.1: keys sorted by the bytewise lexicographic order of their
        // deterministic encodings.
        std::sort(entries.begin(), entries.end(), [](auto const& a, auto const& b) { return a.key < b.key; });
        encoder.map_header(entries.size());
        for (auto const& entry : entries)
            encoder.raw(entry.key).raw(entry.value);
        break;
    }
    case Type::Tag:
        encoder.tag(item.tag_number());
        encode_sorted(encoder, item.tag_content());
        break;
    default:
        encoder.value(item);
        break;
    }
}

} // namespace

Bytes encode_deterministic(Value const& item)
{
    Encoder encoder;
    encode_sorted(encoder, item);
    return encoder.take();
}

} // namespace qtbox::cbor
