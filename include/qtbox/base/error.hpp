// Errors are values (SerenityOS style): a function that can fail returns
// ErrorOr<T>, and TRY(expr) hands the error to the caller unchanged.
//
// An Error carries one human line "<what failed>: <why>" (SPEC §10; the applet
// prefixes its own name when it reports) and an integer code. For system
// errors the code is the errno value; modules whose callers branch on the
// cause put their own enum there (for example attest::Failure).
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace qtbox {

class [[nodiscard]] Error {
public:
    // "<what>: <strerror(code)>", code = errno.
    static Error from_errno(std::string_view what, int code = errno);
    // A plain message; code is 0 unless given.
    static Error from_string(std::string message, int code = 0);
    // A message with a module-defined code (an enum value).
    template<typename Enum>
    static Error from_code(Enum code, std::string message)
    {
        return from_string(std::move(message), static_cast<int>(code));
    }

    std::string const& message() const { return m_message; }
    int code() const { return m_code; }
    bool is_errno() const { return m_is_errno; }
    template<typename Enum>
    bool is(Enum code) const { return !m_is_errno && m_code == static_cast<int>(code); }

    // Prefix "what: " to the message, keeping the code.
    Error context(std::string_view what) &&;

private:
    Error(std::string message, int code, bool is_errno)
        : m_message(std::move(message)), m_code(code), m_is_errno(is_errno) { }

    std::string m_message;
    int m_code { 0 };
    bool m_is_errno { false };
};

template<typename T>
class [[nodiscard]] ErrorOr {
public:
    ErrorOr(T value) : m_storage(std::in_place_index<0>, std::move(value)) { }
    ErrorOr(Error error) : m_storage(std::in_place_index<1>, std::move(error)) { }
    template<typename U>
        requires(std::is_convertible_v<U&&, T> && !std::is_same_v<std::decay_t<U>, T>
                 && !std::is_same_v<std::decay_t<U>, Error>)
    ErrorOr(U&& value) : m_storage(std::in_place_index<0>, std::forward<U>(value)) { }

    bool is_error() const { return m_storage.index() == 1; }
    T& value() { return std::get<0>(m_storage); }
    T const& value() const { return std::get<0>(m_storage); }
    Error const& error() const { return std::get<1>(m_storage); }
    T release_value() { return std::move(std::get<0>(m_storage)); }
    Error release_error() { return std::move(std::get<1>(m_storage)); }

private:
    std::variant<T, Error> m_storage;
};

template<>
class [[nodiscard]] ErrorOr<void> {
public:
    ErrorOr() = default;
    ErrorOr(Error error) : m_error(std::move(error)), m_has_error(true) { }

    bool is_error() const { return m_has_error; }
    Error const& error() const { return m_error; }
    Error release_error() { return std::move(m_error); }
    void release_value() { }

private:
    Error m_error { Error::from_string({}) };
    bool m_has_error { false };
};

} // namespace qtbox

// GCC/Clang statement expression, as SerenityOS does: evaluates to the value,
// or returns the error from the enclosing function.
#define TRY(...)                                                        \
    ({                                                                  \
        auto&& _qtbox_try_result = (__VA_ARGS__);                       \
        if (_qtbox_try_result.is_error()) [[unlikely]]                  \
            return _qtbox_try_result.release_error();                   \
        _qtbox_try_result.release_value();                              \
    })
