#include "applet.hpp"
#include "log.hpp"

#include <fmt/format.h>

#include <iostream>

namespace qtbox {

void configure_app(CLI::App& app, std::string_view summary)
{
    app.description(std::string(summary));
    app.set_help_flag("-h,--help", "Print this help and exit");
    app.get_formatter()->column_width(32);
    // Options may follow positionals, as users of coreutils expect.
    app.allow_windows_style_options(false);
}

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, int usage_exit)
{
    try {
        app.parse(argc, argv);
    } catch (CLI::CallForHelp const&) {
        std::cout << app.help();
        return 0;
    } catch (CLI::CallForAllHelp const&) {
        std::cout << app.help("", CLI::AppFormatMode::All);
        return 0;
    } catch (CLI::CallForVersion const&) {
        std::cout << app.version() << '\n';
        return 0;
    } catch (CLI::ParseError const& error) {
        // Help requested on a subcommand arrives as CallForHelp from the
        // innermost app; everything else is a usage error: one line, a hint.
        log::error("{}", error.what());
        fmt::print(stderr, "Run '{} --help' for more information.\n", app.get_name());
        return usage_exit;
    }
    return std::nullopt;
}

int report(Error const& error, int exit_code)
{
    log::error("{}", error.message());
    return exit_code;
}

} // namespace qtbox
