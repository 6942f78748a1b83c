// Diagnostics on stderr, one line each, "<program>: <message>" (docs/FORMATS.md §10).
// For applets and the dispatcher only: library code (src/) never logs. It
// returns errors, and its long-running engines report through event
// callbacks (base/event.hpp) that the applet turns into lines here.
#pragma once

#include <qtbox/base/event.hpp>

#include <fmt/format.h>

#include <string_view>

namespace qtbox::log {

enum class Level { Debug, Info, Warning, Error };

void set_program(std::string_view name);
std::string_view program();
void set_min_level(Level level);
// When on, every line starts with an RFC 3339 timestamp (daemons).
void set_timestamps(bool enabled);
void write(Level level, std::string_view message);
// A library engine's notice (base/event.hpp), at its severity.
void write_notice(Notice const& notice);

template<typename... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) { write(Level::Debug, fmt::format(format, std::forward<Args>(args)...)); }
template<typename... Args>
void info(fmt::format_string<Args...> format, Args&&... args) { write(Level::Info, fmt::format(format, std::forward<Args>(args)...)); }
template<typename... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) { write(Level::Warning, fmt::format(format, std::forward<Args>(args)...)); }
template<typename... Args>
void error(fmt::format_string<Args...> format, Args&&... args) { write(Level::Error, fmt::format(format, std::forward<Args>(args)...)); }

} // namespace qtbox::log
