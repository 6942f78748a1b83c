#include <qtbox/base/program.hpp>

#include <string>

namespace qtbox {

namespace {

std::string g_program = "qtbox";

} // namespace

void set_program_name(std::string_view name) { g_program = name; }
std::string_view program_name() { return g_program; }

} // namespace qtbox
