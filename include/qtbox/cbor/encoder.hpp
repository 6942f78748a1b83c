// Streaming CBOR encoder (RFC 8949 §3).
//
// By default every argument uses its preferred serialisation (§4.1: the
// shortest form), lengths are definite, and floats use the shortest of
// half/single/double that keeps the value exactly (§4.2.1's rules for
// deterministic encoding). Map entries are written in the order the caller
// gives them; encode_deterministic() additionally sorts map keys bytewise
// (§4.2.1) for callers that want the fully deterministic form.
//
// Escape hatches that real formats need:
// - a forced argument width (docs/FORMATS.md §4: the attestation `timestamp` is always
//   the 8-byte encoding; real QingTian documents encode {1: -35} with 4-byte
//   integers, docs/PLATFORMS.md §Q5);
// - indefinite-length arrays, maps and strings (Nitro payloads use an
//   indefinite map);
// - raw(): pre-encoded bytes appended verbatim (for example a COSE protected
//   header that must stay byte-identical).
// The encoder does not check that headers are followed by the right number of
// items: that is the caller's structure.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/cbor/value.hpp>

#include <cstdint>
#include <string_view>

namespace qtbox::cbor {

// Width of a head's argument (RFC 8949 §3: additional information 0..27).
enum class Width : std::uint8_t {
    Preferred, // the shortest form (§4.1)
    Byte1,     // additional information 24, 1 byte follows
    Byte2,     // 25, 2 bytes
    Byte4,     // 26, 4 bytes
    Byte8,     // 27, 8 bytes
};

class Encoder {
public:
    // Unsigned integer (major type 0). A forced width smaller than the value
    // needs is widened to the next width that holds it (never truncated).
    Encoder& unsigned_integer(std::uint64_t value, Width width = Width::Preferred);
    // Negative integer -1 - argument (major type 1).
    Encoder& negative_integer(std::uint64_t argument, Width width = Width::Preferred);
    Encoder& integer(std::int64_t value, Width width = Width::Preferred);
    Encoder& byte_string(ByteView bytes);
    Encoder& text_string(std::string_view text);
    Encoder& array_header(std::uint64_t count);
    Encoder& map_header(std::uint64_t entry_count);
    Encoder& tag(std::uint64_t number);
    Encoder& boolean(bool value);
    Encoder& null();
    Encoder& undefined();
    // Simple values 0..23 and 32..255. 24..31 have no well-formed encoding
    // (§3.3): asking for one is a programming error and aborts.
    Encoder& simple(std::uint8_t value);
    Encoder& floating(double value);
    // Indefinite lengths (§3.2): begin_*, the items (for strings: definite
    // chunks of the same major type), then end_indefinite() writes the break.
    Encoder& begin_indefinite_array();
    Encoder& begin_indefinite_map();
    Encoder& begin_indefinite_byte_string();
    Encoder& begin_indefinite_text_string();
    Encoder& end_indefinite();
    // Appends already-encoded bytes unchanged.
    Encoder& raw(ByteView encoded);
    // A whole Value in preferred serialisation, map entries in stored order.
    Encoder& value(Value const& item);

    Bytes const& output() const { return m_output; }
    Bytes take() { return std::move(m_output); }
    std::size_t size() const { return m_output.size(); }

private:
    void head(std::uint8_t major, std::uint64_t argument, Width width = Width::Preferred);

    Bytes m_output;
};

// Preferred serialisation of one Value, map entries in stored order.
Bytes encode(Value const& item);
// RFC 8949 §4.2.1 core deterministic encoding: preferred serialisation plus
// map keys sorted bytewise by their encodings, at every level.
Bytes encode_deterministic(Value const& item);

} // namespace qtbox::cbor
