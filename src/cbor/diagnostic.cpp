// RFC 8949 §8 diagnostic notation for a cbor::Value (diagnostic.hpp).
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cbor/value.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace qtbox::cbor {

namespace {

void append_float(std::string& out, double value)
{
    if (std::isnan(value)) {
        out += "NaN";
        return;
    }
    if (std::isinf(value)) {
        out += value < 0 ? "-Infinity" : "Infinity";
        return;
    }
    char buffer[64];
    auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
    std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
    out += text;
    // Diagnostic notation distinguishes 1.0 from 1 (RFC 8949 §8).
    if (text.find_first_of(".eE") == std::string_view::npos)
        out += ".0";
}

void append_escaped_text(std::string& out, std::string_view text)
{
    out += '"';
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20) {
            out += fmt::format("\\u{:04x}", byte);
        } else {
            out += c;
        }
    }
    out += '"';
}

void append_diagnostic(std::string& out, Value const& value)
{
    switch (value.type()) {
    case Type::Unsigned:
        out += std::to_string(value.as_unsigned());
        break;
    case Type::Negative: {
        // -1 - n; n = 2^64-1 gives -18446744073709551616, beyond any C++ integer.
        std::uint64_t n = value.negative_argument();
        if (n == UINT64_MAX) {
            out += "-18446744073709551616";
        } else {
            out += '-';
            out += std::to_string(n + 1);
        }
        break;
    }
    case Type::Bytes:
        out += "h'";
        out += hex_encode(value.as_bytes());
        out += '\'';
        break;
    case Type::Text:
        append_escaped_text(out, value.as_text());
        break;
    case Type::Array: {
        out += '[';
        bool first = true;
        for (auto const& item : value.as_array()) {
            if (!first)
                out += ", ";
            first = false;
            append_diagnostic(out, item);
        }
        out += ']';
        break;
    }
    case Type::Map: {
        out += '{';
        bool first = true;
        for (auto const& entry : value.as_map()) {
            if (!first)
                out += ", ";
            first = false;
            append_diagnostic(out, entry.key);
            out += ": ";
            append_diagnostic(out, entry.value);
        }
        out += '}';
        break;
    }
    case Type::Tag:
        out += std::to_string(value.tag_number());
        out += '(';
        append_diagnostic(out, value.tag_content());
        out += ')';
        break;
    case Type::Simple:
        switch (value.simple_value()) {
        case SIMPLE_FALSE:
            out += "false";
            break;
        case SIMPLE_TRUE:
            out += "true";
            break;
        case SIMPLE_NULL:
            out += "null";
            break;
        case SIMPLE_UNDEFINED:
            out += "undefined";
            break;
        default:
            out += "simple(";
            out += std::to_string(value.simple_value());
            out += ')';
            break;
        }
        break;
    case Type::Float:
        append_float(out, value.as_double());
        break;
    }
}

} // namespace

std::string to_diagnostic(Value const& value)
{
    std::string out;
    append_diagnostic(out, value);
    return out;
}

} // namespace qtbox::cbor
