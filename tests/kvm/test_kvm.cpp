#include "../support/child.hpp"
#include "../support/must.hpp"
#include "support.hpp"

#include <qtbox/kvm/memory.hpp>
#include <qtbox/kvm/system.hpp>

#include <doctest/doctest.h>

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::kvm;
using qtbox::test::fails_with;

namespace {

using qtbox::test::vm_flags;

constexpr std::uint64_t MIB = 1 << 20;

GuestMemory make(std::vector<MemoryRegion> regions)
{
    auto memory = GuestMemory::create(std::move(regions));
    REQUIRE_MESSAGE(!memory.is_error(), (memory.is_error() ? memory.error().message() : ""));
    return memory.release_value();
}


} // namespace

TEST_CASE("kvm memory: one private mapping, excluded from core dumps")
{
    auto memory = make({ { 0, 4 * MIB }, { 8 * MIB, 2 * MIB } });
    CHECK(memory.total_size() == 6 * MIB);
    std::string flags = vm_flags(memory.host_base());
    CHECK(flags.find(" dd") != std::string::npos); // MADV_DONTDUMP
    CHECK(flags.find(" sh") == std::string::npos); // not shared
}

TEST_CASE("kvm memory: slices stay inside one region")
{
    auto memory = make({ { 0, 4 * MIB }, { 8 * MIB, 2 * MIB } });
    auto first = memory.slice(0x1000, 16);
    REQUIRE(!first.is_error());
    CHECK(first.value().data() == memory.host_base() + 0x1000);
    auto second = memory.slice(8 * MIB + 0x10, 16);
    REQUIRE(!second.is_error());
    CHECK(second.value().data() == memory.host_base() + 4 * MIB + 0x10);
    CHECK(!memory.slice(4 * MIB - 16, 16).is_error());

    CHECK(fails_with(memory.slice(4 * MIB - 8, 16), kvm::KvmError::OutsideGuestMemory));  // runs past the region
    CHECK(fails_with(memory.slice(5 * MIB, 1), kvm::KvmError::OutsideGuestMemory));       // in the gap
    CHECK(fails_with(memory.slice(10 * MIB, 1), kvm::KvmError::OutsideGuestMemory));      // past the end
    CHECK(fails_with(memory.slice(0, ~0ull), kvm::KvmError::OutsideGuestMemory));         // absurd length
    auto error = memory.slice(~0ull - 4, 8);
    REQUIRE(error.is_error());
    CHECK(error.error().is(kvm::KvmError::OutsideGuestMemory));

    Bytes data = { 1, 2, 3 };
    REQUIRE(!memory.write(8 * MIB, data).is_error());
    CHECK(memory.host_base()[4 * MIB] == 1);
    CHECK(memory.host_base()[4 * MIB + 2] == 3);
    CHECK(fails_with(memory.write(10 * MIB - 2, data), kvm::KvmError::OutsideGuestMemory));
}

TEST_CASE("kvm memory: unaligned, empty, overlapping or unsorted regions are refused")
{
    CHECK(fails_with(GuestMemory::create({}), kvm::KvmError::InvalidLayout));
    CHECK(fails_with(GuestMemory::create({ { 0, 100 } }), kvm::KvmError::InvalidLayout));
    CHECK(fails_with(GuestMemory::create({ { 0x10, 4096 } }), kvm::KvmError::InvalidLayout));
    CHECK(fails_with(GuestMemory::create({ { 0, 0 } }), kvm::KvmError::InvalidLayout));
    CHECK(fails_with(GuestMemory::create({ { 0, 8192 }, { 4096, 4096 } }), kvm::KvmError::InvalidLayout));
    CHECK(fails_with(GuestMemory::create({ { 8192, 4096 }, { 0, 4096 } }), kvm::KvmError::InvalidLayout));
}

TEST_CASE("kvm system: a missing device and a non-KVM file are told apart")
{
    auto missing = System::open("/nonexistent/kvm");
    REQUIRE(missing.is_error());
    CHECK(missing.error().is(KvmError::DeviceMissing));
    CHECK(missing.error().message() == "cannot open /nonexistent/kvm: No such file or directory");

    char path[] = "/tmp/qtbox-not-kvm-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::close(fd);
    auto not_kvm = System::open(path);
    ::unlink(path);
    REQUIRE(not_kvm.is_error());
    CHECK(not_kvm.error().is(KvmError::ApiVersion));
}

TEST_CASE("kvm memory: ordinary guest pages are locked as they are touched, so never swapped")
{
    // 16 KiB: inside any RLIMIT_MEMLOCK a test machine has (64 KiB at least).
    auto memory = make({ { 0, 16 * 1024 } });
    CHECK(memory.unlocked_reason().empty());
    std::string flags = vm_flags(memory.host_base());
    CHECK(flags.find(" lo") != std::string::npos); // VM_LOCKED (MLOCK_ONFAULT)
    CHECK(flags.find(" dd") != std::string::npos);
}

TEST_CASE("kvm memory: where RLIMIT_MEMLOCK forbids locking, Required refuses and BestEffort says why")
{
    auto outcome = test::run_in_child([]() {
        // No CAP_IPC_LOCK and no locked memory allowed.
        __user_cap_header_struct header { _LINUX_CAPABILITY_VERSION_3, 0 };
        __user_cap_data_struct data[2] {};
        if (::syscall(SYS_capget, &header, data) < 0)
            return 90;
        data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
        if (::syscall(SYS_capset, &header, data) < 0)
            return 91;
        rlimit none { 0, 0 };
        if (::setrlimit(RLIMIT_MEMLOCK, &none) < 0)
            return 92;
        auto required = GuestMemory::create({ { 0, 1 * MIB } }, 0, MemoryLock::Required);
        if (!required.is_error() || !required.error().is(KvmError::MemoryNotLocked))
            return 1;
        if (required.error().message().rfind("cannot lock 1 MiB of guest memory: ", 0) != 0)
            return 2;
        auto best_effort = GuestMemory::create({ { 0, 1 * MIB } }, 0, MemoryLock::BestEffort);
        if (best_effort.is_error())
            return 3;
        auto const& reason = best_effort.value().unlocked_reason();
        if (reason.find("raise RLIMIT_MEMLOCK") == std::string::npos || !reason.ends_with("; the guest's memory may be swapped out"))
            return 4;
        if (vm_flags(best_effort.value().host_base()).find(" lo") != std::string::npos)
            return 5;
        return 0;
    });
    INFO(outcome.stderr_text);
    CHECK(outcome.exit_status == 0);
}
