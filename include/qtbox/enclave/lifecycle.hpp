// The enclave lifecycle behind `qt enclave start|stop|query` (docs/FORMATS.md
// §7; the records and the lock are state.hpp's).
//
// start
//   1. Checks everything before it takes anything: the EIF opens and is
//      well formed, the memory rule (docs/FORMATS.md §3), the CID range.
//   2. Under the lock: forgets enclaves whose monitor is gone, then checks
//      the count against max_enclaves, the CID against every live enclave
//      (QtError::CidInUse), and the CPUs and memory against the pool; picks
//      the lowest free id and the pool CPUs to pin to; forks the monitor,
//      which forks vmm, and writes the record (Starting).
//   3. Without the lock: waits for vmm's "ready" line (--ready-fd), at most
//      the timeout, which grows with the EIF size.
//   4. Under the lock: the record becomes Running; then the monitor is told
//      to keep the enclave.
//   On any failure the monitor kills vmm, the record goes, and the error
//   names vmm's last log line.
//
// The monitor is a forked `qt` in a session of its own. It runs vmm
// (stdout/stderr to <dir>/vmm.log, the ready pipe as fd 3), waits for it,
// and when vmm ends writes exit.json and removes the record, under the
// lock: the CPUs, memory and CID are free at once. Until start commits, the
// monitor dies with the `qt` that forked it, and vmm dies with the monitor
// (PR_SET_PDEATHSIG): a `qt` killed mid-start leaves no vmm behind, and the
// record it leaves is forgotten by the next command (the flock dies with it).
//
// stop sends vmm SIGTERM, waits for the monitor to record the end, and
// after the grace period sends SIGKILL.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/enclave/state.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qtbox::enclave {

// What the parent lends enclaves (qt env, enclave/env.hpp).
struct PoolLimits {
    unsigned cpus { 2 };
    std::uint64_t memory_mib { 1024 };
    unsigned max_enclaves { 2 };
    // The pool's CPU ids, to pin vCPUs to; empty: no pinning.
    std::vector<unsigned> cpu_list;
    // Back guest memory with hugepages of this size (MiB); 0: ordinary memory.
    unsigned hugepage_size_mib { 0 };
};

// docs/FORMATS.md §6: enclave CIDs.
constexpr std::uint32_t FIRST_CID = 4;
constexpr std::uint32_t LAST_CID = 4294967294;

struct StartOptions {
    std::string run;  // run_dir()
    std::string eif;
    unsigned cpus { 2 };
    std::uint64_t memory_mib { 1024 };
    std::uint32_t cid { FIRST_CID };
    bool debug { false };
    PoolLimits pool;
    // The program run as vmm, with argv[0] "vmm": this binary
    // (/proc/self/exe) unless the test hook QTBOX_VMM names another.
    std::string vmm_program;
    // 0: START_TIMEOUT_BASE_MS plus START_TIMEOUT_PER_MIB_MS per MiB of EIF.
    int timeout_ms { 0 };
};

constexpr int START_TIMEOUT_BASE_MS = 60'000;
constexpr int START_TIMEOUT_PER_MIB_MS = 1'000;
// stop: SIGTERM, this long, SIGKILL.
constexpr int STOP_GRACE_MS = 20'000;

// The default vmm program: $QTBOX_VMM when set (tests), else /proc/self/exe.
std::string default_vmm_program();

ErrorOr<EnclaveRecord> start(StartOptions const& options);

struct QueryResult {
    std::vector<EnclaveRecord> enclaves; // Starting and Running, by id
    // Ends not reported by an earlier query (each is reported once), and
    // enclaves found gone without a monitor to record it.
    std::vector<ExitRecord> ended;
};
ErrorOr<QueryResult> query(std::string const& run);

// QtError::NotRunning when there is no such enclave.
ErrorOr<ExitRecord> stop(std::string const& run, std::uint64_t id, int grace_ms = STOP_GRACE_MS);

// "exited with status 3", "was killed by signal 9 (SIGKILL)".
std::string describe_exit(int wait_status);

} // namespace qtbox::enclave
