#include <qtbox/cbor/decoder.hpp>

#include "float16.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

namespace qtbox::cbor {

std::string_view decode_error_message(DecodeError kind)
{
    switch (kind) {
    case DecodeError::Truncated:
        return "input ends inside an item";
    case DecodeError::LengthExceedsInput:
        return "length exceeds the remaining input";
    case DecodeError::ReservedAdditionalInfo:
        return "reserved additional information value";
    case DecodeError::IndefiniteNotAllowed:
        return "indefinite length not allowed here";
    case DecodeError::UnexpectedBreak:
        return "unexpected break";
    case DecodeError::BadStringChunk:
        return "indefinite string chunk of the wrong type";
    case DecodeError::InvalidSimple:
        return "two-byte simple value below 32";
    case DecodeError::InvalidUtf8:
        return "text string is not valid UTF-8";
    case DecodeError::DuplicateKey:
        return "duplicate map key";
    case DecodeError::DepthLimit:
        return "nesting deeper than the limit";
    case DecodeError::ItemLimit:
        return "more items than the limit";
    case DecodeError::TrailingBytes:
        return "trailing bytes after the item";
    }
    return "malformed CBOR";
}

bool is_valid_utf8(ByteView bytes)
{
    for (std::size_t i = 0; i < bytes.size();) {
        std::size_t length = utf8_sequence_length(bytes.subspan(i));
        if (length == 0)
            return false;
        i += length;
    }
    return true;
}

namespace {

constexpr std::uint8_t BREAK = 0xff;
constexpr std::uint8_t INDEFINITE = 31;
// Below this size a map's duplicate check compares every pair; above it,
// sorting keeps the check O(n log n) so a large map cannot cost O(n^2).
constexpr std::size_t SMALL_MAP = 8;

struct Head {
    std::uint8_t major;
    std::uint8_t additional;
    std::uint64_t argument; // meaningless when indefinite
    bool indefinite;
};

class Parser {
public:
    Parser(ByteView input, DecodeOptions const& options, DecodeFailure* failure)
        : m_input(input), m_options(options), m_failure(failure) { }

    ErrorOr<Value> item(std::size_t depth);
    std::size_t position() const { return m_position; }
    Error fail(DecodeError kind, std::size_t offset)
    {
        if (m_failure)
            *m_failure = { kind, offset };
        return Error::from_code(kind, fmt::format("CBOR: {} at byte {}", decode_error_message(kind), offset));
    }

private:
    std::size_t remaining() const { return m_input.size() - m_position; }
    ErrorOr<Head> head();
    ErrorOr<void> count_item(std::size_t offset);
    ErrorOr<void> enter(std::size_t depth, std::size_t offset);
    bool at_break() const { return m_position < m_input.size() && m_input[m_position] == BREAK; }
    ErrorOr<Value> string(Head const& first, std::size_t offset);
    ErrorOr<Value> array(Head const& first, std::size_t depth, std::size_t offset);
    ErrorOr<Value> map(Head const& first, std::size_t depth, std::size_t offset);
    ErrorOr<Value> simple_or_float(Head const& first, std::size_t offset);
    ErrorOr<void> check_duplicates(std::vector<MapEntry> const& entries, std::vector<std::size_t> const& offsets);

    ByteView m_input;
    DecodeOptions const& m_options;
    DecodeFailure* m_failure;
    std::size_t m_position { 0 };
    std::size_t m_items { 0 };
};

ErrorOr<Head> Parser::head()
{
    std::size_t const start = m_position;
    if (remaining() < 1)
        return fail(DecodeError::Truncated, start);
    std::uint8_t initial = m_input[m_position++];
    Head result { static_cast<std::uint8_t>(initial >> 5), static_cast<std::uint8_t>(initial & 0x1f), 0, false };
    if (result.additional < 24) {
        result.argument = result.additional;
        return result;
    }
    if (result.additional >= 28 && result.additional <= 30)
        return fail(DecodeError::ReservedAdditionalInfo, start);
    if (result.additional == INDEFINITE) {
        result.indefinite = true;
        return result;
    }
    std::size_t size = std::size_t { 1 } << (result.additional - 24);
    if (remaining() < size)
        return fail(DecodeError::Truncated, start);
    for (std::size_t i = 0; i < size; ++i)
        result.argument = (result.argument << 8) | m_input[m_position++];
    return result;
}

ErrorOr<void> Parser::count_item(std::size_t offset)
{
    if (++m_items > m_options.max_items)
        return fail(DecodeError::ItemLimit, offset);
    return {};
}

ErrorOr<void> Parser::enter(std::size_t depth, std::size_t offset)
{
    if (depth + 1 > m_options.max_depth)
        return fail(DecodeError::DepthLimit, offset);
    return {};
}

ErrorOr<Value> Parser::item(std::size_t depth)
{
    std::size_t const offset = m_position;
    Head first = TRY(head());
    TRY(count_item(offset));
    switch (first.major) {
    case 0:
    case 1:
        if (first.indefinite)
            return fail(DecodeError::IndefiniteNotAllowed, offset);
        return first.major == 0 ? Value::unsigned_integer(first.argument)
                                : Value::negative_from_argument(first.argument);
    case 2:
    case 3:
        return string(first, offset);
    case 4:
        TRY(enter(depth, offset));
        return array(first, depth + 1, offset);
    case 5:
        TRY(enter(depth, offset));
        return map(first, depth + 1, offset);
    case 6: {
        if (first.indefinite)
            return fail(DecodeError::IndefiniteNotAllowed, offset);
        TRY(enter(depth, offset));
        Value content = TRY(item(depth + 1));
        return Value::tagged(first.argument, std::move(content));
    }
    default:
        return simple_or_float(first, offset);
    }
}

ErrorOr<Value> Parser::string(Head const& first, std::size_t offset)
{
    bool const text = first.major == 3;
    Bytes content;
    auto append_chunk = [&](std::uint64_t length, std::size_t chunk_offset) -> ErrorOr<void> {
        if (length > remaining())
            return fail(DecodeError::LengthExceedsInput, chunk_offset);
        auto chunk = m_input.subspan(m_position, static_cast<std::size_t>(length));
        // §3.2.3: each chunk of an indefinite text string is valid UTF-8 by itself.
        if (text && !is_valid_utf8(chunk))
            return fail(DecodeError::InvalidUtf8, chunk_offset);
        content.insert(content.end(), chunk.begin(), chunk.end());
        m_position += chunk.size();
        return {};
    };
    if (!first.indefinite) {
        TRY(append_chunk(first.argument, offset));
    } else {
        if (!m_options.allow_indefinite)
            return fail(DecodeError::IndefiniteNotAllowed, offset);
        while (!at_break()) {
            std::size_t const chunk_offset = m_position;
            Head chunk = TRY(head());
            if (chunk.major != first.major || chunk.indefinite)
                return fail(DecodeError::BadStringChunk, chunk_offset);
            TRY(count_item(chunk_offset));
            TRY(append_chunk(chunk.argument, chunk_offset));
        }
        ++m_position; // the break
    }
    if (text)
        return Value::text_string(std::string(as_chars(content)));
    return Value::byte_string(std::move(content));
}

ErrorOr<Value> Parser::array(Head const& first, std::size_t depth, std::size_t offset)
{
    std::vector<Value> items;
    if (!first.indefinite) {
        // Every item takes at least one byte: a count beyond the remaining
        // input is a lie, refused before reserving anything.
        if (first.argument > remaining())
            return fail(DecodeError::LengthExceedsInput, offset);
        items.reserve(static_cast<std::size_t>(first.argument));
        for (std::uint64_t i = 0; i < first.argument; ++i)
            items.push_back(TRY(item(depth)));
    } else {
        if (!m_options.allow_indefinite)
            return fail(DecodeError::IndefiniteNotAllowed, offset);
        while (!at_break())
            items.push_back(TRY(item(depth)));
        ++m_position;
    }
    return Value::array(std::move(items));
}

ErrorOr<Value> Parser::map(Head const& first, std::size_t depth, std::size_t offset)
{
    std::vector<MapEntry> entries;
    std::vector<std::size_t> key_offsets;
    auto entry = [&]() -> ErrorOr<void> {
        key_offsets.push_back(m_position);
        Value key = TRY(item(depth));
        Value value = TRY(item(depth));
        entries.push_back({ std::move(key), std::move(value) });
        return {};
    };
    if (!first.indefinite) {
        if (first.argument > remaining() / 2)
            return fail(DecodeError::LengthExceedsInput, offset);
        entries.reserve(static_cast<std::size_t>(first.argument));
        key_offsets.reserve(static_cast<std::size_t>(first.argument));
        for (std::uint64_t i = 0; i < first.argument; ++i)
            TRY(entry());
    } else {
        if (!m_options.allow_indefinite)
            return fail(DecodeError::IndefiniteNotAllowed, offset);
        while (!at_break())
            TRY(entry());
        ++m_position;
    }
    TRY(check_duplicates(entries, key_offsets));
    return Value::map(std::move(entries));
}

ErrorOr<void> Parser::check_duplicates(std::vector<MapEntry> const& entries, std::vector<std::size_t> const& offsets)
{
    if (entries.size() <= SMALL_MAP) {
        for (std::size_t i = 1; i < entries.size(); ++i) {
            for (std::size_t j = 0; j < i; ++j) {
                if (entries[i].key == entries[j].key)
                    return fail(DecodeError::DuplicateKey, offsets[i]);
            }
        }
        return {};
    }
    std::vector<std::size_t> order(entries.size());
    for (std::size_t i = 0; i < order.size(); ++i)
        order[i] = i;
    // Stable, so that among equal keys the later one is reported.
    std::stable_sort(order.begin(), order.end(),
        [&](std::size_t a, std::size_t b) { return entries[a].key < entries[b].key; });
    std::size_t duplicate = entries.size();
    for (std::size_t i = 1; i < order.size(); ++i) {
        if (entries[order[i]].key == entries[order[i - 1]].key)
            duplicate = std::min(duplicate, order[i]);
    }
    if (duplicate != entries.size())
        return fail(DecodeError::DuplicateKey, offsets[duplicate]);
    return {};
}

ErrorOr<Value> Parser::simple_or_float(Head const& first, std::size_t offset)
{
    switch (first.additional) {
    case 24:
        if (first.argument < 32)
            return fail(DecodeError::InvalidSimple, offset);
        return Value::simple(static_cast<std::uint8_t>(first.argument));
    case 25:
        return Value::floating(half_to_double(static_cast<std::uint16_t>(first.argument)));
    case 26:
        return Value::floating(
            static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(first.argument))));
    case 27:
        return Value::floating(std::bit_cast<double>(first.argument));
    case INDEFINITE:
        return fail(DecodeError::UnexpectedBreak, offset);
    default:
        return Value::simple(static_cast<std::uint8_t>(first.argument));
    }
}

} // namespace

ErrorOr<DecodedPrefix> decode_prefix(ByteView input, DecodeOptions const& options, DecodeFailure* failure)
{
    Parser parser(input, options, failure);
    Value value = TRY(parser.item(0));
    return DecodedPrefix { std::move(value), parser.position() };
}

ErrorOr<Value> decode(ByteView input, DecodeOptions const& options, DecodeFailure* failure)
{
    Parser parser(input, options, failure);
    Value value = TRY(parser.item(0));
    if (parser.position() != input.size())
        return parser.fail(DecodeError::TrailingBytes, parser.position());
    return value;
}

} // namespace qtbox::cbor
