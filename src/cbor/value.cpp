#include <qtbox/cbor/value.hpp>
#include <qtbox/base/verify.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace qtbox::cbor {

std::string_view type_name(Type type)
{
    switch (type) {
    case Type::Unsigned:
        return "unsigned integer";
    case Type::Negative:
        return "negative integer";
    case Type::Bytes:
        return "byte string";
    case Type::Text:
        return "text string";
    case Type::Array:
        return "array";
    case Type::Map:
        return "map";
    case Type::Tag:
        return "tag";
    case Type::Simple:
        return "simple value";
    case Type::Float:
        return "float";
    }
    return "unknown";
}

Value::Value() = default;
Value::~Value() = default;
Value::Value(Value const&) = default;
Value::Value(Value&&) noexcept = default;
Value& Value::operator=(Value const&) = default;
Value& Value::operator=(Value&&) noexcept = default;

Value Value::unsigned_integer(std::uint64_t value)
{
    Value result;
    result.m_type = Type::Unsigned;
    result.m_number = value;
    return result;
}

Value Value::negative_from_argument(std::uint64_t argument)
{
    Value result;
    result.m_type = Type::Negative;
    result.m_number = argument;
    return result;
}

Value Value::integer(std::int64_t value)
{
    if (value >= 0)
        return unsigned_integer(static_cast<std::uint64_t>(value));
    // -1 - value, computed without overflow for INT64_MIN.
    return negative_from_argument(static_cast<std::uint64_t>(-(value + 1)));
}

Value Value::byte_string(ByteView bytes)
{
    return byte_string(Bytes(bytes.begin(), bytes.end()));
}

Value Value::byte_string(Bytes&& bytes)
{
    Value result;
    result.m_type = Type::Bytes;
    result.m_number = 0;
    result.m_bytes = std::move(bytes);
    return result;
}

Value Value::text_string(std::string text)
{
    Value result;
    result.m_type = Type::Text;
    result.m_number = 0;
    result.m_text = std::move(text);
    return result;
}

Value Value::array(std::vector<Value> items)
{
    Value result;
    result.m_type = Type::Array;
    result.m_number = 0;
    result.m_items = std::move(items);
    return result;
}

Value Value::map()
{
    return map(std::vector<MapEntry> {});
}

Value Value::map(std::vector<MapEntry> entries)
{
    Value result;
    result.m_type = Type::Map;
    result.m_number = 0;
    result.m_entries = std::move(entries);
    return result;
}

Value Value::tagged(std::uint64_t tag, Value content)
{
    Value result;
    result.m_type = Type::Tag;
    result.m_number = tag;
    result.m_items.push_back(std::move(content));
    return result;
}

Value Value::boolean(bool value)
{
    return simple(value ? SIMPLE_TRUE : SIMPLE_FALSE);
}

Value Value::null()
{
    return simple(SIMPLE_NULL);
}

Value Value::undefined()
{
    return simple(SIMPLE_UNDEFINED);
}

Value Value::simple(std::uint8_t value)
{
    Value result;
    result.m_type = Type::Simple;
    result.m_number = value;
    return result;
}

Value Value::floating(double value)
{
    Value result;
    result.m_type = Type::Float;
    // RFC 8949 §4.2.2: NaN payloads and signs are not kept; every NaN is the
    // one quiet NaN, which the encoder writes as f97e00. This keeps
    // decode(encode(v)) == v for every v.
    constexpr std::uint64_t QUIET_NAN = 0x7ff8000000000000ULL;
    result.m_number = std::isnan(value) ? QUIET_NAN : std::bit_cast<std::uint64_t>(value);
    return result;
}

void Value::wrong_type(Type wanted) const
{
    // A caller asked for a type it did not check: a bug in qtbox, never a
    // property of the input. Stop rather than read the wrong member.
    invariant_failed(fmt::format("CBOR {} used as {}", type_name(m_type), type_name(wanted)), __FILE__, __LINE__);
}

std::uint64_t Value::as_unsigned() const
{
    if (m_type != Type::Unsigned)
        wrong_type(Type::Unsigned);
    return m_number;
}

std::uint64_t Value::negative_argument() const
{
    if (m_type != Type::Negative)
        wrong_type(Type::Negative);
    return m_number;
}

std::optional<std::int64_t> Value::as_int64() const
{
    constexpr auto max = static_cast<std::uint64_t>(INT64_MAX);
    if (m_type == Type::Unsigned && m_number <= max)
        return static_cast<std::int64_t>(m_number);
    if (m_type == Type::Negative && m_number <= max)
        return -1 - static_cast<std::int64_t>(m_number);
    return std::nullopt;
}

ByteView Value::as_bytes() const
{
    if (m_type != Type::Bytes)
        wrong_type(Type::Bytes);
    return m_bytes;
}

std::string_view Value::as_text() const
{
    if (m_type != Type::Text)
        wrong_type(Type::Text);
    return m_text;
}

std::vector<Value> const& Value::as_array() const
{
    if (m_type != Type::Array)
        wrong_type(Type::Array);
    return m_items;
}

std::vector<Value>& Value::as_array()
{
    if (m_type != Type::Array)
        wrong_type(Type::Array);
    return m_items;
}

std::vector<MapEntry> const& Value::as_map() const
{
    if (m_type != Type::Map)
        wrong_type(Type::Map);
    return m_entries;
}

std::vector<MapEntry>& Value::as_map()
{
    if (m_type != Type::Map)
        wrong_type(Type::Map);
    return m_entries;
}

std::uint64_t Value::tag_number() const
{
    if (m_type != Type::Tag)
        wrong_type(Type::Tag);
    return m_number;
}

Value const& Value::tag_content() const
{
    if (m_type != Type::Tag)
        wrong_type(Type::Tag);
    return m_items.front();
}

bool Value::as_bool() const
{
    if (!is_bool())
        wrong_type(Type::Simple);
    return m_number == SIMPLE_TRUE;
}

std::uint8_t Value::simple_value() const
{
    if (m_type != Type::Simple)
        wrong_type(Type::Simple);
    return static_cast<std::uint8_t>(m_number);
}

double Value::as_double() const
{
    if (m_type != Type::Float)
        wrong_type(Type::Float);
    return std::bit_cast<double>(m_number);
}

Value const* Value::find(std::string_view text_key) const
{
    for (auto const& entry : as_map()) {
        if (entry.key.is_text() && entry.key.m_text == text_key)
            return &entry.value;
    }
    return nullptr;
}

Value const* Value::find_unsigned(std::uint64_t key) const
{
    for (auto const& entry : as_map()) {
        if (entry.key.is_unsigned() && entry.key.m_number == key)
            return &entry.value;
    }
    return nullptr;
}

Value const* Value::find(Value const& key) const
{
    for (auto const& entry : as_map()) {
        if (entry.key == key)
            return &entry.value;
    }
    return nullptr;
}

void Value::insert(Value key, Value value)
{
    as_map().push_back(MapEntry { std::move(key), std::move(value) });
}

void Value::push_back(Value item)
{
    as_array().push_back(std::move(item));
}

bool operator==(Value const& a, Value const& b)
{
    return (a <=> b) == std::strong_ordering::equal;
}

std::strong_ordering operator<=>(Value const& a, Value const& b)
{
    if (auto order = a.m_type <=> b.m_type; order != 0)
        return order;
    if (auto order = a.m_number <=> b.m_number; order != 0)
        return order;
    switch (a.m_type) {
    case Type::Bytes:
        return std::lexicographical_compare_three_way(a.m_bytes.begin(), a.m_bytes.end(), b.m_bytes.begin(),
            b.m_bytes.end());
    case Type::Text:
        return a.m_text <=> b.m_text;
    case Type::Array:
    case Type::Tag:
        return std::lexicographical_compare_three_way(a.m_items.begin(), a.m_items.end(), b.m_items.begin(),
            b.m_items.end());
    case Type::Map: {
        if (auto order = a.m_entries.size() <=> b.m_entries.size(); order != 0)
            return order;
        for (std::size_t i = 0; i < a.m_entries.size(); ++i) {
            if (auto order = a.m_entries[i].key <=> b.m_entries[i].key; order != 0)
                return order;
            if (auto order = a.m_entries[i].value <=> b.m_entries[i].value; order != 0)
                return order;
        }
        return std::strong_ordering::equal;
    }
    default:
        return std::strong_ordering::equal;
    }
}

} // namespace qtbox::cbor
