#include "support.hpp"

#include <qtbox/eif/modules.hpp>

using namespace qtbox;

TEST_CASE("modules: the six guest modules are found recursively, in load order, with their release")
{
    test::TempDir dir;
    test::GuestFixture fixture(dir);
    dir.write("modules/kernel/drivers/net/virtio_net.ko", test::elf_module("virtio_net", "6.1.0-test-amd64"));
    ::symlink("/nonexistent", (dir / "modules/build").c_str());
    auto modules = eif::find_guest_modules(fixture.modules, std::nullopt);
    REQUIRE_MESSAGE(!modules.is_error(), modules.error().message());
    CHECK(modules.value().release == "6.1.0-test-amd64");
    REQUIRE(modules.value().files.size() == 6);
    std::vector<std::string> order;
    for (auto const& file : modules.value().files)
        order.push_back(file.name);
    CHECK(order == std::vector<std::string> { "virtio_ring", "virtio", "virtio_mmio", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport" });
    CHECK(modules.value().files[2].relative_path == "kernel/drivers/virtio/virtio_mmio.ko");
    CHECK(modules.value().files[2].host_path == dir / "modules/kernel/drivers/virtio/virtio_mmio.ko");
}

TEST_CASE("modules: built-in modules are skipped when modules.builtin lists them")
{
    test::TempDir dir;
    test::GuestFixture fixture(dir);
    ::unlink((dir / "modules/kernel/drivers/virtio/virtio.ko").c_str());
    ::unlink((dir / "modules/kernel/drivers/virtio/virtio_ring.ko").c_str());
    auto missing = eif::find_guest_modules(fixture.modules, std::nullopt);
    REQUIRE(missing.is_error());
    CHECK(missing.error().is(eif::EifError::MissingInput));
    CHECK(missing.error().message().find("module virtio_ring is not under") != std::string::npos);
    dir.write("modules/modules.builtin", "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n");
    auto modules = eif::find_guest_modules(fixture.modules, std::nullopt);
    REQUIRE(!modules.is_error());
    CHECK(modules.value().files.size() == 4);
    CHECK(modules.value().builtin == std::vector<std::string> { "virtio_ring", "virtio" });
}

TEST_CASE("modules: releases must agree, with each other and with kernel.release")
{
    test::TempDir dir;
    test::GuestFixture fixture(dir);
    auto hinted = eif::find_guest_modules(fixture.modules, std::string("6.1.0-test-amd64"));
    CHECK(!hinted.is_error());
    auto contradicted = eif::find_guest_modules(fixture.modules, std::string("6.1.0-other"));
    REQUIRE(contradicted.is_error());
    CHECK(contradicted.error().is(eif::EifError::MissingInput));
    CHECK(contradicted.error().message()
        == "the kernel and its modules are for different releases: kernel.release says 6.1.0-other, "
           "kernel/drivers/virtio/virtio_ring.ko says 6.1.0-test-amd64");
    auto kernel = eif::find_guest_modules(fixture.modules, std::nullopt, std::string("6.1.0-56-cloud-amd64"));
    REQUIRE(kernel.is_error());
    CHECK(kernel.error().message()
        == "the kernel and its modules are for different releases: the kernel's version string says 6.1.0-56-cloud-amd64, "
           "kernel/drivers/virtio/virtio_ring.ko says 6.1.0-test-amd64");
    dir.write("modules/kernel/net/vmw_vsock/vsock.ko", test::elf_module("vsock", "5.10.0-old SMP"));
    auto mixed = eif::find_guest_modules(fixture.modules, std::nullopt);
    REQUIRE(mixed.is_error());
    CHECK(mixed.error().message()
        == "the kernel and its modules are for different releases: kernel/drivers/virtio/virtio_ring.ko says 6.1.0-test-amd64, "
           "kernel/net/vmw_vsock/vsock.ko says 5.10.0-old");
}

TEST_CASE("modules: compressed modules are kept as found; their release comes from the other sources; duplicates are refused")
{
    test::TempDir dir;
    test::GuestFixture fixture(dir);
    ::rename((dir / "modules/kernel/net/vmw_vsock/vsock.ko").c_str(), (dir / "modules/kernel/net/vmw_vsock/vsock.ko.xz").c_str());
    auto others = eif::find_guest_modules(fixture.modules, std::nullopt);
    REQUIRE_MESSAGE(!others.is_error(), others.error().message());
    CHECK(others.value().release == "6.1.0-test-amd64");
    CHECK(others.value().files[3].relative_path == "kernel/net/vmw_vsock/vsock.ko.xz");
    auto hinted = eif::find_guest_modules(fixture.modules, std::string("6.1.0-test-amd64"));
    REQUIRE(!hinted.is_error());
    CHECK(hinted.value().files[3].relative_path == "kernel/net/vmw_vsock/vsock.ko.xz");
    dir.write("modules/extra/vsock.ko", test::elf_module("vsock", "6.1.0-test-amd64"));
    auto twice = eif::find_guest_modules(fixture.modules, std::string("6.1.0-test-amd64"));
    REQUIRE(twice.is_error());
    CHECK(twice.error().message().find("module vsock is in") != std::string::npos);
}

// Debian 6.12's layout (issue 16): virtio and virtio_ring built in, every
// other module compressed, in lib/modules/<release>, and no kernel.release.
std::string debian_612_tree(test::TempDir& dir, std::string const& release)
{
    auto root = "lib/modules/" + release;
    char const* suffixes[] = { ".xz", ".gz", ".zst", ".xz" };
    std::size_t next = 0;
    for (auto name : eif::GUEST_MODULES) {
        if (name == "virtio" || name == "virtio_ring")
            continue;
        dir.write(root + "/" + test::module_path(name) + suffixes[next++ % 4], "compressed bytes, never opened");
    }
    dir.write(root + "/modules.builtin", "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n");
    return dir / root;
}

TEST_CASE("modules: with only compressed modules the release is the directory's name or the kernel's, which must agree")
{
    test::TempDir dir;
    auto modules = debian_612_tree(dir, "6.12.95+deb12-cloud-amd64");
    auto named = eif::find_guest_modules(modules, std::nullopt);
    REQUIRE_MESSAGE(!named.is_error(), named.error().message());
    CHECK(named.value().release == "6.12.95+deb12-cloud-amd64");
    REQUIRE(named.value().files.size() == 4);
    CHECK(named.value().files[0].relative_path == "kernel/drivers/virtio/virtio_mmio.ko.xz");
    CHECK(named.value().files[1].relative_path == "kernel/net/vmw_vsock/vsock.ko.gz");
    CHECK(named.value().files[2].relative_path == "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko.zst");
    CHECK(named.value().builtin == std::vector<std::string> { "virtio_ring", "virtio" });
    // A trailing slash, or a path through ".", names the same directory.
    CHECK(eif::find_guest_modules(modules + "/", std::nullopt).value().release == "6.12.95+deb12-cloud-amd64");
    CHECK(eif::find_guest_modules(modules + "/.", std::nullopt).value().release == "6.12.95+deb12-cloud-amd64");

    auto both = eif::find_guest_modules(modules, std::nullopt, std::string("6.12.95+deb12-cloud-amd64"));
    REQUIRE(!both.is_error());
    CHECK(both.value().release == "6.12.95+deb12-cloud-amd64");
    auto disagree = eif::find_guest_modules(modules, std::nullopt, std::string("6.1.0-57-cloud-amd64"));
    REQUIRE(disagree.is_error());
    CHECK(disagree.error().is(eif::EifError::MissingInput));
    CHECK(disagree.error().message()
        == "the kernel and its modules are for different releases: the kernel's version string says 6.1.0-57-cloud-amd64, "
           "the modules directory's name says 6.12.95+deb12-cloud-amd64");

    // The same tree under a name that is no release: the kernel alone tells it.
    ::rename(modules.c_str(), (dir / "lib/modules/extracted").c_str());
    auto unnamed = eif::find_guest_modules(dir / "lib/modules/extracted", std::nullopt);
    REQUIRE(unnamed.is_error());
    CHECK(unnamed.error().is(eif::EifError::MissingInput));
    CHECK(unnamed.error().message().starts_with("cannot tell the kernel release of "));
    auto from_kernel = eif::find_guest_modules(dir / "lib/modules/extracted", std::nullopt, std::string("6.12.95+deb12-cloud-amd64"));
    REQUIRE(!from_kernel.is_error());
    CHECK(from_kernel.value().release == "6.12.95+deb12-cloud-amd64");
}

TEST_CASE("modules: vermagic parsing is bounds-checked")
{
    test::TempDir dir;
    dir.write("ok.ko", test::elf_module("x", "6.1.0-1 SMP"));
    CHECK(eif::module_release(dir / "ok.ko").value() == "6.1.0-1");
    dir.write("text.ko", "not an elf file at all, just text that is long enough to pass the size check......");
    CHECK(eif::module_release(dir / "text.ko").error().message().find("not an ELF kernel module") != std::string::npos);
    auto elf = test::elf_module("x", "6.1.0-1 SMP");
    // Section table offset past the end.
    elf[0x28] = static_cast<char>(0xff);
    elf[0x2f] = 0x7f;
    dir.write("bad.ko", elf);
    CHECK(eif::module_release(dir / "bad.ko").error().message().find("out of bounds") != std::string::npos);
    dir.write("escape.ko", test::elf_module("x", "../../etc SMP"));
    CHECK(eif::module_release(dir / "escape.ko").error().is(eif::EifError::BadInput));
}

TEST_CASE("modules: a bzImage's release comes from its kernel_version string")
{
    test::TempDir dir;
    std::string image(0x1000, '\0');
    std::memcpy(image.data() + 0x202, "HdrS", 4);
    image[0x20e] = 0x00;
    image[0x20f] = 0x02; // string at 0x200 + 0x200 = 0x400
    std::string version = "6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP";
    std::memcpy(image.data() + 0x400, version.data(), version.size());
    dir.write("bzImage", image);
    auto release = eif::bzimage_release(dir / "bzImage");
    REQUIRE(!release.is_error());
    CHECK(release.value() == "6.1.0-56-cloud-amd64");
    dir.write("plain", std::string(0x1000, 'x'));
    CHECK(!eif::bzimage_release(dir / "plain").value().has_value());
}
