#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/hmac.hpp>

#include "support.hpp"

using namespace qtbox;
using test::unhex;

TEST_CASE("hmac: RFC 4231 HMAC-SHA256 test cases 1-4, 5 (truncated), 6, 7")
{
    CHECK(hex_encode(crypto::hmac_sha256(Bytes(20, 0x0b), as_bytes("Hi There")))
        == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    CHECK(hex_encode(crypto::hmac_sha256(as_bytes("Jefe"), as_bytes("what do ya want for nothing?")))
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    CHECK(hex_encode(crypto::hmac_sha256(Bytes(20, 0xaa), Bytes(50, 0xdd)))
        == "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    CHECK(hex_encode(crypto::hmac_sha256(unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), Bytes(50, 0xcd)))
        == "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    CHECK(hex_encode(crypto::hmac_sha256(Bytes(20, 0x0c), as_bytes("Test With Truncation"))).substr(0, 32)
        == "a3b6167473100ee06e0c796c2955552b");
    CHECK(hex_encode(crypto::hmac_sha256(Bytes(131, 0xaa), as_bytes("Test Using Larger Than Block-Size Key - Hash Key First")))
        == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    CHECK(hex_encode(crypto::hmac_sha256(Bytes(131, 0xaa),
              as_bytes("This is a test using a larger than block-size key and a larger than block-size data. "
                       "The key needs to be hashed before being used by the HMAC algorithm.")))
        == "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST_CASE("hkdf: RFC 5869 test case 1 (basic), extract and expand separately")
{
    Bytes ikm(22, 0x0b);
    auto salt = unhex("000102030405060708090a0b0c");
    auto info = unhex("f0f1f2f3f4f5f6f7f8f9");
    auto prk = crypto::hkdf_sha256_extract(salt, ikm);
    CHECK(hex_encode(prk) == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
    auto okm = test::must(crypto::hkdf_sha256_expand(prk, info, 42));
    CHECK(hex_encode(okm) == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    CHECK(test::must(crypto::hkdf_sha256(salt, ikm, info, 42)) == okm);
}

TEST_CASE("hkdf: RFC 5869 test case 2 (long inputs)")
{
    Bytes ikm, salt, info;
    for (int i = 0x00; i <= 0x4f; ++i)
        ikm.push_back(static_cast<std::uint8_t>(i));
    for (int i = 0x60; i <= 0xaf; ++i)
        salt.push_back(static_cast<std::uint8_t>(i));
    for (int i = 0xb0; i <= 0xff; ++i)
        info.push_back(static_cast<std::uint8_t>(i));
    CHECK(hex_encode(crypto::hkdf_sha256_extract(salt, ikm)) == "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244");
    CHECK(hex_encode(test::must(crypto::hkdf_sha256(salt, ikm, info, 82)))
        == "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
           "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
           "cc30c58179ec3e87c14c01d5c1f3434f1d87");
}

TEST_CASE("hkdf: RFC 5869 test case 3 (empty salt and info)")
{
    Bytes ikm(22, 0x0b);
    CHECK(hex_encode(crypto::hkdf_sha256_extract({}, ikm)) == "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04");
    CHECK(hex_encode(test::must(crypto::hkdf_sha256({}, ikm, {}, 42)))
        == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST_CASE("hkdf: refuses more than 255 blocks and a short PRK; accepts the maximum")
{
    Bytes prk(32, 0x11);
    auto too_long = crypto::hkdf_sha256_expand(prk, {}, crypto::HKDF_SHA256_MAX_OUTPUT + 1);
    REQUIRE(too_long.is_error());
    CHECK(too_long.error().is(crypto::CryptoError::TooLarge));
    CHECK(test::must(crypto::hkdf_sha256_expand(prk, {}, crypto::HKDF_SHA256_MAX_OUTPUT)).size() == 8160);
    auto short_prk = crypto::hkdf_sha256_expand(Bytes(31, 1), {}, 32);
    REQUIRE(short_prk.is_error());
    CHECK(short_prk.error().is(crypto::CryptoError::Malformed));
    CHECK(test::must(crypto::hkdf_sha256_expand(prk, {}, 0)).empty());
}
