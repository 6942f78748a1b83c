#include <qtbox/boot/aml.hpp>

#include <fmt/format.h>

namespace qtbox::boot::aml {

namespace {

constexpr std::uint8_t ZERO_OP = 0x00;
constexpr std::uint8_t ONE_OP = 0x01;
constexpr std::uint8_t NAME_OP = 0x08;
constexpr std::uint8_t BYTE_PREFIX = 0x0A;
constexpr std::uint8_t WORD_PREFIX = 0x0B;
constexpr std::uint8_t DWORD_PREFIX = 0x0C;
constexpr std::uint8_t STRING_PREFIX = 0x0D;
constexpr std::uint8_t QWORD_PREFIX = 0x0E;
constexpr std::uint8_t BUFFER_OP = 0x11;
constexpr std::uint8_t DUAL_NAME_PREFIX = 0x2E;
constexpr std::uint8_t MULTI_NAME_PREFIX = 0x2F;
constexpr std::uint8_t ROOT_CHAR = 0x5C;
constexpr std::uint8_t EXT_OP_PREFIX = 0x5B;
constexpr std::uint8_t DEVICE_OP = 0x82;
constexpr std::uint8_t ONES_OP = 0xFF;
// Large resource items (§6.4.3) and the small End Tag / IO items (§6.4.2).
constexpr std::uint8_t MEMORY32_FIXED_TAG = 0x86;
constexpr std::uint8_t EXTENDED_IRQ_TAG = 0x89;
constexpr std::uint8_t IO_TAG = 0x47;
constexpr std::uint8_t END_TAG = 0x79;
// Longest name path we emit; keeps MultiNamePrefix's count byte honest.
constexpr std::size_t MAX_SEGMENTS = 255;

void append(Bytes& out, ByteView bytes) { out.insert(out.end(), bytes.begin(), bytes.end()); }

void append_le(Bytes& out, std::uint64_t value, int bytes)
{
    for (int i = 0; i < bytes; ++i)
        out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

bool is_lead_name_char(char c) { return (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_lead_name_char(c) || (c >= '0' && c <= '9'); }

} // namespace

Bytes package_length(std::size_t payload_length)
{
    Bytes out;
    if (payload_length + 1 < 64) {
        out.push_back(static_cast<std::uint8_t>(payload_length + 1));
        return out;
    }
    // Total length including the encoding's own n bytes; n is the smallest
    // count whose 4 + 8(n-1) bits hold it.
    std::size_t n = payload_length + 2 < (1u << 12) ? 2 : payload_length + 3 < (1u << 20) ? 3 : 4;
    std::size_t total = payload_length + n;
    out.push_back(static_cast<std::uint8_t>(((n - 1) << 6) | (total & 0x0F)));
    for (std::size_t i = 1; i < n; ++i)
        out.push_back(static_cast<std::uint8_t>(total >> (4 + 8 * (i - 1))));
    return out;
}

ErrorOr<Bytes> name_string(std::string_view path)
{
    Bytes out;
    if (!path.empty() && path.front() == '\\') {
        out.push_back(ROOT_CHAR);
        path.remove_prefix(1);
    }
    std::vector<std::string_view> segments;
    while (!path.empty()) {
        auto dot = path.find('.');
        segments.push_back(path.substr(0, dot));
        path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
    }
    if (segments.empty() || segments.size() > MAX_SEGMENTS)
        return Error::from_string("AML name: empty or too long path");
    for (auto segment : segments) {
        if (segment.size() != 4 || !is_lead_name_char(segment[0]) || !is_name_char(segment[1])
            || !is_name_char(segment[2]) || !is_name_char(segment[3]))
            return Error::from_string(fmt::format("AML name: '{}' is not a 4-character NameSeg", segment));
    }
    if (segments.size() == 2) {
        out.push_back(DUAL_NAME_PREFIX);
    } else if (segments.size() > 2) {
        out.push_back(MULTI_NAME_PREFIX);
        out.push_back(static_cast<std::uint8_t>(segments.size()));
    }
    for (auto segment : segments)
        append(out, as_bytes(segment));
    return out;
}

Bytes integer(std::uint64_t value)
{
    Bytes out;
    if (value == 0) {
        out.push_back(ZERO_OP);
    } else if (value == 1) {
        out.push_back(ONE_OP);
    } else if (value == ~0ull) {
        out.push_back(ONES_OP);
    } else if (value <= 0xFF) {
        out.push_back(BYTE_PREFIX);
        append_le(out, value, 1);
    } else if (value <= 0xFFFF) {
        out.push_back(WORD_PREFIX);
        append_le(out, value, 2);
    } else if (value <= 0xFFFFFFFF) {
        out.push_back(DWORD_PREFIX);
        append_le(out, value, 4);
    } else {
        out.push_back(QWORD_PREFIX);
        append_le(out, value, 8);
    }
    return out;
}

Bytes dword(std::uint32_t value)
{
    Bytes out { DWORD_PREFIX };
    append_le(out, value, 4);
    return out;
}

ErrorOr<Bytes> string(std::string_view text)
{
    Bytes out { STRING_PREFIX };
    for (char c : text) {
        if (c == 0 || static_cast<unsigned char>(c) > 0x7F)
            return Error::from_string("AML string: only ASCII 0x01-0x7F is allowed");
        out.push_back(static_cast<std::uint8_t>(c));
    }
    out.push_back(0);
    return out;
}

ErrorOr<Bytes> eisa_id(std::string_view id)
{
    // Three uppercase letters (5 bits each, 'A' = 1) then four hex digits,
    // packed big-endian into 32 bits (ACPI 6.5 §19.6.35 EISAID).
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    if (id.size() != 7)
        return Error::from_string(fmt::format("EISA id '{}' is not 7 characters", id));
    std::uint32_t value = 0;
    for (int i = 0; i < 3; ++i) {
        if (id[i] < 'A' || id[i] > 'Z')
            return Error::from_string(fmt::format("EISA id '{}': vendor must be 3 uppercase letters", id));
        value = (value << 5) | static_cast<std::uint32_t>(id[i] - 'A' + 1);
    }
    for (int i = 3; i < 7; ++i) {
        int digit = hex(id[i]);
        if (digit < 0)
            return Error::from_string(fmt::format("EISA id '{}': product must be 4 hex digits", id));
        value = (value << 4) | static_cast<std::uint32_t>(digit);
    }
    // Stored as the big-endian bytes of `value`, read as a little-endian DWord.
    std::uint32_t swapped = ((value & 0xFF) << 24) | ((value & 0xFF00) << 8) | ((value >> 8) & 0xFF00) | (value >> 24);
    return dword(swapped);
}

ErrorOr<Bytes> name(std::string_view path, ByteView value)
{
    Bytes out { NAME_OP };
    append(out, TRY(name_string(path)));
    append(out, value);
    return out;
}

ErrorOr<Bytes> device(std::string_view path, ByteView body)
{
    Bytes payload = TRY(name_string(path));
    append(payload, body);
    Bytes out { EXT_OP_PREFIX, DEVICE_OP };
    append(out, package_length(payload.size()));
    append(out, payload);
    return out;
}

Bytes resource_template(ByteView descriptors)
{
    Bytes contents(descriptors.begin(), descriptors.end());
    contents.push_back(END_TAG);
    contents.push_back(0); // checksum 0: "treat as correct"
    Bytes payload = integer(contents.size());
    append(payload, contents);
    Bytes out { BUFFER_OP };
    append(out, package_length(payload.size()));
    append(out, payload);
    return out;
}

Bytes memory32_fixed(bool writable, std::uint32_t base, std::uint32_t length)
{
    Bytes out { MEMORY32_FIXED_TAG, 9, 0, static_cast<std::uint8_t>(writable ? 1 : 0) };
    append_le(out, base, 4);
    append_le(out, length, 4);
    return out;
}

Bytes interrupt(bool edge_triggered, bool active_low, bool shared, std::uint32_t gsi)
{
    std::uint8_t flags = 0x01; // ResourceConsumer
    if (edge_triggered)
        flags |= 0x02;
    if (active_low)
        flags |= 0x04;
    if (shared)
        flags |= 0x08;
    Bytes out { EXTENDED_IRQ_TAG, 6, 0, flags, 1 };
    append_le(out, gsi, 4);
    return out;
}

Bytes io(std::uint16_t minimum, std::uint16_t maximum, std::uint8_t alignment, std::uint8_t length)
{
    Bytes out { IO_TAG, 0x01 }; // 16-bit decode
    append_le(out, minimum, 2);
    append_le(out, maximum, 2);
    out.push_back(alignment);
    out.push_back(length);
    return out;
}

} // namespace qtbox::boot::aml
