#include <qtbox/boot/acpi.hpp>
#include <qtbox/boot/aml.hpp>
#include <qtbox/boot/bzimage.hpp>
#include <qtbox/boot/layout.hpp>

#include <fmt/format.h>

#include <cstring>

namespace qtbox::boot {

namespace {

using namespace acpi;

void append(Bytes& out, ByteView bytes) { out.insert(out.end(), bytes.begin(), bytes.end()); }

void store_le(Bytes& bytes, std::size_t offset, std::uint64_t value, int width)
{
    for (int i = 0; i < width; ++i)
        bytes[offset + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value >> (8 * i));
}

void store_text(Bytes& bytes, std::size_t offset, std::string_view text)
{
    std::memcpy(bytes.data() + offset, text.data(), text.size());
}

// §5.2.6 System Description Table Header, with `length` zero bytes in all.
Bytes sdt(char const (&signature)[5], std::size_t length, std::uint8_t revision)
{
    Bytes table(length, 0);
    store_text(table, 0, std::string_view(signature, 4));
    store_le(table, 4, length, 4);
    table[8] = revision;
    store_text(table, 10, std::string_view(OEM_ID, 6));
    store_text(table, 16, std::string_view(OEM_TABLE_ID, 8));
    store_le(table, 24, 1, 4); // OEM revision
    store_text(table, 28, std::string_view(CREATOR_ID, 4));
    store_le(table, 32, 1, 4); // creator revision
    return table;
}

// Fixes the length field (the table may have grown) and the checksum.
void finish_sdt(Bytes& table)
{
    store_le(table, 4, table.size(), 4);
    table[CHECKSUM_OFFSET] = 0;
    table[CHECKSUM_OFFSET] = static_cast<std::uint8_t>(0x100 - acpi_sum(table));
}

void align8(Bytes& bytes) { bytes.resize((bytes.size() + 7) / 8 * 8, 0); }

} // namespace

std::uint8_t acpi_sum(ByteView bytes)
{
    std::uint8_t sum = 0;
    for (auto byte : bytes)
        sum = static_cast<std::uint8_t>(sum + byte);
    return sum;
}

ErrorOr<Bytes> com1_aml()
{
    // Device(\_SB_.COM1) { _HID PNP0501, _CRS { IRQ 4 edge high exclusive,
    // IO 0x3F8-0x3FF } }: lets 8250_pnp bind ttyS0 to GSI 4 under
    // hardware-reduced ACPI, where no legacy ISA IRQs are pre-mapped
    // (docs/PLATFORMS.md §V2.4, §V6).
    Bytes descriptors = aml::interrupt(true, false, false, COM1_GSI);
    append(descriptors, aml::io(COM1_PORT, COM1_PORT, 0, 8));
    Bytes hid = TRY(aml::eisa_id("PNP0501"));
    Bytes body = TRY(aml::name("_HID", hid));
    append(body, TRY(aml::name("_CRS", aml::resource_template(descriptors))));
    return aml::device("_SB_.COM1", body);
}

ErrorOr<Bytes> virtio_mmio_aml(std::size_t index, VirtioMmioDevice const& device)
{
    // Linux binds virtio_mmio to ACPI id LNRO0005 (drivers/virtio/virtio_mmio.c);
    // _CCA One: DMA is cache coherent.
    if (index >= MAX_VIRTIO_DEVICES)
        return Error::from_code(BootError::TooMany, "too many virtio-mmio devices for the DSDT");
    if (device.base > 0xFFFFFFFFull || device.size == 0 || device.base + device.size > 0x100000000ull)
        return Error::from_code(BootError::NoRoom, fmt::format("virtio-mmio window {:#x}+{:#x} is not below 4 GiB", device.base, device.size));
    Bytes descriptors = aml::memory32_fixed(true, static_cast<std::uint32_t>(device.base), device.size);
    append(descriptors, aml::interrupt(true, false, false, device.gsi));
    Bytes hid = TRY(aml::string("LNRO0005"));
    Bytes body = TRY(aml::name("_HID", hid));
    append(body, TRY(aml::name("_UID", aml::dword(static_cast<std::uint32_t>(index)))));
    append(body, TRY(aml::name("_CCA", aml::integer(1))));
    append(body, TRY(aml::name("_CRS", aml::resource_template(descriptors))));
    return aml::device(fmt::format("V{:03}", index), body);
}

ErrorOr<AcpiTables> build_acpi_tables(AcpiConfig const& config)
{
    if (config.vcpu_count == 0 || config.vcpu_count > MAX_ACPI_VCPUS)
        return Error::from_code(BootError::TooMany, fmt::format("{} vCPUs: the MADT describes 1 to {}", config.vcpu_count, MAX_ACPI_VCPUS));
    AcpiTables result;
    Bytes& blob = result.tables;

    // DSDT (revision 2: 64-bit AML integers).
    Bytes dsdt = sdt("DSDT", HEADER_SIZE, 2);
    append(dsdt, TRY(com1_aml()));
    for (std::size_t i = 0; i < config.virtio_devices.size(); ++i)
        append(dsdt, TRY(virtio_mmio_aml(i, config.virtio_devices[i])));
    finish_sdt(dsdt);
    result.dsdt_offset = blob.size();
    append(blob, dsdt);
    align8(blob);

    // FADT: hardware-reduced (no PM blocks, SCI, RTC or 8042), ACPI 6.5.
    Bytes fadt = sdt("FACP", FADT_SIZE, 6);
    fadt[FADT_MINOR_VERSION] = 5;
    store_le(fadt, FADT_FLAGS, FLAG_HW_REDUCED_ACPI | FLAG_PWR_BUTTON | FLAG_SLP_BUTTON, 4);
    // No CMOS RTC: rtc_cmos is not registered (Linux reads the 0 we return
    // for port 0x71 otherwise); no VGA. The 8042 flag stays clear, so the
    // i8042 driver sees no controller (boot.c: FIRMWARE_ABSENT).
    store_le(fadt, FADT_IAPC_BOOT_ARCH, IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT, 2);
    store_le(fadt, FADT_X_DSDT, config.tables_address + result.dsdt_offset, 8);
    store_text(fadt, FADT_HYPERVISOR_VENDOR, std::string_view(HYPERVISOR_VENDOR, 8));
    finish_sdt(fadt);
    result.fadt_offset = blob.size();
    append(blob, fadt);
    align8(blob);

    // MADT: the LAPIC address, flags 0 (no 8259 pair), one IOAPIC (ID 0,
    // GSI base 0), one enabled LAPIC per vCPU with APIC ID = index. No
    // interrupt source overrides: KVM routes GSI n to IOAPIC pin n.
    Bytes madt = sdt("APIC", HEADER_SIZE + 8, 6);
    store_le(madt, 36, LAPIC_ADDRESS, 4);
    Bytes ioapic(12, 0);
    ioapic[0] = 1;
    ioapic[1] = 12;
    store_le(ioapic, 4, IOAPIC_ADDRESS, 4);
    append(madt, ioapic);
    for (std::uint32_t cpu = 0; cpu < config.vcpu_count; ++cpu) {
        Bytes lapic { 0, 8, static_cast<std::uint8_t>(cpu), static_cast<std::uint8_t>(cpu), 1, 0, 0, 0 };
        append(madt, lapic);
    }
    finish_sdt(madt);
    result.madt_offset = blob.size();
    append(blob, madt);
    align8(blob);

    // XSDT: 64-bit pointers to the FADT and the MADT (the DSDT hangs off
    // the FADT).
    Bytes xsdt = sdt("XSDT", HEADER_SIZE + 16, 1);
    store_le(xsdt, 36, config.tables_address + result.fadt_offset, 8);
    store_le(xsdt, 44, config.tables_address + result.madt_offset, 8);
    finish_sdt(xsdt);
    result.xsdt_offset = blob.size();
    append(blob, xsdt);

    if (blob.size() > config.tables_space)
        return Error::from_code(BootError::NoRoom, fmt::format("ACPI tables need {} bytes, {} are reserved", blob.size(), config.tables_space));

    // RSDP revision 2 (§5.2.5.3): checksum over the first 20 bytes, the
    // extended checksum over all 36.
    Bytes& rsdp = result.rsdp;
    rsdp.assign(RSDP_SIZE, 0);
    store_text(rsdp, 0, "RSD PTR ");
    store_text(rsdp, 9, std::string_view(OEM_ID, 6));
    rsdp[15] = 2;
    store_le(rsdp, 20, RSDP_SIZE, 4);
    store_le(rsdp, 24, config.tables_address + result.xsdt_offset, 8);
    rsdp[RSDP_CHECKSUM_OFFSET] = static_cast<std::uint8_t>(0x100 - acpi_sum(ByteView(rsdp).first(20)));
    rsdp[RSDP_EXTENDED_CHECKSUM_OFFSET] = static_cast<std::uint8_t>(0x100 - acpi_sum(rsdp));
    return result;
}

} // namespace qtbox::boot
