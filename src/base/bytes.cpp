#include <qtbox/base/bytes.hpp>

#include <array>
#include <fmt/format.h>

namespace qtbox {

namespace {

constexpr char HEX_DIGITS[] = "0123456789abcdef";
constexpr char BASE64_ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int base64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

} // namespace

std::string hex_encode(ByteView bytes)
{
    std::string text;
    text.resize(bytes.size() * 2);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        text[2 * i] = HEX_DIGITS[bytes[i] >> 4];
        text[2 * i + 1] = HEX_DIGITS[bytes[i] & 0xf];
    }
    return text;
}

ErrorOr<Bytes> hex_decode(std::string_view text)
{
    if (text.starts_with("0x") || text.starts_with("0X"))
        text.remove_prefix(2);
    if (text.size() % 2 != 0)
        return Error::from_string(fmt::format("invalid hex: odd number of digits ({})", text.size()));
    Bytes bytes(text.size() / 2);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        int high = hex_value(text[2 * i]);
        int low = hex_value(text[2 * i + 1]);
        if (high < 0 || low < 0)
            return Error::from_string(fmt::format("invalid hex: bad digit at offset {}", high < 0 ? 2 * i : 2 * i + 1));
        bytes[i] = static_cast<std::uint8_t>(high << 4 | low);
    }
    return bytes;
}

std::string base64_encode(ByteView bytes)
{
    std::string text;
    text.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        std::uint32_t group = bytes[i] << 16 | bytes[i + 1] << 8 | bytes[i + 2];
        text += BASE64_ALPHABET[group >> 18 & 63];
        text += BASE64_ALPHABET[group >> 12 & 63];
        text += BASE64_ALPHABET[group >> 6 & 63];
        text += BASE64_ALPHABET[group & 63];
    }
    std::size_t rest = bytes.size() - i;
    if (rest > 0) {
        std::uint32_t group = bytes[i] << 16 | (rest == 2 ? bytes[i + 1] << 8 : 0);
        text += BASE64_ALPHABET[group >> 18 & 63];
        text += BASE64_ALPHABET[group >> 12 & 63];
        text += rest == 2 ? BASE64_ALPHABET[group >> 6 & 63] : '=';
        text += '=';
    }
    return text;
}

ErrorOr<Bytes> base64_decode(std::string_view text)
{
    Bytes bytes;
    bytes.reserve(text.size() / 4 * 3 + 3);
    std::uint32_t group = 0;
    int count = 0;
    int padding = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            ++padding;
            continue;
        }
        int value = base64_value(c);
        if (value < 0 || padding > 0)
            return Error::from_string(fmt::format("invalid base64: unexpected character at offset {}", i));
        group = group << 6 | static_cast<std::uint32_t>(value);
        if (++count == 4) {
            bytes.push_back(static_cast<std::uint8_t>(group >> 16));
            bytes.push_back(static_cast<std::uint8_t>(group >> 8));
            bytes.push_back(static_cast<std::uint8_t>(group));
            group = 0;
            count = 0;
        }
    }
    if (count == 1 || padding > 2 || (padding > 0 && (count + padding) % 4 != 0))
        return Error::from_string("invalid base64: truncated input");
    if (count == 2) {
        bytes.push_back(static_cast<std::uint8_t>(group >> 4));
    } else if (count == 3) {
        bytes.push_back(static_cast<std::uint8_t>(group >> 10));
        bytes.push_back(static_cast<std::uint8_t>(group >> 2));
    }
    return bytes;
}

std::size_t utf8_sequence_length(ByteView bytes)
{
    if (bytes.empty())
        return 0;
    std::uint8_t lead = bytes[0];
    if (lead < 0x80)
        return 1;
    std::size_t length;
    std::uint8_t low = 0x80, high = 0xbf; // allowed range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        if (lead == 0xe0)
            low = 0xa0; // overlong
        else if (lead == 0xed)
            high = 0x9f; // surrogates U+D800..U+DFFF
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        if (lead == 0xf0)
            low = 0x90; // overlong
        else if (lead == 0xf4)
            high = 0x8f; // above U+10FFFF
    } else {
        return 0; // continuation byte, overlong 0xc0/0xc1, or 0xf5..0xff
    }
    if (bytes.size() < length || bytes[1] < low || bytes[1] > high)
        return 0;
    for (std::size_t k = 2; k < length; ++k) {
        if ((bytes[k] & 0xc0) != 0x80)
            return 0;
    }
    return length;
}

std::size_t first_invalid_utf8(std::string_view text)
{
    auto bytes = as_bytes(text);
    for (std::size_t i = 0; i < bytes.size();) {
        std::size_t length = utf8_sequence_length(bytes.subspan(i));
        if (length == 0)
            return i;
        i += length;
    }
    return std::string_view::npos;
}

bool constant_time_equal(ByteView a, ByteView b)
{
    if (a.size() != b.size())
        return false;
    std::uint8_t difference = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        difference |= a[i] ^ b[i];
    // Keep the compiler from turning the loop into an early exit.
    asm volatile("" : "+r"(difference));
    return difference == 0;
}

void secure_zero(void* data, std::size_t size)
{
    explicit_bzero(data, size);
}

} // namespace qtbox
