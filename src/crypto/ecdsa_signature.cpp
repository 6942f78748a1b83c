// Raw r‖s ↔ DER ECDSA-Sig-Value (ecdsa_signature.hpp).
#include <qtbox/crypto/ecdsa_signature.hpp>
#include <qtbox/crypto/keys.hpp>

#include "support.hpp"

#include <fmt/format.h>

#include <mbedtls/asn1.h>
#include <mbedtls/asn1write.h>

#include <array>
#include <cstring>

namespace qtbox::crypto {

ErrorOr<Bytes> ecdsa_signature_to_der(ByteView raw)
{
    if (raw.size() != P256_SIGNATURE_SIZE && raw.size() != P384_SIGNATURE_SIZE)
        return failure_error(CryptoError::Malformed, fmt::format("ECDSA signature of {} bytes, expected 64 or 96 (r‖s)", raw.size()));
    std::size_t half = raw.size() / 2;
    Mpi r, s;
    if (mbedtls_mpi_read_binary(&r.value, raw.data(), half) != 0 || mbedtls_mpi_read_binary(&s.value, raw.data() + half, half) != 0)
        return failure_error(CryptoError::Internal, "ECDSA signature: out of memory");
    std::array<unsigned char, 2 * (48 + 3) + 4> buffer {};
    unsigned char* cursor = buffer.data() + buffer.size();
    int total = 0;
    // DER is written backwards: s, then r, then the SEQUENCE header.
    for (auto* value : { &s.value, &r.value }) {
        int length = mbedtls_asn1_write_mpi(&cursor, buffer.data(), value);
        if (length < 0)
            return mbedtls_error(CryptoError::Internal, "encode ECDSA signature", length);
        total += length;
    }
    int length = mbedtls_asn1_write_len(&cursor, buffer.data(), static_cast<std::size_t>(total));
    if (length < 0)
        return mbedtls_error(CryptoError::Internal, "encode ECDSA signature", length);
    total += length;
    length = mbedtls_asn1_write_tag(&cursor, buffer.data(), MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
    if (length < 0)
        return mbedtls_error(CryptoError::Internal, "encode ECDSA signature", length);
    total += length;
    return Bytes(cursor, cursor + total);
}

ErrorOr<Bytes> ecdsa_signature_from_der(ByteView der, std::size_t half_size)
{
    if (half_size != 32 && half_size != 48)
        return failure_error(CryptoError::Unsupported, fmt::format("ECDSA signature halves of {} bytes (only 32 and 48)", half_size));
    auto malformed = [](std::string_view why) { return failure_error(CryptoError::Malformed, fmt::format("DER ECDSA signature: {}", why)); };
    Bytes copy(der.begin(), der.end());
    unsigned char* cursor = copy.data();
    unsigned char* end = copy.data() + copy.size();
    std::size_t length = 0;
    if (mbedtls_asn1_get_tag(&cursor, end, &length, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
        return malformed("not a SEQUENCE");
    if (cursor + length != end)
        return malformed("trailing bytes");
    Bytes raw(2 * half_size, 0);
    for (std::size_t index = 0; index < 2; ++index) {
        if (mbedtls_asn1_get_tag(&cursor, end, &length, MBEDTLS_ASN1_INTEGER) != 0 || length == 0)
            return malformed("expected two INTEGERs");
        // X.690 §8.3.2: minimal two's complement; r and s are positive.
        if ((cursor[0] & 0x80) != 0)
            return malformed("negative integer");
        if (length > 1 && cursor[0] == 0 && (cursor[1] & 0x80) == 0)
            return malformed("integer not minimally encoded");
        unsigned char const* digits = cursor;
        std::size_t digit_count = length;
        if (digits[0] == 0) {
            ++digits;
            --digit_count;
        }
        if (digit_count > half_size)
            return malformed("integer longer than the curve order");
        std::memcpy(raw.data() + index * half_size + (half_size - digit_count), digits, digit_count);
        cursor += length;
    }
    if (cursor != end)
        return malformed("trailing bytes inside the SEQUENCE");
    return raw;
}

} // namespace qtbox::crypto
