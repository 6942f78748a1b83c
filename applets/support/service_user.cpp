#include "service_user.hpp"

#include <fmt/format.h>

#include <unistd.h>

namespace qtbox {

ErrorOr<ServiceUser> choose_service_user(std::string const& option)
{
    ServiceUser chosen;
    if (::geteuid() != 0) {
        if (option.empty())
            return chosen;
        auto account = sys::find_account(option);
        if (account.is_error())
            return account.release_error().context("--user");
        if (account.value().uid != ::geteuid())
            return Error::from_string(fmt::format("--user {}: only root can switch to another user", option));
        return chosen;
    }
    if (option == "root") {
        chosen.note = "running as root (--user root)";
        return chosen;
    }
    if (!option.empty()) {
        auto account = sys::find_account(option);
        if (account.is_error())
            return account.release_error().context("--user");
        chosen.account = account.release_value();
        return chosen;
    }
    auto account = sys::find_account(sys::SERVICE_USER);
    if (account.is_error()) {
        chosen.note = fmt::format("running as root: {} (create the '{}' system user, or pass --user)",
            account.error().message(), sys::SERVICE_USER);
        return chosen;
    }
    chosen.account = account.release_value();
    return chosen;
}

} // namespace qtbox
