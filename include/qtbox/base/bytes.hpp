// Byte buffers and the codecs every module needs: hex, base64, and a
// constant-time comparison for anything secret or secret-derived.
#pragma once

#include <qtbox/base/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<std::uint8_t const>;

inline ByteView as_bytes(std::string_view text)
{
    return { reinterpret_cast<std::uint8_t const*>(text.data()), text.size() };
}
inline std::string_view as_chars(ByteView bytes)
{
    return { reinterpret_cast<char const*>(bytes.data()), bytes.size() };
}
inline Bytes to_bytes(std::string_view text)
{
    auto view = as_bytes(text);
    return { view.begin(), view.end() };
}

// Lowercase hex, no separators.
std::string hex_encode(ByteView bytes);
// Accepts upper or lower case; an optional "0x" prefix; no separators.
ErrorOr<Bytes> hex_decode(std::string_view text);

// RFC 4648 §4 with padding.
std::string base64_encode(ByteView bytes);
// Accepts the standard and the URL-safe alphabet (RFC 4648 §5), with or
// without padding, and ignores ASCII whitespace anywhere.
ErrorOr<Bytes> base64_decode(std::string_view text);

// The length of the well-formed UTF-8 sequence at the start of `bytes`
// (RFC 3629, Unicode Table 3-7: no overlong forms, no surrogates, nothing
// above U+10FFFF): 1 for an ASCII byte, 2 to 4 otherwise, 0 when the bytes
// start with no well-formed sequence (or are empty).
std::size_t utf8_sequence_length(ByteView bytes);
// The offset of the first byte of `text` that starts no well-formed UTF-8
// sequence, or std::string_view::npos when all of it is well-formed.
std::size_t first_invalid_utf8(std::string_view text);

// Compares in time that depends only on the lengths, never on the contents.
bool constant_time_equal(ByteView a, ByteView b);

// Overwrites memory in a way the optimiser may not remove.
void secure_zero(void* data, std::size_t size);

} // namespace qtbox
