// The /cmd, /env, /workdir and /user format, both directions (app_config.hpp).
#include <qtbox/eif/app_config.hpp>

#include <fmt/format.h>

#include <optional>

namespace qtbox::eif {

bool fits_one_line(std::string_view entry)
{
    return entry.find('\n') == std::string_view::npos && entry.find('\0') == std::string_view::npos;
}

bool is_env_entry(std::string_view entry)
{
    auto equals = entry.find('=');
    return equals != 0 && equals != std::string_view::npos;
}

std::string_view env_key(std::string_view entry)
{
    return entry.substr(0, entry.find('='));
}

Bytes encode_lines(std::vector<std::string> const& entries)
{
    Bytes bytes;
    for (auto const& entry : entries) {
        bytes.insert(bytes.end(), entry.begin(), entry.end());
        bytes.push_back('\n');
    }
    return bytes;
}

ErrorOr<std::vector<std::string>> parse_lines(std::string_view text, std::string_view what, bool skip_empty)
{
    std::vector<std::string> lines;
    std::size_t number = 0;
    while (!text.empty()) {
        auto newline = text.find('\n');
        std::string_view line = text.substr(0, newline);
        text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
        ++number;
        if (!fits_one_line(line))
            return Error::from_code(AppConfigError::Malformed, fmt::format("{} line {}: contains a NUL byte", what, number));
        if (line.empty()) {
            if (skip_empty)
                continue;
            return Error::from_code(AppConfigError::Malformed, fmt::format("{} line {}: empty entry", what, number));
        }
        if (lines.size() == MAX_ENTRIES)
            return Error::from_code(AppConfigError::TooManyEntries, fmt::format("{}: more than {} entries", what, MAX_ENTRIES));
        lines.emplace_back(line);
    }
    return lines;
}

std::string encode_user(UserIds const& user)
{
    return fmt::format("{}:{}", user.uid, user.gid);
}

ErrorOr<UserIds> parse_user_entry(std::string_view entry)
{
    auto number = [&](std::string_view text) -> std::optional<std::uint32_t> {
        if (text.empty() || text.size() > 10)
            return std::nullopt;
        std::uint64_t value = 0;
        for (char c : text) {
            if (c < '0' || c > '9')
                return std::nullopt;
            value = value * 10 + static_cast<unsigned>(c - '0');
        }
        if (value >= 0xFFFF'FFFFu)
            return std::nullopt;
        return static_cast<std::uint32_t>(value);
    };
    auto colon = entry.find(':');
    std::optional<std::uint32_t> uid, gid;
    if (colon != std::string_view::npos) {
        uid = number(entry.substr(0, colon));
        gid = number(entry.substr(colon + 1));
    }
    if (!uid || !gid)
        return Error::from_code(AppConfigError::Malformed, fmt::format("{}: '{}' is not UID:GID", USER_PATH, entry.substr(0, 64)));
    return UserIds { *uid, *gid };
}

ErrorOr<AppConfig> parse_app_config(std::string_view cmd, std::string_view env, std::string_view workdir, std::string_view user)
{
    AppConfig config;
    config.argv = TRY(parse_lines(cmd, CMD_PATH, false));
    if (config.argv.empty())
        return Error::from_code(AppConfigError::Malformed, fmt::format("{}: no command to run", CMD_PATH));
    config.env = TRY(parse_lines(env, ENV_PATH, true));
    bool has_path = false;
    for (auto const& entry : config.env) {
        if (!is_env_entry(entry))
            return Error::from_code(AppConfigError::Malformed, fmt::format("{}: '{}' is not KEY=VALUE", ENV_PATH, entry));
        has_path = has_path || entry.compare(0, 5, "PATH=") == 0;
    }
    if (!has_path)
        config.env.push_back(std::string("PATH=") + DEFAULT_PATH);
    auto directories = TRY(parse_lines(workdir, WORKDIR_PATH, true));
    if (directories.size() > 1)
        return Error::from_code(AppConfigError::Malformed, fmt::format("{}: more than one line", WORKDIR_PATH));
    if (!directories.empty()) {
        if (directories[0].front() != '/')
            return Error::from_code(AppConfigError::Malformed,
                fmt::format("{}: '{}' is not an absolute path", WORKDIR_PATH, directories[0]));
        config.working_dir = directories[0];
    }
    auto users = TRY(parse_lines(user, USER_PATH, true));
    if (users.size() > 1)
        return Error::from_code(AppConfigError::Malformed, fmt::format("{}: more than one line", USER_PATH));
    if (!users.empty())
        config.user = TRY(parse_user_entry(users[0]));
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

} // namespace qtbox::eif
