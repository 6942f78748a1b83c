#include <qtbox/crypto/hash.hpp>

#include <doctest/doctest.h>

using namespace qtbox;

TEST_CASE("hash: FIPS 180 'abc' vectors")
{
    CHECK(hex_encode(crypto::sha256(as_bytes("abc"))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex_encode(crypto::sha384(as_bytes("abc")))
        == "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
}

TEST_CASE("hash: streaming equals one-shot")
{
    crypto::Sha384 hasher;
    hasher.update(as_bytes("a"));
    hasher.update(as_bytes("bc"));
    CHECK(hasher.finish() == crypto::sha384(as_bytes("abc")));
    crypto::Sha256 empty;
    CHECK(hex_encode(empty.finish()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
