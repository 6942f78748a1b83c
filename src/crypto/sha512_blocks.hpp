// SHA-512 block compression (FIPS 180-4 §6.4.2), the part of SHA-384 that
// costs: a portable version and, on x86-64, one whose message schedule runs
// in AVX2 registers and whose rounds use BMI2's rorx. Sha384 (hash.cpp)
// picks one by CPUID once per process; both give the same state for the
// same input (tests/crypto/test_sha512_blocks.cpp checks them against each
// other and against mbedTLS).
#pragma once

#include <cstddef>
#include <cstdint>

namespace qtbox::crypto::detail {

// Compresses `count` consecutive 128-byte blocks into `state`.
using Sha512Blocks = void (*)(std::uint64_t state[8], std::uint8_t const* blocks, std::size_t count);

void sha512_blocks_portable(std::uint64_t state[8], std::uint8_t const* blocks, std::size_t count);

// Null where the CPU (or the build's target) lacks AVX2 and BMI2.
Sha512Blocks sha512_blocks_avx2();

// What Sha384 uses: the AVX2 version where the CPU has it, the portable one
// otherwise. QTBOX_SHA512=portable in the environment forces the latter.
Sha512Blocks sha512_blocks();

// The name of sha512_blocks()'s choice: "avx2" or "portable".
char const* sha512_blocks_name();

} // namespace qtbox::crypto::detail
