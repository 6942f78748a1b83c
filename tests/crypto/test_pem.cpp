#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/pem.hpp>

#include "support.hpp"

using namespace qtbox;

TEST_CASE("pem: encodes with 64-character lines")
{
    CHECK(crypto::pem_encode("TEST", as_bytes("abc")) == "-----BEGIN TEST-----\nYWJj\n-----END TEST-----\n");
    // 48 bytes are exactly one 64-character line; 49 need a second line.
    auto one = crypto::pem_encode("X", Bytes(48, 0));
    CHECK(one == "-----BEGIN X-----\n" + std::string(64, 'A') + "\n-----END X-----\n");
    auto two = crypto::pem_encode("X", Bytes(49, 0));
    CHECK(two == "-----BEGIN X-----\n" + std::string(64, 'A') + "\nAA==\n-----END X-----\n");
}

TEST_CASE("pem: decodes every block in order and ignores text between them")
{
    std::string text = "comment line\n-----BEGIN ONE-----\nYWJj\n-----END ONE-----\nmore text\r\n"
                       "-----BEGIN TWO THREE-----\r\nZGVm\r\nZ2g=\r\n-----END TWO THREE-----\r\n";
    auto blocks = test::must(crypto::pem_decode(text));
    REQUIRE(blocks.size() == 2);
    CHECK(blocks[0].label == "ONE");
    CHECK(blocks[0].der == to_bytes("abc"));
    CHECK(blocks[1].label == "TWO THREE");
    CHECK(blocks[1].der == to_bytes("defgh"));
    CHECK(test::must(crypto::pem_decode("no blocks here")).empty());
    auto round = test::must(crypto::pem_decode(crypto::pem_encode("R", Bytes(300, 0x5a))));
    REQUIRE(round.size() == 1);
    CHECK(round[0].der == Bytes(300, 0x5a));
}

TEST_CASE("pem: broken blocks are refused with the right kind")
{
    auto failure = [](std::string_view text) {
        auto result = crypto::pem_decode(text);
        REQUIRE(result.is_error());
        return result.error().code_as<crypto::CryptoError>().value();
    };
    CHECK(failure("-----BEGIN A-----\nYWJj\n") == crypto::CryptoError::Malformed);
    CHECK(failure("-----BEGIN A-----\nYWJj\n-----END B-----\n") == crypto::CryptoError::Malformed);
    CHECK(failure("-----BEGIN A-----\nYW*j\n-----END A-----\n") == crypto::CryptoError::Malformed);
    CHECK(failure("-----BEGIN A-----\n-----END A-----\n") == crypto::CryptoError::Malformed);
    CHECK(failure("-----BEGIN A\n") == crypto::CryptoError::Malformed);
    CHECK(failure("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nYWJj\n-----END EC PRIVATE KEY-----\n")
        == crypto::CryptoError::Unsupported);
    std::string many;
    for (std::size_t index = 0; index <= crypto::MAX_PEM_BLOCKS; ++index)
        many += crypto::pem_encode("A", as_bytes("x"));
    CHECK(failure(many) == crypto::CryptoError::TooLarge);
    CHECK(failure(crypto::pem_encode("BIG", Bytes(crypto::MAX_PEM_BLOCK_SIZE + 1, 0))) == crypto::CryptoError::TooLarge);
}

TEST_CASE("pem: looks_like_pem tells PEM from DER")
{
    CHECK(crypto::looks_like_pem(as_bytes("  \n-----BEGIN CERTIFICATE-----")));
    CHECK_FALSE(crypto::looks_like_pem(Bytes { 0x30, 0x82, 0x01, 0x00 }));
    CHECK_FALSE(crypto::looks_like_pem(as_bytes("-----END X-----")));
}
