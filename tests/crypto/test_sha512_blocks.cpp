// The SHA-512 block functions behind Sha384 (src/crypto/sha512_blocks.hpp):
// FIPS 180 vectors through Sha384, and the portable and AVX2 compressions
// against mbedTLS's own on random blocks and random message lengths.
#include <qtbox/crypto/hash.hpp>

#include "../../src/crypto/sha512_blocks.hpp"

#include <doctest/doctest.h>
#include <mbedtls/sha512.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace qtbox;
using crypto::detail::Sha512Blocks;

namespace {

std::vector<std::uint8_t> random_bytes(std::mt19937_64& rng, std::size_t size)
{
    std::vector<std::uint8_t> bytes(size);
    for (auto& byte : bytes)
        byte = static_cast<std::uint8_t>(rng());
    return bytes;
}

crypto::Sha384Digest mbedtls_sha384(ByteView data)
{
    std::array<std::uint8_t, 64> full {};
    REQUIRE(mbedtls_sha512_ret(data.data(), data.size(), full.data(), 1) == 0);
    crypto::Sha384Digest digest {};
    std::memcpy(digest.data(), full.data(), digest.size());
    return digest;
}

// The block functions to check: the portable one always, AVX2 where the CPU has it.
std::vector<std::pair<char const*, Sha512Blocks>> implementations()
{
    std::vector<std::pair<char const*, Sha512Blocks>> result { { "portable", crypto::detail::sha512_blocks_portable } };
    if (auto avx2 = crypto::detail::sha512_blocks_avx2())
        result.emplace_back("avx2", avx2);
    return result;
}

} // namespace

TEST_CASE("sha512 blocks: FIPS 180-2 SHA-384 vectors through Sha384")
{
    MESSAGE("Sha384 compresses with: " << std::string(crypto::detail::sha512_blocks_name()));
    CHECK(hex_encode(crypto::sha384(ByteView()))
        == "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b");
    CHECK(hex_encode(crypto::sha384(as_bytes("abc")))
        == "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
    CHECK(hex_encode(crypto::sha384(as_bytes("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")))
        == "09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712fcc7c71a557e2db966c3e9fa91746039");
    std::string million(1000000, 'a');
    CHECK(hex_encode(crypto::sha384(as_bytes(million)))
        == "9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b07b8b3dc38ecc4ebae97ddd87f3d8985");
}

TEST_CASE("sha512 blocks: each implementation equals mbedTLS's compression, 0 to 41 blocks")
{
    std::mt19937_64 rng(0x5A512);
    for (auto const& implementation : implementations()) {
        // Not a structured binding: clang 14 cannot capture one (CAPTURE does).
        auto const name = implementation.first;
        auto const blocks = implementation.second;
        CAPTURE(name);
        for (std::size_t count = 0; count <= 41; ++count) {
            CAPTURE(count);
            auto data = random_bytes(rng, count * 128);
            mbedtls_sha512_context reference;
            mbedtls_sha512_init(&reference);
            REQUIRE(mbedtls_sha512_starts_ret(&reference, 0) == 0);
            // A random starting state too, not only the initial values.
            for (auto& word : reference.state)
                word = rng();
            std::uint64_t state[8];
            std::memcpy(state, reference.state, sizeof state);
            for (std::size_t index = 0; index < count; ++index)
                REQUIRE(mbedtls_internal_sha512_process(&reference, data.data() + 128 * index) == 0);
            blocks(state, data.data(), count);
            CHECK(std::memcmp(state, reference.state, sizeof state) == 0);
            mbedtls_sha512_free(&reference);
        }
    }
}

TEST_CASE("sha512 blocks: the implementations agree on unaligned input")
{
    std::mt19937_64 rng(17);
    auto data = random_bytes(rng, 128 * 9 + 64);
    for (std::size_t offset = 1; offset < 64; offset += 7) {
        std::uint64_t expected[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        crypto::detail::sha512_blocks_portable(expected, data.data() + offset, 9);
        for (auto const& implementation : implementations()) {
            auto const name = implementation.first;
            auto const blocks = implementation.second;
            CAPTURE(name);
            CAPTURE(offset);
            std::uint64_t state[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
            blocks(state, data.data() + offset, 9);
            CHECK(std::memcmp(state, expected, sizeof state) == 0);
        }
    }
}

TEST_CASE("sha512 blocks: Sha384 equals mbedTLS on random lengths, fed in random pieces")
{
    std::mt19937_64 rng(0x384);
    std::vector<std::size_t> lengths;
    for (std::size_t length = 0; length <= 520; ++length)
        lengths.push_back(length);
    for (int extra = 0; extra < 60; ++extra)
        lengths.push_back(static_cast<std::size_t>(rng() % (3 << 20)));
    for (auto length : lengths) {
        CAPTURE(length);
        auto data = random_bytes(rng, length);
        auto expected = mbedtls_sha384(data);
        CHECK(crypto::sha384(data) == expected);
        // Random pieces, some empty, some shorter and some longer than a block.
        crypto::Sha384 hasher;
        std::size_t done = 0;
        crypto::Sha384Digest halfway {};
        bool took_halfway = false;
        while (done < length) {
            std::size_t piece = std::min<std::size_t>(length - done, rng() % 3 == 0 ? rng() % 8 : rng() % 700);
            hasher.update(ByteView(data.data() + done, piece));
            done += piece;
            if (!took_halfway && done >= length / 2) {
                halfway = hasher.digest_so_far();
                CHECK(halfway == mbedtls_sha384(ByteView(data.data(), done)));
                took_halfway = true;
            }
        }
        CHECK(hasher.finish() == expected);
    }
}
