#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cbor/value.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

using namespace qtbox;
using namespace qtbox::cbor;

TEST_CASE("cbor diagnostic: integers print in full, down to -2^64")
{
    CHECK(to_diagnostic(Value::unsigned_integer(0)) == "0");
    CHECK(to_diagnostic(Value::unsigned_integer(UINT64_MAX)) == "18446744073709551615");
    CHECK(to_diagnostic(Value::integer(-1)) == "-1");
    CHECK(to_diagnostic(Value::negative_from_argument(UINT64_MAX - 1)) == "-18446744073709551615");
    CHECK(to_diagnostic(Value::negative_from_argument(UINT64_MAX)) == "-18446744073709551616");
}

TEST_CASE("cbor diagnostic: text is quoted with quotes, backslashes and control bytes escaped")
{
    CHECK(to_diagnostic(Value::text_string("plain")) == "\"plain\"");
    CHECK(to_diagnostic(Value::text_string("a\"b\\c")) == "\"a\\\"b\\\\c\"");
    CHECK(to_diagnostic(Value::text_string("line\n\x01")) == "\"line\\u000a\\u0001\"");
    CHECK(to_diagnostic(Value::text_string("é")) == "\"é\"");
    CHECK(to_diagnostic(Value::byte_string(Bytes { 0x00, 0xab })) == "h'00ab'");
}

TEST_CASE("cbor diagnostic: floats always show a fraction or an exponent; NaN and the infinities by name")
{
    CHECK(to_diagnostic(Value::floating(1.0)) == "1.0");
    CHECK(to_diagnostic(Value::floating(-0.0)) == "-0.0");
    CHECK(to_diagnostic(Value::floating(1.5)) == "1.5");
    CHECK(to_diagnostic(Value::floating(1e300)) == "1e+300");
    CHECK(to_diagnostic(Value::floating(std::numeric_limits<double>::quiet_NaN())) == "NaN");
    CHECK(to_diagnostic(Value::floating(INFINITY)) == "Infinity");
    CHECK(to_diagnostic(Value::floating(-INFINITY)) == "-Infinity");
}

TEST_CASE("cbor diagnostic: simple values, tags and nested containers")
{
    CHECK(to_diagnostic(Value::boolean(false)) == "false");
    CHECK(to_diagnostic(Value::boolean(true)) == "true");
    CHECK(to_diagnostic(Value::null()) == "null");
    CHECK(to_diagnostic(Value::undefined()) == "undefined");
    CHECK(to_diagnostic(Value::simple(16)) == "simple(16)");
    CHECK(to_diagnostic(Value::tagged(1, Value::unsigned_integer(1363896240))) == "1(1363896240)");
    auto map = Value::map();
    map.insert(Value::text_string("b"), Value::array({ Value::integer(-2), Value::array() }));
    map.insert(Value::unsigned_integer(1), Value::map());
    CHECK(to_diagnostic(map) == "{\"b\": [-2, []], 1: {}}");
    CHECK(to_diagnostic(Value::array()) == "[]");
}
