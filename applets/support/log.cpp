#include "log.hpp"
#include <qtbox/base/program.hpp>
#include <qtbox/base/time.hpp>

#include <string>
#include <unistd.h>

namespace qtbox::log {

namespace {

Level g_min_level = Level::Info;
bool g_timestamps = false;

} // namespace

void set_program(std::string_view name) { set_program_name(name); }
std::string_view program() { return program_name(); }
void set_min_level(Level level) { g_min_level = level; }
void set_timestamps(bool enabled) { g_timestamps = enabled; }

void write(Level level, std::string_view message)
{
    if (level < g_min_level)
        return;
    // Build the whole line first and write it once, so that lines from
    // several threads never interleave.
    std::string line;
    if (g_timestamps) {
        line += format_rfc3339(now_millis());
        line += ' ';
    }
    line += program_name();
    line += ": ";
    if (level == Level::Warning)
        line += "warning: ";
    line += message;
    line += '\n';
    std::size_t done = 0;
    while (done < line.size()) {
        ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
        if (n <= 0)
            break;
        done += static_cast<std::size_t>(n);
    }
}

void write_notice(Notice const& notice)
{
    switch (notice.severity) {
    case Severity::Debug:
        return write(Level::Debug, notice.text);
    case Severity::Info:
        return write(Level::Info, notice.text);
    case Severity::Warning:
        return write(Level::Warning, notice.text);
    case Severity::Error:
        return write(Level::Error, notice.text);
    }
}

} // namespace qtbox::log
