// Helpers shared by the CBOR tests.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <doctest/doctest.h>

#include <string_view>

namespace qtbox::test {

inline Bytes unhex(std::string_view text)
{
    auto bytes = hex_decode(text);
    REQUIRE_FALSE(bytes.is_error());
    return bytes.release_value();
}

} // namespace qtbox::test
