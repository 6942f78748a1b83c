#include "../support/must.hpp"

#include <qtbox/boot/acpi.hpp>
#include <qtbox/boot/aml.hpp>
#include <qtbox/boot/bzimage.hpp>

#include <doctest/doctest.h>

using namespace qtbox;
using namespace qtbox::boot;
using test::must;

// Reference vectors from docs/PLATFORMS.md §V2.3 (Firecracker
// src/acpi-tables/src/aml.rs unit tests, and the 71-byte virtio-mmio device
// computed there with the same encoding rules).
TEST_CASE("aml: COM1 device matches Firecracker's vector byte for byte")
{
    Bytes const expected = {
        0x5B, 0x82, 0x30, 0x2E, 0x5F, 0x53, 0x42, 0x5F, 0x43, 0x4F, 0x4D, 0x31, 0x08, 0x5F, 0x48, 0x49,
        0x44, 0x0C, 0x41, 0xD0, 0x05, 0x01, 0x08, 0x5F, 0x43, 0x52, 0x53, 0x11, 0x16, 0x0A, 0x13, 0x89,
        0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00, 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x00, 0x08,
        0x79, 0x00,
    };
    CHECK(must(com1_aml()) == expected);
}

TEST_CASE("aml: virtio-mmio device V000 matches the reference vector")
{
    Bytes const expected = {
        0x5B, 0x82, 0x45, 0x04, 0x56, 0x30, 0x30, 0x30,                                     // Device V000
        0x08, 0x5F, 0x48, 0x49, 0x44, 0x0D, 0x4C, 0x4E, 0x52, 0x4F, 0x30, 0x30, 0x30, 0x35, 0x00, // _HID
        0x08, 0x5F, 0x55, 0x49, 0x44, 0x0C, 0x00, 0x00, 0x00, 0x00,                         // _UID
        0x08, 0x5F, 0x43, 0x43, 0x41, 0x01,                                                 // _CCA
        0x08, 0x5F, 0x43, 0x52, 0x53, 0x11, 0x1A, 0x0A, 0x17,                               // _CRS
        0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xC0, 0x00, 0x10, 0x00, 0x00,
        0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00,
        0x79, 0x00,
    };
    Bytes aml = must(virtio_mmio_aml(0, { 0xC0001000, 0x1000, 5 }));
    CHECK(aml.size() == 71);
    CHECK(aml == expected);
}

TEST_CASE("aml: package length switches encodings at 63 and 4094 payload bytes")
{
    CHECK(aml::package_length(0) == Bytes { 0x01 });
    CHECK(aml::package_length(62) == Bytes { 0x3F });
    // 63 payload bytes + 2 length bytes = 65 = 0x41: lead 0x40|1, then 0x04.
    CHECK(aml::package_length(63) == Bytes { 0x41, 0x04 });
    CHECK(aml::package_length(4093) == Bytes { 0x4F, 0xFF });
    // 4094 + 3 = 4097 = 0x1001: lead 0x80|1, then 0x00, 0x01.
    CHECK(aml::package_length(4094) == Bytes { 0x81, 0x00, 0x01 });
    CHECK(aml::package_length((1u << 20) - 4) == Bytes { 0x8F, 0xFF, 0xFF });
    CHECK(aml::package_length((1u << 20) - 3) == Bytes { 0xC1, 0x00, 0x00, 0x01 });
}

TEST_CASE("aml: integers use the shortest prefix")
{
    CHECK(aml::integer(0) == Bytes { 0x00 });
    CHECK(aml::integer(1) == Bytes { 0x01 });
    CHECK(aml::integer(~0ull) == Bytes { 0xFF });
    CHECK(aml::integer(0x17) == Bytes { 0x0A, 0x17 });
    CHECK(aml::integer(0x3F8) == Bytes { 0x0B, 0xF8, 0x03 });
    CHECK(aml::integer(0xC0001000) == Bytes { 0x0C, 0x00, 0x10, 0x00, 0xC0 });
    CHECK(aml::integer(0x100000000ull) == Bytes { 0x0E, 0, 0, 0, 0, 1, 0, 0, 0 });
    CHECK(aml::dword(0) == Bytes { 0x0C, 0, 0, 0, 0 });
}

TEST_CASE("aml: EISA ids compress like iasl's EisaId()")
{
    CHECK(must(aml::eisa_id("PNP0501")) == Bytes { 0x0C, 0x41, 0xD0, 0x05, 0x01 });
    CHECK(must(aml::eisa_id("PNP0303")) == Bytes { 0x0C, 0x41, 0xD0, 0x03, 0x03 });
    CHECK(aml::eisa_id("pnp0501").is_error());
    CHECK(aml::eisa_id("PNP050").is_error());
    CHECK(aml::eisa_id("PNP05G1").is_error());
}

TEST_CASE("aml: name strings take root, dual and multi-segment paths and refuse bad segments")
{
    CHECK(must(aml::name_string("_HID")) == to_bytes("_HID"));
    CHECK(must(aml::name_string("\\_SB_")) == Bytes { 0x5C, '_', 'S', 'B', '_' });
    CHECK(must(aml::name_string("_SB_.COM1")) == Bytes { 0x2E, '_', 'S', 'B', '_', 'C', 'O', 'M', '1' });
    CHECK(must(aml::name_string("\\_SB_.PCI0.ISA_")) == Bytes { 0x5C, 0x2F, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'I', 'S', 'A', '_' });
    CHECK(aml::name_string("COM").is_error());
    CHECK(aml::name_string("1COM").is_error());
    CHECK(aml::name_string("com1").is_error());
    CHECK(aml::name_string("").is_error());
    CHECK(aml::name_string("_SB_..COM1").is_error());
}

TEST_CASE("aml: strings must be ASCII without NUL")
{
    CHECK(must(aml::string("AB")) == Bytes { 0x0D, 'A', 'B', 0 });
    CHECK(aml::string(std::string_view("A\0B", 3)).is_error());
    CHECK(aml::string("\xC3\xA9").is_error());
}

TEST_CASE("aml: a virtio-mmio window above 4 GiB or past the 1000th device is refused")
{
    auto high = virtio_mmio_aml(0, { 0x100000000ull, 0x1000, 5 });
    REQUIRE(high.is_error());
    CHECK(high.error().is(BootError::NoRoom));
    auto many = virtio_mmio_aml(1000, { 0xC0001000, 0x1000, 5 });
    REQUIRE(many.is_error());
    CHECK(many.error().is(BootError::TooMany));
}
