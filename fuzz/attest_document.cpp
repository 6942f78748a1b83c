// libFuzzer target: attest-verify's document parser: input decoding (raw or
// base64), COSE_Sign1, the payload map, every field's checks and the X.509
// parsing of the certificates (docs/FORMATS.md §9 step 1).
//
// Property beyond "no crash, no hang, no leak": a document that parses,
// re-encoded in the QingTian layout (docs/FORMATS.md §4) with the same signature bytes,
// parses again to the same fields whenever the re-encoding is no larger.
#include <qtbox/attest/document.hpp>
#include <qtbox/cose/sign1.hpp>

#include <cstdint>
#include <cstdlib>

namespace {

qtbox::Bytes or_empty(std::optional<qtbox::Bytes> const& field)
{
    return field ? *field : qtbox::Bytes {};
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    using namespace qtbox;
    auto cose = attest::decode_input(ByteView(data, size));
    if (cose.is_error())
        return 0;
    auto parsed = attest::parse_document(cose.value());
    if (parsed.is_error())
        return 0;
    attest::Document const& document = parsed.value().document;
    if (document.pcrs.empty() || document.cabundle.empty() || document.certificate.empty()
        || document.cabundle.size() != parsed.value().bundle.size())
        std::abort();

    cose::Sign1 again;
    again.protected_header = cose::algorithm_header(cose::Algorithm::ES384);
    again.unprotected = cbor::Value::map();
    again.payload = attest::encode_qingtian_payload(document);
    again.signature = parsed.value().envelope.signature;
    Bytes encoded = cose::encode_sign1(again);
    if (encoded.size() > cose.value().size())
        return 0;
    auto reparsed = attest::parse_document(encoded);
    if (reparsed.is_error())
        std::abort();
    attest::Document const& second = reparsed.value().document;
    if (second.profile != document.profile || second.module_id != document.module_id
        || second.timestamp != document.timestamp || !(second.pcrs == document.pcrs)
        || second.certificate != document.certificate || second.cabundle != document.cabundle
        || or_empty(second.user_data) != or_empty(document.user_data) || or_empty(second.nonce) != or_empty(document.nonce)
        || or_empty(second.public_key) != or_empty(document.public_key))
        std::abort();
    return 0;
}
