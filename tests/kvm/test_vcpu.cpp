#include <qtbox/kvm/vcpu.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::kvm;

namespace {

// A Vcpu needs no /dev/kvm to be kicked: one over an anonymous page stands
// in for the kvm_run mapping (the Vcpu unmaps it, as it would KVM's). The
// fd is empty, so nothing here may call run() or an ioctl.
kvm_run* map_page(std::size_t size)
{
    void* page = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(page != MAP_FAILED);
    // Every byte set, to see that a kick touches only one.
    std::memset(page, 0xA5, size);
    auto* run = static_cast<kvm_run*>(page);
    run->immediate_exit = 0;
    return run;
}

struct FakeVcpu {
    std::size_t const size { static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) };
    kvm_run* const run { map_page(size) };
    Vcpu vcpu { UniqueFd(), run, size, 7 };
};

// Set by the test before raise(): the signal handler kicks it, as the VMM's
// kick handler does on a vCPU thread.
Vcpu* g_kick_target = nullptr;

void kick_from_handler(int)
{
    if (g_kick_target)
        g_kick_target->kick();
}

} // namespace

TEST_CASE("kvm vcpu: kick() sets immediate_exit in the kvm_run page and clear_kick() clears it")
{
    FakeVcpu fake;
    CHECK(fake.vcpu.id() == 7);
    fake.vcpu.kick();
    CHECK(fake.run->immediate_exit == 1);
    fake.vcpu.kick();
    CHECK(fake.run->immediate_exit == 1);
    fake.vcpu.clear_kick();
    CHECK(fake.run->immediate_exit == 0);
    fake.vcpu.clear_kick();
    CHECK(fake.run->immediate_exit == 0);
}

TEST_CASE("kvm vcpu: a kick writes the immediate_exit byte and nothing else of the page")
{
    FakeVcpu fake;
    auto const* bytes = reinterpret_cast<std::uint8_t const*>(fake.run);
    std::size_t const flag = offsetof(kvm_run, immediate_exit);
    fake.vcpu.kick();
    fake.vcpu.clear_kick();
    fake.vcpu.kick();
    std::size_t changed = 0;
    for (std::size_t i = 0; i < fake.size; ++i) {
        if (i != flag && bytes[i] != 0xA5)
            ++changed;
    }
    CHECK(changed == 0);
    CHECK(bytes[flag] == 1);
}

TEST_CASE("kvm vcpu: a kick from a signal handler on the vCPU's thread is in the page when the handler returns")
{
    FakeVcpu fake;
    struct sigaction action {};
    action.sa_handler = kick_from_handler;
    sigemptyset(&action.sa_mask);
    struct sigaction previous {};
    REQUIRE(::sigaction(SIGUSR1, &action, &previous) == 0);
    g_kick_target = &fake.vcpu;
    REQUIRE(::raise(SIGUSR1) == 0);
    g_kick_target = nullptr;
    ::sigaction(SIGUSR1, &previous, nullptr);
    CHECK(fake.run->immediate_exit == 1);
    fake.vcpu.clear_kick();
    CHECK(fake.run->immediate_exit == 0);
}

TEST_CASE("kvm vcpu: kicking a moved-from Vcpu does nothing; the moved-to one owns the page")
{
    FakeVcpu fake;
    Vcpu moved(std::move(fake.vcpu));
    fake.vcpu.kick();
    fake.vcpu.clear_kick();
    CHECK(fake.run->immediate_exit == 0);
    moved.kick();
    CHECK(fake.run->immediate_exit == 1);
}
