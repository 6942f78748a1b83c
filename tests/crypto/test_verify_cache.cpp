#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/keys.hpp>

#include "support.hpp"

#include <atomic>
#include <thread>
#include <vector>

using namespace qtbox;
using crypto::CryptoError;
using crypto::KeyType;
using crypto::PrivateKey;
using crypto::PublicKey;
using test::must;

TEST_CASE("ecdsa: verification from many threads at once, with keys met for the first time, on both curves")
{
    // Verification runs on one shared group per curve (verify_cache.cpp):
    // threads racing on first use and verifying together must all get the
    // right verdict.
    struct Case {
        Bytes spki;
        Bytes message;
        Bytes signature;
    };
    std::vector<Case> cases;
    for (auto type : { KeyType::EcP256, KeyType::EcP384, KeyType::EcP256, KeyType::EcP384 }) {
        auto key = must(PrivateKey::generate(type));
        auto spki = key.public_key().spki_der();
        Bytes message(100, static_cast<unsigned char>(cases.size()));
        cases.push_back({ Bytes(spki.begin(), spki.end()), message, must(key.sign(message)) });
    }
    constexpr int THREADS = 8;
    constexpr int ROUNDS = 6;
    std::atomic<int> verified { 0 };
    std::atomic<int> refused { 0 };
    std::atomic<int> wrong { 0 };
    std::vector<std::thread> threads;
    for (int thread = 0; thread < THREADS; ++thread) {
        threads.emplace_back([&, thread] {
            for (int round = 0; round < ROUNDS; ++round) {
                auto const& item = cases[static_cast<std::size_t>(thread + round) % cases.size()];
                auto key = PublicKey::from_spki_der(item.spki);
                if (key.is_error()) {
                    ++wrong;
                    continue;
                }
                Bytes tampered = item.message;
                tampered[static_cast<std::size_t>(round)] ^= 1;
                auto good = key.value().verify(item.message, item.signature);
                auto bad = key.value().verify(tampered, item.signature);
                (good.is_error() ? wrong : verified)++;
                (bad.is_error() && bad.error().is(CryptoError::BadSignature) ? refused : wrong)++;
            }
        });
    }
    for (auto& thread : threads)
        thread.join();
    CHECK(wrong.load() == 0);
    CHECK(verified.load() == THREADS * ROUNDS);
    CHECK(refused.load() == THREADS * ROUNDS);
}
