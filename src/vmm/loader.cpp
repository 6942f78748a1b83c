#include <qtbox/boot/cpu.hpp>
#include <qtbox/boot/layout.hpp>
#include <qtbox/boot/zero_page.hpp>
#include <qtbox/vmm/loader.hpp>

#include <fmt/format.h>

namespace qtbox::vmm {

ErrorOr<LoadedGuest> load_linux(kvm::GuestMemory const& memory, boot::BzImage const& image,
    std::span<std::uint64_t const> initrd_sizes, std::string_view cmdline, boot::AcpiConfig acpi)
{
    using namespace boot;
    LoadedGuest guest;

    auto padded = [](std::uint64_t size) { return (size + INITRD_ALIGNMENT - 1) / INITRD_ALIGNMENT * INITRD_ALIGNMENT; };
    std::uint64_t total = 0;
    for (auto size : initrd_sizes) {
        if (size > boot::MAX_MEMORY)
            return Error::from_code(boot::BootError::NoRoom, "initrd larger than any enclave's memory");
        total += padded(size);
    }
    guest.initrd_size = total;
    guest.initrd_address = TRY(place_initrd(image, memory.regions(), KERNEL_LOAD_ADDRESS, total));
    std::uint64_t cursor = guest.initrd_address;
    for (auto size : initrd_sizes) {
        guest.initrds.push_back({ cursor, size });
        cursor += padded(size);
    }

    TRY(memory.write(KERNEL_LOAD_ADDRESS, image.kernel));

    Bytes command_line = TRY(command_line_bytes(image, cmdline));
    TRY(memory.write(CMDLINE_ADDRESS, command_line));

    acpi.tables_address = ACPI_TABLES_ADDRESS;
    acpi.rsdp_address = RSDP_ADDRESS;
    acpi.tables_space = RSDP_ADDRESS - ACPI_TABLES_ADDRESS;
    AcpiTables tables = TRY(build_acpi_tables(acpi));
    TRY(memory.write(ACPI_TABLES_ADDRESS, tables.tables));
    TRY(memory.write(RSDP_ADDRESS, tables.rsdp));

    TRY(memory.write(PML4_ADDRESS, identity_page_tables()));
    TRY(memory.write(GDT_ADDRESS, gdt_bytes()));
    // The IDT at IDT_ADDRESS stays zero: fresh anonymous memory already is.

    auto e820 = e820_map(memory.regions());
    ZeroPageParameters parameters;
    parameters.load_address = KERNEL_LOAD_ADDRESS;
    parameters.cmdline_address = CMDLINE_ADDRESS;
    parameters.initrd_address = total ? guest.initrd_address : 0;
    parameters.initrd_size = total;
    parameters.rsdp_address = RSDP_ADDRESS;
    parameters.e820 = e820;
    auto zero_page = TRY(build_zero_page(image, parameters));
    TRY(memory.write(ZERO_PAGE_ADDRESS, zero_page));

    guest.entry = KERNEL_LOAD_ADDRESS + setup::ENTRY_64_OFFSET;
    return guest;
}

} // namespace qtbox::vmm
