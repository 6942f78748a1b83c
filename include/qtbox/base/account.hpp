// Running a parent-side daemon as a dedicated system user (vmm(1) and
// qt-proxy(1) --user; the units in contrib/systemd use the user `qtbox`).
//
// Accounts are read from passwd(5) directly rather than through getpwnam():
// a static binary cannot load glibc's NSS modules, and a service user is a
// local account. Only the name, uid and primary gid are used.
//
// drop_privileges() ends every supplementary group, sets the real,
// effective and saved group and user ids, and then checks that the process
// cannot become root again. A change of effective id resets the kernel's
// "dumpable" flag (prctl(2) PR_SET_DUMPABLE); the value the caller had set
// is restored, so that a VMM that made itself non-dumpable stays so.
#pragma once

#include <qtbox/base/error.hpp>

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

} // namespace qtbox::sys
