// crypto_rate: the raw ECDSA P-384 signing and verification rates of
// src/crypto on this machine, one thread, for the benchmarks that compare
// against them (bench/attest_verify's floor, bench/qtsm's peer). Not a test.
//
// Usage: crypto_rate [SECONDS]   (default 1 per measurement, at most 60)
// Prints three lines:
//   ecdsa-p384 sign/s: <rate>
//   ecdsa-p384 verify/s: <rate>
//   ecdsa-p384 verify/s, key parsed each time: <rate>
// The third parses the SubjectPublicKeyInfo before every verification, as a
// verifier that meets each key once does (attest-verify: every document
// brings its own certificates).
#include <qtbox/crypto/keys.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace qtbox;

namespace {

template<typename Operation>
double rate(double seconds, Operation operation)
{
    using Clock = std::chrono::steady_clock;
    auto start = Clock::now();
    auto deadline = start + std::chrono::duration<double>(seconds);
    long count = 0;
    // Batches of 16 keep the clock reads out of the measurement.
    while (Clock::now() < deadline) {
        for (int index = 0; index < 16; ++index) {
            if (!operation())
                return -1;
        }
        count += 16;
    }
    std::chrono::duration<double> elapsed = Clock::now() - start;
    return static_cast<double>(count) / elapsed.count();
}

} // namespace

int main(int argc, char** argv)
{
    double seconds = 1;
    if (argc > 2 || (argc == 2 && ((seconds = std::atof(argv[1])) <= 0 || seconds > 60))) {
        std::fputs("usage: crypto_rate [SECONDS]  (0 < SECONDS <= 60)\n", stderr);
        return 2;
    }
    auto key = crypto::PrivateKey::generate(crypto::KeyType::EcP384);
    if (key.is_error()) {
        std::fprintf(stderr, "crypto_rate: %s\n", key.error().message().c_str());
        return 1;
    }
    auto public_key = key.value().public_key();
    // A document-sized message: the attestation Sig_structure is ~5 KiB (docs/FORMATS.md §4).
    Bytes message(5000, 0x5a);
    auto signature = key.value().sign(message);
    if (signature.is_error()) {
        std::fprintf(stderr, "crypto_rate: %s\n", signature.error().message().c_str());
        return 1;
    }
    double sign_rate = rate(seconds, [&] { return !key.value().sign(message).is_error(); });
    double verify_rate = rate(seconds, [&] { return !public_key.verify(message, signature.value()).is_error(); });
    Bytes spki(public_key.spki_der().begin(), public_key.spki_der().end());
    double fresh_rate = rate(seconds, [&] {
        auto parsed = crypto::PublicKey::from_spki_der(spki);
        return !parsed.is_error() && !parsed.value().verify(message, signature.value()).is_error();
    });
    if (sign_rate < 0 || verify_rate < 0 || fresh_rate < 0) {
        std::fputs("crypto_rate: an operation failed\n", stderr);
        return 1;
    }
    fmt::print("ecdsa-p384 sign/s: {:.1f}\necdsa-p384 verify/s: {:.1f}\necdsa-p384 verify/s, key parsed each time: {:.1f}\n",
        sign_rate, verify_rate, fresh_rate);
    return 0;
}
