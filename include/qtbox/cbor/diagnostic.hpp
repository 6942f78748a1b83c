// RFC 8949 §8 diagnostic notation, for tests and error messages: what a
// cbor::Value holds, as text ("[1, h'ab', {\"k\": -2}]").
#pragma once

#include <string>

namespace qtbox::cbor {

class Value;

// Definite lengths only, since the model does not keep indefinite ones.
// Floats print in the shortest form that reads back exactly, always with a
// fraction or exponent (1.0, not 1); NaN and Infinity by name.
std::string to_diagnostic(Value const& value);

} // namespace qtbox::cbor
