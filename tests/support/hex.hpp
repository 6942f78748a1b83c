// Test vectors written in hex: unhex("a10126") REQUIREs that the text is
// valid hex and returns its bytes. Needs doctest.
// Used by tests/attest, tests/cbor, tests/cose, tests/crypto and tests/qtsm.
#pragma once

#include "must.hpp"

#include <qtbox/base/bytes.hpp>

#include <string_view>

namespace qtbox::test {

inline Bytes unhex(std::string_view text)
{
    return must(hex_decode(text));
}

} // namespace qtbox::test
