// The pure half of init (see init.hpp): parsing the bootstrap files.
#include <qtbox/init/init.hpp>

#include <fmt/format.h>

#include <csignal>
#include <cstring>
#include <sys/wait.h>

namespace qtbox::init {

ErrorOr<std::vector<std::string>> parse_lines(std::string_view text, std::string_view what, bool skip_empty)
{
    std::vector<std::string> lines;
    std::size_t number = 0;
    while (!text.empty()) {
        auto newline = text.find('\n');
        std::string_view line = text.substr(0, newline);
        text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
        ++number;
        if (line.find('\0') != std::string_view::npos)
            return Error::from_code(InitError::Malformed, fmt::format("{} line {}: contains a NUL byte", what, number));
        if (line.empty()) {
            if (skip_empty)
                continue;
            return Error::from_code(InitError::Malformed, fmt::format("{} line {}: empty entry", what, number));
        }
        if (lines.size() == MAX_ENTRIES)
            return Error::from_code(InitError::TooManyEntries, fmt::format("{}: more than {} entries", what, MAX_ENTRIES));
        lines.emplace_back(line);
    }
    return lines;
}

ErrorOr<AppConfig> parse_app_config(std::string_view cmd, std::string_view env, std::string_view workdir)
{
    AppConfig config;
    config.argv = TRY(parse_lines(cmd, "/cmd", false));
    if (config.argv.empty())
        return Error::from_code(InitError::Malformed, "/cmd: no command to run");
    config.env = TRY(parse_lines(env, "/env", true));
    bool has_path = false;
    for (auto const& entry : config.env) {
        auto equals = entry.find('=');
        if (equals == 0 || equals == std::string::npos)
            return Error::from_code(InitError::Malformed, fmt::format("/env: '{}' is not KEY=VALUE", entry));
        has_path = has_path || entry.compare(0, 5, "PATH=") == 0;
    }
    if (!has_path)
        config.env.push_back(std::string("PATH=") + DEFAULT_PATH);
    auto directories = TRY(parse_lines(workdir, "/workdir", true));
    if (directories.size() > 1)
        return Error::from_code(InitError::Malformed, "/workdir: more than one line");
    if (!directories.empty()) {
        if (directories[0].front() != '/')
            return Error::from_code(InitError::Malformed, fmt::format("/workdir: '{}' is not an absolute path", directories[0]));
        config.working_dir = directories[0];
    }
    return config;
}

std::string path_of(std::vector<std::string> const& env)
{
    for (auto const& entry : env) {
        if (entry.compare(0, 5, "PATH=") == 0)
            return entry.substr(5);
    }
    return DEFAULT_PATH;
}

ErrorOr<std::vector<std::string>> parse_module_list(std::string_view text)
{
    auto paths = TRY(parse_lines(text, MODULE_LIST, true));
    for (auto const& path : paths) {
        if (path.front() != '/')
            return Error::from_code(InitError::Malformed, fmt::format("{}: '{}' is not an absolute path", MODULE_LIST, path));
    }
    return paths;
}

Compression module_compression(std::string_view path)
{
    if (path.ends_with(".ko.gz"))
        return Compression::Gzip;
    if (path.ends_with(".ko.xz"))
        return Compression::Xz;
    if (path.ends_with(".ko.zst"))
        return Compression::Zstd;
    return Compression::None;
}

std::string describe_wait_status(int status)
{
    if (WIFEXITED(status))
        return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        int number = WTERMSIG(status);
        char const* name = sigabbrev_np(number);
        return fmt::format("was killed by signal {} (SIG{}){}", number, name ? name : "?",
            WCOREDUMP(status) ? ", core dumped" : "");
    }
    return fmt::format("ended with wait status {:#x}", status);
}

} // namespace qtbox::init
