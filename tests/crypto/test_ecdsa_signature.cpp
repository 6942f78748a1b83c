#include <qtbox/crypto/ecdsa_signature.hpp>
#include <qtbox/crypto/error.hpp>

#include "support.hpp"

#include <string>

using namespace qtbox;
using crypto::CryptoError;
using test::expect_failure;
using test::must;
using test::unhex;

TEST_CASE("ecdsa: DER conversion refuses malformed encodings")
{
    auto from = [](std::string_view hex, std::size_t half = 32) { return expect_failure(crypto::ecdsa_signature_from_der(unhex(hex), half)); };
    CHECK(hex_encode(must(crypto::ecdsa_signature_from_der(unhex("3006020101020102"), 32)))
        == std::string(62, '0') + "01" + std::string(62, '0') + "02");
    CHECK(from("300602010102010100") == CryptoError::Malformed);      // trailing bytes
    CHECK(from("3006020181020101") == CryptoError::Malformed);        // negative r
    CHECK(from("300702020001020101") == CryptoError::Malformed);      // non-minimal r
    CHECK(from("30030201010000") == CryptoError::Malformed);          // one integer
    CHECK(from("3006020101020101", 33) == CryptoError::Unsupported);
    std::string long_r = "3027022101" + std::string(64, '1') + "020101"; // 33-byte r for P-256
    CHECK(from(long_r) == CryptoError::Malformed);
    CHECK(expect_failure(crypto::ecdsa_signature_to_der(Bytes(63, 1))) == CryptoError::Malformed);
}
