// Throw-away attestation PKI and documents for the attest tests: a P-384
// chain root → CA → leaf (crypto's X.509 writer) and QingTian-profile
// documents signed with the leaf key in either signature byte order.
#pragma once

#include <qtbox/attest/document.hpp>
#include <qtbox/cose/sign1.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/x509.hpp>

#include <optional>
#include <string>

namespace qtbox::test {

// 2030-01-01T00:00:00Z: the instant the fixture's documents are made at.
constexpr UnixMillis FIXTURE_NOW = 1893456000000;
constexpr UnixMillis HOUR_MS = 3600 * 1000;

struct Chain {
    crypto::PrivateKey root_key;
    crypto::Certificate root;
    crypto::PrivateKey ca_key;
    crypto::Certificate ca;
    crypto::PrivateKey leaf_key;
    crypto::Certificate leaf;
};

// Root (10 years), CA (1 year, pathlen 0), leaf (valid FIXTURE_NOW - 1 h ..
// FIXTURE_NOW + 2 h, docs/FORMATS.md §4's 3 hours), all P-384.
Chain make_chain(std::string const& name = "qtbox-test");

// A QingTian-profile document: PCRs 0..15 (PCR n filled with byte n, PCR0
// distinct), module id "<uuid>.enc-0123456789abcdef", timestamp FIXTURE_NOW.
attest::Document qingtian_document(Chain const& chain);

// Payload encoded per docs/FORMATS.md §4, protected header a1 01 38 22, untagged.
Bytes sign_document(attest::Document const& document, crypto::PrivateKey const& key,
    cose::SignatureOrder order = cose::SignatureOrder::Rfc9052);
// Any payload bytes, signed the same way.
Bytes sign_payload(ByteView payload, crypto::PrivateKey const& key,
    cose::SignatureOrder order = cose::SignatureOrder::Rfc9052);

// The real Nitro vector (tests/data/nitro-attestation-doc-2026-02-02.b64), decoded.
Bytes nitro_vector();
constexpr std::string_view NITRO_ROOT_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";
constexpr std::string_view NITRO_PCR0
    = "9baef83909784e4d2cb84466c02931bb8125e948b62029029e80bfa1698bfd7069408e4ab20d1c99c859e8f774cce0ff";

} // namespace qtbox::test
