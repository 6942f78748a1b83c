// Bash completion for qtbox and its applets: the script is
// contrib/bash-completion/qtbox.bash, embedded at build time. It completes
// from each applet's own --help, so it never goes stale; only the applet
// list is filled in here, from the dispatcher's table.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::completion {

// The script, with @QTBOX_APPLETS@ replaced by `applets` (space separated).
std::string bash_script(std::span<std::string_view const> applets);

// `qtbox --install DIR`: where DIR is <prefix>/bin and <prefix>/share
// exists, the script goes to <prefix>/share/bash-completion/completions/qtbox
// with a symbolic link named after each applet next to it (bash-completion
// loads a command's completion from a file of that command's name). Returns
// that directory, or an empty string when DIR is not such a place. An
// existing entry is replaced only when it is qtbox's; the others are left
// alone and reported through `refused`.
struct InstallResult {
    std::string directory;
    std::string error; // the first failure; empty on success
    std::vector<std::string> refused; // entries that are not qtbox's, left alone
};
InstallResult install_bash(std::string const& bin_directory, std::span<std::string_view const> applets);

} // namespace qtbox::completion
