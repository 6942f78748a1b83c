// Puts a Linux guest into guest memory for the 64-bit boot protocol: the
// protected-mode kernel at 1 MiB, the command line, the ACPI tables, page
// tables, GDT and the zero page (layout in qtbox/boot/layout.hpp), and
// reserves room for the initrds back to back at the top of low RAM. The
// caller fills the initrds itself (straight from their files or the EIF,
// never through an extra copy). Everything written comes from src/boot's
// pure functions; this only places the bytes.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/boot/acpi.hpp>
#include <qtbox/boot/bzimage.hpp>
#include <qtbox/kvm/memory.hpp>

#include <span>
#include <vector>
#include <string_view>

namespace qtbox::vmm {

struct InitrdSlot {
    std::uint64_t address { 0 };
    std::uint64_t size { 0 };
};

struct LoadedGuest {
    std::uint64_t entry { 0 };          // RIP of the boot vCPU
    std::uint64_t initrd_address { 0 };
    std::uint64_t initrd_size { 0 };    // all initrds, with padding
    std::vector<InitrdSlot> initrds;    // where each one goes
};

// newc archives are 4-byte aligned; the kernel expects the next archive
// of a concatenation to start on such a boundary (init/initramfs.c).
constexpr std::uint64_t INITRD_ALIGNMENT = 4;

ErrorOr<LoadedGuest> load_linux(kvm::GuestMemory const& memory, boot::BzImage const& image,
    std::span<std::uint64_t const> initrd_sizes, std::string_view cmdline, boot::AcpiConfig acpi);

} // namespace qtbox::vmm
