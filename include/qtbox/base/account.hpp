// Running a parent-side daemon as a dedicated system user (vmm(1) and
// qt-proxy(1) --user; the units in contrib/systemd use the user `qtbox`).
//
// Accounts are read from passwd(5) directly rather than through getpwnam():
// a static binary cannot load glibc's NSS modules, and a service user is a
// local account. Only the name, uid and primary gid are used.
//
// drop_privileges() ends every supplementary group, sets the real,
// effective and saved group and user ids, and then checks that the process
// cannot become root again. A change of effective (or filesystem) id
// resets the kernel's "dumpable" flag and clears the parent-death signal
// (prctl(2) PR_SET_DUMPABLE, PR_SET_PDEATHSIG); both are restored (here and
// by ScopedFileGroup), so that a VMM that made itself non-dumpable stays so,
// and one that `qt enclave start` runs still dies with its monitor.
#pragma once

#include <qtbox/base/error.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace qtbox::sys {

// The account vmm and qt-proxy switch to when started as root without
// --user, if it exists.
constexpr std::string_view SERVICE_USER = "qtbox";
constexpr char const* PASSWD_PATH = "/etc/passwd";

enum class AccountError {
    NoSuchUser = 1, // the name is not in the passwd file
};

struct Account {
    std::string name;
    uid_t uid { 0 };
    gid_t gid { 0 };
};

// The passwd(5) line for `name`: "name:password:uid:gid:gecos:home:shell".
ErrorOr<Account> find_account(std::string_view name, std::string const& passwd_path = PASSWD_PATH);

ErrorOr<void> drop_privileges(Account const& account);

// The group of the service account (SERVICE_USER), when this process is
// root and the passwd file has it: the directories `qt` makes on the way to
// an enclave's vsock socket belong to it (vmm(1) --user), so that
// qt-proxy running as that account reaches the socket.
std::optional<gid_t> service_group(std::string const& passwd_path = PASSWD_PATH);

// While it lives, the files and sockets the calling thread creates belong
// to `group` (setfsgid(2): a thread's own setting, which only root may point
// at any group). A socket the service account must reach is so born in its
// group, mode 0660, and never chown'ed by name. enter() fails when the
// group could not be taken.
class ScopedFileGroup {
public:
    static ErrorOr<ScopedFileGroup> enter(gid_t group);
    ~ScopedFileGroup();
    ScopedFileGroup(ScopedFileGroup&& other) noexcept : m_previous(other.m_previous), m_active(other.m_active) { other.m_active = false; }
    ScopedFileGroup& operator=(ScopedFileGroup&&) = delete;
    ScopedFileGroup(ScopedFileGroup const&) = delete;

private:
    explicit ScopedFileGroup(gid_t previous) : m_previous(previous) { }
    gid_t m_previous;
    bool m_active { true };
};

} // namespace qtbox::sys
