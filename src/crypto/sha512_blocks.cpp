// SHA-512 compression, FIPS 180-4 §6.4.2; see sha512_blocks.hpp.
//
// The rounds are the same code in both versions (an inline function the
// compiler instantiates once for the baseline target and once for
// AVX2+BMI2, where the rotations become rorx). What differs is the message
// schedule: the portable version computes W[16..79] one word at a time;
// the AVX2 version computes two blocks' schedules at once, two words of
// each block per 256-bit register (W[t], W[t+1] of block A in the low
// 128 bits, the same of block B in the high ones), adds the round
// constants there, and leaves W[t]+K[t] in memory for the scalar rounds.
// Two words at a time because W[t] needs W[t-2]: with two per register,
// each register needs only the one before it.
#include "sha512_blocks.hpp"

#include <bit>
#include <cstdlib>
#include <cstring>
#include <string_view>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QTBOX_SHA512_X86 1
#endif

namespace qtbox::crypto::detail {

namespace {

alignas(64) constexpr std::uint64_t K[80] = {
    0x428a2f98d728ae22ULL, 0x7137449123ef65cdULL, 0xb5c0fbcfec4d3b2fULL, 0xe9b5dba58189dbbcULL,
    0x3956c25bf348b538ULL, 0x59f111f1b605d019ULL, 0x923f82a4af194f9bULL, 0xab1c5ed5da6d8118ULL,
    0xd807aa98a3030242ULL, 0x12835b0145706fbeULL, 0x243185be4ee4b28cULL, 0x550c7dc3d5ffb4e2ULL,
    0x72be5d74f27b896fULL, 0x80deb1fe3b1696b1ULL, 0x9bdc06a725c71235ULL, 0xc19bf174cf692694ULL,
    0xe49b69c19ef14ad2ULL, 0xefbe4786384f25e3ULL, 0x0fc19dc68b8cd5b5ULL, 0x240ca1cc77ac9c65ULL,
    0x2de92c6f592b0275ULL, 0x4a7484aa6ea6e483ULL, 0x5cb0a9dcbd41fbd4ULL, 0x76f988da831153b5ULL,
    0x983e5152ee66dfabULL, 0xa831c66d2db43210ULL, 0xb00327c898fb213fULL, 0xbf597fc7beef0ee4ULL,
    0xc6e00bf33da88fc2ULL, 0xd5a79147930aa725ULL, 0x06ca6351e003826fULL, 0x142929670a0e6e70ULL,
    0x27b70a8546d22ffcULL, 0x2e1b21385c26c926ULL, 0x4d2c6dfc5ac42aedULL, 0x53380d139d95b3dfULL,
    0x650a73548baf63deULL, 0x766a0abb3c77b2a8ULL, 0x81c2c92e47edaee6ULL, 0x92722c851482353bULL,
    0xa2bfe8a14cf10364ULL, 0xa81a664bbc423001ULL, 0xc24b8b70d0f89791ULL, 0xc76c51a30654be30ULL,
    0xd192e819d6ef5218ULL, 0xd69906245565a910ULL, 0xf40e35855771202aULL, 0x106aa07032bbd1b8ULL,
    0x19a4c116b8d2d0c8ULL, 0x1e376c085141ab53ULL, 0x2748774cdf8eeb99ULL, 0x34b0bcb5e19b48a8ULL,
    0x391c0cb3c5c95a63ULL, 0x4ed8aa4ae3418acbULL, 0x5b9cca4f7763e373ULL, 0x682e6ff3d6b2b8a3ULL,
    0x748f82ee5defb2fcULL, 0x78a5636f43172f60ULL, 0x84c87814a1f0ab72ULL, 0x8cc702081a6439ecULL,
    0x90befffa23631e28ULL, 0xa4506cebde82bde9ULL, 0xbef9a3f7b2c67915ULL, 0xc67178f2e372532bULL,
    0xca273eceea26619cULL, 0xd186b8c721c0c207ULL, 0xeada7dd6cde0eb1eULL, 0xf57d4f7fee6ed178ULL,
    0x06f067aa72176fbaULL, 0x0a637dc5a2c898a6ULL, 0x113f9804bef90daeULL, 0x1b710b35131c471bULL,
    0x28db77f523047d84ULL, 0x32caab7b40c72493ULL, 0x3c9ebe0a15c9bebcULL, 0x431d67c49c100d4cULL,
    0x4cc5d4becb3e42b6ULL, 0x597f299cfc657e2aULL, 0x5fcb6fab3ad6faecULL, 0x6c44198c4a475817ULL,
};

inline std::uint64_t load_be64(std::uint8_t const* bytes)
{
    std::uint64_t value;
    std::memcpy(&value, bytes, sizeof value);
    if constexpr (std::endian::native == std::endian::little)
        value = __builtin_bswap64(value);
    return value;
}

// One round (§6.4.2 step 3), with the eight working variables renamed
// instead of moved: `d` and `h` are the two that change. Maj(a, b, c) is
// b ^ ((a ^ b) & (b ^ c)), and this round's a ^ b is the next one's b ^ c
// (kept in `b_xor_c`), which saves an operation per round.
#define QTBOX_SHA512_ROUND(a, b, c, d, e, f, g, h, wk)                                                          \
    do {                                                                                                       \
        std::uint64_t t1 = h + (std::rotr(e, 14) ^ std::rotr(e, 18) ^ std::rotr(e, 41)) + (g ^ (e & (f ^ g))) \
            + (wk);                                                                                            \
        std::uint64_t a_xor_b = a ^ b;                                                                         \
        std::uint64_t t2 = (std::rotr(a, 28) ^ std::rotr(a, 34) ^ std::rotr(a, 39)) + (b ^ (a_xor_b & b_xor_c)); \
        b_xor_c = a_xor_b;                                                                                     \
        d += t1;                                                                                               \
        h = t1 + t2;                                                                                           \
    } while (0)

// The 80 rounds on W[t]+K[t] (`wk`), added into `state` (step 4).
__attribute__((always_inline)) inline void rounds(std::uint64_t state[8], std::uint64_t const* wk)
{
    std::uint64_t a = state[0], b = state[1], c = state[2], d = state[3];
    std::uint64_t e = state[4], f = state[5], g = state[6], h = state[7];
    std::uint64_t b_xor_c = b ^ c;
    for (int t = 0; t < 80; t += 8) {
        QTBOX_SHA512_ROUND(a, b, c, d, e, f, g, h, wk[t]);
        QTBOX_SHA512_ROUND(h, a, b, c, d, e, f, g, wk[t + 1]);
        QTBOX_SHA512_ROUND(g, h, a, b, c, d, e, f, wk[t + 2]);
        QTBOX_SHA512_ROUND(f, g, h, a, b, c, d, e, wk[t + 3]);
        QTBOX_SHA512_ROUND(e, f, g, h, a, b, c, d, wk[t + 4]);
        QTBOX_SHA512_ROUND(d, e, f, g, h, a, b, c, wk[t + 5]);
        QTBOX_SHA512_ROUND(c, d, e, f, g, h, a, b, wk[t + 6]);
        QTBOX_SHA512_ROUND(b, c, d, e, f, g, h, a, wk[t + 7]);
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

#undef QTBOX_SHA512_ROUND

inline std::uint64_t small_sigma0(std::uint64_t x) { return std::rotr(x, 1) ^ std::rotr(x, 8) ^ (x >> 7); }
inline std::uint64_t small_sigma1(std::uint64_t x) { return std::rotr(x, 19) ^ std::rotr(x, 61) ^ (x >> 6); }

#if QTBOX_SHA512_X86

#define QTBOX_SHA512_AVX2 __attribute__((target("avx2,bmi2")))

QTBOX_SHA512_AVX2 inline __m256i rotr_lanes(__m256i x, int bits)
{
    return _mm256_or_si256(_mm256_srli_epi64(x, bits), _mm256_slli_epi64(x, 64 - bits));
}

// The schedule of two blocks at once: wk_a and wk_b receive W[t]+K[t] of
// `a` and `b` for t in [0, 80).
QTBOX_SHA512_AVX2 void schedule_pair(std::uint8_t const* a, std::uint8_t const* b, std::uint64_t* wk_a, std::uint64_t* wk_b)
{
    // Reverses the bytes of each 64-bit lane (the words are big-endian).
    __m256i const swap = _mm256_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
        15, 14, 13, 12, 11, 10, 9, 8);
    // w[j] = { W[2j], W[2j+1] of a | W[2j], W[2j+1] of b }.
    __m256i w[40];
    for (int j = 0; j < 8; ++j) {
        __m128i low = _mm_loadu_si128(reinterpret_cast<__m128i const*>(a + 16 * j));
        __m128i high = _mm_loadu_si128(reinterpret_cast<__m128i const*>(b + 16 * j));
        w[j] = _mm256_shuffle_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(low), high, 1), swap);
    }
    for (int j = 8; j < 40; ++j) {
        // { W[t-15], W[t-14] } and { W[t-7], W[t-6] } straddle two registers.
        __m256i minus15 = _mm256_alignr_epi8(w[j - 7], w[j - 8], 8);
        __m256i minus7 = _mm256_alignr_epi8(w[j - 3], w[j - 4], 8);
        __m256i s0 = _mm256_xor_si256(_mm256_xor_si256(rotr_lanes(minus15, 1), rotr_lanes(minus15, 8)), _mm256_srli_epi64(minus15, 7));
        __m256i s1 = _mm256_xor_si256(_mm256_xor_si256(rotr_lanes(w[j - 1], 19), rotr_lanes(w[j - 1], 61)), _mm256_srli_epi64(w[j - 1], 6));
        w[j] = _mm256_add_epi64(_mm256_add_epi64(s1, minus7), _mm256_add_epi64(s0, w[j - 8]));
    }
    for (int j = 0; j < 40; ++j) {
        __m256i k = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<__m128i const*>(K + 2 * j)));
        __m256i sum = _mm256_add_epi64(w[j], k);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(wk_a + 2 * j), _mm256_castsi256_si128(sum));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(wk_b + 2 * j), _mm256_extracti128_si256(sum, 1));
    }
}

QTBOX_SHA512_AVX2 void blocks_avx2(std::uint64_t state[8], std::uint8_t const* blocks, std::size_t count)
{
    alignas(32) std::uint64_t wk_a[80];
    alignas(32) std::uint64_t wk_b[80];
    while (count >= 2) {
        schedule_pair(blocks, blocks + 128, wk_a, wk_b);
        rounds(state, wk_a);
        rounds(state, wk_b);
        blocks += 256;
        count -= 2;
    }
    if (count == 1) {
        // A lone block: its schedule in both halves, one of them unused.
        schedule_pair(blocks, blocks, wk_a, wk_b);
        rounds(state, wk_a);
    }
}

bool cpu_has_avx2()
{
    // libgcc's cpu model checks XGETBV too: the OS must save the YMM state.
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
}

#endif // QTBOX_SHA512_X86

Sha512Blocks choose()
{
    char const* forced = std::getenv("QTBOX_SHA512");
    if (forced != nullptr && std::string_view(forced) == "portable")
        return sha512_blocks_portable;
    if (auto fast = sha512_blocks_avx2())
        return fast;
    return sha512_blocks_portable;
}

} // namespace

void sha512_blocks_portable(std::uint64_t state[8], std::uint8_t const* blocks, std::size_t count)
{
    std::uint64_t wk[80];
    for (; count > 0; --count, blocks += 128) {
        std::uint64_t w[80];
        for (int t = 0; t < 16; ++t)
            w[t] = load_be64(blocks + 8 * t);
        for (int t = 16; t < 80; ++t)
            w[t] = small_sigma1(w[t - 2]) + w[t - 7] + small_sigma0(w[t - 15]) + w[t - 16];
        for (int t = 0; t < 80; ++t)
            wk[t] = w[t] + K[t];
        rounds(state, wk);
    }
}

Sha512Blocks sha512_blocks_avx2()
{
#if QTBOX_SHA512_X86
    static bool const usable = cpu_has_avx2();
    return usable ? blocks_avx2 : nullptr;
#else
    return nullptr;
#endif
}

Sha512Blocks sha512_blocks()
{
    static Sha512Blocks const chosen = choose();
    return chosen;
}

char const* sha512_blocks_name()
{
    return sha512_blocks() == sha512_blocks_portable ? "portable" : "avx2";
}

} // namespace qtbox::crypto::detail
