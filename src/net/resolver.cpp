#include <qtbox/base/sys.hpp>
#include <qtbox/net/resolver.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

namespace qtbox::net {

namespace {

std::string cache_key(std::string const& name, Family family)
{
    std::string key;
    for (char c : name)
        key += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (!key.empty() && key.back() == '.')
        key.pop_back();
    key += family == Family::Ipv4 ? "/4" : family == Family::Ipv6 ? "/6" : "/any";
    return key;
}

std::string read_small_file(std::string const& path, std::size_t limit)
{
    auto bytes = sys::read_file(path, limit);
    if (bytes.is_error())
        return {};
    return std::string(as_chars(bytes.value()));
}

} // namespace

class Resolver::Lookup final : public EventHandler {
public:
    struct Waiter {
        std::uint64_t token;
        ResolveCallback callback;
    };

    Lookup(Resolver& resolver, std::string key, std::string name, Family family, dns::ResolvConf conf)
        : m_resolver(resolver), m_key(std::move(key)), m_name(std::move(name)), m_conf(std::move(conf))
    {
        if (family != Family::Ipv6)
            m_queries.push_back(std::make_unique<Query>(*this, dns::RecordType::A));
        if (family != Family::Ipv4)
            m_queries.push_back(std::make_unique<Query>(*this, dns::RecordType::Aaaa));
    }

    std::string const& key() const { return m_key; }
    std::vector<Waiter>& waiters() { return m_waiters; }

    void begin(Clock::time_point now) { send_round(now); }

    void tick(Clock::time_point now)
    {
        if (m_finished || now < m_deadline)
            return;
        for (auto& query : m_queries) {
            if (query->state == State::Waiting) {
                query->state = State::Retry;
                m_last_error = fmt::format("DNS lookup of {} timed out", m_name);
            }
        }
        advance(now);
    }

    void on_event(std::uint32_t) override
    {
        if (m_finished || !m_udp)
            return;
        std::uint8_t buffer[dns::MAX_UDP_MESSAGE];
        for (;;) {
            ssize_t n = ::recv(m_udp.get(), buffer, sizeof(buffer), MSG_TRUNC);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN)
                    break;
                // ICMP port unreachable and the like: this server is not
                // answering; everything still waiting moves on.
                m_last_error = Error::from_errno(fmt::format("DNS server {}", server_text())).message();
                for (auto& query : m_queries)
                    if (query->state == State::Waiting && !query->tcp)
                        query->state = State::Retry;
                break;
            }
            bool oversized = static_cast<std::size_t>(n) > sizeof(buffer);
            ByteView message(buffer, std::min(static_cast<std::size_t>(n), sizeof(buffer)));
            handle_message(message, oversized);
        }
        check_progress(Clock::now());
    }

private:
    enum class State {
        Waiting,
        Retry,
        Done,
        NotFound,
    };

    struct Query final : EventHandler {
        Query(Lookup& lookup, dns::RecordType record_type) : owner(lookup), type(record_type) { }
        void on_event(std::uint32_t events) override { owner.on_tcp(*this, events); }

        Lookup& owner;
        dns::RecordType type;
        std::uint16_t id { 0 };
        State state { State::Waiting };
        Addresses addresses;
        std::uint32_t ttl { 0 };
        // Set while the question goes over TCP (after a truncated answer).
        UniqueFd tcp;
        Bytes out;
        std::size_t sent { 0 };
        Bytes in;
    };

    std::string server_text() const
    {
        return SocketAddress::ip(m_conf.nameservers[m_server], m_resolver.m_settings.dns_port).to_string();
    }

    void handle_message(ByteView message, bool oversized)
    {
        if (message.size() < 2)
            return;
        std::uint16_t id = static_cast<std::uint16_t>((message[0] << 8) | message[1]);
        for (auto& query : m_queries) {
            if (query->state != State::Waiting || query->tcp || query->id != id)
                continue;
            // A datagram longer than 512 bytes was cut by recv(): ask again
            // over TCP, where the whole answer is checked.
            if (oversized)
                start_tcp(*query);
            else
                accept_answer(*query, dns::parse_response(message, query->id, m_name, query->type));
            return;
        }
    }

    void accept_answer(Query& query, ErrorOr<dns::Answer> answer)
    {
        if (answer.is_error()) {
            auto const& error = answer.error();
            // A mismatching answer may be a spoofing attempt; keep waiting
            // for the real one. A malformed one from a connected socket is
            // the server's fault: ask the next.
            if (error.is(dns::DnsError::Mismatch) && !query.tcp)
                return;
            m_last_error = error.message();
            query.state = error.is(dns::DnsError::NameNotFound) ? State::NotFound : State::Retry;
            query.tcp.reset();
            return;
        }
        auto& result = answer.value();
        if (result.truncated && !query.tcp) {
            start_tcp(query);
            return;
        }
        if (result.truncated) {
            m_last_error = "DNS answer truncated over TCP";
            query.state = State::Retry;
            query.tcp.reset();
            return;
        }
        query.state = State::Done;
        query.addresses = std::move(result.addresses);
        query.ttl = result.ttl;
        query.tcp.reset();
    }

    void start_tcp(Query& query)
    {
        auto pending = start_connect(SocketAddress::ip(m_conf.nameservers[m_server], m_resolver.m_settings.dns_port));
        auto message = dns::encode_query(query.id, m_name, query.type);
        if (pending.is_error() || message.is_error()) {
            m_last_error = pending.is_error() ? pending.error().message() : message.error().message();
            query.state = State::Retry;
            return;
        }
        query.tcp = std::move(pending.value().fd);
        auto const& body = message.value();
        query.out = { static_cast<std::uint8_t>(body.size() >> 8), static_cast<std::uint8_t>(body.size() & 0xFF) };
        query.out.insert(query.out.end(), body.begin(), body.end());
        query.sent = 0;
        query.in.clear();
        if (m_resolver.m_loop.add(query.tcp.get(), EPOLLIN | EPOLLOUT, &query).is_error()) {
            m_last_error = "epoll_ctl failed";
            query.state = State::Retry;
            query.tcp.reset();
        }
    }

    void on_tcp(Query& query, std::uint32_t events)
    {
        if (m_finished || !query.tcp || query.state != State::Waiting)
            return;
        auto fail = [&](std::string why) {
            m_last_error = fmt::format("DNS over TCP to {}: {}", server_text(), why);
            query.state = State::Retry;
            query.tcp.reset();
        };
        if (query.sent < query.out.size() && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            if (query.sent == 0) {
                auto connected = finish_connect(query.tcp.get());
                if (connected.is_error()) {
                    fail(connected.error().message());
                    check_progress(Clock::now());
                    return;
                }
            }
            ssize_t n = ::send(query.tcp.get(), query.out.data() + query.sent, query.out.size() - query.sent, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                fail(Error::from_errno("send").message());
                check_progress(Clock::now());
                return;
            }
            if (n > 0)
                query.sent += static_cast<std::size_t>(n);
            if (query.sent == query.out.size())
                (void)m_resolver.m_loop.modify(query.tcp.get(), EPOLLIN, &query);
        }
        if (query.sent == query.out.size() && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
            for (;;) {
                std::size_t want = query.in.size() < 2 ? 2 - query.in.size()
                                                       : 2 + ((static_cast<std::size_t>(query.in[0]) << 8) | query.in[1]) - query.in.size();
                if (want == 0)
                    break;
                std::uint8_t buffer[4096];
                ssize_t n = ::recv(query.tcp.get(), buffer, std::min(want, sizeof(buffer)), 0);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                    return;
                if (n <= 0) {
                    fail(n == 0 ? std::string("connection closed before the answer") : Error::from_errno("recv").message());
                    check_progress(Clock::now());
                    return;
                }
                query.in.insert(query.in.end(), buffer, buffer + n);
            }
            if (query.in.size() >= 2) {
                ByteView message(query.in.data() + 2, query.in.size() - 2);
                accept_answer(query, dns::parse_response(message, query.id, m_name, query.type));
                query.tcp.reset();
                check_progress(Clock::now());
            }
        }
    }

    // Sends every unanswered question to the current server.
    void send_round(Clock::time_point now)
    {
        for (;;) {
            m_udp.reset();
            for (auto& query : m_queries) {
                query->tcp.reset();
                if (query->state == State::Retry)
                    query->state = State::Waiting;
            }
            if (m_attempt >= m_conf.attempts) {
                complete(now);
                return;
            }
            m_deadline = now + std::chrono::seconds(m_conf.timeout_seconds);
            if (send_queries())
                return;
            next_server();
        }
    }

    bool send_queries()
    {
        auto server = SocketAddress::ip(m_conf.nameservers[m_server], m_resolver.m_settings.dns_port);
        UniqueFd fd(::socket(server.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd || ::connect(fd.get(), server.raw(), server.length()) < 0) {
            m_last_error = Error::from_errno(fmt::format("DNS server {}", server.to_string())).message();
            return false;
        }
        if (m_resolver.m_loop.add(fd.get(), EPOLLIN, this).is_error()) {
            m_last_error = "epoll_ctl failed";
            return false;
        }
        m_udp = std::move(fd);
        for (auto& query : m_queries) {
            if (query->state != State::Waiting)
                continue;
            if (sys::getrandom(&query->id, sizeof(query->id)).is_error()) {
                m_last_error = "getrandom failed";
                return false;
            }
            auto message = dns::encode_query(query->id, m_name, query->type);
            if (message.is_error()) {
                m_last_error = message.error().message();
                return false;
            }
            if (::send(m_udp.get(), message.value().data(), message.value().size(), MSG_NOSIGNAL) < 0) {
                m_last_error = Error::from_errno(fmt::format("DNS server {}", server.to_string())).message();
                return false;
            }
        }
        return true;
    }

    void next_server()
    {
        if (++m_server >= m_conf.nameservers.size()) {
            m_server = 0;
            ++m_attempt;
        }
    }

    void advance(Clock::time_point now)
    {
        next_server();
        send_round(now);
    }

    void check_progress(Clock::time_point now)
    {
        if (m_finished)
            return;
        bool waiting = false;
        bool retry = false;
        for (auto& query : m_queries) {
            waiting = waiting || query->state == State::Waiting;
            retry = retry || query->state == State::Retry;
        }
        if (waiting)
            return;
        if (retry)
            advance(now);
        else
            complete(now);
    }

    void complete(Clock::time_point now)
    {
        m_finished = true;
        m_udp.reset();
        Addresses addresses;
        std::uint32_t ttl = 0xFFFFFFFFu;
        bool not_found = false;
        bool all_answered = true;
        for (auto& query : m_queries) {
            query->tcp.reset();
            if (query->state == State::Done) {
                for (auto const& address : query->addresses)
                    if (addresses.size() < dns::MAX_ADDRESSES)
                        addresses.push_back(address);
                if (!query->addresses.empty())
                    ttl = std::min(ttl, query->ttl);
            } else {
                all_answered = false;
                not_found = not_found || query->state == State::NotFound;
            }
        }
        if (!addresses.empty()) {
            m_resolver.finish(*this, std::move(addresses), ttl, now);
            return;
        }
        std::string why;
        if (not_found)
            why = fmt::format("{}: no such name (NXDOMAIN)", m_name);
        else if (all_answered)
            why = fmt::format("{}: no address records", m_name);
        else
            why = m_last_error.empty() ? fmt::format("DNS lookup of {} failed", m_name) : m_last_error;
        m_resolver.finish(*this, Error::from_string(why), 0, now);
    }

    Resolver& m_resolver;
    std::string m_key;
    std::string m_name;
    dns::ResolvConf m_conf;
    std::vector<std::unique_ptr<Query>> m_queries;
    std::vector<Waiter> m_waiters;
    UniqueFd m_udp;
    std::size_t m_server { 0 };
    int m_attempt { 0 };
    Clock::time_point m_deadline {};
    std::string m_last_error;
    bool m_finished { false };
};

Resolver::Resolver(EventLoop& loop, ResolverSettings settings)
    : m_loop(loop), m_settings(std::move(settings))
{
}

Resolver::~Resolver() = default;

std::optional<ErrorOr<Addresses>> Resolver::lookup_now(std::string const& name, Family family, Clock::time_point now)
{
    if (auto numeric = IpAddress::parse(name)) {
        if (!numeric->matches(family))
            return ErrorOr<Addresses>(Error::from_string(
                fmt::format("{} is not an {} address", name, family == Family::Ipv4 ? "IPv4" : "IPv6")));
        return ErrorOr<Addresses>(Addresses { *numeric });
    }
    auto key = cache_key(name, family);
    if (auto it = m_cache.find(key); it != m_cache.end()) {
        if (now < it->second.expires)
            return ErrorOr<Addresses>(it->second.addresses);
        m_cache.erase(it);
    }
    auto hosts = dns::hosts_lookup(read_small_file(m_settings.hosts_path, dns::MAX_HOSTS_FILE), name, family);
    if (hosts.empty())
        return std::nullopt;
    // A large hosts file is not parsed again for every connection.
    remember(key, hosts, now + std::chrono::seconds(HOSTS_CACHE_SECONDS));
    return ErrorOr<Addresses>(std::move(hosts));
}

std::uint64_t Resolver::start(std::string const& name, Family family, ResolveCallback callback, Clock::time_point now)
{
    auto token = m_next_token++;
    auto key = cache_key(name, family);
    auto it = m_lookups.find(key);
    if (it != m_lookups.end()) {
        it->second->waiters().push_back({ token, std::move(callback) });
        return token;
    }
    auto conf = dns::parse_resolv_conf(read_small_file(m_settings.resolv_conf_path, dns::MAX_RESOLV_CONF));
    auto lookup = std::make_unique<Lookup>(*this, key, name, family, std::move(conf));
    lookup->waiters().push_back({ token, std::move(callback) });
    auto* raw = lookup.get();
    m_lookups.emplace(key, std::move(lookup));
    raw->begin(now);
    return token;
}

void Resolver::collect_garbage()
{
    m_finished.clear();
}

void Resolver::cancel(std::uint64_t token)
{
    for (auto& [key, lookup] : m_lookups) {
        auto& waiters = lookup->waiters();
        auto it = std::find_if(waiters.begin(), waiters.end(), [&](auto const& waiter) { return waiter.token == token; });
        if (it != waiters.end()) {
            waiters.erase(it);
            return;
        }
    }
}

void Resolver::tick(Clock::time_point now)
{
    std::vector<Lookup*> lookups;
    for (auto& [key, lookup] : m_lookups)
        lookups.push_back(lookup.get());
    for (auto* lookup : lookups)
        lookup->tick(now);
}

void Resolver::remember(std::string const& key, Addresses const& addresses, Clock::time_point expires)
{
    if (m_cache.size() >= MAX_CACHE_ENTRIES)
        std::erase_if(m_cache, [&](auto const& entry) { return entry.second.expires <= Clock::now(); });
    if (m_cache.size() >= MAX_CACHE_ENTRIES)
        m_cache.clear();
    m_cache[key] = { addresses, expires };
}

void Resolver::finish(Lookup& lookup, ErrorOr<Addresses> result, std::uint32_t ttl, Clock::time_point now)
{
    auto it = m_lookups.find(lookup.key());
    if (it == m_lookups.end())
        return;
    auto waiters = std::move(lookup.waiters());
    m_finished.push_back(std::move(it->second));
    m_lookups.erase(it);
    if (!result.is_error() && ttl > 0)
        remember(lookup.key(), result.value(), now + std::chrono::seconds(std::min<std::int64_t>(ttl, MAX_CACHE_SECONDS)));
    for (auto& waiter : waiters) {
        if (result.is_error())
            waiter.callback(Error(result.error()));
        else
            waiter.callback(Addresses(result.value()));
    }
}

} // namespace qtbox::net
