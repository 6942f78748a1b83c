// Internal to src/pki: the alphabet allowed in the names that become
// commonNames (parent name, module id), so that no caller can inject
// another attribute ("x,O=evil") into a subject.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/pki/pki.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <string_view>

namespace qtbox::pki {

inline ErrorOr<void> check_name(std::string_view name, std::size_t max_size, std::string_view what)
{
    bool valid = !name.empty() && name.size() <= max_size;
    for (char c : name) {
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        valid = valid && allowed;
    }
    if (!valid)
        return Error::from_code(PkiError::InvalidName, fmt::format("invalid {} \"{}\": 1 to {} characters of A-Z a-z 0-9 . _ -", what, name, max_size));
    return {};
}

} // namespace qtbox::pki
