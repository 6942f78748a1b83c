#include <qtbox/boot/acpi.hpp>
#include <qtbox/boot/bzimage.hpp>
#include <qtbox/boot/layout.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <string>

using namespace qtbox;
using namespace qtbox::boot;

namespace {

std::uint64_t le(Bytes const& bytes, std::size_t offset, int width)
{
    std::uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i)
        value = (value << 8) | bytes[offset + static_cast<std::size_t>(i)];
    return value;
}

std::string text(Bytes const& bytes, std::size_t offset, std::size_t length)
{
    return std::string(reinterpret_cast<char const*>(bytes.data()) + offset, length);
}

AcpiTables build(std::uint32_t cpus, std::vector<VirtioMmioDevice> devices = {})
{
    AcpiConfig config;
    config.vcpu_count = cpus;
    config.virtio_devices = std::move(devices);
    config.tables_address = ACPI_TABLES_ADDRESS;
    config.rsdp_address = RSDP_ADDRESS;
    config.tables_space = RSDP_ADDRESS - ACPI_TABLES_ADDRESS;
    auto result = build_acpi_tables(config);
    REQUIRE_MESSAGE(!result.is_error(), (result.is_error() ? result.error().message() : ""));
    return result.release_value();
}

// The table that starts at `offset` in the blob, `length` bytes per its header.
Bytes table_at(AcpiTables const& tables, std::uint64_t offset)
{
    std::uint64_t length = le(tables.tables, offset + 4, 4);
    REQUIRE(offset + length <= tables.tables.size());
    return Bytes(tables.tables.begin() + static_cast<long>(offset), tables.tables.begin() + static_cast<long>(offset + length));
}

} // namespace

TEST_CASE("acpi: every table and the RSDP have valid checksums")
{
    auto tables = build(2, { { 0xC0001000, 0x1000, 5 } });
    for (auto offset : { tables.dsdt_offset, tables.fadt_offset, tables.madt_offset, tables.xsdt_offset })
        CHECK(acpi_sum(table_at(tables, offset)) == 0);
    REQUIRE(tables.rsdp.size() == 36);
    CHECK(acpi_sum(ByteView(tables.rsdp).first(20)) == 0);
    CHECK(acpi_sum(tables.rsdp) == 0);
}

TEST_CASE("acpi: the RSDP points at the XSDT, which points at the FADT and the MADT")
{
    auto tables = build(1);
    Bytes const& rsdp = tables.rsdp;
    CHECK(text(rsdp, 0, 8) == "RSD PTR ");
    CHECK(rsdp[15] == 2);
    CHECK(le(rsdp, 16, 4) == 0);
    CHECK(le(rsdp, 20, 4) == 36);
    CHECK(le(rsdp, 24, 8) == ACPI_TABLES_ADDRESS + tables.xsdt_offset);

    Bytes xsdt = table_at(tables, tables.xsdt_offset);
    CHECK(text(xsdt, 0, 4) == "XSDT");
    CHECK(xsdt.size() == 52);
    CHECK(le(xsdt, 36, 8) == ACPI_TABLES_ADDRESS + tables.fadt_offset);
    CHECK(le(xsdt, 44, 8) == ACPI_TABLES_ADDRESS + tables.madt_offset);
    CHECK(text(xsdt, 10, 6) == "QTBOX ");
    CHECK(text(xsdt, 16, 8) == "QTBOXVMM");
    CHECK(text(xsdt, 28, 4) == "QTBX");
    // Tables are 8-byte aligned and fit the reserved window.
    for (auto offset : { tables.dsdt_offset, tables.fadt_offset, tables.madt_offset, tables.xsdt_offset })
        CHECK(offset % 8 == 0);
    CHECK(tables.tables.size() < RSDP_ADDRESS - ACPI_TABLES_ADDRESS);
}

TEST_CASE("acpi: the FADT is hardware-reduced, without RTC, VGA or 8042, and carries the DSDT")
{
    auto tables = build(1);
    Bytes fadt = table_at(tables, tables.fadt_offset);
    CHECK(text(fadt, 0, 4) == "FACP");
    CHECK(fadt.size() == 276);
    CHECK(fadt[8] == 6);
    CHECK(fadt[131] == 5);
    CHECK(le(fadt, 112, 4) == 0x00100030);
    CHECK(le(fadt, 109, 2) == 0x24);
    CHECK(le(fadt, 40, 4) == 0);
    CHECK(le(fadt, 140, 8) == ACPI_TABLES_ADDRESS + tables.dsdt_offset);
    CHECK(text(fadt, 268, 8) == "QTBOXKVM");
    // SCI, PM blocks, reset and sleep registers: all zero.
    CHECK(le(fadt, 46, 2) == 0);
    for (std::size_t offset = 56; offset < 96; ++offset)
        CHECK(fadt[offset] == 0);
    for (std::size_t offset = 116; offset < 129; ++offset)
        CHECK(fadt[offset] == 0);
    for (std::size_t offset = 148; offset < 268; ++offset)
        CHECK(fadt[offset] == 0);
}

TEST_CASE("acpi: the MADT lists the IOAPIC and one enabled LAPIC per vCPU")
{
    auto tables = build(3);
    Bytes madt = table_at(tables, tables.madt_offset);
    CHECK(text(madt, 0, 4) == "APIC");
    CHECK(madt.size() == 44 + 12 + 3 * 8);
    CHECK(le(madt, 36, 4) == 0xFEE00000);
    CHECK(le(madt, 40, 4) == 0);
    Bytes const ioapic = { 1, 12, 0, 0, 0x00, 0x00, 0xC0, 0xFE, 0, 0, 0, 0 };
    CHECK(Bytes(madt.begin() + 44, madt.begin() + 56) == ioapic);
    for (std::uint8_t cpu = 0; cpu < 3; ++cpu) {
        Bytes const lapic = { 0, 8, cpu, cpu, 1, 0, 0, 0 };
        auto at = madt.begin() + 56 + 8 * cpu;
        CHECK(Bytes(at, at + 8) == lapic);
    }
}

TEST_CASE("acpi: the DSDT holds COM1 and then each virtio-mmio device")
{
    auto tables = build(1, { { 0xC0001000, 0x1000, 5 }, { 0xC0002000, 0x1000, 6 } });
    Bytes dsdt = table_at(tables, tables.dsdt_offset);
    CHECK(text(dsdt, 0, 4) == "DSDT");
    CHECK(dsdt[8] == 2);
    Bytes body(dsdt.begin() + 36, dsdt.end());
    Bytes expected = com1_aml().release_value();
    Bytes v0 = virtio_mmio_aml(0, { 0xC0001000, 0x1000, 5 }).release_value();
    Bytes v1 = virtio_mmio_aml(1, { 0xC0002000, 0x1000, 6 }).release_value();
    expected.insert(expected.end(), v0.begin(), v0.end());
    expected.insert(expected.end(), v1.begin(), v1.end());
    CHECK(body == expected);
}

TEST_CASE("acpi: vCPU counts outside 1..254 and a too-small window are refused")
{
    AcpiConfig config;
    config.tables_address = ACPI_TABLES_ADDRESS;
    config.tables_space = 4096;
    config.vcpu_count = 0;
    auto none = build_acpi_tables(config);
    REQUIRE(none.is_error());
    CHECK(none.error().is(BootError::TooMany));
    config.vcpu_count = 255;
    auto many = build_acpi_tables(config);
    REQUIRE(many.is_error());
    CHECK(many.error().is(BootError::TooMany));
    config.vcpu_count = 254;
    config.tables_space = 100;
    auto small = build_acpi_tables(config);
    REQUIRE(small.is_error());
    CHECK(small.error().is(BootError::NoRoom));
}
