// Who this process reports as, and where its one-line reports go: the name
// ("vmm", "init"; "qtbox" until the dispatcher picks an applet) and the fd
// (set by the dispatcher to stderr; -1, the default, drops them). Library
// code never prints (docs/ARCHITECTURE.md "Conventions"); the applets' log
// (applets/support/log.hpp) and the reports that cannot wait for an applet,
// such as the SIGSYS reporter of seccomp.hpp, read both here.
#pragma once

#include <string_view>

namespace qtbox {

void set_program_name(std::string_view name);
std::string_view program_name();

void set_report_fd(int fd);
int report_fd();

} // namespace qtbox
