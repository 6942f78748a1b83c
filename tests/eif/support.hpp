// EIF test fixtures: synthetic kernels, ELF modules with a vermagic, and a
// blobs-like directory, so that unit tests never need the real kernel.
#pragma once

#include "../support/temp_dir.hpp"

#include <qtbox/eif/modules.hpp>

#include <cstring>
#include <fcntl.h>
#include <string>
#include <unistd.h>
#include <zlib.h>

namespace qtbox::test {

// A minimal ELF64 little-endian relocatable with a .modinfo section.
inline std::string elf_module(std::string const& name, std::string const& vermagic)
{
    std::string names = std::string("\0.shstrtab\0.modinfo\0", 20);
    std::string modinfo = "license=GPL" + std::string(1, '\0') + "vermagic=" + vermagic + std::string(1, '\0') + "name=" + name + std::string(1, '\0');
    std::string elf(64, '\0');
    std::memcpy(elf.data(), "\x7f" "ELF", 4);
    elf[4] = 2; // ELFCLASS64
    elf[5] = 1; // little-endian
    elf[6] = 1;
    std::size_t names_offset = elf.size();
    elf += names;
    std::size_t info_offset = elf.size();
    elf += modinfo;
    while (elf.size() % 8)
        elf.push_back('\0');
    std::size_t section_offset = elf.size();
    auto put = [&](std::size_t at, std::uint64_t value, int bytes) {
        for (int i = 0; i < bytes; ++i)
            elf[at + static_cast<std::size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xff);
    };
    put(0x28, section_offset, 8);
    put(0x3a, 64, 2);
    put(0x3c, 3, 2);
    put(0x3e, 1, 2);
    elf.append(64 * 3, '\0');
    auto section = [&](std::size_t index, std::uint32_t name_offset, std::uint64_t offset, std::uint64_t size) {
        std::size_t base = section_offset + 64 * index;
        put(base, name_offset, 4);
        put(base + 4, 3, 4);
        put(base + 0x18, offset, 8);
        put(base + 0x20, size, 8);
    };
    section(1, 1, names_offset, names.size());
    section(2, 11, info_offset, modinfo.size());
    return elf;
}

inline std::string module_path(std::string_view name)
{
    if (name.starts_with("virtio"))
        return "kernel/drivers/virtio/" + std::string(name) + ".ko";
    return "kernel/net/vmw_vsock/" + std::string(name) + ".ko";
}

// DIR/kernel, DIR/init, DIR/modules/kernel/... (the six guest modules).
struct GuestFixture {
    explicit GuestFixture(TempDir const& dir, std::string const& release = "6.1.0-test-amd64")
    {
        dir.write("kernel", std::string("synthetic kernel image\n") + std::string(5000, 'k'));
        dir.write("init", std::string("#!init\n") + std::string(3000, 'i'), 0755);
        for (auto name : eif::GUEST_MODULES)
            dir.write("modules/" + module_path(name), elf_module(std::string(name), release + " SMP preempt mod_unload modversions"));
        kernel = dir / "kernel";
        init = dir / "init";
        modules = dir / "modules";
    }
    std::string kernel;
    std::string init;
    std::string modules;
};

// Rewrites an EIF's header CRC (zlib crc32 over [0,544) and [548,end)) so
// that a test's deliberate defect is the only one left.
inline void fix_eif_crc(std::string const& path)
{
    auto bytes = read_text(path);
    auto crc = static_cast<std::uint32_t>(crc32(0, reinterpret_cast<Bytef const*>(bytes.data()), 544));
    crc = static_cast<std::uint32_t>(crc32(crc, reinterpret_cast<Bytef const*>(bytes.data()) + 548, static_cast<uInt>(bytes.size() - 548)));
    std::string be { static_cast<char>(crc >> 24), static_cast<char>(crc >> 16), static_cast<char>(crc >> 8), static_cast<char>(crc) };
    auto fd = sys::open(path, O_WRONLY);
    REQUIRE(!fd.is_error());
    REQUIRE(::pwrite(fd.value().get(), be.data(), 4, 544) == 4);
}

} // namespace qtbox::test
