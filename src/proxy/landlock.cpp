#include "landlock.hpp"

#include <qtbox/base/fd.hpp>
#include <qtbox/base/seccomp.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <fcntl.h>
#include <linux/landlock.h>
#include <set>
#include <sys/syscall.h>
#include <unistd.h>

namespace qtbox::proxy {

namespace {

// Access rights by the ABI version that introduced them (landlock.h).
constexpr std::uint64_t ABI1_RIGHTS = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE
    | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE
    | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG
    | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK
    | LANDLOCK_ACCESS_FS_MAKE_SYM;
constexpr std::uint64_t ABI2_REFER = 1ull << 13;    // LANDLOCK_ACCESS_FS_REFER
constexpr std::uint64_t ABI3_TRUNCATE = 1ull << 14; // LANDLOCK_ACCESS_FS_TRUNCATE

int landlock_abi()
{
    long version = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return version < 0 ? -1 : static_cast<int>(version);
}

std::string directory_of(std::string const& path)
{
    auto slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

ErrorOr<void> allow_beneath(int ruleset, std::string const& directory, std::uint64_t rights)
{
    int fd = ::open(directory.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        // A directory that is not there cannot be read later either.
        if (errno == ENOENT || errno == ENOTDIR)
            return {};
        return Error::from_errno(fmt::format("landlock: open {}", directory));
    }
    UniqueFd owner(fd);
    landlock_path_beneath_attr rule {};
    rule.allowed_access = rights;
    rule.parent_fd = fd;
    if (::syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0) < 0)
        return Error::from_errno(fmt::format("landlock: rule for {}", directory));
    return {};
}

} // namespace

ErrorOr<LandlockState> restrict_filesystem(FilesystemScope const& scope)
{
    int abi = landlock_abi();
    if (abi < 1)
        return LandlockState::Unavailable;
    std::uint64_t handled = ABI1_RIGHTS | (abi >= 2 ? ABI2_REFER : 0) | (abi >= 3 ? ABI3_TRUNCATE : 0);
    landlock_ruleset_attr attributes {};
    attributes.handled_access_fs = handled;
    long created = ::syscall(SYS_landlock_create_ruleset, &attributes, sizeof(attributes), 0);
    if (created < 0)
        return Error::from_errno("landlock_create_ruleset");
    UniqueFd ruleset(static_cast<int>(created));

    if (!scope.socket_directory.empty())
        TRY(allow_beneath(ruleset.get(), scope.socket_directory, LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_REMOVE_FILE));
    // The directory of each file and of what it resolves to (resolv.conf is
    // often a link into /run), so that a file replaced by rename is still
    // readable; nothing is written there.
    std::set<std::string> readable;
    for (auto const& file : scope.read_files) {
        if (file.empty())
            continue;
        readable.insert(directory_of(file));
        char resolved[PATH_MAX];
        if (::realpath(file.c_str(), resolved))
            readable.insert(directory_of(resolved));
    }
    for (auto const& directory : readable)
        TRY(allow_beneath(ruleset.get(), directory, LANDLOCK_ACCESS_FS_READ_FILE));

    TRY(seccomp::set_no_new_privs());
    if (::syscall(SYS_landlock_restrict_self, ruleset.get(), 0) < 0)
        return Error::from_errno("landlock_restrict_self");
    return LandlockState::On;
}

} // namespace qtbox::proxy
