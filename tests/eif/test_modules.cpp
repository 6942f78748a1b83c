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
    CHECK(contradicted.error().message().find("modules are for different kernels") != std::string::npos);
    dir.write("modules/kernel/net/vmw_vsock/vsock.ko", test::elf_module("vsock", "5.10.0-old SMP"));
    auto mixed = eif::find_guest_modules(fixture.modules, std::nullopt);
    REQUIRE(mixed.is_error());
    CHECK(mixed.error().message() == "modules are for different kernels: kernel/drivers/virtio/virtio_ring.ko says 6.1.0-test-amd64, kernel/net/vmw_vsock/vsock.ko says 5.10.0-old");
}

TEST_CASE("modules: compressed modules are kept as found but need kernel.release; duplicates are refused")
{
    test::TempDir dir;
    test::GuestFixture fixture(dir);
    ::rename((dir / "modules/kernel/net/vmw_vsock/vsock.ko").c_str(), (dir / "modules/kernel/net/vmw_vsock/vsock.ko.xz").c_str());
    auto unknown = eif::find_guest_modules(fixture.modules, std::nullopt);
    REQUIRE(unknown.is_error());
    CHECK(unknown.error().message().find("cannot tell the kernel release of compressed module") != std::string::npos);
    auto hinted = eif::find_guest_modules(fixture.modules, std::string("6.1.0-test-amd64"));
    REQUIRE(!hinted.is_error());
    CHECK(hinted.value().files[3].relative_path == "kernel/net/vmw_vsock/vsock.ko.xz");
    dir.write("modules/extra/vsock.ko", test::elf_module("vsock", "6.1.0-test-amd64"));
    auto twice = eif::find_guest_modules(fixture.modules, std::string("6.1.0-test-amd64"));
    REQUIRE(twice.is_error());
    CHECK(twice.error().message().find("module vsock is in") != std::string::npos);
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
