// Shared helpers of the qtsm unit tests: a temporary PKI and backend. must,
// require_error and TempDir come from tests/support/.
#pragma once

#include "../support/must.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/base/error.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/backend.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string>

namespace qtbox::test {

// 2026-03-01T12:00:00Z.
constexpr UnixMillis T0 = 1772366400000;
constexpr std::int64_t HOUR = 3600 * 1000;
constexpr std::int64_t SECOND = 1000;

// A PKI made at T0 - 1 h (so that T0 and the hours after it are inside its
// validity), in its own directory.
struct TestPki {
    TestPki()
    {
        pki::InitOptions options;
        options.now = T0 - HOUR;
        must(pki::init(directory.file("pki"), false, options));
    }
    pki::Authority authority() const { return must(pki::load(directory.file("pki"))); }
    TempDir directory;
};

// The backend's clock, moved by the test.
struct TestClock {
    std::shared_ptr<UnixMillis> now = std::make_shared<UnixMillis>(T0);
    pki::Clock function() const
    {
        auto shared = now;
        return [shared] { return *shared; };
    }
};

inline std::unique_ptr<qtsm::Backend> make_backend(TestPki const& pki, TestClock const& clock,
    cose::SignatureOrder order = cose::SignatureOrder::Rfc9052)
{
    qtsm::BackendConfig config;
    config.system_pcrs[0] = qtsm::measure(as_bytes("image"));
    config.system_pcrs[4] = qtsm::measure(as_bytes("4662b7a3-7898-46c9-a6c5-20e9025e50bc"));
    config.module_id = must(qtsm::make_module_id("4662b7a3-7898-46c9-a6c5-20e9025e50bc"));
    config.signature_order = order;
    config.clock = clock.function();
    return must(qtsm::Backend::create(std::move(config), pki.authority()));
}

} // namespace qtbox::test
