// libFuzzer target: the COSE_Sign1 parser (RFC 9052 §4.2) on arbitrary bytes.
// Properties checked beyond "no crash, no hang, no leak": a parsed message
// re-encodes to bytes that parse to the same fields and re-encode
// identically; reversing the signature halves twice gives them back; and a
// signature the fuzzer did not make never verifies under this target's key.
#include "support.hpp"

#include <qtbox/cose/sign1.hpp>
#include <qtbox/crypto/keys.hpp>

#include <cstdint>

namespace {

using namespace qtbox;
using qtbox::fuzz::require;

bool same(cose::Sign1 const& a, cose::Sign1 const& b)
{
    return a.protected_header == b.protected_header && a.unprotected == b.unprotected && a.payload == b.payload
        && a.signature == b.signature && a.tagged == b.tagged;
}

crypto::PrivateKey const& key()
{
    static crypto::PrivateKey const generated = [] {
        auto made = crypto::PrivateKey::generate(crypto::KeyType::EcP384);
        require(!made.is_error());
        return made.release_value();
    }();
    return generated;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    auto parsed = cose::parse_sign1(ByteView(data, size));
    if (parsed.is_error())
        return 0;
    auto const& message = parsed.value();
    Bytes encoded = cose::encode_sign1(message);
    auto again = cose::parse_sign1(encoded);
    require(!again.is_error() && same(again.value(), message));
    require(cose::encode_sign1(again.value()) == encoded);

    Bytes reversed = cose::reverse_signature_halves(message.signature);
    require(reversed.size() == message.signature.size());
    require(cose::reverse_signature_halves(reversed) == message.signature);
    (void)cose::sig_structure(message.protected_header, message.payload);
    if (cose::sign1_algorithm(message).is_error())
        return 0;
    auto verified = cose::verify_sign1(message, key().public_key());
    require(verified.is_error());
    return 0;
}
