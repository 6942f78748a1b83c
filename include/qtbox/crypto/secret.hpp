// SecretBytes: an owning byte buffer for key material and other secrets
// (ECDH shared secrets, HKDF output, decrypted plaintext, private key PEM).
// Its memory is overwritten with secure_zero when it is destroyed or moved
// from, and it never reallocates (a reallocation would leave a copy behind),
// so the only copies of a secret are the ones the caller makes explicitly.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace qtbox::crypto {

class SecretBytes {
public:
    SecretBytes() = default;
    // size zero bytes.
    explicit SecretBytes(std::size_t size);
    // A copy of `bytes`.
    explicit SecretBytes(ByteView bytes);
    ~SecretBytes();

    SecretBytes(SecretBytes&& other) noexcept;
    SecretBytes& operator=(SecretBytes&& other) noexcept;
    SecretBytes(SecretBytes const&) = delete;
    SecretBytes& operator=(SecretBytes const&) = delete;

    std::uint8_t* data() { return m_bytes.data(); }
    std::uint8_t const* data() const { return m_bytes.data(); }
    std::size_t size() const { return m_bytes.size(); }
    bool empty() const { return m_bytes.empty(); }
    std::span<std::uint8_t> span() { return { m_bytes.data(), m_bytes.size() }; }
    ByteView view() const { return { m_bytes.data(), m_bytes.size() }; }
    operator ByteView() const { return view(); }
    std::string_view chars() const { return as_chars(view()); }

    // Shrinks to `size` bytes (no-op when already smaller), zeroing the tail.
    void truncate(std::size_t size);
    // An explicit, ordinary copy for callers that must hand the bytes on.
    Bytes copy() const { return m_bytes; }

private:
    void wipe();
    Bytes m_bytes;
};

// Constant-time equality (base's constant_time_equal).
bool operator==(SecretBytes const& a, SecretBytes const& b);

} // namespace qtbox::crypto
