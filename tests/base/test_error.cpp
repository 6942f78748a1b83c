#include <qtbox/base/error.hpp>

#include <doctest/doctest.h>

using namespace qtbox;

namespace {

enum class Cause { First = 1, Second = 2 };

ErrorOr<int> fails() { return Error::from_code(Cause::Second, "inner failure"); }
ErrorOr<int> succeeds() { return 41; }

ErrorOr<int> adds_one(bool fail)
{
    int value = TRY(fail ? fails() : succeeds());
    return value + 1;
}

ErrorOr<void> void_chain(bool fail)
{
    TRY(adds_one(fail));
    return {};
}

} // namespace

TEST_CASE("error: TRY passes values through and returns errors unchanged")
{
    CHECK(adds_one(false).value() == 42);
    auto result = adds_one(true);
    REQUIRE(result.is_error());
    CHECK(result.error().is(Cause::Second));
    CHECK_FALSE(result.error().is(Cause::First));
    CHECK(result.error().message() == "inner failure");
    CHECK_FALSE(void_chain(false).is_error());
    CHECK(void_chain(true).error().is(Cause::Second));
}

TEST_CASE("error: context prefixes the message and keeps the code")
{
    auto error = Error::from_errno("open /x", ENOENT).context("reading the EIF");
    CHECK(error.message() == "reading the EIF: open /x: No such file or directory");
    CHECK(error.is_errno());
    CHECK(error.code() == ENOENT);
}
