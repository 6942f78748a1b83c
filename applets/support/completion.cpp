#include "completion.hpp"

#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace qtbox::completion {

// contrib/bash-completion/qtbox.bash, generated into completion_script.cpp
// by scripts/gen-embedded-text (applets/meson.build).
extern std::string_view const BASH_SCRIPT_TEMPLATE;

namespace {

constexpr std::string_view APPLETS_MARK = "@QTBOX_APPLETS@";
constexpr char const* SCRIPT_NAME = "qtbox";

bool is_directory(std::string const& path)
{
    struct stat st { };
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

} // namespace

std::string bash_script(std::span<std::string_view const> applets)
{
    std::string names;
    for (auto name : applets)
        names += fmt::format("{}{}", names.empty() ? "" : " ", name);
    std::string script(BASH_SCRIPT_TEMPLATE);
    for (auto at = script.find(APPLETS_MARK); at != std::string::npos;
         at = script.find(APPLETS_MARK, at + names.size()))
        script.replace(at, APPLETS_MARK.size(), names);
    return script;
}

InstallResult install_bash(std::string const& bin_directory, std::span<std::string_view const> applets)
{
    InstallResult result;
    std::string bin = bin_directory;
    while (bin.size() > 1 && bin.back() == '/')
        bin.pop_back();
    std::string share;
    if (bin == "bin")
        share = "share";
    else if (bin == "/bin")
        share = "/usr/share"; // /bin on a merged-/usr system
    else if (bin.ends_with("/bin"))
        share = bin.substr(0, bin.size() - 4) + "/share";
    else
        return result;
    if (!is_directory(share))
        return result;
    result.directory = share + "/bash-completion/completions";
    if (auto made = sys::mkdir_p(result.directory, 0755); made.is_error()) {
        result.error = made.error().message();
        return result;
    }
    auto script = bash_script(applets);
    std::string script_path = result.directory + "/" + SCRIPT_NAME;
    if (auto written = sys::write_file_atomic(script_path, as_bytes(std::string_view(script)), 0644);
        written.is_error()) {
        result.error = written.error().message();
        return result;
    }
    for (auto name : applets) {
        std::string link_path = fmt::format("{}/{}", result.directory, name);
        struct stat st { };
        if (::lstat(link_path.c_str(), &st) == 0) {
            char target[64] {};
            ssize_t length = S_ISLNK(st.st_mode) ? ::readlink(link_path.c_str(), target, sizeof(target) - 1) : -1;
            if (length < 0 || std::string_view(target, static_cast<std::size_t>(length)) != SCRIPT_NAME)
                result.refused.push_back(link_path);
            continue;
        }
        if (::symlink(SCRIPT_NAME, link_path.c_str()) < 0 && result.error.empty())
            result.error = fmt::format("symlink {}: {}", link_path, std::strerror(errno));
    }
    return result;
}

} // namespace qtbox::completion
