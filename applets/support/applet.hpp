// What every applet file includes. An applet is one file in applets/ with a
// header comment, one QT_APPLET(id, "name", "summary") line, its CLI11
// definition and <id>_main(). The build scans the QT_APPLET lines to make the
// sorted applet table (scripts/gen-applet-table); nothing registers itself at
// run time, because a static link drops unreferenced objects.
#pragma once

#include <qtbox/base/error.hpp>

#include <CLI/CLI.hpp>

#include <optional>
#include <string_view>

// Declares the applet's entry point; the generator reads the same line.
#define QT_APPLET(id, name, summary) int id##_main(int argc, char** argv)

namespace qtbox {

// Exit statuses shared by the applets that do not define their own (docs/FORMATS.md §10).
constexpr int EXIT_USAGE = 2;

// Parses argv with CLI11 and handles the outcomes every applet shares:
// --help prints and gives 0, a usage error prints one line plus a hint and
// gives usage_exit. Returns nullopt when the applet should go on.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, int usage_exit = EXIT_USAGE);

// Prints "<applet>: <error message>" and returns exit_code.
int report(Error const& error, int exit_code);

// CLI11 formatter with the conventions of qtbox help texts.
void configure_app(CLI::App& app, std::string_view summary);

} // namespace qtbox
