// How `qt`'s command groups plug into its dispatcher (applets/qt.cpp):
// each group adds its subcommand to `qt` and returns a CommandGroup; the
// dispatcher runs the one the user chose and prints its Error as
// "Error NN: <QingTian message>: <detail>" with exit status NN, where NN is
// the Error's enclave::QtError code (docs/FORMATS.md §7).
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/enclave/errors.hpp>

#include <CLI/CLI.hpp>

#include <functional>

namespace qtbox::qt {

struct CommandGroup {
    CLI::App* command { nullptr };
    // Runs when `command` (or one of its subcommands) was chosen. Options
    // live in what the function captures.
    std::function<ErrorOr<void>()> run;
};

// applets/qt/enclave.cpp: qt enclave start|stop|query|console|query-eif|make-img.
CommandGroup enclave_commands(CLI::App& qt);
// applets/qt/env.cpp: qt env show|apply (the resource pool).
CommandGroup env_commands(CLI::App& qt);

} // namespace qtbox::qt
