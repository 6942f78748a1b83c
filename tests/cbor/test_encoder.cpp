#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cbor/encoder.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <functional>

using namespace qtbox;
using namespace qtbox::cbor;

TEST_CASE("cbor: preferred serialisation picks the shortest head at every boundary")
{
    struct Case {
        std::uint64_t value;
        std::string_view hex;
    };
    constexpr Case CASES[] = {
        { 23, "17" },
        { 24, "1818" },
        { 255, "18ff" },
        { 256, "190100" },
        { 65535, "19ffff" },
        { 65536, "1a00010000" },
        { 4294967295, "1affffffff" },
        { 4294967296, "1b0000000100000000" },
    };
    for (auto const& c : CASES) {
        CAPTURE(c.value);
        CHECK(hex_encode(encode(Value::unsigned_integer(c.value))) == c.hex);
    }
    CHECK(hex_encode(encode(Value::integer(-24))) == "37");
    CHECK(hex_encode(encode(Value::integer(-25))) == "3818");
    Bytes long_string(300, 'x');
    auto encoded = encode(Value::byte_string(long_string));
    CHECK(encoded.size() == 303);
    CHECK(hex_encode(ByteView(encoded).first(3)) == "59012c");
}

TEST_CASE("cbor: a forced width writes the longer head, and never truncates")
{
    Encoder encoder;
    // docs/FORMATS.md §4: the attestation timestamp is always the 8-byte encoding.
    encoder.unsigned_integer(1770065027502, Width::Byte8);
    CHECK(hex_encode(encoder.output()) == "1b0000019c2018e1ae");

    // The QingTian protected header {1: -35} with 4-byte integers.
    Encoder header;
    header.map_header(1).unsigned_integer(1, Width::Byte4).integer(-35, Width::Byte4);
    CHECK(hex_encode(header.output()) == "a11a000000013a00000022");

    Encoder small;
    small.unsigned_integer(0, Width::Byte1).unsigned_integer(3, Width::Byte2);
    CHECK(hex_encode(small.output()) == "1800190003");

    Encoder widened;
    widened.unsigned_integer(70000, Width::Byte1).negative_integer(300, Width::Byte1);
    CHECK(hex_encode(widened.output()) == "1a0001117039012c");
}

TEST_CASE("cbor: raw bytes are appended verbatim")
{
    Encoder encoder;
    encoder.array_header(2).raw(Bytes { 0xa1, 0x01, 0x38, 0x22 }).null();
    CHECK(hex_encode(encoder.output()) == "82a1013822f6");
    auto decoded = decode(encoder.output());
    REQUIRE_FALSE(decoded.is_error());
    CHECK(to_diagnostic(decoded.value()) == "[{1: -35}, null]");
}

TEST_CASE("cbor: maps keep the caller's order; encode_deterministic sorts keys bytewise")
{
    Value map = Value::map();
    map.insert(Value::text_string("module_id"), Value::text_string("m"));
    map.insert(Value::text_string("timestamp"), Value::unsigned_integer(1));
    map.insert(Value::unsigned_integer(10), Value::boolean(false));
    map.insert(Value::integer(-1), Value::array({ Value::map() }));
    map.insert(Value::text_string("z"), Value::null());
    // Insertion order kept:
    CHECK(to_diagnostic(decode(encode(map)).value())
        == "{\"module_id\": \"m\", \"timestamp\": 1, 10: false, -1: [{}], \"z\": null}");
    // §4.2.1: 0x0a < 0x20 < 0x61 "z" < 0x69 "module_id" < 0x69 "timestamp".
    CHECK(hex_encode(encode_deterministic(map))
        == "a5" "0af4" "2081a0" "617af6" "696d6f64756c655f6964616d" "6974696d657374616d7001");
}

TEST_CASE("cbor: encode_deterministic sorts nested maps too")
{
    Value inner = Value::map();
    inner.insert(Value::unsigned_integer(2), Value::null());
    inner.insert(Value::unsigned_integer(1), Value::null());
    Value outer = Value::array({ Value::tagged(6, inner) });
    CHECK(hex_encode(encode_deterministic(outer)) == "81c6a201f602f6");
    CHECK(hex_encode(encode(outer)) == "81c6a202f601f6");
}

TEST_CASE("cbor: floats use the shortest exact width")
{
    CHECK(hex_encode(encode(Value::floating(0.5))) == "f93800");
    CHECK(hex_encode(encode(Value::floating(65504.0))) == "f97bff");
    CHECK(hex_encode(encode(Value::floating(65505.0))) == "fa477fe100");
    CHECK(hex_encode(encode(Value::floating(6.103515625e-05))) == "f90400");   // smallest normal half
    CHECK(hex_encode(encode(Value::floating(3.0517578125e-05))) == "f90200");  // a half subnormal
    CHECK(hex_encode(encode(Value::floating(2.98023223876953125e-08))) == "fa33000000"); // below half range
    CHECK(hex_encode(encode(Value::floating(1.0e-40))) == "fb37a16c262777579c");     // single subnormal
    CHECK(hex_encode(encode(Value::floating(-NAN))) == "f97e00");
    for (double value : { 0.1, 1.0 / 3, 1e10, -1e-10, 123456.75, 1e38, 3.0e-39 }) {
        CAPTURE(value);
        auto decoded = decode(encode(Value::floating(value)));
        REQUIRE_FALSE(decoded.is_error());
        CHECK(decoded.value().as_double() == value);
    }
}

TEST_CASE("cbor: random well-formed values survive encode then decode")
{
    // A deterministic generator (no time or global state): values of every
    // type, nested, re-encoded and compared by data-model equality.
    std::uint64_t state = 0x9e3779b97f4a7c15ULL;
    auto next = [&state]() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    std::function<Value(int)> make = [&](int depth) -> Value {
        switch (next() % (depth > 3 ? 6 : 9)) {
        case 0:
            return Value::unsigned_integer(next() >> (next() % 64));
        case 1:
            return Value::negative_from_argument(next() >> (next() % 64));
        case 2: {
            Bytes bytes(next() % 40);
            for (auto& byte : bytes)
                byte = static_cast<std::uint8_t>(next());
            return Value::byte_string(std::move(bytes));
        }
        case 3:
            return Value::text_string(std::string(next() % 30, static_cast<char>('a' + next() % 26)));
        case 4:
            return Value::simple(static_cast<std::uint8_t>(next() % 24));
        case 5:
            return Value::floating(static_cast<double>(static_cast<std::int64_t>(next())) / 1024.0);
        case 6: {
            Value array = Value::array();
            for (auto n = next() % 5; n > 0; --n)
                array.push_back(make(depth + 1));
            return array;
        }
        case 7: {
            Value map = Value::map();
            for (auto n = next() % 5; n > 0; --n)
                map.insert(Value::unsigned_integer(map.as_map().size()), make(depth + 1));
            return map;
        }
        default:
            return Value::tagged(next() % 1000, make(depth + 1));
        }
    };
    for (int i = 0; i < 500; ++i) {
        Value value = make(0);
        auto encoded = encode(value);
        auto decoded = decode(encoded);
        REQUIRE_FALSE(decoded.is_error());
        CHECK(decoded.value() == value);
        CHECK(encode(decoded.value()) == encoded);
    }
}
