#include "../support/hex.hpp"
#include "support.hpp"

#include <qtbox/cbor/encoder.hpp>
#include <qtbox/qtsm/protocol.hpp>

#include <doctest/doctest.h>

using namespace qtbox;
using namespace qtbox::test;
using qtsm::QtsmError;

namespace {

QtsmError decode_error(ByteView encoded)
{
    auto result = qtsm::decode_request(encoded);
    REQUIRE(result.is_error());
    return result.error().code_as<QtsmError>().value();
}

Bytes attestation_with(std::string_view field, std::size_t size)
{
    cbor::Encoder encoder;
    encoder.map_header(1).text_string("Attestation").map_header(1).text_string(field).byte_string(Bytes(size, 0xAB));
    return encoder.take();
}

Bytes lock_range(std::size_t count)
{
    cbor::Encoder encoder;
    encoder.map_header(1).text_string("LockPCRs").map_header(1).text_string("range").array_header(count);
    for (std::size_t i = 0; i < count; ++i)
        encoder.unsigned_integer(16 + i % 16);
    return encoder.take();
}

} // namespace

TEST_CASE("qtsm: requests encode as NSM-style CBOR (docs/PLATFORMS.md §N3.2)")
{
    CHECK(hex_encode(qtsm::encode_request(qtsm::DescribePcrRequest { 16 }))
        == "a16b4465736372696265504352a165696e64657810");
    CHECK(hex_encode(qtsm::encode_request(qtsm::ExtendPcrRequest { 16, { 1, 2, 3 } }))
        == "a169457874656e64504352a265696e64657810646461746143010203");
    CHECK(hex_encode(qtsm::encode_request(qtsm::AttestationRequest {}))
        == "a16b4174746573746174696f6ea369757365725f64617461f6656e6f6e6365f66a7075626c69635f6b6579f6");
    CHECK(hex_encode(qtsm::encode_request(qtsm::GetRandomRequest {})) == "6947657452616e646f6d");
    CHECK(hex_encode(qtsm::encode_request(qtsm::DescribeQtsmRequest {})) == "6c44657363726962655154534d");
    // docs/FORMATS.md §5: LockPCRs takes a list, not NSM's count.
    CHECK(hex_encode(qtsm::encode_request(qtsm::LockPcrsRequest { { 16, 17 } }))
        == "a1684c6f636b50435273a16572616e6765821011");
    CHECK(hex_encode(qtsm::encode_error(QtsmError::InvalidIndex)) == "a1654572726f726c496e76616c6964496e646578");
}

TEST_CASE("qtsm: every request survives an encode/decode round trip")
{
    std::vector<qtsm::Request> requests {
        qtsm::DescribePcrRequest { 31 },
        qtsm::ExtendPcrRequest { 17, { 9, 8, 7 } },
        qtsm::LockPcrRequest { 20 },
        qtsm::LockPcrsRequest { { 16, 30 } },
        qtsm::DescribeQtsmRequest {},
        qtsm::AttestationRequest { Bytes { 1 }, std::nullopt, Bytes { 2, 3 } },
        qtsm::GetRandomRequest {},
    };
    for (auto const& request : requests) {
        auto decoded = must(qtsm::decode_request(qtsm::encode_request(request)));
        CHECK(decoded.index() == request.index());
        CHECK(qtsm::encode_request(decoded) == qtsm::encode_request(request));
    }
    auto attestation = std::get<qtsm::AttestationRequest>(must(qtsm::decode_request(qtsm::encode_request(requests[5]))));
    CHECK(attestation.user_data == Bytes { 1 });
    CHECK_FALSE(attestation.nonce.has_value());
    CHECK(attestation.public_key == Bytes { 2, 3 });
}

TEST_CASE("qtsm: every response survives an encode/decode round trip")
{
    qtsm::DescribeQtsmResponse description;
    description.module_id = "i.enc-0011223344556677";
    description.max_pcrs = 32;
    description.locked_pcrs = { 0, 1, 16 };
    description.digest = "SHA384";
    std::vector<qtsm::Response> responses {
        qtsm::DescribePcrResponse { true, Bytes(48, 1) },
        qtsm::ExtendPcrResponse { Bytes(48, 2) },
        qtsm::LockPcrResponse {},
        qtsm::LockPcrsResponse {},
        description,
        qtsm::AttestationResponse { Bytes(100, 3) },
        qtsm::GetRandomResponse { Bytes(256, 4) },
        qtsm::ErrorResponse { QtsmError::ReadOnlyIndex },
    };
    for (auto const& response : responses) {
        auto decoded = must(qtsm::decode_response(qtsm::encode_response(response)));
        CHECK(decoded.index() == response.index());
        CHECK(qtsm::encode_response(decoded) == qtsm::encode_response(response));
    }
    auto decoded = std::get<qtsm::DescribeQtsmResponse>(must(qtsm::decode_response(qtsm::encode_response(description))));
    CHECK(decoded.locked_pcrs == std::vector<std::uint16_t> { 0, 1, 16 });
    CHECK(decoded.module_id == description.module_id);
}

TEST_CASE("qtsm: malformed CBOR is InvalidArgument")
{
    CHECK(decode_error(unhex("ff")) == QtsmError::InvalidArgument);
    CHECK(decode_error(unhex("a1")) == QtsmError::InvalidArgument);
    CHECK(decode_error(unhex("6947657452616e646f")) == QtsmError::InvalidArgument); // truncated text
    CHECK(decode_error(unhex("6947657452616e646f6d00")) == QtsmError::InvalidArgument); // trailing byte
    CHECK(decode_error({}) == QtsmError::InvalidArgument);
}

TEST_CASE("qtsm: requests of the wrong shape are InvalidArgument, unknown ones InvalidOperation")
{
    CHECK(decode_error(unhex("6a4672")) == QtsmError::InvalidArgument); // truncated, not unknown
    cbor::Encoder unknown;
    unknown.text_string("Frobnicate");
    CHECK(decode_error(unknown.output()) == QtsmError::InvalidOperation);
    cbor::Encoder unknown_map;
    unknown_map.map_header(1).text_string("Frobnicate").map_header(0);
    CHECK(decode_error(unknown_map.output()) == QtsmError::InvalidOperation);
    cbor::Encoder bare;
    bare.text_string("DescribePCR");
    CHECK(decode_error(bare.output()) == QtsmError::InvalidArgument);
    cbor::Encoder two;
    two.map_header(2).text_string("LockPCR").map_header(1).text_string("index").unsigned_integer(16);
    two.text_string("GetRandom").null();
    CHECK(decode_error(two.output()) == QtsmError::InvalidArgument);
    CHECK(decode_error(unhex("01")) == QtsmError::InvalidArgument);
    // DescribeQTSM has no fields: sending it as a map is a mistake.
    cbor::Encoder describe_map;
    describe_map.map_header(1).text_string("DescribeQTSM").map_header(0);
    CHECK(decode_error(describe_map.output()) == QtsmError::InvalidArgument);
}

TEST_CASE("qtsm: fields are checked for presence, type and range")
{
    auto index_request = [](auto write_index) {
        cbor::Encoder encoder;
        encoder.map_header(1).text_string("DescribePCR").map_header(1).text_string("index");
        write_index(encoder);
        return encoder.take();
    };
    CHECK(decode_error(index_request([](cbor::Encoder& e) { e.unsigned_integer(65536); })) == QtsmError::InvalidArgument);
    CHECK(decode_error(index_request([](cbor::Encoder& e) { e.integer(-1); })) == QtsmError::InvalidArgument);
    CHECK(decode_error(index_request([](cbor::Encoder& e) { e.text_string("16"); })) == QtsmError::InvalidArgument);
    // A u16 written with a 4-byte argument is still a u16.
    auto wide = must(qtsm::decode_request(
        index_request([](cbor::Encoder& e) { e.unsigned_integer(17, cbor::Width::Byte4); })));
    CHECK(std::get<qtsm::DescribePcrRequest>(wide).index == 17);

    cbor::Encoder missing;
    missing.map_header(1).text_string("ExtendPCR").map_header(1).text_string("index").unsigned_integer(16);
    CHECK(decode_error(missing.output()) == QtsmError::InvalidArgument);
    cbor::Encoder extra;
    extra.map_header(1).text_string("LockPCR").map_header(2).text_string("index").unsigned_integer(16);
    extra.text_string("force").boolean(true);
    CHECK(decode_error(extra.output()) == QtsmError::InvalidArgument);
    cbor::Encoder text_data;
    text_data.map_header(1).text_string("ExtendPCR").map_header(2).text_string("index").unsigned_integer(16);
    text_data.text_string("data").text_string("abc");
    CHECK(decode_error(text_data.output()) == QtsmError::InvalidArgument);
    cbor::Encoder wrong_optional;
    wrong_optional.map_header(1).text_string("Attestation").map_header(1).text_string("nonce").unsigned_integer(5);
    CHECK(decode_error(wrong_optional.output()) == QtsmError::InvalidArgument);
    // Indefinite lengths are never sent by a QTSM client.
    CHECK(decode_error(unhex("bf6b4465736372696265504352a165696e64657810ff")) == QtsmError::InvalidArgument);
}

TEST_CASE("qtsm: size limits give InputTooLarge (user_data 513, nonce 513, public_key 1025)")
{
    CHECK(!qtsm::decode_request(attestation_with("user_data", 512)).is_error());
    CHECK(decode_error(attestation_with("user_data", 513)) == QtsmError::InputTooLarge);
    CHECK(!qtsm::decode_request(attestation_with("nonce", 512)).is_error());
    CHECK(decode_error(attestation_with("nonce", 513)) == QtsmError::InputTooLarge);
    CHECK(!qtsm::decode_request(attestation_with("public_key", 1024)).is_error());
    CHECK(decode_error(attestation_with("public_key", 1025)) == QtsmError::InputTooLarge);
    CHECK(!qtsm::decode_request(lock_range(32)).is_error());
    CHECK(decode_error(lock_range(33)) == QtsmError::InputTooLarge);
    CHECK(decode_error(lock_range(500)) == QtsmError::InputTooLarge);
    CHECK(decode_error(Bytes(qtsm::MAX_REQUEST_SIZE + 1, 0x40)) == QtsmError::InputTooLarge);
}

TEST_CASE("qtsm: the client's decoder refuses what is not a response")
{
    auto response_error = [](ByteView encoded) {
        auto result = qtsm::decode_response(encoded);
        REQUIRE(result.is_error());
        return result.error().code_as<QtsmError>().value();
    };
    cbor::Encoder unknown_error;
    unknown_error.map_header(1).text_string("Error").text_string("Oops");
    CHECK(response_error(unknown_error.output()) == QtsmError::InvalidResponse);
    CHECK(response_error(unhex("ff")) == QtsmError::InvalidResponse);
    cbor::Encoder missing;
    missing.map_header(1).text_string("DescribePCR").map_header(1).text_string("data").byte_string(Bytes(48, 0));
    CHECK(response_error(missing.output()) == QtsmError::InvalidResponse);
    cbor::Encoder request_text;
    request_text.text_string("GetRandom");
    CHECK(response_error(request_text.output()) == QtsmError::InvalidResponse);

    auto error = must(qtsm::decode_response(qtsm::encode_error(QtsmError::InputTooLarge)));
    CHECK(std::get<qtsm::ErrorResponse>(error).code == QtsmError::InputTooLarge);
    CHECK(qtsm::response_matches(qtsm::GetRandomRequest {}, error));
    CHECK(qtsm::response_matches(qtsm::LockPcrRequest { 16 }, qtsm::LockPcrResponse {}));
    CHECK_FALSE(qtsm::response_matches(qtsm::LockPcrRequest { 16 }, qtsm::LockPcrsResponse {}));
}

TEST_CASE("qtsm: error names are QingTian's")
{
    CHECK(qtsm::error_name(QtsmError::ReadOnlyIndex) == "ReadOnlyIndex");
    CHECK(qtsm::error_from_name("InputTooLarge") == QtsmError::InputTooLarge);
    CHECK_FALSE(qtsm::error_from_name("NoError").has_value());
    CHECK(static_cast<int>(QtsmError::InternalError) == 8);
}
