// Unwrapping ErrorOr in tests: must(result) REQUIREs success (with the
// error's message when it failed) and hands back the value; require_error
// REQUIREs a failure and CHECKs that it carries the expected code, and
// fails_with tells whether a result failed with a given code. Needs
// doctest. Used by the suites whose set-up calls fallible APIs (attest,
// boot, crypto, eif, kvm, pki, qtsm) and by hex.hpp.
#pragma once

#include <qtbox/base/error.hpp>

#include <doctest/doctest.h>

namespace qtbox::test {

template<typename T>
T must(ErrorOr<T> result)
{
    REQUIRE_MESSAGE(!result.is_error(), result.error().message());
    return result.release_value();
}

inline void must(ErrorOr<void> result)
{
    REQUIRE_MESSAGE(!result.is_error(), result.error().message());
}

// True when `result` failed with `code` (never calls error() on a success):
// CHECK(fails_with(parse(...), Error::Kind)) checks which error, not only
// that there was one.
template<typename T, typename Code>
bool fails_with(ErrorOr<T> const& result, Code code)
{
    return result.is_error() && result.error().is(code);
}

template<typename T, typename Code>
void require_error(ErrorOr<T> const& result, Code code)
{
    REQUIRE(result.is_error());
    CHECK_MESSAGE(result.error().is(code), result.error().message());
}

} // namespace qtbox::test
