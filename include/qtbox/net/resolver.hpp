// Asynchronous name resolution on an EventLoop (see dns.hpp for the why).
//
// Order: numeric address, then the hosts file, then DNS. DNS lookups are
// coalesced per (name, family): a thousand connections to the same rule
// arriving together cause one query per record type. Answers are cached for
// their TTL, capped at MAX_CACHE_SECONDS, so names are re-resolved as their
// records expire rather than once at start-up; hosts-file answers for
// HOSTS_CACHE_SECONDS; failures are not cached.
//
// For each lookup the name servers of resolv.conf are tried in order, each
// for `timeout` seconds, the whole list `attempts` times (glibc's meaning
// of those options). Each try uses a fresh connected UDP socket, so the
// kernel picks a random source port, and a random query id; answers that do
// not match the question are ignored. A truncated answer is asked again
// over TCP.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/net/dns.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/net/socket.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qtbox::net {

struct ResolverSettings {
    std::string hosts_path { "/etc/hosts" };
    std::string resolv_conf_path { "/etc/resolv.conf" };
    // The name servers' port. Always 53 in use; tests run a fake server on
    // an unprivileged port.
    std::uint16_t dns_port { 53 };
};

using Addresses = std::vector<IpAddress>;
using ResolveCallback = std::function<void(ErrorOr<Addresses>)>;

class Resolver {
public:
    static constexpr std::int64_t MAX_CACHE_SECONDS = 300;
    static constexpr std::size_t MAX_CACHE_ENTRIES = 256;
    static constexpr std::int64_t HOSTS_CACHE_SECONDS = 5;

    Resolver(EventLoop& loop, ResolverSettings settings);
    ~Resolver();
    Resolver(Resolver const&) = delete;
    Resolver& operator=(Resolver const&) = delete;

    // A numeric address, a cached answer or a hosts-file entry, or nullopt
    // when DNS must be asked (start()).
    std::optional<ErrorOr<Addresses>> lookup_now(std::string const& name, Family family, Clock::time_point now);
    // Starts (or joins) a DNS lookup. The callback runs later, from the
    // event loop, exactly once unless cancel() is called first. Returns a
    // token for cancel().
    std::uint64_t start(std::string const& name, Family family, ResolveCallback callback, Clock::time_point now);
    void cancel(std::uint64_t token);
    // Moves lookups on when their current server's time is up.
    void tick(Clock::time_point now);
    bool busy() const { return !m_lookups.empty(); }
    // Frees finished lookups; call between two EventLoop::wait() calls.
    void collect_garbage();

    class Lookup;

private:
    friend class Lookup;
    void finish(Lookup& lookup, ErrorOr<Addresses> result, std::uint32_t ttl, Clock::time_point now);
    void remember(std::string const& key, Addresses const& addresses, Clock::time_point expires);

    struct CacheEntry {
        Addresses addresses;
        Clock::time_point expires;
    };

    EventLoop& m_loop;
    ResolverSettings m_settings;
    std::uint64_t m_next_token { 1 };
    std::map<std::string, std::unique_ptr<Lookup>> m_lookups;
    std::vector<std::unique_ptr<Lookup>> m_finished;
    std::map<std::string, CacheEntry> m_cache;
};

} // namespace qtbox::net
