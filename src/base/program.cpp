#include <qtbox/base/program.hpp>

#include <atomic>
#include <string>

namespace qtbox {

namespace {

std::string g_program = "qtbox";
// Read from a signal handler (the SIGSYS reporter): lock-free.
std::atomic<int> g_report_fd { -1 };
static_assert(std::atomic<int>::is_always_lock_free);

} // namespace

void set_program_name(std::string_view name) { g_program = name; }
std::string_view program_name() { return g_program; }

void set_report_fd(int fd) { g_report_fd.store(fd, std::memory_order_relaxed); }
int report_fd() { return g_report_fd.load(std::memory_order_relaxed); }

} // namespace qtbox
