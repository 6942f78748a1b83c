// Random numbers: NIST SP 800-90A CTR_DRBG (AES-256, mbedTLS) seeded from the
// kernel with getrandom(2).
//
// Threading: a Drbg object is thread-safe (one internal mutex around every
// call). The free functions below, and every key generation, signature and
// encryption in src/crypto, use a per-thread Drbg instead, created on first
// use in each thread, so that concurrent signers (qtsm-server, the VMM's
// QTSM) never contend for one lock. Each per-thread generator also notices a
// fork (the pid changed) and reseeds itself from getrandom, so a parent and
// its child never produce the same stream.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace qtbox::crypto {

class Drbg {
public:
    // Seeds from getrandom; `personalization` is mixed into the seed
    // (SP 800-90A §8.7.1). Fails with CryptoError::RandomSource.
    static ErrorOr<Drbg> create(ByteView personalization = {});
    ~Drbg();
    Drbg(Drbg&&) noexcept;
    Drbg& operator=(Drbg&&) noexcept;
    Drbg(Drbg const&) = delete;
    Drbg& operator=(Drbg const&) = delete;

    // Fills `output` (any length; the DRBG's per-request limit is handled here).
    ErrorOr<void> fill(std::span<std::uint8_t> output);
    // Mixes fresh getrandom entropy into the state.
    ErrorOr<void> reseed();

    struct State;

private:
    explicit Drbg(std::unique_ptr<State> state);
    std::unique_ptr<State> m_state;
};

// From the calling thread's Drbg (see above).
ErrorOr<void> random_fill(std::span<std::uint8_t> output);
ErrorOr<Bytes> random_bytes(std::size_t count);

} // namespace qtbox::crypto
