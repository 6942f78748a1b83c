// A small ACPI Machine Language encoder: exactly the constructs the DSDT
// needs (devices, names, integers, strings, EISA ids and resource
// templates), each encoded as ACPI 6.5 §20 "ACPI Machine Language
// Specification" and §6.4 "Resource Data Types" define it. Output is
// checked byte for byte against Firecracker's vectors (docs/PLATFORMS.md §V2.3).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstdint>
#include <string_view>

namespace qtbox::boot::aml {

// PkgLength (§20.2.4): the length counts itself; 1 byte up to 63, else a
// lead byte holding the byte count and the low nibble, then 8-bit groups.
Bytes package_length(std::size_t payload_length);

// A NameSeg ("_HID", "COM1") or a path of them ("_SB_.COM1", "\\_SB_"):
// each segment exactly 4 characters [A-Z0-9_], first not a digit.
ErrorOr<Bytes> name_string(std::string_view path);

// Integers: Zero/One/Ones where they apply, else the smallest of
// Byte/Word/DWord/QWord prefix (§20.2.3).
Bytes integer(std::uint64_t value);
// Always the DWordConst form (Firecracker encodes _UID this way).
Bytes dword(std::uint32_t value);
// String constant, NUL-terminated ASCII.
ErrorOr<Bytes> string(std::string_view text);
// EisaId("PNP0501") → DWordConst of the compressed, byte-swapped id.
ErrorOr<Bytes> eisa_id(std::string_view id);

// Name(path, value)
ErrorOr<Bytes> name(std::string_view path, ByteView value);
// Device(path) { body }
ErrorOr<Bytes> device(std::string_view path, ByteView body);

// ResourceTemplate() { descriptors } = Buffer whose bytes end with an
// EndTag of checksum 0.
Bytes resource_template(ByteView descriptors);
// Memory32Fixed(ReadWrite|ReadOnly, base, length) (§6.4.3.4).
Bytes memory32_fixed(bool writable, std::uint32_t base, std::uint32_t length);
// Interrupt(ResourceConsumer, Edge|Level, ActiveHigh|Low, Exclusive|Shared) {gsi}
// (Extended Interrupt Descriptor, §6.4.3.6).
Bytes interrupt(bool edge_triggered, bool active_low, bool shared, std::uint32_t gsi);
// IO(Decode16, min, max, alignment, length) (§6.4.2.5).
Bytes io(std::uint16_t minimum, std::uint16_t maximum, std::uint8_t alignment, std::uint8_t length);

} // namespace qtbox::boot::aml
