// CBOR (RFC 8949): a value model, a streaming encoder (encoder.hpp), a
// strict, bounded decoder (decoder.hpp) and the diagnostic-notation printer
// (diagnostic.hpp).
//
// Overview
// - Value holds one data item of the CBOR data model (RFC 8949 §2): unsigned
//   and negative integers (the full 64-bit argument range of major types 0 and
//   1), byte and text strings, arrays, maps, tags, simple values (false, true,
//   null, undefined and the unassigned ones) and floats. Maps keep their
//   entries in insertion order, because the QingTian attestation document
//   (docs/FORMATS.md §4) fixes an order that is not the RFC 8949 §4.2.1 sorted order.
// - The model does not remember how an item was serialised (argument width,
//   definite or indefinite length): the decoder accepts every well-formed
//   form, and the encoder writes preferred serialisation (§4.1) unless the
//   caller drives the streaming Encoder by hand to force a width, an
//   indefinite length, or verbatim pre-encoded bytes.
// - Values from the decoder are bounded by its limits (depth, item count), so
//   the recursive functions here (equality, ordering, destruction) are too.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::cbor {

enum class Type : std::uint8_t {
    Unsigned, // major type 0
    Negative, // major type 1: the value is -1 - argument
    Bytes,    // major type 2
    Text,     // major type 3 (valid UTF-8)
    Array,    // major type 4
    Map,      // major type 5
    Tag,      // major type 6
    Simple,   // major type 7, simple values (false/true/null/undefined included)
    Float,    // major type 7, half/single/double
};

std::string_view type_name(Type type);

// Simple values with a meaning (RFC 8949 §3.3, Table 4).
constexpr std::uint8_t SIMPLE_FALSE = 20;
constexpr std::uint8_t SIMPLE_TRUE = 21;
constexpr std::uint8_t SIMPLE_NULL = 22;
constexpr std::uint8_t SIMPLE_UNDEFINED = 23;

struct MapEntry;

class Value {
public:
    // A default-constructed Value is null.
    Value();
    // Defined where MapEntry is complete (a vector of an incomplete type may
    // be declared, but not destroyed or copied, before that).
    ~Value();
    Value(Value const&);
    Value(Value&&) noexcept;
    Value& operator=(Value const&);
    Value& operator=(Value&&) noexcept;

    static Value unsigned_integer(std::uint64_t value);
    // The negative integer -1 - argument (covers -2^64 .. -1).
    static Value negative_from_argument(std::uint64_t argument);
    static Value integer(std::int64_t value);
    static Value byte_string(ByteView bytes);
    static Value byte_string(Bytes&& bytes);
    // The caller vouches for UTF-8 validity; the decoder checks it on input.
    static Value text_string(std::string text);
    static Value array(std::vector<Value> items = {});
    static Value map(); // empty
    static Value map(std::vector<MapEntry> entries);
    static Value tagged(std::uint64_t tag, Value content);
    static Value boolean(bool value);
    static Value null();
    static Value undefined();
    static Value simple(std::uint8_t value);
    // Every NaN becomes the one quiet NaN (RFC 8949 §4.2.2).
    static Value floating(double value);

    Type type() const { return m_type; }
    bool is_unsigned() const { return m_type == Type::Unsigned; }
    bool is_negative() const { return m_type == Type::Negative; }
    bool is_integer() const { return is_unsigned() || is_negative(); }
    bool is_bytes() const { return m_type == Type::Bytes; }
    bool is_text() const { return m_type == Type::Text; }
    bool is_array() const { return m_type == Type::Array; }
    bool is_map() const { return m_type == Type::Map; }
    bool is_tag() const { return m_type == Type::Tag; }
    bool is_simple() const { return m_type == Type::Simple; }
    bool is_float() const { return m_type == Type::Float; }
    bool is_bool() const { return is_simple() && (m_number == SIMPLE_FALSE || m_number == SIMPLE_TRUE); }
    bool is_null() const { return is_simple() && m_number == SIMPLE_NULL; }
    bool is_undefined() const { return is_simple() && m_number == SIMPLE_UNDEFINED; }

    // Accessors: calling one on a Value of another type is a programming
    // error and aborts (never undefined behaviour on untrusted data: check
    // the type first).
    std::uint64_t as_unsigned() const;       // Unsigned
    std::uint64_t negative_argument() const; // Negative: the value is -1 - this
    // Unsigned or Negative that fits in int64_t; nullopt otherwise.
    std::optional<std::int64_t> as_int64() const;
    ByteView as_bytes() const;               // Bytes
    std::string_view as_text() const;        // Text
    std::vector<Value> const& as_array() const;
    std::vector<Value>& as_array();
    std::vector<MapEntry> const& as_map() const;
    std::vector<MapEntry>& as_map();
    std::uint64_t tag_number() const;        // Tag
    Value const& tag_content() const;        // Tag
    bool as_bool() const;                    // false or true
    std::uint8_t simple_value() const;       // Simple
    double as_double() const;                // Float

    // Map helpers (Map only). find returns the value of the first entry whose
    // key equals `key`, or nullptr.
    Value const* find(std::string_view text_key) const;
    Value const* find_unsigned(std::uint64_t key) const;
    Value const* find(Value const& key) const;
    // Appends (no duplicate check: the encoder writes what it is given).
    void insert(Value key, Value value);
    // Array only.
    void push_back(Value item);

    // Equality of data items (RFC 8949 §2): integers and floats are distinct
    // types, floats compare by their bit pattern (so NaN, kept as one value,
    // equals itself and 0.0 differs from -0.0), maps compare entry by entry
    // in order.
    friend bool operator==(Value const& a, Value const& b);
    // A total order consistent with ==, used for duplicate-key detection.
    friend std::strong_ordering operator<=>(Value const& a, Value const& b);

private:
    [[noreturn]] void wrong_type(Type wanted) const;

    Type m_type { Type::Simple };
    std::uint64_t m_number { SIMPLE_NULL }; // integer argument, tag number, simple value, float bits
    Bytes m_bytes;
    std::string m_text;
    std::vector<Value> m_items;      // array items; a tag's content is m_items[0]
    std::vector<MapEntry> m_entries; // map entries in insertion order
};

struct MapEntry {
    Value key;
    Value value;
    friend bool operator==(MapEntry const&, MapEntry const&) = default;
};

} // namespace qtbox::cbor
