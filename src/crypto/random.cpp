#include <qtbox/crypto/random.hpp>

#include "support.hpp"

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <mbedtls/ctr_drbg.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <unistd.h>

namespace qtbox::crypto {

namespace {

// mbedTLS entropy callback: the kernel's CSPRNG, nothing else
// (getrandom(2) blocks only until the pool is first initialised).
int getrandom_entropy(void*, unsigned char* output, std::size_t size)
{
    return sys::getrandom(output, size).is_error() ? MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED : 0;
}

} // namespace

struct Drbg::State {
    State() { mbedtls_ctr_drbg_init(&context); }
    ~State() { mbedtls_ctr_drbg_free(&context); }
    State(State const&) = delete;
    State& operator=(State const&) = delete;

    mbedtls_ctr_drbg_context context;
    std::mutex mutex;
};

Drbg::Drbg(std::unique_ptr<State> state) : m_state(std::move(state)) { }
Drbg::~Drbg() = default;
Drbg::Drbg(Drbg&&) noexcept = default;
Drbg& Drbg::operator=(Drbg&&) noexcept = default;

ErrorOr<Drbg> Drbg::create(ByteView personalization)
{
    // SP 800-90A via mbedTLS: seed = entropy (48 bytes) ‖ nonce ‖ personalization,
    // which must fit MBEDTLS_CTR_DRBG_MAX_SEED_INPUT together.
    constexpr std::size_t MAX_PERSONALIZATION = 128;
    if (personalization.size() > MAX_PERSONALIZATION)
        return failure_error(CryptoError::TooLarge,
            fmt::format("DRBG personalization string of {} bytes, at most {}", personalization.size(), MAX_PERSONALIZATION));
    auto state = std::make_unique<State>();
    int result = mbedtls_ctr_drbg_seed(&state->context, getrandom_entropy, nullptr, personalization.data(),
        personalization.size());
    if (result != 0)
        return mbedtls_error(CryptoError::RandomSource, "seed the CTR_DRBG from getrandom", result);
    return Drbg(std::move(state));
}

ErrorOr<void> Drbg::fill(std::span<std::uint8_t> output)
{
    std::lock_guard lock(m_state->mutex);
    while (!output.empty()) {
        std::size_t chunk = std::min<std::size_t>(output.size(), MBEDTLS_CTR_DRBG_MAX_REQUEST);
        int result = mbedtls_ctr_drbg_random(&m_state->context, output.data(), chunk);
        if (result != 0)
            return mbedtls_error(CryptoError::RandomSource, "CTR_DRBG generate", result);
        output = output.subspan(chunk);
    }
    return {};
}

ErrorOr<void> Drbg::reseed()
{
    std::lock_guard lock(m_state->mutex);
    int result = mbedtls_ctr_drbg_reseed(&m_state->context, nullptr, 0);
    if (result != 0)
        return mbedtls_error(CryptoError::RandomSource, "CTR_DRBG reseed", result);
    return {};
}

namespace {

struct ThreadGenerator {
    std::optional<Drbg> drbg;
    pid_t pid { 0 };
};

thread_local ThreadGenerator t_generator;

ErrorOr<Drbg*> thread_drbg()
{
    // After fork() the child inherits this thread's state: reseed so that
    // parent and child never emit the same bytes (GCM IVs, key material).
    pid_t pid = ::getpid();
    if (t_generator.drbg.has_value() && t_generator.pid != pid) {
        TRY(t_generator.drbg->reseed());
        t_generator.pid = pid;
    }
    if (!t_generator.drbg.has_value()) {
        t_generator.drbg.emplace(TRY(Drbg::create(as_bytes("qtbox per-thread CTR_DRBG"))));
        t_generator.pid = pid;
    }
    return &*t_generator.drbg;
}

} // namespace

ErrorOr<void> random_fill(std::span<std::uint8_t> output)
{
    auto* drbg = TRY(thread_drbg());
    return drbg->fill(output);
}

ErrorOr<Bytes> random_bytes(std::size_t count)
{
    Bytes bytes(count);
    TRY(random_fill(bytes));
    return bytes;
}

int random_callback(void*, unsigned char* output, std::size_t size)
{
    auto result = random_fill({ output, size });
    return result.is_error() ? MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED : 0;
}

} // namespace qtbox::crypto
