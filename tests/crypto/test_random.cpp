#include <qtbox/crypto/error.hpp>
#include <qtbox/crypto/random.hpp>

#include "support.hpp"

#include <algorithm>
#include <set>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace qtbox;

TEST_CASE("random: sizes are exact and successive outputs differ")
{
    CHECK(test::must(crypto::random_bytes(0)).empty());
    auto a = test::must(crypto::random_bytes(5000));
    auto b = test::must(crypto::random_bytes(5000));
    CHECK(a.size() == 5000);
    CHECK(a != b);
    // 5000 bytes of zeros from a working DRBG has probability 2^-40000.
    CHECK(std::any_of(a.begin(), a.end(), [](auto byte) { return byte != 0; }));
}

TEST_CASE("random: a Drbg fills across its 1024-byte request limit and reseeds")
{
    auto drbg = test::must(crypto::Drbg::create(as_bytes("test")));
    Bytes buffer(3000, 0);
    test::must(drbg.fill(buffer));
    Bytes first(buffer.begin(), buffer.begin() + 1024);
    Bytes second(buffer.begin() + 1024, buffer.begin() + 2048);
    CHECK(first != second);
    CHECK(std::any_of(buffer.begin() + 2048, buffer.end(), [](auto byte) { return byte != 0; }));
    test::must(drbg.reseed());
    Bytes after(32, 0);
    test::must(drbg.fill(after));
    CHECK(after != Bytes(buffer.begin(), buffer.begin() + 32));
}

TEST_CASE("random: an oversized personalization string is refused")
{
    auto drbg = crypto::Drbg::create(Bytes(129, 1));
    REQUIRE(drbg.is_error());
    CHECK(drbg.error().is(crypto::CryptoError::TooLarge));
}

TEST_CASE("random: one Drbg shared by threads, and per-thread generators, never repeat")
{
    auto shared = test::must(crypto::Drbg::create());
    constexpr int THREADS = 8;
    std::vector<Bytes> outputs(2 * THREADS);
    std::vector<std::thread> threads;
    for (int index = 0; index < THREADS; ++index) {
        threads.emplace_back([&, index] {
            Bytes mine(32, 0);
            if (!shared.fill(mine).is_error())
                outputs[static_cast<std::size_t>(index)] = mine;
            auto own = crypto::random_bytes(32);
            if (!own.is_error())
                outputs[static_cast<std::size_t>(THREADS + index)] = own.release_value();
        });
    }
    for (auto& thread : threads)
        thread.join();
    // Compared as hex: GCC 12 warns spuriously on std::set<Bytes> at -O3.
    std::set<std::string> distinct;
    for (auto const& output : outputs)
        distinct.insert(hex_encode(output));
    CHECK(distinct.size() == outputs.size());
    CHECK(distinct.count("") == 0);
}

TEST_CASE("random: a forked child does not repeat its parent's stream")
{
    // Make sure this thread's generator exists before the fork.
    test::must(crypto::random_bytes(16));
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        auto bytes = crypto::random_bytes(32);
        int status = 1;
        if (!bytes.is_error() && ::write(fds[1], bytes.value().data(), 32) == 32)
            status = 0;
        ::_exit(status);
    }
    ::close(fds[1]);
    auto mine = test::must(crypto::random_bytes(32));
    Bytes theirs(32, 0);
    CHECK(::read(fds[0], theirs.data(), theirs.size()) == 32);
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(mine != theirs);
}
