// What the enclave's init runs, as files in the EIF's ramdisks: eif-build
// writes them (build.cpp, with encode_lines) and init reads them (src/init,
// with parse_app_config). Both sides use this one definition of the format.
//
//   /cmd      the app's argv, one entry a line (Nitro's layout)
//   /env      its environment, one KEY=VALUE entry a line (Nitro's layout)
//   /workdir  the absolute working directory on one line (a qtbox
//             addition; init chdirs there inside the chroot)
//   /user     "UID:GID" in decimal on one line (a qtbox addition, written
//             only when the image's User is not root): init runs the app
//             with that user and group id, and no supplementary groups.
//             Absent: the app runs as root, as the image asked
//   /etc/qtbox/modules  (bootstrap ramdisk) the guest modules init loads,
//             one absolute path a line, in load order
//
// Every entry ends in '\n' (a reader accepts a missing final newline); no
// entry can hold a newline or a NUL byte (fits_one_line), and an /env entry
// is KEY=VALUE (is_env_entry): eif-build refuses entries that break these
// two rules. The reader also refuses an empty line in /cmd (an empty
// argument cannot be told from a blank line; it skips them in the other
// files) and more than MAX_ENTRIES entries in a file. When /env sets no
// PATH, the app gets DEFAULT_PATH (and eif-build writes it into /env).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::eif {

// Paths as the enclave sees them (the ramdisks are unpacked at /).
constexpr char const* CMD_PATH = "/cmd";
constexpr char const* ENV_PATH = "/env";
constexpr char const* WORKDIR_PATH = "/workdir";
constexpr char const* USER_PATH = "/user";
constexpr char const* MODULE_LIST_PATH = "/etc/qtbox/modules";

// Named limits; the files come from the EIF, which init does not trust.
constexpr std::size_t MAX_FILE_SIZE = 1 << 20; // one of these files
constexpr std::size_t MAX_ENTRIES = 4096;      // lines in one of them
// Docker's default, used when the environment sets no PATH.
constexpr char const* DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Why one of these files was refused.
enum class AppConfigError {
    Malformed = 1,  // an entry or line that breaks the format
    TooManyEntries, // more than MAX_ENTRIES lines
};

// The rules for one entry: it holds no '\n' and no NUL, and an environment
// entry is KEY=VALUE with a non-empty KEY.
bool fits_one_line(std::string_view entry);
bool is_env_entry(std::string_view entry);
// "KEY" of "KEY=VALUE" (the whole entry when it has no '=').
std::string_view env_key(std::string_view entry);

// The file: each entry followed by '\n'. The caller has checked the entries.
Bytes encode_lines(std::vector<std::string> const& entries);
// One entry per line. An empty line is an error (AppConfigError::Malformed)
// unless `skip_empty`; `what` names the file in the error ("/cmd line 2:
// empty entry").
ErrorOr<std::vector<std::string>> parse_lines(std::string_view text, std::string_view what, bool skip_empty);

// The numeric identity the app runs with (/user).
struct UserIds {
    std::uint32_t uid { 0 };
    std::uint32_t gid { 0 };
    bool operator==(UserIds const&) const = default;
};

struct AppConfig {
    std::vector<std::string> argv;
    std::vector<std::string> env; // "KEY=VALUE", PATH always present
    std::string working_dir { "/" };
    UserIds user;                 // 0:0 when /user is absent
};

// From the contents of /cmd, /env (empty when absent), /workdir (empty
// when absent: "/") and /user (empty when absent: root).
ErrorOr<AppConfig> parse_app_config(std::string_view cmd, std::string_view env, std::string_view workdir, std::string_view user = {});

// /user's one entry, "UID:GID"; and its reader: two decimal numbers below
// 4294967295 (which is (uid_t)-1, "no change" to setresuid), nothing else.
std::string encode_user(UserIds const& user);
ErrorOr<UserIds> parse_user_entry(std::string_view entry);

// The value of PATH in `env` (DEFAULT_PATH when absent).
std::string path_of(std::vector<std::string> const& env);

} // namespace qtbox::eif
