#include <qtbox/crypto/aead.hpp>
#include <qtbox/crypto/error.hpp>

#include "support.hpp"

using namespace qtbox;
using test::unhex;

// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13, 14
// and 16 (the AES-256 ones with a 96-bit IV), as NIST's GCM validation uses.

TEST_CASE("aes-gcm: GCM spec test cases 13 and 14 (zero key and IV)")
{
    Bytes key(32, 0);
    Bytes iv(12, 0);
    CHECK(hex_encode(test::must(crypto::aes256_gcm_encrypt(key, iv, {}))) == "530f8afbc74536b9a963b4f1c4cb738b");
    CHECK(hex_encode(test::must(crypto::aes256_gcm_encrypt(key, iv, Bytes(16, 0))))
        == "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
    CHECK(test::must(crypto::aes256_gcm_decrypt(key, iv, unhex("530f8afbc74536b9a963b4f1c4cb738b"))).empty());
}

TEST_CASE("aes-gcm: GCM spec test case 16 (associated data), both directions")
{
    auto key = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    auto iv = unhex("cafebabefacedbaddecaf888");
    auto plaintext = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                           "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
    auto aad = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    std::string expected = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                           "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
                           "76fc6ece0f4e1768cddf8853bb2d551b";
    auto sealed = test::must(crypto::aes256_gcm_encrypt(key, iv, plaintext, aad));
    CHECK(hex_encode(sealed) == expected);
    CHECK(test::must(crypto::aes256_gcm_decrypt(key, iv, sealed, aad)).copy() == plaintext);
}

TEST_CASE("aes-gcm: any change to ciphertext, tag, IV, key or AAD fails with DecryptionFailed")
{
    Bytes key(32, 7);
    Bytes iv(12, 9);
    auto sealed = test::must(crypto::aes256_gcm_encrypt(key, iv, as_bytes("secret payload"), as_bytes("header")));
    auto expect_failure = [](ErrorOr<crypto::SecretBytes> result) {
        REQUIRE(result.is_error());
        CHECK(result.error().is(crypto::CryptoError::DecryptionFailed));
    };
    auto flipped = sealed;
    flipped[0] ^= 1;
    expect_failure(crypto::aes256_gcm_decrypt(key, iv, flipped, as_bytes("header")));
    flipped = sealed;
    flipped.back() ^= 0x80;
    expect_failure(crypto::aes256_gcm_decrypt(key, iv, flipped, as_bytes("header")));
    expect_failure(crypto::aes256_gcm_decrypt(key, iv, sealed, as_bytes("headeR")));
    expect_failure(crypto::aes256_gcm_decrypt(key, iv, sealed, {}));
    Bytes other_iv(12, 8);
    expect_failure(crypto::aes256_gcm_decrypt(key, other_iv, sealed, as_bytes("header")));
    Bytes other_key(32, 6);
    expect_failure(crypto::aes256_gcm_decrypt(other_key, iv, sealed, as_bytes("header")));
    CHECK(test::must(crypto::aes256_gcm_decrypt(key, iv, sealed, as_bytes("header"))).chars() == "secret payload");
}

TEST_CASE("aes-gcm: wrong key or IV sizes and a ciphertext shorter than the tag are Malformed")
{
    auto check = [](auto result) {
        REQUIRE(result.is_error());
        CHECK(result.error().is(crypto::CryptoError::Malformed));
    };
    check(crypto::aes256_gcm_encrypt(Bytes(16, 0), Bytes(12, 0), {}));
    check(crypto::aes256_gcm_encrypt(Bytes(32, 0), Bytes(16, 0), {}));
    check(crypto::aes256_gcm_decrypt(Bytes(32, 0), Bytes(12, 0), Bytes(15, 0)));
    check(crypto::aes256_gcm_decrypt(Bytes(31, 0), Bytes(12, 0), Bytes(16, 0)));
}
