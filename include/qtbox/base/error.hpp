// Errors are values (SerenityOS style): a function that can fail returns
// ErrorOr<T>, and TRY(expr) hands the error to the caller unchanged.
//
// An Error carries one human line "<what failed>: <why>" (docs/FORMATS.md
// §10; the applet prefixes its own name when it reports) and, optionally, a
// code in a domain:
//   - the errno domain: from_errno(), for a value a system call returned;
//   - a module's error enum: from_code(Enum::Value, message). The enum type
//     is the domain, so is(cbor::DecodeError::Truncated) can never match
//     crypto's or eif's code with the same number, however far TRY carried
//     the error across module boundaries;
//   - none: from_string(message), for failures nobody branches on.
#pragma once

#include <qtbox/base/verify.hpp>

#include <cerrno>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace qtbox {

namespace detail {

// One object per error enum; its address is the enum's domain. Mutable on
// purpose: the linker never folds writable objects, so two domains can
// never share an address.
template<typename Enum>
struct ErrorDomainTag {
    static inline char id = 0;
};
inline char errno_domain_id = 0;

} // namespace detail

template<typename T>
concept ErrorEnum = std::is_enum_v<T>;

class [[nodiscard]] Error {
public:
    // "<what>: <strerror(code)>", in the errno domain. `code` must be a value
    // the system returned (errno, or a pthread function's result).
    static Error from_errno(std::string_view what, int code = errno);
    // A plain message with no code.
    static Error from_string(std::string message);
    // A message with a module's code; the enum type is the domain.
    template<ErrorEnum Enum>
    static Error from_code(Enum code, std::string message)
    {
        return Error(std::move(message), &detail::ErrorDomainTag<Enum>::id, static_cast<int>(code));
    }

    std::string const& message() const { return m_message; }

    bool is_errno() const { return m_domain == &detail::errno_domain_id; }
    bool is_errno(int code) const { return is_errno() && m_code == code; }
    // The errno value, or 0 when this is not a system error.
    int errno_code() const { return is_errno() ? m_code : 0; }

    template<ErrorEnum Enum>
    bool is(Enum code) const { return m_domain == &detail::ErrorDomainTag<Enum>::id && m_code == static_cast<int>(code); }
    // The code if this error is in Enum's domain.
    template<ErrorEnum Enum>
    std::optional<Enum> code_as() const
    {
        if (m_domain != &detail::ErrorDomainTag<Enum>::id)
            return std::nullopt;
        return static_cast<Enum>(m_code);
    }

    // Prefix "what: " to the message, keeping the domain and code.
    Error context(std::string_view what) &&;

private:
    Error(std::string message, char const* domain, int code)
        : m_message(std::move(message)), m_domain(domain), m_code(code) { }

    std::string m_message;
    char const* m_domain { nullptr };
    int m_code { 0 };
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
    // Asking an error for its value is a bug in the caller, never a property
    // of the input: it stops the program (VERIFY).
    T& value()
    {
        VERIFY(!is_error());
        return std::get<0>(m_storage);
    }
    T const& value() const
    {
        VERIFY(!is_error());
        return std::get<0>(m_storage);
    }
    Error const& error() const
    {
        VERIFY(is_error());
        return std::get<1>(m_storage);
    }
    T release_value() { return std::move(value()); }
    Error release_error()
    {
        VERIFY(is_error());
        return std::move(std::get<1>(m_storage));
    }

private:
    std::variant<T, Error> m_storage;
};

template<>
class [[nodiscard]] ErrorOr<void> {
public:
    ErrorOr() = default;
    ErrorOr(Error error) : m_error(std::move(error)) { }

    bool is_error() const { return m_error.has_value(); }
    Error const& error() const
    {
        VERIFY(is_error());
        return *m_error;
    }
    Error release_error()
    {
        VERIFY(is_error());
        return std::move(*m_error);
    }
    void release_value() { }

private:
    std::optional<Error> m_error;
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
