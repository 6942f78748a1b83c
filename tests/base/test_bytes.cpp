#include <qtbox/base/bytes.hpp>

#include <doctest/doctest.h>

using namespace qtbox;

TEST_CASE("hex: round trip and case")
{
    Bytes bytes { 0x00, 0x01, 0xab, 0xff };
    CHECK(hex_encode(bytes) == "0001abff");
    CHECK(hex_decode("0001ABff").value() == bytes);
    CHECK(hex_decode("0x0001abff").value() == bytes);
    CHECK(hex_decode("").value().empty());
}

TEST_CASE("hex: rejects odd length and bad digits")
{
    CHECK(hex_decode("abc").is_error());
    CHECK(hex_decode("zz").is_error());
    CHECK(hex_decode("0g").error().message().find("offset 1") != std::string::npos);
}

TEST_CASE("base64: RFC 4648 section 10 vectors")
{
    std::pair<char const*, char const*> vectors[] = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
    };
    for (auto [plain, encoded] : vectors) {
        CHECK(base64_encode(as_bytes(plain)) == encoded);
        CHECK(as_chars(base64_decode(encoded).value()) == plain);
    }
}

TEST_CASE("base64: whitespace, missing padding and the URL-safe alphabet are accepted")
{
    CHECK(as_chars(base64_decode("Zm9v\nYmE").value()) == "fooba");
    CHECK(base64_decode("-_8=").value() == Bytes { 0xfb, 0xff });
    CHECK(base64_decode("+/8=").value() == Bytes { 0xfb, 0xff });
}

TEST_CASE("base64: rejects truncation, stray characters and data after padding")
{
    CHECK(base64_decode("Z").is_error());
    CHECK(base64_decode("Zm9v!").is_error());
    CHECK(base64_decode("Zg==Zg==").is_error());
    CHECK(base64_decode("Zg===").is_error());
    CHECK(base64_decode("=").is_error());
}

TEST_CASE("utf8_sequence_length: the boundaries of Unicode Table 3-7")
{
    CHECK(utf8_sequence_length(as_bytes("a")) == 1);
    CHECK(utf8_sequence_length(as_bytes("\xc2\x80")) == 2);           // U+0080
    CHECK(utf8_sequence_length(as_bytes("\xe0\xa0\x80")) == 3);       // U+0800
    CHECK(utf8_sequence_length(as_bytes("\xed\x9f\xbf")) == 3);       // U+D7FF
    CHECK(utf8_sequence_length(as_bytes("\xf0\x90\x80\x80")) == 4);   // U+10000
    CHECK(utf8_sequence_length(as_bytes("\xf4\x8f\xbf\xbf")) == 4);   // U+10FFFF
    CHECK(utf8_sequence_length(as_bytes("\xc3\xa9tail")) == 2);       // only the first sequence
    CHECK(utf8_sequence_length(ByteView {}) == 0);
    CHECK(utf8_sequence_length(as_bytes("\x80")) == 0);               // lone continuation
    CHECK(utf8_sequence_length(as_bytes("\xc1\xbf")) == 0);           // overlong
    CHECK(utf8_sequence_length(as_bytes("\xe0\x9f\xbf")) == 0);       // overlong
    CHECK(utf8_sequence_length(as_bytes("\xed\xa0\x80")) == 0);       // surrogate U+D800
    CHECK(utf8_sequence_length(as_bytes("\xf0\x8f\xbf\xbf")) == 0);   // overlong
    CHECK(utf8_sequence_length(as_bytes("\xf4\x90\x80\x80")) == 0);   // above U+10FFFF
    CHECK(utf8_sequence_length(as_bytes("\xf5\x80\x80\x80")) == 0);
    CHECK(utf8_sequence_length(as_bytes("\xe2\x82")) == 0);           // truncated
    CHECK(utf8_sequence_length(as_bytes("\xe2\x28\xa1")) == 0);       // bad continuation
}

TEST_CASE("constant_time_equal compares contents and lengths")
{
    Bytes a { 1, 2, 3 };
    Bytes b { 1, 2, 3 };
    Bytes c { 1, 2, 4 };
    Bytes d { 1, 2 };
    CHECK(constant_time_equal(a, b));
    CHECK_FALSE(constant_time_equal(a, c));
    CHECK_FALSE(constant_time_equal(a, d));
    CHECK(constant_time_equal(Bytes {}, Bytes {}));
}
