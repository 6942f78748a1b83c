#include "support.hpp"

#include <qtbox/crypto/hash.hpp>
#include <qtbox/qtsm/pcr_bank.hpp>

#include <doctest/doctest.h>

#include <vector>

using namespace qtbox;
using namespace qtbox::test;
using qtsm::PcrBank;
using qtsm::PcrError;

namespace {

Bytes concat(ByteView a, ByteView b)
{
    Bytes out(a.begin(), a.end());
    out.insert(out.end(), b.begin(), b.end());
    return out;
}

qtsm::SystemPcrs numbered_system_pcrs()
{
    qtsm::SystemPcrs system {};
    for (std::size_t i = 0; i < system.size(); ++i)
        system[i].fill(static_cast<std::uint8_t>(i + 1));
    return system;
}

} // namespace

TEST_CASE("qtsm: measure is one extend of a zero register with the digest (docs/FORMATS.md §2)")
{
    Bytes zeros(48, 0);
    auto inner = crypto::sha384(as_bytes("kernel"));
    auto expected = crypto::sha384(concat(zeros, inner));
    CHECK(qtsm::measure(as_bytes("kernel")) == expected);
}

TEST_CASE("qtsm: extending PCR16 with a then b gives SHA384(SHA384(0^48 || a) || b)")
{
    PcrBank bank(qtsm::SystemPcrs {});
    auto first = must(bank.extend(16, as_bytes("a")));
    auto second = must(bank.extend(16, as_bytes("b")));
    auto step = crypto::sha384(concat(Bytes(48, 0), as_bytes("a")));
    CHECK(first == step);
    CHECK(second == crypto::sha384(concat(step, as_bytes("b"))));
    auto state = must(bank.describe(16));
    CHECK(state.value == second);
    CHECK_FALSE(state.locked);
    CHECK(must(bank.describe(17)).value == qtsm::PcrValue {});
}

TEST_CASE("qtsm: platform PCRs 0-15 hold their creation values and are read-only")
{
    auto system = numbered_system_pcrs();
    PcrBank bank(system);
    for (std::size_t i = 0; i < qtsm::SYSTEM_PCR_COUNT; ++i) {
        auto state = must(bank.describe(i));
        CHECK(state.value == system[i]);
        CHECK(state.locked);
    }
    require_error(bank.extend(3, as_bytes("x")), PcrError::ReadOnlyIndex);
    require_error(bank.lock(std::size_t(3)), PcrError::ReadOnlyIndex);
    CHECK(must(bank.describe(3)).value == system[3]);
}

TEST_CASE("qtsm: index 32 and beyond is InvalidIndex")
{
    PcrBank bank(qtsm::SystemPcrs {});
    require_error(bank.describe(32), PcrError::InvalidIndex);
    require_error(bank.extend(32, as_bytes("x")), PcrError::InvalidIndex);
    require_error(bank.lock(std::size_t(65535)), PcrError::InvalidIndex);
}

TEST_CASE("qtsm: a locked user PCR refuses extends; locking again succeeds")
{
    PcrBank bank(qtsm::SystemPcrs {});
    auto value = must(bank.extend(20, as_bytes("x")));
    must(bank.lock(std::size_t(20)));
    require_error(bank.extend(20, as_bytes("y")), PcrError::ReadOnlyIndex);
    must(bank.lock(std::size_t(20)));
    auto state = must(bank.describe(20));
    CHECK(state.locked);
    CHECK(state.value == value);
}

TEST_CASE("qtsm: an empty extend is refused")
{
    PcrBank bank(qtsm::SystemPcrs {});
    require_error(bank.extend(16, {}), PcrError::InvalidArgument);
    CHECK(must(bank.describe(16)).value == qtsm::PcrValue {});
}

TEST_CASE("qtsm: locking a list is all or nothing")
{
    PcrBank bank(qtsm::SystemPcrs {});
    std::vector<std::uint16_t> with_platform { 16, 3 };
    require_error(bank.lock(std::span<std::uint16_t const>(with_platform)), PcrError::ReadOnlyIndex);
    CHECK_FALSE(must(bank.describe(16)).locked);
    std::vector<std::uint16_t> with_invalid { 17, 40 };
    require_error(bank.lock(std::span<std::uint16_t const>(with_invalid)), PcrError::InvalidIndex);
    CHECK_FALSE(must(bank.describe(17)).locked);
    require_error(bank.lock(std::span<std::uint16_t const>()), PcrError::InvalidArgument);
    std::vector<std::uint16_t> good { 18, 18, 31 };
    must(bank.lock(std::span<std::uint16_t const>(good)));
    std::vector<std::uint16_t> expected;
    for (std::uint16_t i = 0; i < 16; ++i)
        expected.push_back(i);
    expected.push_back(18);
    expected.push_back(31);
    CHECK(bank.locked_indices() == expected);
}

TEST_CASE("qtsm: documents carry PCRs 0-15 and the user PCRs that are locked or non-zero")
{
    PcrBank bank(qtsm::SystemPcrs {});
    must(bank.extend(21, as_bytes("x")));
    must(bank.lock(std::size_t(19)));
    auto entries = PcrBank::document_pcrs(bank.snapshot());
    std::vector<unsigned> indices;
    for (auto const& entry : entries)
        indices.push_back(entry.index);
    std::vector<unsigned> expected { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 19, 21 };
    CHECK(indices == expected);
    CHECK(entries.back().value == must(bank.describe(21)).value);
    CHECK(entries[16].locked);
}
