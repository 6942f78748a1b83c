// IEEE 754 binary16 conversions for CBOR floats (RFC 8949 §3.3, Appendix D).
// Private to src/cbor.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>

namespace qtbox::cbor {

// Appendix D of RFC 8949, in exact arithmetic: every binary16 value is a
// double exactly.
inline double half_to_double(std::uint16_t half)
{
    unsigned exponent = (half >> 10) & 0x1f;
    unsigned mantissa = half & 0x3ff;
    double value;
    if (exponent == 0)
        value = std::ldexp(mantissa, -24);
    else if (exponent != 31)
        value = std::ldexp(mantissa + 1024, static_cast<int>(exponent) - 25);
    else
        value = mantissa == 0 ? INFINITY : NAN;
    return (half & 0x8000) ? -value : value;
}

// The binary16 encoding of `value` if it represents it exactly (NaN is
// handled by the caller), else nullopt.
inline std::optional<std::uint16_t> float_to_half_exact(float value)
{
    auto bits = std::bit_cast<std::uint32_t>(value);
    auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000);
    auto exponent = static_cast<int>((bits >> 23) & 0xff);
    std::uint32_t mantissa = bits & 0x7fffff;
    if (exponent == 0xff)
        return static_cast<std::uint16_t>(sign | 0x7c00); // infinity
    if (exponent == 0)
        return mantissa == 0 ? std::optional<std::uint16_t>(sign) : std::nullopt; // zero; float subnormals are too small
    int unbiased = exponent - 127;
    if (unbiased >= -14 && unbiased <= 15) {
        if (mantissa & 0x1fff)
            return std::nullopt;
        return static_cast<std::uint16_t>(sign | ((unbiased + 15) << 10) | (mantissa >> 13));
    }
    if (unbiased < -14 && unbiased >= -24) {
        // A binary16 subnormal: value = m * 2^-24 with m < 1024.
        std::uint32_t significand = mantissa | 0x800000;
        auto shift = static_cast<unsigned>(-(unbiased + 1));
        if (significand & ((1u << shift) - 1))
            return std::nullopt;
        return static_cast<std::uint16_t>(sign | (significand >> shift));
    }
    return std::nullopt;
}

} // namespace qtbox::cbor
