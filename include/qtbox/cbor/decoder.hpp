// Strict, bounded CBOR decoder (RFC 8949 §3, §5.3.1).
//
// Accepts every well-formed encoding: any argument width (not only the
// preferred one: real QingTian documents encode {1: -35} with 4-byte
// integers), definite and indefinite arrays, maps and strings, any tag.
// Rejects, with a kind and the byte offset:
// - input that is not well-formed (Appendix F): truncated heads, reserved
//   additional information 28..30, indefinite length on a major type that
//   has none, a break outside an indefinite item, string chunks of another
//   major type or themselves indefinite, two-byte simple values below 32;
// - text strings (and each chunk, §3.2.3) that are not valid UTF-8;
// - duplicate map keys (§5.6; data-item equality, so 1 and 1 written with a
//   4-byte argument are the same key);
// - bytes after the item, unless the caller asked for a prefix decode;
// - anything beyond the limits: nesting depth, total item count, and every
//   length or count checked against the remaining input before any
//   allocation (an array of n items needs at least n more bytes).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/cbor/value.hpp>

#include <cstddef>
#include <string_view>

namespace qtbox::cbor {

// Error::code() of a decode failure.
enum class DecodeError {
    Truncated = 1,          // the input ends inside a head
    LengthExceedsInput,     // a string length or item count larger than what remains
    ReservedAdditionalInfo, // additional information 28, 29 or 30
    IndefiniteNotAllowed,   // length 31 on a major type without indefinite form, or disabled by the caller
    UnexpectedBreak,        // 0xff where no indefinite item is open (or between a key and its value)
    BadStringChunk,         // a chunk of another major type, or an indefinite chunk
    InvalidSimple,          // 0xf8 followed by a value below 32
    InvalidUtf8,            // a text string that is not valid UTF-8
    DuplicateKey,           // two equal keys in one map
    DepthLimit,             // containers nested deeper than max_depth
    ItemLimit,              // more data items than max_items
    TrailingBytes,          // bytes after the top-level item
};

std::string_view decode_error_message(DecodeError kind);

constexpr std::size_t DEFAULT_MAX_DEPTH = 64;
constexpr std::size_t DEFAULT_MAX_ITEMS = 1 << 20;

struct DecodeOptions {
    // Arrays, maps and tags that may enclose one another: [[1]] has depth 2.
    std::size_t max_depth { DEFAULT_MAX_DEPTH };
    // Data items in total, counting map keys, tag contents and string chunks.
    std::size_t max_items { DEFAULT_MAX_ITEMS };
    // Indefinite-length items (§3.2.2, §3.2.3); a protocol that never sends
    // them may turn them off.
    bool allow_indefinite { true };
};

// Where and why a decode failed. The offset is the byte where the problem was
// detected: the initial byte of the offending item (for DuplicateKey, of the
// second key), or for TrailingBytes the first byte after the item.
struct DecodeFailure {
    DecodeError kind {};
    std::size_t offset { 0 };
};

// Decodes exactly one item that spans all of `input`. On failure the Error's
// code is the DecodeError, its message "<why> at byte <offset>", and
// `failure` (if given) receives both.
ErrorOr<Value> decode(ByteView input, DecodeOptions const& options = {}, DecodeFailure* failure = nullptr);

struct DecodedPrefix {
    Value value;
    std::size_t size { 0 }; // bytes the item took
};
// Decodes one item from the start of `input`; bytes after it are left alone.
ErrorOr<DecodedPrefix> decode_prefix(ByteView input, DecodeOptions const& options = {},
    DecodeFailure* failure = nullptr);

// RFC 3629 UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(ByteView bytes);

} // namespace qtbox::cbor
