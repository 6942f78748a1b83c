// Every example of RFC 8949 Appendix A, decoded and (where the RFC's encoding
// is the preferred serialisation) re-encoded.
#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cbor/encoder.hpp>

#include "../support/hex.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>

using namespace qtbox;
using namespace qtbox::cbor;
using qtbox::test::unhex;

namespace {

struct Example {
    std::string_view hex;
    std::string_view diagnostic; // as to_diagnostic prints it (definite lengths)
    bool round_trip;             // the RFC's bytes are the preferred serialisation
};

// Table 6 of RFC 8949 Appendix A, without the floats (checked numerically
// below, since diagnostic float spelling is not unique).
constexpr Example EXAMPLES[] = {
    { "00", "0", true },
    { "01", "1", true },
    { "0a", "10", true },
    { "17", "23", true },
    { "1818", "24", true },
    { "1819", "25", true },
    { "1864", "100", true },
    { "1903e8", "1000", true },
    { "1a000f4240", "1000000", true },
    { "1b000000e8d4a51000", "1000000000000", true },
    { "1bffffffffffffffff", "18446744073709551615", true },
    { "c249010000000000000000", "2(h'010000000000000000')", true },
    { "3bffffffffffffffff", "-18446744073709551616", true },
    { "c349010000000000000000", "3(h'010000000000000000')", true },
    { "20", "-1", true },
    { "29", "-10", true },
    { "3863", "-100", true },
    { "3903e7", "-1000", true },
    { "f4", "false", true },
    { "f5", "true", true },
    { "f6", "null", true },
    { "f7", "undefined", true },
    { "f0", "simple(16)", true },
    { "f8ff", "simple(255)", true },
    { "c074323031332d30332d32315432303a30343a30305a", "0(\"2013-03-21T20:04:00Z\")", true },
    { "c11a514b67b0", "1(1363896240)", true },
    { "d74401020304", "23(h'01020304')", true },
    { "d818456449455446", "24(h'6449455446')", true },
    { "d82076687474703a2f2f7777772e6578616d706c652e636f6d", "32(\"http://www.example.com\")", true },
    { "40", "h''", true },
    { "4401020304", "h'01020304'", true },
    { "60", "\"\"", true },
    { "6161", "\"a\"", true },
    { "6449455446", "\"IETF\"", true },
    { "62225c", "\"\\\"\\\\\"", true },
    { "62c3bc", "\"\xc3\xbc\"", true },
    { "63e6b0b4", "\"\xe6\xb0\xb4\"", true },
    { "64f0908591", "\"\xf0\x90\x85\x91\"", true },
    { "80", "[]", true },
    { "83010203", "[1, 2, 3]", true },
    { "8301820203820405", "[1, [2, 3], [4, 5]]", true },
    { "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
        "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]", true },
    { "a0", "{}", true },
    { "a201020304", "{1: 2, 3: 4}", true },
    { "a26161016162820203", "{\"a\": 1, \"b\": [2, 3]}", true },
    { "826161a161626163", "[\"a\", {\"b\": \"c\"}]", true },
    { "a56161614161626142616361436164614461656145",
        "{\"a\": \"A\", \"b\": \"B\", \"c\": \"C\", \"d\": \"D\", \"e\": \"E\"}", true },
    // Indefinite-length forms: the model keeps the content, the encoder
    // writes the definite form, so these only decode.
    { "5f42010243030405ff", "h'0102030405'", false },
    { "7f657374726561646d696e67ff", "\"streaming\"", false },
    { "9fff", "[]", false },
    { "9f018202039f0405ffff", "[1, [2, 3], [4, 5]]", false },
    { "9f01820203820405ff", "[1, [2, 3], [4, 5]]", false },
    { "83018202039f0405ff", "[1, [2, 3], [4, 5]]", false },
    { "83019f0203ff820405", "[1, [2, 3], [4, 5]]", false },
    { "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
        "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]", false },
    { "bf61610161629f0203ffff", "{\"a\": 1, \"b\": [2, 3]}", false },
    { "826161bf61626163ff", "[\"a\", {\"b\": \"c\"}]", false },
    { "bf6346756ef563416d7421ff", "{\"Fun\": true, \"Amt\": -2}", false },
};

struct FloatExample {
    std::string_view hex;
    double value;
    bool round_trip;
};

constexpr FloatExample FLOATS[] = {
    { "f90000", 0.0, true },
    { "f98000", -0.0, true },
    { "f93c00", 1.0, true },
    { "fb3ff199999999999a", 1.1, true },
    { "f93e00", 1.5, true },
    { "f97bff", 65504.0, true },
    { "fa47c35000", 100000.0, true },
    { "fa7f7fffff", 3.4028234663852886e+38, true },
    { "fb7e37e43c8800759c", 1.0e+300, true },
    { "f90001", 5.960464477539063e-8, true },
    { "f90400", 0.00006103515625, true },
    { "f9c400", -4.0, true },
    { "fbc010666666666666", -4.1, true },
    { "f97c00", INFINITY, true },
    { "f97e00", NAN, true },
    { "f9fc00", -INFINITY, true },
    { "fa7f800000", INFINITY, false },
    { "fa7fc00000", NAN, false },
    { "faff800000", -INFINITY, false },
    { "fb7ff0000000000000", INFINITY, false },
    { "fb7ff8000000000000", NAN, false },
    { "fbfff0000000000000", -INFINITY, false },
};

} // namespace

TEST_CASE("cbor: RFC 8949 Appendix A examples decode to their diagnostic notation")
{
    for (auto const& example : EXAMPLES) {
        CAPTURE(example.hex);
        auto decoded = decode(unhex(example.hex));
        REQUIRE_FALSE(decoded.is_error());
        CHECK(to_diagnostic(decoded.value()) == example.diagnostic);
        if (example.round_trip)
            CHECK(hex_encode(encode(decoded.value())) == example.hex);
    }
}

TEST_CASE("cbor: RFC 8949 Appendix A floats decode exactly and re-encode in the shortest form")
{
    for (auto const& example : FLOATS) {
        CAPTURE(example.hex);
        auto decoded = decode(unhex(example.hex));
        REQUIRE_FALSE(decoded.is_error());
        REQUIRE(decoded.value().is_float());
        double value = decoded.value().as_double();
        if (std::isnan(example.value)) {
            CHECK(std::isnan(value));
        } else {
            CHECK(std::bit_cast<std::uint64_t>(value) == std::bit_cast<std::uint64_t>(example.value));
        }
        if (example.round_trip) {
            CHECK(hex_encode(encode(Value::floating(example.value))) == example.hex);
            CHECK(hex_encode(encode(decoded.value())) == example.hex);
        }
    }
    // 1(1363896240.5): a tagged double.
    auto tagged = decode(unhex("c1fb41d452d9ec200000"));
    REQUIRE_FALSE(tagged.is_error());
    CHECK(tagged.value().tag_number() == 1);
    CHECK(tagged.value().tag_content().as_double() == 1363896240.5);
    CHECK(hex_encode(encode(tagged.value())) == "c1fb41d452d9ec200000");
}

TEST_CASE("cbor: the streaming encoder reproduces the Appendix A indefinite-length examples")
{
    Encoder chunks;
    chunks.begin_indefinite_byte_string()
        .byte_string(unhex("0102"))
        .byte_string(unhex("030405"))
        .end_indefinite();
    CHECK(hex_encode(chunks.output()) == "5f42010243030405ff");

    Encoder text;
    text.begin_indefinite_text_string().text_string("strea").text_string("ming").end_indefinite();
    CHECK(hex_encode(text.output()) == "7f657374726561646d696e67ff");

    Encoder nested;
    nested.begin_indefinite_array().unsigned_integer(1);
    nested.array_header(2).unsigned_integer(2).unsigned_integer(3);
    nested.begin_indefinite_array().unsigned_integer(4).unsigned_integer(5).end_indefinite();
    nested.end_indefinite();
    CHECK(hex_encode(nested.output()) == "9f018202039f0405ffff");

    Encoder map;
    map.begin_indefinite_map().text_string("Fun").boolean(true).text_string("Amt").integer(-2).end_indefinite();
    CHECK(hex_encode(map.output()) == "bf6346756ef563416d7421ff");

    Encoder mixed;
    mixed.begin_indefinite_map().text_string("a").unsigned_integer(1).text_string("b");
    mixed.begin_indefinite_array().unsigned_integer(2).unsigned_integer(3).end_indefinite().end_indefinite();
    CHECK(hex_encode(mixed.output()) == "bf61610161629f0203ffff");
}

TEST_CASE("cbor: Appendix A values built in code encode to the RFC bytes")
{
    CHECK(hex_encode(encode(Value::integer(-1000))) == "3903e7");
    CHECK(hex_encode(encode(Value::negative_from_argument(UINT64_MAX))) == "3bffffffffffffffff");
    CHECK(hex_encode(encode(Value::integer(INT64_MIN))) == "3b7fffffffffffffff");
    CHECK(hex_encode(encode(Value::simple(255))) == "f8ff");
    Value map = Value::map();
    map.insert(Value::text_string("a"), Value::unsigned_integer(1));
    map.insert(Value::text_string("b"), Value::array({ Value::unsigned_integer(2), Value::unsigned_integer(3) }));
    CHECK(hex_encode(encode(map)) == "a26161016162820203");
    CHECK(hex_encode(encode(Value::tagged(32, Value::text_string("http://www.example.com"))))
        == "d82076687474703a2f2f7777772e6578616d706c652e636f6d");
}
