#include <qtbox/base/account.hpp>
#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <grp.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <vector>

namespace qtbox::sys {

namespace {

// A passwd file larger than this is not a local account list.
constexpr std::size_t MAX_PASSWD_SIZE = 4 << 20;

template<typename T>
bool parse_id(std::string_view text, T& out)
{
    unsigned long value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc {} || end != text.data() + text.size() || text.empty() || value > 0xFFFFFFFEul)
        return false;
    out = static_cast<T>(value);
    return true;
}

std::vector<std::string_view> split_fields(std::string_view line)
{
    std::vector<std::string_view> fields;
    std::size_t start = 0;
    for (;;) {
        auto colon = line.find(':', start);
        fields.push_back(line.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
        if (colon == std::string_view::npos)
            return fields;
        start = colon + 1;
    }
}

} // namespace

ErrorOr<Account> find_account(std::string_view name, std::string const& passwd_path)
{
    auto contents = sys::read_file(passwd_path, MAX_PASSWD_SIZE);
    if (contents.is_error())
        return contents.release_error().context(fmt::format("user {}", name));
    std::string_view text(reinterpret_cast<char const*>(contents.value().data()), contents.value().size());
    while (!text.empty()) {
        auto newline = text.find('\n');
        auto line = text.substr(0, newline);
        text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
        auto fields = split_fields(line);
        if (fields.size() != 7 || fields[0] != name)
            continue;
        Account account { std::string(name), 0, 0 };
        if (!parse_id(fields[2], account.uid) || !parse_id(fields[3], account.gid))
            return Error::from_string(fmt::format("user {}: {}: malformed entry", name, passwd_path));
        return account;
    }
    return Error::from_code(AccountError::NoSuchUser, fmt::format("user {}: not in {}", name, passwd_path));
}

ErrorOr<void> drop_privileges(Account const& account)
{
    int dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    gid_t const groups[] = { account.gid };
    if (::setgroups(1, groups) < 0)
        return Error::from_errno(fmt::format("user {}: setgroups", account.name));
    if (::setresgid(account.gid, account.gid, account.gid) < 0)
        return Error::from_errno(fmt::format("user {}: setresgid", account.name));
    if (::setresuid(account.uid, account.uid, account.uid) < 0)
        return Error::from_errno(fmt::format("user {}: setresuid", account.name));
    if (dumpable >= 0)
        ::prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
    // No way back: a non-root account must not be able to regain uid 0.
    if (account.uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0))
        return Error::from_string(fmt::format("user {}: root could be regained after the switch", account.name));
    uid_t real, effective, saved;
    if (::getresuid(&real, &effective, &saved) < 0 || real != account.uid || effective != account.uid || saved != account.uid)
        return Error::from_string(fmt::format("user {}: the user ids did not change", account.name));
    return {};
}

} // namespace qtbox::sys
