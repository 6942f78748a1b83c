#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cbor/encoder.hpp>

#include "../support/hex.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace qtbox;
using namespace qtbox::cbor;
using qtbox::test::unhex;

namespace {

// Decodes `hex` expecting failure; returns where and why.
DecodeFailure failure_of(std::string_view hex, DecodeOptions const& options = {})
{
    DecodeFailure failure;
    auto result = decode(unhex(hex), options, &failure);
    REQUIRE(result.is_error());
    CHECK(result.error().is(failure.kind));
    return failure;
}

void check_failure(std::string_view hex, DecodeError kind, std::size_t offset, DecodeOptions const& options = {})
{
    CAPTURE(hex);
    auto failure = failure_of(hex, options);
    CHECK(failure.kind == kind);
    CHECK(failure.offset == offset);
}

} // namespace

TEST_CASE("cbor: accepts non-preferred argument widths (the QingTian protected header)")
{
    // {1: -35} with both integers in 4-byte form, as real QingTian documents
    // write it (docs/PLATFORMS.md §Q5).
    auto header = decode(unhex("a11a000000013a00000022"));
    REQUIRE_FALSE(header.is_error());
    REQUIRE(header.value().is_map());
    auto const* algorithm = header.value().find_unsigned(1);
    REQUIRE(algorithm != nullptr);
    CHECK(algorithm->as_int64() == -35);
    // 2-byte PCR indexes and an 8-byte timestamp, also from the sample.
    CHECK(decode(unhex("190003")).value().as_unsigned() == 3);
    CHECK(decode(unhex("1b0000019c2018e1ae")).value().as_unsigned() == 1770065027502ULL);
    CHECK(decode(unhex("1800")).value().as_unsigned() == 0);
    CHECK(to_diagnostic(decode(unhex("5a00000002abcd")).value()) == "h'abcd'");
}

TEST_CASE("cbor: rejects truncated heads and lengths beyond the input")
{
    check_failure("", DecodeError::Truncated, 0);
    check_failure("19", DecodeError::Truncated, 0);
    check_failure("1b00000000", DecodeError::Truncated, 0);
    check_failure("8119", DecodeError::Truncated, 1);
    check_failure("4401", DecodeError::LengthExceedsInput, 0);
    check_failure("6461", DecodeError::LengthExceedsInput, 0);
    check_failure("5bffffffffffffffff00", DecodeError::LengthExceedsInput, 0);
    // An array claiming 2^64-1 items in a few bytes is refused before any
    // allocation, and so is a map claiming more entries than half the rest.
    check_failure("9bffffffffffffffff01", DecodeError::LengthExceedsInput, 0);
    check_failure("a3010203", DecodeError::LengthExceedsInput, 0);
}

TEST_CASE("cbor: counts are checked, items are then required one by one")
{
    // Three items announced, two present: the count passes the quick check
    // (3 <= 3 remaining bytes) only when enough bytes remain.
    check_failure("830102", DecodeError::LengthExceedsInput, 0);
    check_failure("82018201", DecodeError::LengthExceedsInput, 2);
    check_failure("9f0102", DecodeError::Truncated, 3);
    check_failure("bf0102", DecodeError::Truncated, 3);
}

TEST_CASE("cbor: rejects reserved additional information and misplaced indefinite lengths")
{
    check_failure("1c", DecodeError::ReservedAdditionalInfo, 0);
    check_failure("3d", DecodeError::ReservedAdditionalInfo, 0);
    check_failure("fe", DecodeError::ReservedAdditionalInfo, 0);
    check_failure("811e", DecodeError::ReservedAdditionalInfo, 1);
    check_failure("1f", DecodeError::IndefiniteNotAllowed, 0);
    check_failure("3f", DecodeError::IndefiniteNotAllowed, 0);
    check_failure("df01", DecodeError::IndefiniteNotAllowed, 0);
    DecodeOptions definite_only;
    definite_only.allow_indefinite = false;
    check_failure("9fff", DecodeError::IndefiniteNotAllowed, 0, definite_only);
    check_failure("81bfff", DecodeError::IndefiniteNotAllowed, 1, definite_only);
    check_failure("5fff", DecodeError::IndefiniteNotAllowed, 0, definite_only);
    CHECK_FALSE(decode(unhex("8101"), definite_only).is_error());
}

TEST_CASE("cbor: rejects a break outside an indefinite item or between a key and its value")
{
    check_failure("ff", DecodeError::UnexpectedBreak, 0);
    check_failure("8201ff", DecodeError::UnexpectedBreak, 2);
    check_failure("bf01ff", DecodeError::UnexpectedBreak, 2);
    check_failure("a1ff01", DecodeError::UnexpectedBreak, 1);
}

TEST_CASE("cbor: indefinite strings take only definite chunks of their own major type")
{
    check_failure("5f6161ff", DecodeError::BadStringChunk, 1);
    check_failure("7f4161ff", DecodeError::BadStringChunk, 1);
    check_failure("5f5f4101ffff", DecodeError::BadStringChunk, 1);
    check_failure("5f01ff", DecodeError::BadStringChunk, 1);
    check_failure("5f4101", DecodeError::Truncated, 3);
    CHECK(to_diagnostic(decode(unhex("5fff")).value()) == "h''");
    CHECK(to_diagnostic(decode(unhex("7f6061616060ff")).value()) == "\"a\"");
}

TEST_CASE("cbor: two-byte simple values below 32 are not well-formed")
{
    check_failure("f800", DecodeError::InvalidSimple, 0);
    check_failure("f814", DecodeError::InvalidSimple, 0);
    check_failure("f81f", DecodeError::InvalidSimple, 0);
    CHECK(decode(unhex("f820")).value().simple_value() == 32);
    CHECK(decode(unhex("f3")).value().simple_value() == 19);
}

TEST_CASE("cbor: text strings must be valid UTF-8, chunk by chunk")
{
    check_failure("61ff", DecodeError::InvalidUtf8, 0);
    check_failure("62c0af", DecodeError::InvalidUtf8, 0);       // overlong '/'
    check_failure("63eda080", DecodeError::InvalidUtf8, 0);     // surrogate U+D800
    check_failure("64f4900000", DecodeError::InvalidUtf8, 0);   // above U+10FFFF
    check_failure("63e08080", DecodeError::InvalidUtf8, 0);     // overlong 3-byte
    check_failure("62e6b0", DecodeError::InvalidUtf8, 0);       // cut sequence
    check_failure("8261616180", DecodeError::InvalidUtf8, 3);   // lone continuation
    // A character split across two chunks is invalid (§3.2.3).
    check_failure("7f62e6b061b4ff", DecodeError::InvalidUtf8, 1);
    CHECK(decode(unhex("64f48fbfbf")).value().as_text() == "\xf4\x8f\xbf\xbf"); // U+10FFFF
    CHECK(is_valid_utf8(as_bytes("plain ascii")));
    CHECK_FALSE(is_valid_utf8(as_bytes("\xc1\x81")));
}

TEST_CASE("cbor: duplicate map keys are rejected, by value not by encoding")
{
    check_failure("a201020103", DecodeError::DuplicateKey, 3);
    // 1 and 1 written with a 4-byte argument are the same key.
    check_failure("a2010218010103", DecodeError::DuplicateKey, 3);
    check_failure("a2616101616102", DecodeError::DuplicateKey, 4);
    check_failure("bf010203040105ff", DecodeError::DuplicateKey, 5);
    // Integers and floats are different keys; so are 1 and -2, "a" and h'61'.
    CHECK_FALSE(decode(unhex("a201f5f93c00f4")).is_error());
    CHECK_FALSE(decode(unhex("a4010221036161044161f6")).is_error());
    // Nested equal keys: [1] and [1].
    check_failure("a2810100810102", DecodeError::DuplicateKey, 4);

    // A large map (sorted check): keys 0..99 then 57 again; the offset is
    // the repeated key's.
    Encoder encoder;
    encoder.map_header(101);
    for (unsigned key = 0; key < 100; ++key)
        encoder.unsigned_integer(key).null();
    std::size_t repeated_at = encoder.size();
    encoder.unsigned_integer(57).null();
    DecodeFailure failure;
    auto result = decode(encoder.output(), {}, &failure);
    REQUIRE(result.is_error());
    CHECK(failure.kind == DecodeError::DuplicateKey);
    CHECK(failure.offset == repeated_at);
}

TEST_CASE("cbor: maps keep insertion order, and lookups find text and integer keys")
{
    auto map = decode(unhex("a3617a01616102190005f5")).release_value();
    REQUIRE(map.as_map().size() == 3);
    CHECK(map.as_map()[0].key.as_text() == "z");
    CHECK(map.as_map()[1].key.as_text() == "a");
    CHECK(map.find("a")->as_unsigned() == 2);
    CHECK(map.find_unsigned(5)->as_bool());
    CHECK(map.find("missing") == nullptr);
    CHECK(map.find_unsigned(6) == nullptr);
    CHECK(map.find(Value::text_string("z"))->as_unsigned() == 1);
}

TEST_CASE("cbor: trailing bytes are rejected unless a prefix decode is asked for")
{
    check_failure("0102", DecodeError::TrailingBytes, 1);
    check_failure("8101ff", DecodeError::TrailingBytes, 2);
    auto prefix = decode_prefix(unhex("820102ff00"));
    REQUIRE_FALSE(prefix.is_error());
    CHECK(prefix.value().size == 3);
    CHECK(to_diagnostic(prefix.value().value) == "[1, 2]");
}

TEST_CASE("cbor: rejects nesting deeper than the limit")
{
    DecodeOptions options;
    options.max_depth = 3;
    CHECK_FALSE(decode(unhex("81818101"), options).is_error());
    check_failure("8181818101", DecodeError::DepthLimit, 3, options);
    check_failure("c1c1c1c101", DecodeError::DepthLimit, 3, options);
    check_failure("a101a101a101a10101", DecodeError::DepthLimit, 6, options);
    // The default limit stops a deep bomb long before the stack could.
    Bytes bomb(100000, 0x81);
    bomb.push_back(0x00);
    DecodeFailure failure;
    CHECK(decode(bomb, {}, &failure).is_error());
    CHECK(failure.kind == DecodeError::DepthLimit);
    CHECK(failure.offset == DEFAULT_MAX_DEPTH);
}

TEST_CASE("cbor: rejects more items than the limit, string chunks included")
{
    DecodeOptions options;
    options.max_items = 4;
    CHECK_FALSE(decode(unhex("83010203"), options).is_error());
    check_failure("8401020304", DecodeError::ItemLimit, 4, options);
    check_failure("5f40404040ff", DecodeError::ItemLimit, 4, options);
    check_failure("a201020304", DecodeError::ItemLimit, 4, options);
}

TEST_CASE("cbor: the error message names the problem and the offset")
{
    auto result = decode(unhex("820161"));
    REQUIRE(result.is_error());
    CHECK(result.error().message() == "CBOR: length exceeds the remaining input at byte 2");
    CHECK(result.error().is(DecodeError::LengthExceedsInput));
}

TEST_CASE("cbor: decoded values compare by data-model equality")
{
    CHECK(decode(unhex("1a00000001")).value() == Value::unsigned_integer(1));
    CHECK(decode(unhex("9f01ff")).value() == decode(unhex("8101")).value());
    CHECK(decode(unhex("f97e00")).value() == decode(unhex("fb7ff8000000000000")).value());
    // NaN payloads and signs are not kept (found by fuzz/cbor_decode).
    CHECK(decode(unhex("f9ff00")).value() == Value::floating(NAN));
    CHECK(hex_encode(encode(decode(unhex("fbfff8000000000001")).value())) == "f97e00");
    CHECK(hex_encode(encode(decode(unhex("fa7fc00001")).value())) == "f97e00");
    CHECK_FALSE(Value::floating(0.0) == Value::floating(-0.0));
    CHECK_FALSE(Value::unsigned_integer(1) == Value::floating(1.0));
    CHECK_FALSE(Value::text_string("a") == Value::byte_string(as_bytes("a")));
    CHECK(Value() == Value::null());
}
