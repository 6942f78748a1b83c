#include "../support/child.hpp"

#include <qtbox/base/error.hpp>
#include <qtbox/base/verify.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <string>

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
    CHECK(error.is_errno(ENOENT));
}

namespace {

// Two modules whose first codes share the number 1.
enum class FirstModuleError { Malformed = 1 };
enum class SecondModuleError { Truncated = 1 };

ErrorOr<void> crosses_modules()
{
    TRY(ErrorOr<void>(Error::from_code(FirstModuleError::Malformed, "first")));
    return {};
}

} // namespace

TEST_CASE("error: a code belongs to its enum, never to another module's with the same number")
{
    auto error = crosses_modules();
    REQUIRE(error.is_error());
    CHECK(error.error().is(FirstModuleError::Malformed));
    CHECK_FALSE(error.error().is(SecondModuleError::Truncated));
    CHECK_FALSE(error.error().is_errno());
    CHECK(error.error().errno_code() == 0);
    CHECK(error.error().code_as<FirstModuleError>() == FirstModuleError::Malformed);
    CHECK_FALSE(error.error().code_as<SecondModuleError>().has_value());

    // errno 1 (EPERM) is not module code 1 either, and the other way round.
    auto system = Error::from_errno("open /x", EPERM);
    CHECK(system.is_errno(EPERM));
    CHECK_FALSE(system.is(FirstModuleError::Malformed));
    CHECK_FALSE(error.error().is_errno(1));

    // A plain message has no code in any domain.
    auto plain = Error::from_string("no code");
    CHECK_FALSE(plain.is_errno());
    CHECK_FALSE(plain.is(FirstModuleError::Malformed));
    CHECK_FALSE(plain.code_as<FirstModuleError>().has_value());
}

TEST_CASE("error: context keeps a module code")
{
    auto error = Error::from_code(SecondModuleError::Truncated, "inner").context("outer");
    CHECK(error.message() == "outer: inner");
    CHECK(error.is(SecondModuleError::Truncated));
}

TEST_CASE("error: asking an error for its value stops the program through the invariant handler")
{
    auto outcome = test::run_in_child([] {
        set_invariant_handler([](std::string_view what, char const*, int) {
            std::string line = "invariant: " + std::string(what) + "\n";
            [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
        });
        ErrorOr<int> failed = Error::from_string("no value");
        return failed.value();
    });
    CHECK(outcome.signal == SIGABRT);
    CHECK(outcome.stderr_text == "invariant: VERIFY(!is_error()) failed\n");

    auto unreachable = test::run_in_child([]() -> int {
        set_invariant_handler([](std::string_view what, char const*, int line) {
            std::string text = std::string(what) + (line > 0 ? " (line known)" : "") + "\n";
            [[maybe_unused]] auto n = ::write(STDERR_FILENO, text.data(), text.size());
        });
        VERIFY_NOT_REACHED();
    });
    CHECK(unreachable.signal == SIGABRT);
    CHECK(unreachable.stderr_text == "unreachable code reached (line known)\n");
}
