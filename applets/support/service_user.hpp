// --user for the parent-side daemons, vmm and qt-proxy (vmm(1), qt-proxy(1)
// "PRIVILEGES"). Started as root, they switch to a dedicated account once
// they hold what needs root (the KVM device, the PKI keys, their listening
// sockets): the one named by --user, or else the `qtbox` account
// (sys::SERVICE_USER) when the passwd file has one. `--user root` keeps root
// on purpose. Started as any other user, they stay that user, and --user may
// only name it.
#pragma once

#include <qtbox/base/account.hpp>

#include <optional>
#include <string>

namespace qtbox {

struct ServiceUser {
    std::optional<sys::Account> account; // switch to this one; nothing: stay
    std::string note;                    // why root stays root, when it does
};

// `option`: the --user value, empty when not given.
ErrorOr<ServiceUser> choose_service_user(std::string const& option);

} // namespace qtbox
