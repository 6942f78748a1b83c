// Golden cross-checks against the openssl CLI: what qtbox signs, issues and
// encrypts, OpenSSL accepts, and the reverse. Exits 77 (SKIP) when there is
// no openssl on the PATH.
#define DOCTEST_CONFIG_IMPLEMENT
#include <qtbox/crypto/chain.hpp>
#include <qtbox/crypto/ecdsa_signature.hpp>
#include <qtbox/crypto/x509_write.hpp>

#include "../support/temp_dir.hpp"
#include "support.hpp"

#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>

using namespace qtbox;
using crypto::KeyType;
using test::ca_profile;
using test::HOUR;
using test::leaf_profile;
using test::must;
using test::T0;
using test::TempDir;

namespace {

struct Output {
    int status { -1 };
    std::string text;
};

Output run(std::string const& command)
{
    Output output;
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr)
        return output;
    std::array<char, 4096> buffer {};
    std::size_t count = 0;
    while ((count = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
        output.text.append(buffer.data(), count);
    int status = ::pclose(pipe);
    output.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return output;
}

} // namespace

TEST_CASE("openssl: verifies qtbox ECDSA signatures (P-256/SHA-256, P-384/SHA-384) converted to DER")
{
    TempDir directory;
    for (auto type : { KeyType::EcP256, KeyType::EcP384 }) {
        auto key = must(crypto::PrivateKey::generate(type));
        auto signature = must(key.sign(as_bytes("signed by qtbox")));
        auto public_pem = directory.write("public.pem", as_bytes(key.public_key().spki_pem()), 0600);
        auto message = directory.write("message", as_bytes("signed by qtbox"), 0600);
        auto signature_file = directory.write("signature.der", must(crypto::ecdsa_signature_to_der(signature)), 0600);
        std::string digest = type == KeyType::EcP256 ? "-sha256" : "-sha384";
        auto good = run(fmt::format("openssl dgst {} -verify {} -signature {} {}", digest, public_pem, signature_file, message));
        CHECK(good.status == 0);
        CHECK(good.text == "Verified OK\n");
        auto other = directory.write("other", as_bytes("signed by qtboX"), 0600);
        auto bad = run(fmt::format("openssl dgst {} -verify {} -signature {} {}", digest, public_pem, signature_file, other));
        CHECK(bad.status == 1);
        CHECK(bad.text.starts_with("Verification failure"));
    }
}

TEST_CASE("openssl: verify -x509_strict accepts a qtbox-issued chain at a given time and rejects it after expiry")
{
    TempDir directory;
    auto root = test::self_signed(ca_profile("CN=root,O=qtbox"));
    auto parent = test::issued_by(root, ca_profile("CN=parent,O=qtbox", 0));
    auto leaf = test::issued_by(parent, leaf_profile("CN=leaf,O=qtbox"));
    auto root_pem = directory.write("root.pem", as_bytes(root.certificate.pem()), 0600);
    auto parent_pem = directory.write("parent.pem", as_bytes(parent.certificate.pem()), 0600);
    auto leaf_pem = directory.write("leaf.pem", as_bytes(leaf.certificate.pem()), 0600);
    auto verify = [&](UnixMillis when) {
        return run(fmt::format("openssl verify -x509_strict -attime {} -CAfile {} -untrusted {} {}", when / 1000, root_pem,
            parent_pem, leaf_pem));
    };
    auto inside = verify(T0 + 2 * HOUR);
    CHECK(inside.status == 0);
    CHECK(inside.text == leaf_pem + ": OK\n");
    auto after = verify(T0 + 5 * HOUR);
    CHECK(after.status != 0);
    CHECK(after.text.find("certificate has expired") != std::string::npos);

    auto text = run(fmt::format("openssl x509 -noout -text -in {}", parent_pem));
    CHECK(text.status == 0);
    CHECK(text.text.find("CA:TRUE, pathlen:0") != std::string::npos);
    CHECK(text.text.find("Certificate Sign, CRL Sign") != std::string::npos);
    CHECK(text.text.find("X509v3 Subject Key Identifier") != std::string::npos);
    CHECK(text.text.find("X509v3 Authority Key Identifier") != std::string::npos);
    CHECK(text.text.find("Signature Algorithm: ecdsa-with-SHA384") != std::string::npos);
}

TEST_CASE("openssl: reads qtbox private key PEM (SEC1 and PKCS#1) and derives the same public key")
{
    TempDir directory;
    for (auto type : { KeyType::EcP384, KeyType::Rsa }) {
        auto key = must(crypto::PrivateKey::generate(type));
        auto key_pem = directory.write("key.pem", must(key.to_pem()), 0600);
        auto output = run(fmt::format("openssl pkey -in {} -pubout", key_pem));
        CHECK(output.status == 0);
        CHECK(output.text == key.public_key().spki_pem());
    }
}

TEST_CASE("openssl: decrypts qtbox RSA-OAEP-SHA256 ciphertext")
{
    TempDir directory;
    auto key = must(crypto::PrivateKey::parse(test::read_data("rsa-pkcs8.pem")));
    auto ciphertext = directory.write("ciphertext", must(key.public_key().rsa_oaep_encrypt(as_bytes("sealed by qtbox"))), 0600);
    auto output = run(fmt::format("openssl pkeyutl -decrypt -inkey {}/rsa-pkcs8.pem -pkeyopt rsa_padding_mode:oaep "
                                  "-pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 -in {}",
        QTBOX_CRYPTO_TEST_DATA, ciphertext));
    CHECK(output.status == 0);
    CHECK(output.text == "sealed by qtbox");
}

TEST_CASE("openssl: pkeyutl -derive agrees with qtbox ECDH on fresh P-256 keys")
{
    TempDir directory;
    auto mine = must(crypto::PrivateKey::generate(KeyType::EcP256));
    auto peer = must(crypto::PrivateKey::generate(KeyType::EcP256));
    auto mine_pem = directory.write("mine.pem", must(mine.to_pem()), 0600);
    auto peer_pem = directory.write("peer.pem", as_bytes(peer.public_key().spki_pem()), 0600);
    auto secret = directory.path() + "/secret";
    auto output = run(fmt::format("openssl pkeyutl -derive -inkey {} -peerkey {} -out {}", mine_pem, peer_pem, secret));
    CHECK(output.status == 0);
    auto derived = must(sys::read_file(secret, 1024));
    CHECK(hex_encode(derived) == hex_encode(must(mine.ecdh(peer.public_key()))));
}

int main(int argc, char** argv)
{
    if (run("openssl version").status != 0) {
        std::puts("SKIP: the openssl command is not installed");
        return 77;
    }
    doctest::Context context(argc, argv);
    return context.run();
}
