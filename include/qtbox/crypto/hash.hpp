// SHA-256 (mbedTLS) and SHA-384 (mbedTLS's padding, our block compression:
// src/crypto/sha512_blocks.hpp), one-shot and streaming.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <array>
#include <memory>

namespace qtbox::crypto {

using Sha256Digest = std::array<std::uint8_t, 32>;
using Sha384Digest = std::array<std::uint8_t, 48>;

Sha256Digest sha256(ByteView data);
Sha384Digest sha384(ByteView data);

// Streaming hashers for inputs that are never held in memory at once (EIF
// sections, image layers). finish() may be called once.
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(Sha256&&) noexcept;
    Sha256& operator=(Sha256&&) noexcept;
    void update(ByteView data);
    Sha256Digest finish();

private:
    struct Context;
    std::unique_ptr<Context> m_context;
};

class Sha384 {
public:
    Sha384();
    ~Sha384();
    Sha384(Sha384&&) noexcept;
    Sha384& operator=(Sha384&&) noexcept;
    void update(ByteView data);
    Sha384Digest finish();
    // The digest of the bytes so far; the hash goes on (a prefix's digest
    // without hashing the prefix twice).
    Sha384Digest digest_so_far() const;

private:
    struct Context;
    std::unique_ptr<Context> m_context;
};

} // namespace qtbox::crypto
