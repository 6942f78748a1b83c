// Vm::add_ioeventfd against the real KVM (api.rst KVM_IOEVENTFD): a tiny
// real-mode guest writes the virtio-mmio QueueNotify way (docs/PLATFORMS.md
// §V3), once with the value the ioeventfd matches and once with another.
// The first never leaves the kernel and signals the eventfd; the second
// exits to user space as MMIO.
//
// Needs a usable /dev/kvm: without one the program reports SKIP (exit 77;
// a failure with QTBOX_TESTS_REQUIRED=1), as docs/ARCHITECTURE.md "Tests"
// asks of a suite that needs what the machine may lack.
#define DOCTEST_CONFIG_IMPLEMENT
#include <qtbox/base/sys.hpp>
#include <qtbox/kvm/memory.hpp>
#include <qtbox/kvm/system.hpp>
#include <qtbox/kvm/vm.hpp>

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::kvm;

namespace {

constexpr std::uint64_t CODE = 0x100;
constexpr std::uint64_t NOTIFY = 0x2050; // outside the one page of RAM: MMIO

// 16-bit code: mov dword [0x2050], 1; mov dword [0x2050], 2; hlt.
// clang-format off
constexpr std::uint8_t GUEST[] = {
    0x66, 0xC7, 0x06, 0x50, 0x20, 0x01, 0x00, 0x00, 0x00,
    0x66, 0xC7, 0x06, 0x50, 0x20, 0x02, 0x00, 0x00, 0x00,
    0xF4,
};
// clang-format on

template<typename T>
T must(ErrorOr<T> result)
{
    REQUIRE_MESSAGE(!result.is_error(), result.error().message());
    return result.release_value();
}

void must(ErrorOr<void> result)
{
    REQUIRE_MESSAGE(!result.is_error(), result.error().message());
}

std::uint64_t drain(int fd)
{
    std::uint64_t count = 0;
    if (::read(fd, &count, sizeof(count)) != sizeof(count))
        return 0;
    return count;
}

} // namespace

TEST_CASE("kvm vm: an ioeventfd with datamatch takes the matching MMIO write in the kernel")
{
    auto system = must(System::open());
    auto vm = must(system.create_vm());
    REQUIRE(vm.supports_ioeventfd());
    must(vm.set_tss_address(0xFFFB'D000));
    auto memory = must(GuestMemory::create({ { 0, 0x1000 } }));
    must(memory.register_with(vm));
    must(memory.write(CODE, ByteView(GUEST, sizeof(GUEST))));

    auto event = must(sys::eventfd());
    must(vm.add_ioeventfd(event.get(), NOTIFY, 4, 1));
    // The same registration twice is the kernel's EEXIST; a length KVM does
    // not know is refused before the ioctl.
    auto twice = vm.add_ioeventfd(event.get(), NOTIFY, 4, 1);
    REQUIRE(twice.is_error());
    CHECK(twice.error().is_errno(EEXIST));
    auto odd = vm.add_ioeventfd(event.get(), NOTIFY, 3, std::nullopt);
    REQUIRE(odd.is_error());
    CHECK(odd.error().is_errno(EINVAL));

    auto vcpu = must(vm.create_vcpu(0, must(system.vcpu_mmap_size())));
    auto sregs = must(vcpu.get_sregs());
    for (auto* segment : { &sregs.cs, &sregs.ds, &sregs.es, &sregs.ss }) {
        segment->base = 0;
        segment->selector = 0;
    }
    must(vcpu.set_sregs(sregs));
    kvm_regs regs {};
    regs.rip = CODE;
    regs.rflags = 2;
    must(vcpu.set_regs(regs));

    auto exit = must(vcpu.run());
    REQUIRE(exit.reason == ExitReason::Mmio);
    CHECK(exit.mmio.address == NOTIFY);
    CHECK(exit.mmio.is_write);
    REQUIRE(exit.mmio.data.size() == 4);
    CHECK(exit.mmio.data[0] == 2); // the value the ioeventfd does not match
    CHECK(drain(event.get()) == 1); // the one it matched
    exit = must(vcpu.run());
    CHECK(exit.reason == ExitReason::Halt);
    CHECK(drain(event.get()) == 0);
}

int main(int argc, char** argv)
{
    auto system = System::open();
    if (system.is_error()) {
        bool required
            = std::getenv("QTBOX_TESTS_REQUIRED") && std::strcmp(std::getenv("QTBOX_TESTS_REQUIRED"), "1") == 0;
        std::printf("%s: %s\n", required ? "FAIL (QTBOX_TESTS_REQUIRED=1)" : "SKIP", system.error().message().c_str());
        return required ? 1 : 77;
    }
    doctest::Context context(argc, argv);
    return context.run();
}
