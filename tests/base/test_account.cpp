#include "../support/child.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/base/account.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace qtbox;

TEST_CASE("account: a name is found in a passwd file with its uid and primary gid")
{
    test::TempDir dir;
    dir.write("passwd", "root:x:0:0:root:/root:/bin/sh\n"
                        "qtboxer:x:5:5::/:/bin/false\n"
                        "qtbox:x:981:977:qtbox service:/nonexistent:/usr/sbin/nologin\n"
                        "broken:x:12:notanumber::/:/bin/false\n"
                        "short:x:1\n",
        0644);
    auto found = sys::find_account("qtbox", dir / "passwd");
    REQUIRE_MESSAGE(!found.is_error(), found.error().message());
    CHECK(found.value().name == "qtbox");
    CHECK(found.value().uid == 981);
    CHECK(found.value().gid == 977);

    auto missing = sys::find_account("qtbo", dir / "passwd");
    REQUIRE(missing.is_error());
    CHECK(missing.error().is(sys::AccountError::NoSuchUser));
    CHECK(missing.error().message() == "user qtbo: not in " + (dir / "passwd"));
    auto prefix_only = sys::find_account("short", dir / "passwd");
    REQUIRE(prefix_only.is_error());
    CHECK(prefix_only.error().is(sys::AccountError::NoSuchUser));
    auto malformed = sys::find_account("broken", dir / "passwd");
    REQUIRE(malformed.is_error());
    CHECK_FALSE(malformed.error().is(sys::AccountError::NoSuchUser));
    CHECK(malformed.error().message() == "user broken: " + (dir / "passwd") + ": malformed entry");
}

TEST_CASE("account: root switches for good, keeping the process non-dumpable")
{
    if (::geteuid() != 0) {
        MESSAGE("not root: switching users cannot be tested here");
        return;
    }
    auto outcome = test::run_in_child([]() -> int {
        ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        if (sys::drop_privileges(sys::Account { "test", 65534, 65534 }).is_error())
            return 10;
        uid_t real, effective, saved;
        gid_t group_real, group_effective, group_saved;
        ::getresuid(&real, &effective, &saved);
        ::getresgid(&group_real, &group_effective, &group_saved);
        if (real != 65534 || effective != 65534 || saved != 65534 || group_real != 65534 || group_effective != 65534 || group_saved != 65534)
            return 11;
        gid_t groups[8];
        int count = ::getgroups(8, groups);
        if (count != 1 || groups[0] != 65534)
            return 12;
        if (::setuid(0) == 0)
            return 13;
        if (::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
            return 14;
        return 0;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
}

TEST_CASE("account: the parent-death signal survives the switch (a vmm still dies with qt's monitor)")
{
    if (::geteuid() != 0) {
        MESSAGE("not root: switching users cannot be tested here");
        return;
    }
    auto outcome = test::run_in_child([]() -> int {
        // The kernel clears it on any change of effective id.
        ::prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0);
        if (sys::drop_privileges(sys::Account { "test", 65534, 65534 }).is_error())
            return 10;
        int death_signal = 0;
        ::prctl(PR_GET_PDEATHSIG, &death_signal, 0, 0, 0);
        return death_signal == SIGUSR2 ? 0 : 11;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
}

TEST_CASE("account: the service group is the qtbox account's, for root only")
{
    test::TempDir dir;
    dir.write("passwd", "root:x:0:0:root:/root:/bin/sh\nqtbox:x:981:977::/nonexistent:/usr/sbin/nologin\n", 0644);
    dir.write("empty", "root:x:0:0:root:/root:/bin/sh\n", 0644);
    CHECK_FALSE(sys::service_group(dir / "empty").has_value());
    if (::geteuid() == 0)
        CHECK(sys::service_group(dir / "passwd") == std::optional<gid_t>(977));
    else
        CHECK_FALSE(sys::service_group(dir / "passwd").has_value());
}

TEST_CASE("account: files made inside a ScopedFileGroup are born in that group; the process flags stay")
{
    if (::geteuid() != 0) {
        MESSAGE("not root: taking another group cannot be tested here");
        return;
    }
    test::TempDir dir;
    auto outcome = test::run_in_child([&dir]() -> int {
        ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        ::prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0);
        {
            auto group = sys::ScopedFileGroup::enter(4321);
            if (group.is_error())
                return 10;
            if (::mkdir((dir / "inside").c_str(), 0750) < 0)
                return 11;
        }
        if (::mkdir((dir / "after").c_str(), 0750) < 0)
            return 12;
        struct stat inside { }, after { };
        if (::stat((dir / "inside").c_str(), &inside) < 0 || ::stat((dir / "after").c_str(), &after) < 0)
            return 13;
        if (inside.st_gid != 4321 || inside.st_uid != 0)
            return 14;
        if (after.st_gid != ::getegid())
            return 15;
        int death_signal = 0;
        ::prctl(PR_GET_PDEATHSIG, &death_signal, 0, 0, 0);
        if (death_signal != SIGUSR2)
            return 16;
        return ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : 17;
    });
    CHECK_MESSAGE(outcome.exit_status == 0, outcome.stderr_text);
}
