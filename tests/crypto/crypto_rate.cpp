// crypto_rate: the raw ECDSA P-384 signing and verification rates of
// src/crypto on this machine, one thread, for the benchmarks that compare
// against them (bench/attest_verify's floor, bench/qtsm's peer). Not a test.
//
// Usage: crypto_rate [--prepared] [SECONDS]   (default 1 per measurement, at most 60)
// Prints four lines:
//   ecdsa-p384 sign/s: <rate>
//   ecdsa-p384 verify/s: <rate>
//   ecdsa-p384 verify/s, key parsed each time: <rate>
//   per CPU second: ecdsa-p384 sign <rate>, verify <rate>, verify with the key parsed each time <rate>
// (the first three per second of wall time, the last per second of this
// process's CPU time).
// The third parses the SubjectPublicKeyInfo before every verification, as a
// verifier that meets each key once does (attest-verify: every document
// brings its own certificates).
// With --prepared, instead, the two halves of a signature with a prepared
// nonce (crypto::EcdsaNonce, what vmm's QTSM does), per CPU second:
//   prepared nonce: prepare <rate>, sign with it <rate>, RFC 6979 sign <rate>
#include <qtbox/crypto/keys.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

using namespace qtbox;

namespace {

double cpu_seconds()
{
    timespec now {};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

// Operations per second of wall time, and per second of this process's CPU
// time (what a loaded machine does not take away).
struct Rate {
    double wall { -1 };
    double cpu { -1 };
};

template<typename Operation>
Rate rate(double seconds, Operation operation)
{
    using Clock = std::chrono::steady_clock;
    auto start = Clock::now();
    double cpu_start = cpu_seconds();
    auto deadline = start + std::chrono::duration<double>(seconds);
    long count = 0;
    // Batches of 16 keep the clock reads out of the measurement.
    while (Clock::now() < deadline) {
        for (int index = 0; index < 16; ++index) {
            if (!operation())
                return {};
        }
        count += 16;
    }
    std::chrono::duration<double> elapsed = Clock::now() - start;
    double cpu = cpu_seconds() - cpu_start;
    return { static_cast<double>(count) / elapsed.count(), cpu > 0 ? static_cast<double>(count) / cpu : -1 };
}

} // namespace

int main(int argc, char** argv)
{
    double seconds = 1;
    bool prepared = argc > 1 && std::string(argv[1]) == "--prepared";
    int const rest = argc - (prepared ? 1 : 0);
    if (rest > 2 || (rest == 2 && ((seconds = std::atof(argv[argc - 1])) <= 0 || seconds > 60))) {
        std::fputs("usage: crypto_rate [--prepared] [SECONDS]  (0 < SECONDS <= 60)\n", stderr);
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
    Rate sign_rate = rate(seconds, [&] { return !key.value().sign(message).is_error(); });
    if (prepared) {
        std::vector<crypto::EcdsaNonce> nonces;
        Rate prepare_rate = rate(seconds, [&] {
            auto nonce = key.value().prepare_nonce();
            if (nonce.is_error())
                return false;
            nonces.push_back(nonce.release_value());
            return true;
        });
        // Every nonce just prepared signs once (signing is the faster half).
        double cpu_start = cpu_seconds();
        for (auto& nonce : nonces) {
            if (key.value().sign(message, nonce).is_error())
                prepare_rate.cpu = -1;
        }
        double online_cpu = cpu_seconds() - cpu_start;
        if (prepare_rate.cpu < 0 || online_cpu <= 0) {
            std::fputs("crypto_rate: an operation failed\n", stderr);
            return 1;
        }
        fmt::print("prepared nonce: prepare {:.1f}, sign with it {:.1f}, RFC 6979 sign {:.1f}\n", prepare_rate.cpu,
            static_cast<double>(nonces.size()) / online_cpu, sign_rate.cpu);
        return 0;
    }
    Rate verify_rate = rate(seconds, [&] { return !public_key.verify(message, signature.value()).is_error(); });
    Bytes spki(public_key.spki_der().begin(), public_key.spki_der().end());
    Rate fresh_rate = rate(seconds, [&] {
        auto parsed = crypto::PublicKey::from_spki_der(spki);
        return !parsed.is_error() && !parsed.value().verify(message, signature.value()).is_error();
    });
    if (sign_rate.wall < 0 || verify_rate.wall < 0 || fresh_rate.wall < 0) {
        std::fputs("crypto_rate: an operation failed\n", stderr);
        return 1;
    }
    fmt::print("ecdsa-p384 sign/s: {:.1f}\necdsa-p384 verify/s: {:.1f}\necdsa-p384 verify/s, key parsed each time: {:.1f}\n",
        sign_rate.wall, verify_rate.wall, fresh_rate.wall);
    fmt::print("per CPU second: ecdsa-p384 sign {:.1f}, verify {:.1f}, verify with the key parsed each time {:.1f}\n",
        sign_rate.cpu, verify_rate.cpu, fresh_rate.cpu);
    return 0;
}
