// Whether this test binary is built with a sanitizer. Their runtime makes
// system calls of its own (pipe2 to probe memory, sigaltstack in _exit)
// that no production seccomp filter allows, so the tests that run real
// code under a real filter skip themselves there: the filters are checked
// in the release builds.
#pragma once

namespace qtbox::test {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool SANITIZED = true;
#elif defined(__has_feature)
// clang says it with __has_feature, not with gcc's macros.
#    if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool SANITIZED = true;
#    else
constexpr bool SANITIZED = false;
#    endif
#else
constexpr bool SANITIZED = false;
#endif

} // namespace qtbox::test
