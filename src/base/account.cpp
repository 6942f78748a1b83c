#include <qtbox/base/account.hpp>
#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <grp.h>
#include <sys/fsuid.h>
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

// A change of effective or filesystem ids resets the kernel's "dumpable"
// flag and clears the parent-death signal (prctl(2)). What the caller had
// set is put back afterwards; a parent that died while the signal was
// cleared is answered with that signal at once, as the kernel would have.
struct ProcessFlags {
    int dumpable { -1 };
    int death_signal { 0 };
    pid_t parent { 0 };
};

ProcessFlags save_process_flags()
{
    ProcessFlags flags;
    flags.dumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    if (::prctl(PR_GET_PDEATHSIG, &flags.death_signal, 0, 0, 0) < 0)
        flags.death_signal = 0;
    flags.parent = ::getppid();
    return flags;
}

void restore_process_flags(ProcessFlags const& flags)
{
    if (flags.dumpable >= 0)
        ::prctl(PR_SET_DUMPABLE, flags.dumpable, 0, 0, 0);
    if (flags.death_signal > 0) {
        ::prctl(PR_SET_PDEATHSIG, flags.death_signal, 0, 0, 0);
        if (::getppid() != flags.parent)
            ::kill(::getpid(), flags.death_signal);
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
    auto flags = save_process_flags();
    gid_t const groups[] = { account.gid };
    if (::setgroups(1, groups) < 0)
        return Error::from_errno(fmt::format("user {}: setgroups", account.name));
    if (::setresgid(account.gid, account.gid, account.gid) < 0)
        return Error::from_errno(fmt::format("user {}: setresgid", account.name));
    if (::setresuid(account.uid, account.uid, account.uid) < 0)
        return Error::from_errno(fmt::format("user {}: setresuid", account.name));
    restore_process_flags(flags);
    // No way back: a non-root account must not be able to regain uid 0.
    if (account.uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0))
        return Error::from_string(fmt::format("user {}: root could be regained after the switch", account.name));
    uid_t real, effective, saved;
    if (::getresuid(&real, &effective, &saved) < 0 || real != account.uid || effective != account.uid || saved != account.uid)
        return Error::from_string(fmt::format("user {}: the user ids did not change", account.name));
    return {};
}

std::optional<gid_t> service_group(std::string const& passwd_path)
{
    if (::geteuid() != 0)
        return {};
    auto account = find_account(SERVICE_USER, passwd_path);
    if (account.is_error())
        return {};
    return account.value().gid;
}

ErrorOr<ScopedFileGroup> ScopedFileGroup::enter(gid_t group)
{
    auto flags = save_process_flags();
    // setfsgid(2) answers with the previous value whether or not it took
    // the new one; asking again (with an invalid id) tells which.
    auto previous = static_cast<gid_t>(::setfsgid(group));
    bool taken = static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) == group;
    if (!taken)
        ::setfsgid(previous);
    restore_process_flags(flags);
    if (!taken)
        return Error::from_errno(fmt::format("setfsgid {}", group), EPERM);
    return ScopedFileGroup(previous);
}

ScopedFileGroup::~ScopedFileGroup()
{
    if (!m_active)
        return;
    auto flags = save_process_flags();
    ::setfsgid(m_previous);
    restore_process_flags(flags);
}

} // namespace qtbox::sys
