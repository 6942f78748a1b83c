// qtbox: the multi-call dispatcher, following BusyBox's rules.
//
//   - The applet is chosen by the base name of argv[0] (a link named
//     `attest-verify` runs attest-verify); `qtbox APPLET ARGS...` works too.
//   - `qtbox --list` prints the applet names; `qtbox --install [-s] DIR`
//     makes hard links (or symbolic links with -s) for every applet, and,
//     when DIR is <prefix>/bin, installs the bash completion in
//     <prefix>/share/bash-completion/completions; `qtbox --completion`
//     prints that script (applets/support/completion.hpp).
//   - An unknown name prints "<name>: applet not found" and exits 127.
#include "support/completion.hpp"
#include "support/log.hpp"

#include <qtbox/base/program.hpp>
#include <qtbox/base/verify.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>
#include <sys/stat.h>
#include <unistd.h>

// The generated table declares each applet's <id>_main at global scope, where
// the applet files define them; the table itself has internal linkage.
struct AppletEntry {
    std::string_view name;
    int (*main)(int, char**);
    std::string_view summary;
};

#include "applet_table.inc"

namespace {

constexpr int EXIT_NOT_FOUND = 127;

AppletEntry const* find_applet(std::string_view name)
{
    auto it = std::lower_bound(std::begin(APPLETS), std::end(APPLETS), name,
        [](AppletEntry const& entry, std::string_view key) { return entry.name < key; });
    if (it == std::end(APPLETS) || it->name != name)
        return nullptr;
    return &*it;
}

std::string_view base_name(char const* path)
{
    std::string_view name(path ? path : "");
    auto slash = name.rfind('/');
    return slash == std::string_view::npos ? name : name.substr(slash + 1);
}

void print_usage(FILE* out)
{
    fmt::print(out,
        "qtbox {}: QingTian-compatible enclave toolchain, multi-call binary\n"
        "\n"
        "Usage: qtbox APPLET [ARGS...]   or   APPLET [ARGS...] through a link named APPLET\n"
        "       qtbox --list | --install [-s] DIR | --completion | --help | --version\n"
        "\n"
        "Applets:\n",
        QTBOX_VERSION);
    for (auto const& applet : APPLETS)
        fmt::print(out, "  {:<16}{}\n", applet.name, applet.summary);
}

// Creates DIR/<applet> for every applet, pointing at this executable. An
// existing entry is replaced only when it already is a link to qtbox, so
// --install never clobbers an unrelated program of the same name.
int install_links(std::string const& directory, bool symbolic)
{
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (length <= 0) {
        qtbox::log::error("--install: cannot find the running executable: {}", std::strerror(errno));
        return 1;
    }
    self[length] = '\0';
    struct stat self_stat { };
    if (stat(self, &self_stat) < 0) {
        qtbox::log::error("--install: stat {}: {}", self, std::strerror(errno));
        return 1;
    }
    int failures = 0;
    for (auto const& applet : APPLETS) {
        std::string link_path = directory + "/" + std::string(applet.name);
        struct stat existing { };
        if (lstat(link_path.c_str(), &existing) == 0) {
            struct stat target { };
            bool ours = stat(link_path.c_str(), &target) == 0 && target.st_dev == self_stat.st_dev
                && target.st_ino == self_stat.st_ino;
            if (!ours) {
                qtbox::log::error("--install: {} exists and is not a link to qtbox; left alone", link_path);
                ++failures;
                continue;
            }
            unlink(link_path.c_str());
        }
        int rc = symbolic ? symlink(self, link_path.c_str()) : link(self, link_path.c_str());
        if (rc < 0) {
            qtbox::log::error("--install: {} {}: {}{}", symbolic ? "symlink" : "link", link_path, std::strerror(errno),
                errno == EXDEV ? " (hint: use -s across file systems)" : "");
            ++failures;
        }
    }
    return failures == 0 ? 0 : 1;
}

std::vector<std::string_view> applet_names()
{
    std::vector<std::string_view> names;
    for (auto const& applet : APPLETS)
        names.push_back(applet.name);
    return names;
}

// The completion beside the links, where DIR is <prefix>/bin (completion.hpp).
int install_completion(std::string const& directory)
{
    auto names = applet_names();
    auto installed = qtbox::completion::install_bash(directory, names);
    for (auto const& path : installed.refused)
        qtbox::log::error("--install: {} exists and is not qtbox's completion; left alone", path);
    if (!installed.error.empty())
        qtbox::log::error("--install: bash completion in {}: {}", installed.directory, installed.error);
    return installed.error.empty() && installed.refused.empty() ? 0 : 1;
}

int run_applet(AppletEntry const& applet, int argc, char** argv)
{
    qtbox::log::set_program(applet.name);
    return applet.main(argc, argv);
}

int qtbox_main(int argc, char** argv)
{
    qtbox::log::set_program("qtbox");
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    std::string_view first = argv[1];
    if (first == "--help" || first == "-h") {
        print_usage(stdout);
        return 0;
    }
    if (first == "--version") {
        fmt::print("qtbox {}\n", QTBOX_VERSION);
        return 0;
    }
    if (first == "--list") {
        for (auto const& applet : APPLETS)
            fmt::print("{}\n", applet.name);
        return 0;
    }
    if (first == "--install") {
        bool symbolic = argc == 4 && std::string_view(argv[2]) == "-s";
        if (argc != (symbolic ? 4 : 3)) {
            qtbox::log::error("usage: qtbox --install [-s] DIR");
            return 2;
        }
        int links = install_links(argv[argc - 1], symbolic);
        int completion = install_completion(argv[argc - 1]);
        return links == 0 && completion == 0 ? 0 : 1;
    }
    if (first == "--completion") {
        if (argc != 2) {
            qtbox::log::error("usage: qtbox --completion");
            return 2;
        }
        fmt::print("{}", qtbox::completion::bash_script(applet_names()));
        return 0;
    }
    if (first.starts_with("-")) {
        qtbox::log::error("unknown option '{}'; run 'qtbox --help'", first);
        return 2;
    }
    auto const* applet = find_applet(first);
    if (!applet) {
        fmt::print(stderr, "{}: applet not found\n", first);
        return EXIT_NOT_FOUND;
    }
    return run_applet(*applet, argc - 1, argv + 1);
}

// A failed VERIFY: one line naming the applet and the place, then abort().
void report_invariant(std::string_view what, char const* file, int line)
{
    qtbox::log::error("internal error (a bug in qtbox): {} at {}:{}", what, file, line);
}

} // namespace

int main(int argc, char** argv)
{
    qtbox::set_report_fd(STDERR_FILENO);
    qtbox::set_invariant_handler(report_invariant);
    std::string_view name = base_name(argc > 0 ? argv[0] : nullptr);
    if (name == "qtbox")
        return qtbox_main(argc, argv);
    if (auto const* applet = find_applet(name))
        return run_applet(*applet, argc, argv);
    // A copy under a versioned name ("qtbox-0.1") still behaves as qtbox.
    if (name.starts_with("qtbox"))
        return qtbox_main(argc, argv);
    fmt::print(stderr, "{}: applet not found\n", name);
    return EXIT_NOT_FOUND;
}
