// The parent's record of the enclaves `qt` started (docs/FORMATS.md §1, §7):
// one directory per enclave id under <run>/enclaves/, and one lock for all
// of them.
//
//   <run>/enclaves/.lock            flock(2)ed for every allocation and
//                                   every change of a record
//   <run>/enclaves/<id>/state.json  the enclave while it lives (atomic
//                                   writes: a reader sees the old or the
//                                   new record, never half of one)
//   <run>/enclaves/<id>/exit.json   how it ended, kept until the id is
//                                   used again
//   <run>/enclaves/<id>/vmm.log     vmm's standard error
//   <run>/enclaves/<id>/vsock.sock, console.sock   vmm's sockets
//
// A record names two processes: the monitor, a `qt` process that started
// vmm, waits for it and records its end, and vmm itself. Each is named by
// its pid and its start time in clock ticks since boot (/proc/<pid>/stat
// field 22), so that a pid the kernel has reused is never taken for them.
// The lock is an flock on an open file: the kernel drops it when its holder
// dies, so a `qt` killed with SIGKILL never leaves a stale lock.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/base/time.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace qtbox::enclave {

// A process as a record names it.
struct ProcessRef {
    pid_t pid { 0 };
    std::uint64_t start_ticks { 0 };
};

// Whether `process` is still the process the record meant.
bool is_alive(ProcessRef const& process);
// The start time of `pid`, nullopt when there is no such process.
std::optional<std::uint64_t> start_ticks_of(pid_t pid);
ProcessRef self_process();

enum class EnclaveStatus { Starting, Running };
std::string_view status_name(EnclaveStatus status);

struct EnclaveRecord {
    std::uint64_t id { 0 };
    std::uint32_t cid { 0 };
    unsigned cpus { 0 };
    std::uint64_t memory_mib { 0 };
    bool debug { false };
    EnclaveStatus status { EnclaveStatus::Starting };
    std::string eif;
    std::vector<unsigned> cpu_list; // the pool's CPUs the vCPUs are pinned to; empty when none
    ProcessRef monitor;
    ProcessRef vmm;
    UnixMillis started_at { 0 };
};

// How an enclave ended (exit.json).
struct ExitRecord {
    std::uint64_t id { 0 };
    std::uint32_t cid { 0 };
    pid_t vmm_pid { 0 };
    UnixMillis ended_at { 0 };
    // vmm's exit status, or 128 + the signal that killed it.
    int status { 0 };
    // "exited with status 0", "was killed by signal 9 (SIGKILL)", "vanished"...
    std::string reason;
    // vmm's last line on its log, if any.
    std::string last_log_line;
    bool reported { false };
};

std::string enclaves_dir(std::string const& run);
std::string enclave_dir(std::string const& run, std::uint64_t id);
// Makes <run>/enclaves or an enclave's directory: 0750, and, when root makes
// it and the service account exists (sys::service_group), in that
// account's group, so that qt-proxy run as it reaches the enclave's
// vsock.sock (docs/FORMATS.md §1); parents it makes are 0755.
ErrorOr<void> make_state_directory(std::string const& directory);

// The lock of <run>/enclaves/, held while the object lives.
class StateLock {
public:
    // Creates <run>/enclaves (mode 0750) if needed and waits for the lock at
    // most `timeout_ms` (QtError::LockAcquire after that).
    static ErrorOr<StateLock> acquire(std::string const& run, int timeout_ms = 30'000);
    // For a forked child, which must close its copy: an flock belongs to the
    // open file, so a child holding it would keep the lock.
    int fd() const { return m_fd.get(); }

private:
    explicit StateLock(UniqueFd fd) : m_fd(std::move(fd)) { }
    UniqueFd m_fd;
};

// Every record under <run>/enclaves/, by id; unreadable ones are skipped
// and named in `problems`.
std::vector<EnclaveRecord> read_records(std::string const& run, std::vector<std::string>* problems = nullptr);
ErrorOr<std::optional<EnclaveRecord>> read_record(std::string const& run, std::uint64_t id);
ErrorOr<void> write_record(std::string const& run, EnclaveRecord const& record);
ErrorOr<void> remove_record(std::string const& run, std::uint64_t id);

ErrorOr<std::optional<ExitRecord>> read_exit(std::string const& run, std::uint64_t id);
ErrorOr<void> write_exit(std::string const& run, ExitRecord const& record);
std::vector<ExitRecord> read_exits(std::string const& run);

// JSON forms, for the files and for tests.
std::string record_json(EnclaveRecord const& record);
ErrorOr<EnclaveRecord> parse_record(std::string_view json);
std::string exit_json(ExitRecord const& record);
ErrorOr<ExitRecord> parse_exit(std::string_view json);

} // namespace qtbox::enclave
