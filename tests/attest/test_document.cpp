#include "../support/hex.hpp"
#include "fixture.hpp"

#include <qtbox/attest/document.hpp>
#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/encoder.hpp>

#include <doctest/doctest.h>

#include <algorithm>

using namespace qtbox;
using namespace qtbox::attest;
using test::unhex;

namespace {

ParseError parse_error_of(ByteView cose)
{
    auto parsed = parse_document(cose);
    REQUIRE(parsed.is_error());
    for (auto kind : { ParseError::TooLarge, ParseError::Envelope, ParseError::Payload, ParseError::MissingField,
             ParseError::UnknownField, ParseError::FieldType, ParseError::FieldValue, ParseError::Certificate }) {
        if (parsed.error().is(kind))
            return kind;
    }
    FAIL("unexpected error: " << parsed.error().message());
    return ParseError::Envelope;
}

// The fixture's payload as a map Value, for tests that edit one field.
cbor::Value payload_value(Document const& document)
{
    return cbor::decode(encode_qingtian_payload(document)).release_value();
}

cbor::Value* field(cbor::Value& map, std::string_view name)
{
    for (auto& entry : map.as_map()) {
        if (entry.key.is_text() && entry.key.as_text() == name)
            return &entry.value;
    }
    return nullptr;
}

void remove_field(cbor::Value& map, std::string_view name)
{
    auto& entries = map.as_map();
    std::erase_if(entries, [&](cbor::MapEntry const& entry) { return entry.key.as_text() == name; });
}

} // namespace

TEST_CASE("attest: parses the real Nitro vector (indefinite map, Nitro key order)")
{
    Bytes cose = test::nitro_vector();
    CHECK(cose.size() == 4556);
    auto parsed = parse_document(cose);
    REQUIRE_FALSE(parsed.is_error());
    Document const& document = parsed.value().document;
    CHECK(document.profile == Profile::Nitro);
    CHECK(document.module_id == "i-0340e0cb833504eb6-enc019c12d31f78864d");
    CHECK(document.timestamp == 1770065027502ULL);
    CHECK(document.digest == "SHA384");
    REQUIRE(document.pcrs.size() == 16);
    for (unsigned index = 0; index < 16; ++index)
        CHECK(document.pcrs[index].index == index);
    CHECK(hex_encode(*document.pcr(0)) == test::NITRO_PCR0);
    CHECK(hex_encode(*document.pcr(4))
        == "eb85f08a56f45ba20730ca9f061557e0d8361000b03348bb7afb1af949bcd6af7a7bb863e93e8a89326ff79bb021074b");
    CHECK(*document.pcr(3) == Bytes(48, 0));
    CHECK(document.certificate.size() == 640);
    REQUIRE(document.cabundle.size() == 4);
    CHECK(document.cabundle[0].size() == 533);
    CHECK(hex_encode(parsed.value().bundle[0].sha256_fingerprint()) == test::NITRO_ROOT_SHA256);
    CHECK(as_chars(*document.public_key) == "dummy");
    CHECK(document.user_data->size() == 68);
    CHECK(hex_encode(*document.nonce) == "0123456789abcdef0123456789abcdef01234567");
    CHECK(parsed.value().leaf.subject_common_name() == "i-0340e0cb833504eb6-enc019c12d31f78864d.us-east-2.aws");
    CHECK_FALSE(parsed.value().envelope.tagged);
}

TEST_CASE("attest: the QingTian payload has docs/FORMATS.md §4's exact layout")
{
    auto chain = test::make_chain();
    Document document = test::qingtian_document(chain);
    document.user_data = to_bytes("hello");
    Bytes payload = encode_qingtian_payload(document);
    // a9, "module_id" + text, "timestamp" + 1b + 8 bytes, "digest" "SHA384", "pcrs" a(16) ...
    std::string hex = hex_encode(payload);
    CHECK(hex.starts_with("a9" "696d6f64756c655f6964" "7839"));
    CHECK(hex.find("6974696d657374616d70" "1b000001b8dac5b400" "66646967657374" "66534841333834" "6470637273" "b0"
              "00" "5830")
        != std::string::npos);
    CHECK(hex.ends_with("69757365725f64617461" "4568656c6c6f" "656e6f6e6365" "40" "6a7075626c69635f6b6579" "40"));
    // Key order as docs/FORMATS.md §4 lists it.
    auto map = cbor::decode(payload).release_value();
    std::vector<std::string_view> keys;
    for (auto const& entry : map.as_map())
        keys.push_back(entry.key.as_text());
    CHECK(keys == std::vector<std::string_view> { "module_id", "timestamp", "digest", "pcrs", "certificate", "cabundle",
              "user_data", "nonce", "public_key" });

    auto parsed = parse_document(test::sign_document(document, chain.leaf_key));
    REQUIRE_FALSE(parsed.is_error());
    CHECK(parsed.value().document.profile == Profile::QingTian);
    CHECK(parsed.value().document.pcrs == document.pcrs);
    CHECK(parsed.value().document.user_data == to_bytes("hello"));
    CHECK(parsed.value().document.nonce == Bytes {});
    CHECK(parsed.value().bundle.size() == 2);
}

TEST_CASE("attest: accepts any key order, an indefinite map, tag 18 and non-preferred integer widths")
{
    auto chain = test::make_chain();
    Document document = test::qingtian_document(chain);
    cbor::Value map = payload_value(document);
    cbor::Encoder encoder;
    encoder.begin_indefinite_map();
    auto const& entries = map.as_map();
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
        encoder.value(it->key);
        if (it->key.as_text() == "pcrs") {
            encoder.map_header(it->value.as_map().size());
            for (auto const& pcr : it->value.as_map())
                encoder.unsigned_integer(pcr.key.as_unsigned(), cbor::Width::Byte2).value(pcr.value);
        } else {
            encoder.value(it->value);
        }
    }
    encoder.end_indefinite();
    cose::SignOptions options;
    options.tagged = true;
    options.protected_header = cose::algorithm_header(cose::Algorithm::ES384, cbor::Width::Byte4);
    auto cose = cose::sign_sign1(encoder.output(), chain.leaf_key, options);
    REQUIRE_FALSE(cose.is_error());
    auto parsed = parse_document(cose.value());
    REQUIRE_FALSE(parsed.is_error());
    CHECK(parsed.value().envelope.tagged);
    CHECK(parsed.value().document.module_id == document.module_id);
    CHECK(parsed.value().document.pcrs == document.pcrs);
}

TEST_CASE("attest: Nitro documents may carry null optionals; QingTian ones may not")
{
    auto chain = test::make_chain();
    Document document = test::qingtian_document(chain);
    cbor::Value map = payload_value(document);
    *field(map, "nonce") = cbor::Value::null();
    CHECK(parse_error_of(test::sign_payload(cbor::encode(map), chain.leaf_key)) == ParseError::FieldType);

    *field(map, "module_id") = cbor::Value::text_string("i-0123456789abcdef0-enc0123456789abcdef");
    remove_field(map, "user_data");
    auto parsed = parse_document(test::sign_payload(cbor::encode(map), chain.leaf_key));
    REQUIRE_FALSE(parsed.is_error());
    CHECK(parsed.value().document.profile == Profile::Nitro);
    CHECK_FALSE(parsed.value().document.nonce.has_value());
    CHECK_FALSE(parsed.value().document.user_data.has_value());
    CHECK(parsed.value().document.public_key == Bytes {});
}

TEST_CASE("attest: each field is checked for presence, type and range")
{
    auto chain = test::make_chain();
    Document const base = test::qingtian_document(chain);
    auto check = [&](auto edit, ParseError expected) {
        cbor::Value map = payload_value(base);
        edit(map);
        CHECK(parse_error_of(test::sign_payload(cbor::encode(map), chain.leaf_key)) == expected);
    };
    check([](cbor::Value& map) { remove_field(map, "module_id"); }, ParseError::MissingField);
    check([](cbor::Value& map) { remove_field(map, "cabundle"); }, ParseError::MissingField);
    check([](cbor::Value& map) { remove_field(map, "public_key"); }, ParseError::MissingField);
    check([](cbor::Value& map) { map.insert(cbor::Value::text_string("extra"), cbor::Value::null()); },
        ParseError::UnknownField);
    check([](cbor::Value& map) { map.insert(cbor::Value::unsigned_integer(1), cbor::Value::null()); },
        ParseError::UnknownField);
    check([](cbor::Value& map) { *field(map, "module_id") = cbor::Value::byte_string(as_bytes("x")); },
        ParseError::FieldType);
    check([](cbor::Value& map) { *field(map, "module_id") = cbor::Value::text_string(""); }, ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "module_id") = cbor::Value::text_string(std::string(129, 'a')); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "timestamp") = cbor::Value::integer(-1); }, ParseError::FieldType);
    check([](cbor::Value& map) { *field(map, "timestamp") = cbor::Value::unsigned_integer(0); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "timestamp") = cbor::Value::unsigned_integer(UINT64_MAX); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "digest") = cbor::Value::text_string("SHA256"); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "pcrs") = cbor::Value::array(); }, ParseError::FieldType);
    check([](cbor::Value& map) { field(map, "pcrs")->as_map()[3].value = cbor::Value::byte_string(Bytes(47)); },
        ParseError::FieldValue);
    // Nitro allows 32-byte PCRs; QingTian only 48.
    check([](cbor::Value& map) { field(map, "pcrs")->as_map()[3].value = cbor::Value::byte_string(Bytes(32)); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { field(map, "pcrs")->as_map()[3].key = cbor::Value::unsigned_integer(32); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { field(map, "pcrs")->as_map()[3].key = cbor::Value::text_string("3"); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { field(map, "pcrs")->as_map()[5].key = cbor::Value::unsigned_integer(20); },
        ParseError::FieldValue); // PCR5 missing
    check([](cbor::Value& map) { field(map, "pcrs")->as_map()[3].value = cbor::Value::null(); },
        ParseError::FieldType);
    check([](cbor::Value& map) { *field(map, "certificate") = cbor::Value::byte_string(Bytes {}); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "certificate") = cbor::Value::byte_string(Bytes(4097, 0x30)); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "certificate") = cbor::Value::byte_string(as_bytes("not DER")); },
        ParseError::Certificate);
    check([](cbor::Value& map) { field(map, "cabundle")->as_array()[1] = cbor::Value::byte_string(Bytes(10, 0x30)); },
        ParseError::Certificate);
    check([](cbor::Value& map) { *field(map, "cabundle") = cbor::Value::array(); }, ParseError::FieldValue);
    check([](cbor::Value& map) {
        auto& bundle = field(map, "cabundle")->as_array();
        while (bundle.size() <= MAX_CABUNDLE)
            bundle.push_back(bundle[0]);
    },
        ParseError::FieldValue);
    check([](cbor::Value& map) { field(map, "cabundle")->as_array()[0] = cbor::Value::text_string("x"); },
        ParseError::FieldType);
    check([](cbor::Value& map) { *field(map, "user_data") = cbor::Value::byte_string(Bytes(513)); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "nonce") = cbor::Value::byte_string(Bytes(513)); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "public_key") = cbor::Value::byte_string(Bytes(1025)); },
        ParseError::FieldValue);
    check([](cbor::Value& map) { *field(map, "public_key") = cbor::Value::text_string("key"); },
        ParseError::FieldType);
}

TEST_CASE("attest: limits at their edges are accepted")
{
    auto chain = test::make_chain();
    Document document = test::qingtian_document(chain);
    document.user_data = Bytes(QINGTIAN_MAX_USER_DATA, 1);
    document.nonce = Bytes(QINGTIAN_MAX_NONCE, 2);
    document.public_key = Bytes(QINGTIAN_MAX_PUBLIC_KEY, 3);
    for (unsigned index = 16; index < PCR_COUNT; ++index)
        document.pcrs.push_back({ index, Bytes(PCR_SIZE, 0xee) });
    auto parsed = parse_document(test::sign_document(document, chain.leaf_key));
    REQUIRE_FALSE(parsed.is_error());
    CHECK(parsed.value().document.pcrs.size() == PCR_COUNT);
}

TEST_CASE("attest: the envelope must be an ES384 COSE_Sign1 within the size limit")
{
    auto chain = test::make_chain();
    Document document = test::qingtian_document(chain);
    Bytes cose = test::sign_document(document, chain.leaf_key);
    Bytes trailing = cose;
    trailing.push_back(0);
    CHECK(parse_error_of(trailing) == ParseError::Envelope);
    CHECK(parse_error_of(ByteView(cose).first(cose.size() - 1)) == ParseError::Envelope);
    CHECK(parse_error_of(Bytes(MAX_DOCUMENT_SIZE + 1, 0x84)) == ParseError::TooLarge);
    CHECK(parse_error_of(as_bytes("")) == ParseError::Envelope);

    auto p256 = crypto::PrivateKey::generate(crypto::KeyType::EcP256).release_value();
    CHECK(parse_error_of(test::sign_document(document, p256)) == ParseError::Envelope);

    // Payload problems: not CBOR, not a map, a duplicate key.
    CHECK(parse_error_of(test::sign_payload(as_bytes("\xff"), chain.leaf_key)) == ParseError::Payload);
    CHECK(parse_error_of(test::sign_payload(unhex("8100"), chain.leaf_key)) == ParseError::Payload);
    cbor::Encoder duplicate;
    duplicate.map_header(2).text_string("nonce").byte_string({}).text_string("nonce").byte_string({});
    CHECK(parse_error_of(test::sign_payload(duplicate.output(), chain.leaf_key)) == ParseError::Payload);
    Bytes payload = encode_qingtian_payload(document);
    payload.push_back(0x00);
    CHECK(parse_error_of(test::sign_payload(payload, chain.leaf_key)) == ParseError::Payload);

    // A document whose payload grows past 0x6000 bytes.
    document.cabundle = std::vector<Bytes>(MAX_CABUNDLE, Bytes(QINGTIAN_MAX_CERTIFICATE, 0x30));
    CHECK(parse_error_of(test::sign_document(document, chain.leaf_key)) == ParseError::TooLarge);
}

TEST_CASE("attest: decode_input accepts raw COSE, and base64 in either alphabet with whitespace")
{
    Bytes cose = test::nitro_vector();
    CHECK(decode_input(cose).value() == cose);
    std::string text = base64_encode(cose);
    CHECK(decode_input(as_bytes(text)).value() == cose);
    std::string wrapped;
    for (std::size_t i = 0; i < text.size(); i += 76)
        wrapped += text.substr(i, 76) + "\n";
    CHECK(decode_input(as_bytes(wrapped)).value() == cose);
    std::string url = text;
    std::replace(url.begin(), url.end(), '+', '-');
    std::replace(url.begin(), url.end(), '/', '_');
    CHECK(decode_input(as_bytes(url)).value() == cose);
    auto broken = decode_input(as_bytes("abcde"));
    REQUIRE(broken.is_error());
    CHECK(broken.error().is(ParseError::Envelope));
}
