// libFuzzer target: the CBOR decoder (RFC 8949) on arbitrary bytes.
// Properties checked beyond "no crash, no hang, no leak": a decoded value
// re-encodes (preferred serialisation) to bytes that decode to an equal
// value and re-encode identically, and its diagnostic notation prints.
#include <qtbox/cbor/decoder.hpp>
#include <qtbox/cbor/diagnostic.hpp>
#include <qtbox/cbor/encoder.hpp>

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    using namespace qtbox;
    ByteView input(data, size);
    cbor::DecodeOptions options;
    options.max_items = 4096;
    auto decoded = cbor::decode(input, options);
    if (decoded.is_error()) {
        // A prefix decode must agree on errors that are not about the end.
        auto prefix = cbor::decode_prefix(input, options);
        if (!prefix.is_error() && prefix.value().size == size)
            std::abort();
        return 0;
    }
    Bytes encoded = cbor::encode(decoded.value());
    auto again = cbor::decode(encoded, options);
    if (again.is_error() || !(again.value() == decoded.value()))
        std::abort();
    if (cbor::encode(again.value()) != encoded)
        std::abort();
    (void)cbor::encode_deterministic(decoded.value());
    (void)cbor::to_diagnostic(decoded.value());
    return 0;
}
