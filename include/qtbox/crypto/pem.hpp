// PEM (RFC 7468): the textual encoding of keys and certificates. Strict: a
// block is "-----BEGIN <label>-----", base64 lines, "-----END <label>-----"
// with the same label; text outside blocks is ignored (openssl writes
// comments there), RFC 1421 headers ("Proc-Type: 4,ENCRYPTED") are refused.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::crypto {

// Upper bounds for untrusted PEM text: no qtbox key or bundle comes near.
constexpr std::size_t MAX_PEM_BLOCKS = 64;
constexpr std::size_t MAX_PEM_BLOCK_SIZE = 64 * 1024;

struct PemBlock {
    std::string label; // "CERTIFICATE", "PUBLIC KEY", "EC PRIVATE KEY", ...
    Bytes der;
};

// RFC 7468 §2: base64 in lines of 64 characters, each ending in '\n'.
std::string pem_encode(std::string_view label, ByteView der);

// Every block in `text`, in order. Fails with CryptoError::Malformed on a
// broken block, CryptoError::TooLarge past MAX_PEM_BLOCKS or MAX_PEM_BLOCK_SIZE.
// No block at all is not an error here: the result is empty.
ErrorOr<std::vector<PemBlock>> pem_decode(std::string_view text);

// True when the bytes start (after ASCII whitespace) with "-----BEGIN ".
bool looks_like_pem(ByteView data);

} // namespace qtbox::crypto
