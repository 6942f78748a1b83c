// The enclave records and their lock (enclave/state.hpp), without vmm: the
// lifecycle itself is tested through `qt` (tests/applets/qt/lifecycle.test)
// and with real enclaves (tests/nested/scenarios/lifecycle.sh).
#include "../support/child.hpp"
#include "../support/must.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/enclave/errors.hpp>
#include <qtbox/enclave/state.hpp>

#include <doctest/doctest.h>

#include <unistd.h>

using namespace qtbox;
using namespace qtbox::enclave;
using namespace qtbox::test;

namespace {

EnclaveRecord sample()
{
    EnclaveRecord record;
    record.id = 3;
    record.cid = 17;
    record.cpus = 2;
    record.memory_mib = 512;
    record.debug = true;
    record.status = EnclaveStatus::Running;
    record.eif = "/srv/app.eif";
    record.cpu_list = { 2, 3 };
    record.monitor = { 100, 5000 };
    record.vmm = { 101, 5001 };
    record.started_at = 1796630000000;
    return record;
}

} // namespace

TEST_CASE("enclave state: a record and an exit record survive their JSON")
{
    auto record = sample();
    auto back = must(parse_record(record_json(record)));
    CHECK(back.id == record.id);
    CHECK(back.cid == record.cid);
    CHECK(back.cpus == record.cpus);
    CHECK(back.memory_mib == record.memory_mib);
    CHECK(back.debug);
    CHECK(back.status == EnclaveStatus::Running);
    CHECK(back.eif == record.eif);
    CHECK(back.cpu_list == record.cpu_list);
    CHECK(back.monitor.pid == 100);
    CHECK(back.vmm.start_ticks == 5001);
    CHECK(back.started_at == record.started_at);

    ExitRecord ended { 3, 17, 101, 1796630001000, 137, "vmm was killed by signal 9 (SIGKILL)", "vmm: ...", false };
    auto exit_back = must(parse_exit(exit_json(ended)));
    CHECK(exit_back.status == 137);
    CHECK(exit_back.reason == ended.reason);
    CHECK_FALSE(exit_back.reported);
}

TEST_CASE("enclave state: a record that is not one is refused, and read_records names it")
{
    CHECK(parse_record("").is_error());
    CHECK(parse_record("[]").is_error());
    CHECK(parse_record("{\"id\": 1}").is_error());
    auto text = record_json(sample());
    auto pos = text.find("Running");
    REQUIRE(pos != std::string::npos);
    CHECK(parse_record(text.replace(pos, 7, "Dancing")).is_error());

    TempDir run;
    must(write_record(run.path(), sample()));
    run.write("enclaves/5/state.json", "{ not json", 0640);
    std::vector<std::string> problems;
    auto records = read_records(run.path(), &problems);
    REQUIRE(records.size() == 1);
    CHECK(records[0].id == 3);
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].find("enclaves/5/state.json") != std::string::npos);
    must(remove_record(run.path(), 3));
    CHECK(read_records(run.path()).empty());
    must(remove_record(run.path(), 3)); // already gone: not an error
}

TEST_CASE("enclave state: a process is named by its pid and start time, never by a reused pid")
{
    auto self = self_process();
    CHECK(self.pid == ::getpid());
    CHECK(self.start_ticks > 0);
    CHECK(is_alive(self));
    CHECK_FALSE(is_alive({ self.pid, self.start_ticks + 1 }));
    CHECK_FALSE(is_alive({ 0, 0 }));
    CHECK_FALSE(start_ticks_of(-1));
    // A child that has exited (and been reaped) is gone.
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0)
        ::_exit(0);
    auto ticks = start_ticks_of(child);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    if (ticks)
        CHECK_FALSE(is_alive({ child, *ticks }));
}

TEST_CASE("enclave state: the lock is exclusive and times out with QtError::LockAcquire")
{
    TempDir run;
    {
        auto held = must(StateLock::acquire(run.path()));
        auto outcome = run_in_child([&] {
            auto second = StateLock::acquire(run.path(), 100);
            return second.is_error() && second.error().is(QtError::LockAcquire) ? 0 : 1;
        });
        CHECK(outcome.exit_status == 0);
    }
    // Released with the object; another process gets it at once.
    auto outcome = run_in_child([&] { return StateLock::acquire(run.path(), 100).is_error() ? 1 : 0; });
    CHECK(outcome.exit_status == 0);
}

TEST_CASE("enclave state: QingTian's messages")
{
    CHECK(qt_error_message(QtError::CidInUse) == "The cid has already been used");
    CHECK(qt_error_message(QtError::MissingArgument) == "Missing necessary argument");
    CHECK(qt_error_message(static_cast<QtError>(0)) == "Invalid argument provided");
    CHECK(qt_error_message(static_cast<QtError>(44)) == "Invalid argument provided");
}
