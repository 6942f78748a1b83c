// The name this process reports under ("vmm", "init"; "qtbox" until the
// dispatcher picks an applet). The stderr log (log.hpp) prefixes it to every
// line, and the reports that cannot go through the log, such as the SIGSYS
// reporter of seccomp.hpp, read it here. log::set_program sets it.
#pragma once

#include <string_view>

namespace qtbox {

void set_program_name(std::string_view name);
std::string_view program_name();

} // namespace qtbox
