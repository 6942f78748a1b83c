// toml++ is used header-only here: Debian's pkg-config asks for its shared
// library, which a static qtbox cannot link.
#undef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 1
#undef TOML_SHARED_LIB

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/net/dns.hpp>
#include <qtbox/proxy/config.hpp>
#include <qtbox/vsock/address.hpp>

#include <fmt/format.h>
// toml++ 3.3.0 states some of its parser's checks as assertions, or in
// NDEBUG builds assumptions (TOML_ASSERT_ASSUME), and input can break them:
// "[=" or "[\n", where a key must follow '[', '[[', '.', '{' or ','. That is
// an abort with assertions on, and with clang and NDEBUG __builtin_assume:
// undefined behaviour. With gcc and NDEBUG it is nothing, and the parser goes
// on to report the error. Here it is nothing with any compiler and build
// type; the macros are read where the parser's code is, after this.
#include <toml++/impl/preprocessor.h>
#undef TOML_ASSUME
#define TOML_ASSUME(...) static_assert(true)
#undef TOML_ASSERT_ASSUME
#define TOML_ASSERT_ASSUME(...) static_assert(true)
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <map>

namespace qtbox::proxy {

using net::IpAddress;
using net::SocketAddress;
using vsock::FIRST_ENCLAVE_CID;
using vsock::HEARTBEAT_PORT;
using vsock::LAST_ENCLAVE_CID;
using vsock::QTSM_PORT;

namespace {

Error config_error(std::string message)
{
    return Error::from_code(ConfigError::Invalid, std::move(message));
}

// The checks shared by [[outbound]] tables and the -l/-a/-p command line.
// Messages carry no location; callers add it.
ErrorOr<void> check_vsock_port(std::string_view key, std::uint64_t value)
{
    if (value < 1 || value > LAST_ENCLAVE_CID)
        return config_error(fmt::format("'{}' must be from 1 to {}, not {}", key, LAST_ENCLAVE_CID, value));
    if (value == HEARTBEAT_PORT)
        return config_error(fmt::format("{} {} is reserved for the enclave heartbeat", key, value));
    if (value == QTSM_PORT)
        return config_error(fmt::format("{} {} is reserved for QTSM", key, value));
    return {};
}

ErrorOr<void> check_tcp_port(std::string_view key, std::uint64_t value)
{
    if (value < 1 || value > 65535)
        return config_error(fmt::format("'{}' must be from 1 to 65535, not {}", key, value));
    return {};
}

ErrorOr<void> check_host(std::string const& host)
{
    if (IpAddress::parse(host))
        return {};
    return net::dns::validate_name(host);
}

class TableReader {
public:
    TableReader(toml::table const& table, std::string_view source, std::string name)
        : m_table(table), m_source(source), m_name(std::move(name))
    {
    }

    std::size_t line() const { return m_table.source().begin.line; }

    Error error_at(std::size_t line, std::string_view message) const
    {
        return config_error(fmt::format("{}:{}: {}: {}", m_source, line, m_name, message));
    }
    Error error(std::string_view message) const { return error_at(line(), message); }

    // Every key must be one of `known`; reported in file order.
    ErrorOr<void> check_keys(std::initializer_list<std::string_view> known) const
    {
        std::vector<std::pair<std::size_t, std::string>> unknown;
        for (auto const& [key, value] : m_table) {
            if (std::find(known.begin(), known.end(), key.str()) == known.end())
                unknown.emplace_back(key.source().begin.line, std::string(key.str()));
        }
        if (unknown.empty())
            return {};
        std::sort(unknown.begin(), unknown.end());
        return error_at(unknown.front().first, fmt::format("unknown key '{}'", unknown.front().second));
    }

    toml::node const* find(std::string_view key) const { return m_table.get(key); }
    std::size_t line_of(std::string_view key) const
    {
        auto const* node = find(key);
        return node ? node->source().begin.line : line();
    }

    ErrorOr<std::optional<std::int64_t>> integer(std::string_view key) const
    {
        auto const* node = find(key);
        if (node == nullptr)
            return std::optional<std::int64_t> {};
        if (!node->is_integer())
            return error_at(node->source().begin.line, fmt::format("'{}' must be an integer", key));
        return std::optional<std::int64_t> { node->as_integer()->get() };
    }

    ErrorOr<std::int64_t> required_integer(std::string_view key) const
    {
        auto value = TRY(integer(key));
        if (!value)
            return error(fmt::format("missing '{}'", key));
        return *value;
    }

    ErrorOr<std::string> required_string(std::string_view key) const
    {
        auto const* node = find(key);
        if (node == nullptr)
            return error(fmt::format("missing '{}'", key));
        if (!node->is_string())
            return error_at(node->source().begin.line, fmt::format("'{}' must be a string", key));
        return node->as_string()->get();
    }

    // A duration: a string ("30s", "1m30s", "500ms") or an integer of seconds.
    ErrorOr<std::optional<std::int64_t>> duration_ms(std::string_view key, std::int64_t low, std::int64_t high, std::string_view range) const
    {
        auto const* node = find(key);
        if (node == nullptr)
            return std::optional<std::int64_t> {};
        std::int64_t value = 0;
        auto line_number = node->source().begin.line;
        if (node->is_integer()) {
            auto seconds = node->as_integer()->get();
            if (seconds < 0 || seconds > high / 1000)
                return error_at(line_number, fmt::format("'{}' must be from {}", key, range));
            value = seconds * 1000;
        } else if (node->is_string()) {
            auto parsed = parse_duration_ms(node->as_string()->get());
            if (parsed.is_error())
                return error_at(line_number, fmt::format("'{}': {}", key, parsed.error().message()));
            value = parsed.value();
        } else {
            return error_at(line_number, fmt::format("'{}' must be a duration such as \"30s\" or an integer of seconds", key));
        }
        if (value < low || value > high)
            return error_at(line_number, fmt::format("'{}' must be from {}", key, range));
        return std::optional<std::int64_t> { value };
    }

    // Range-checked wrappers keep every message in one shape.
    ErrorOr<std::optional<std::uint32_t>> max_connections() const
    {
        auto value = TRY(integer("max_connections"));
        if (!value)
            return std::optional<std::uint32_t> {};
        if (*value < 1 || *value > MAX_CONNECTIONS_LIMIT)
            return error_at(line_of("max_connections"),
                fmt::format("'max_connections' must be from 1 to {}, not {}", MAX_CONNECTIONS_LIMIT, *value));
        return std::optional<std::uint32_t> { static_cast<std::uint32_t>(*value) };
    }

    template<typename Check>
    ErrorOr<void> check(std::string_view key, Check const& result) const
    {
        if (result.is_error())
            return error_at(line_of(key), result.error().message());
        return {};
    }

private:
    toml::table const& m_table;
    std::string_view m_source;
    std::string m_name;
};

ErrorOr<std::uint64_t> non_negative(TableReader const& reader, std::string_view key, std::int64_t value)
{
    if (value < 0)
        return reader.error_at(reader.line_of(key), fmt::format("'{}' must not be negative, not {}", key, value));
    return static_cast<std::uint64_t>(value);
}

ErrorOr<OutboundRule> parse_outbound(TableReader const& reader)
{
    TRY(reader.check_keys({ "vsock_port", "host", "port", "enclave_port", "max_connections" }));
    OutboundRule rule;
    rule.line = reader.line();
    auto vsock_value = TRY(reader.required_integer("vsock_port"));
    auto vsock_port = TRY(non_negative(reader, "vsock_port", vsock_value));
    TRY(reader.check("vsock_port", check_vsock_port("vsock_port", vsock_port)));
    rule.vsock_port = static_cast<std::uint32_t>(vsock_port);
    rule.host = TRY(reader.required_string("host"));
    TRY(reader.check("host", check_host(rule.host)));
    auto port_value = TRY(reader.required_integer("port"));
    auto port = TRY(non_negative(reader, "port", port_value));
    TRY(reader.check("port", check_tcp_port("port", port)));
    rule.port = static_cast<std::uint16_t>(port);
    rule.enclave_port = rule.port;
    if (auto enclave_port = TRY(reader.integer("enclave_port"))) {
        auto value = TRY(non_negative(reader, "enclave_port", *enclave_port));
        TRY(reader.check("enclave_port", check_tcp_port("enclave_port", value)));
        rule.enclave_port = static_cast<std::uint16_t>(value);
    }
    rule.max_connections = TRY(reader.max_connections());
    return rule;
}

ErrorOr<InboundRule> parse_inbound(TableReader const& reader)
{
    TRY(reader.check_keys({ "listen", "enclave_cid", "enclave_id", "vsock_port", "max_connections" }));
    InboundRule rule;
    rule.line = reader.line();
    auto listen = TRY(reader.required_string("listen"));
    auto address = SocketAddress::parse_ip_port(listen);
    TRY(reader.check("listen", address));
    rule.listen = address.release_value();
    auto cid = TRY(reader.integer("enclave_cid"));
    auto id = TRY(reader.integer("enclave_id"));
    if (cid.has_value() == id.has_value())
        return reader.error("give exactly one of 'enclave_cid' and 'enclave_id'");
    if (cid) {
        if (*cid < FIRST_ENCLAVE_CID || *cid > LAST_ENCLAVE_CID)
            return reader.error_at(reader.line_of("enclave_cid"),
                fmt::format("'enclave_cid' must be from {} to {}, not {}", FIRST_ENCLAVE_CID, LAST_ENCLAVE_CID, *cid));
        rule.enclave_cid = static_cast<std::uint32_t>(*cid);
    } else {
        rule.enclave_id = TRY(non_negative(reader, "enclave_id", *id));
    }
    auto vsock_value = TRY(reader.required_integer("vsock_port"));
    auto vsock_port = TRY(non_negative(reader, "vsock_port", vsock_value));
    if (vsock_port < 1 || vsock_port > LAST_ENCLAVE_CID)
        return reader.error_at(reader.line_of("vsock_port"),
            fmt::format("'vsock_port' must be from 1 to {}, not {}", LAST_ENCLAVE_CID, vsock_port));
    rule.vsock_port = static_cast<std::uint32_t>(vsock_port);
    rule.max_connections = TRY(reader.max_connections());
    return rule;
}

ErrorOr<ProxyLimits> parse_limits(TableReader const& reader)
{
    TRY(reader.check_keys({ "max_connections", "idle_timeout", "connect_timeout" }));
    ProxyLimits limits;
    if (auto value = TRY(reader.max_connections()))
        limits.max_connections = *value;
    if (auto value = TRY(reader.duration_ms("idle_timeout", 0, MAX_IDLE_TIMEOUT_MS, "0 (none) to 7d")))
        limits.idle_timeout_ms = *value;
    if (auto value = TRY(reader.duration_ms("connect_timeout", 1, MAX_CONNECT_TIMEOUT_MS, "1ms to 10m")))
        limits.connect_timeout_ms = *value;
    return limits;
}

template<typename Callback>
ErrorOr<void> for_each_table(toml::table const& root, std::string_view key, std::string_view source, Callback callback)
{
    auto const* node = root.get(key);
    if (node == nullptr)
        return {};
    auto const* array = node->as_array();
    if (array == nullptr || !array->is_array_of_tables())
        return config_error(fmt::format("{}:{}: '{}' must be an array of tables ([[{}]])", source, node->source().begin.line, key, key));
    if (array->size() > MAX_RULES)
        return config_error(fmt::format("{}:{}: more than {} [[{}]] tables", source, node->source().begin.line, MAX_RULES, key));
    for (auto const& element : *array)
        TRY(callback(TableReader(*element.as_table(), source, fmt::format("[[{}]]", key))));
    return {};
}

// toml++ 3.3.0 (Debian's) reaches TOML_UNREACHABLE, i.e. undefined
// behaviour, in is_non_ascii_horizontal_whitespace() for many non-ASCII code
// points wherever it looks for whitespace: a bare key, just after a value,
// after a line-ending backslash in a multi-line string (toml++ issue #295,
// fixed after 3.3.0; found by fuzz/proxy_config.cpp). A valid qt-proxy file
// holds non-ASCII text only in comments (hosts and addresses are ASCII), so
// toml++ gets a copy with every non-ASCII code point replaced by '?': lines
// and columns stay the same, comments in any language still parse, and a
// non-ASCII key or value is still refused. Malformed UTF-8, which toml++
// refuses too, is refused here; a leading byte order mark is skipped, as
// toml++ skips it.
ErrorOr<std::string> ascii_for_parser(std::string_view text, std::string_view source)
{
    constexpr std::string_view BOM = "\xef\xbb\xbf";
    if (text.starts_with(BOM))
        text.remove_prefix(BOM.size());
    std::string ascii;
    ascii.reserve(text.size());
    std::size_t line = 1;
    for (std::size_t i = 0; i < text.size();) {
        char c = text[i];
        if (static_cast<unsigned char>(c) < 0x80) {
            line += c == '\n' ? 1 : 0;
            ascii.push_back(c);
            ++i;
            continue;
        }
        std::size_t length = utf8_sequence_length(as_bytes(text.substr(i)));
        if (length == 0)
            return config_error(fmt::format("{}:{}: not valid UTF-8", source, line));
        ascii.push_back('?');
        i += length;
    }
    return ascii;
}

} // namespace

ErrorOr<ProxyConfig> parse_proxy_config(std::string_view text, std::string_view source)
{
    auto ascii = TRY(ascii_for_parser(text, source));
    toml::table root;
    try {
        root = toml::parse(ascii, std::string_view(source));
    } catch (toml::parse_error const& error) {
        return config_error(fmt::format("{}:{}:{}: {}", source, error.source().begin.line, error.source().begin.column, error.description()));
    }

    std::vector<std::pair<std::size_t, std::string>> unknown;
    for (auto const& [key, value] : root) {
        if (key.str() != "outbound" && key.str() != "inbound" && key.str() != "limits")
            unknown.emplace_back(key.source().begin.line, std::string(key.str()));
    }
    if (!unknown.empty()) {
        std::sort(unknown.begin(), unknown.end());
        return config_error(fmt::format("{}:{}: unknown key '{}'", source, unknown.front().first, unknown.front().second));
    }

    ProxyConfig config;
    std::map<std::uint32_t, std::size_t> vsock_ports;
    auto add_outbound = [&](TableReader const& reader) -> ErrorOr<void> {
        auto rule = TRY(parse_outbound(reader));
        if (auto [it, fresh] = vsock_ports.emplace(rule.vsock_port, rule.line); !fresh)
            return reader.error_at(reader.line_of("vsock_port"), fmt::format("vsock_port {} is already used on line {}", rule.vsock_port, it->second));
        config.outbound.push_back(std::move(rule));
        return {};
    };
    TRY(for_each_table(root, "outbound", source, add_outbound));
    std::map<std::string, std::size_t> listens;
    auto add_inbound = [&](TableReader const& reader) -> ErrorOr<void> {
        auto rule = TRY(parse_inbound(reader));
        if (auto [it, fresh] = listens.emplace(rule.listen.to_string(), rule.line); !fresh)
            return reader.error_at(reader.line_of("listen"), fmt::format("listen {} is already used on line {}", rule.listen.to_string(), it->second));
        config.inbound.push_back(std::move(rule));
        return {};
    };
    TRY(for_each_table(root, "inbound", source, add_inbound));
    if (auto const* limits = root.get("limits")) {
        if (!limits->is_table())
            return config_error(fmt::format("{}:{}: 'limits' must be a table ([limits])", source, limits->source().begin.line));
        config.limits = TRY(parse_limits(TableReader(*limits->as_table(), source, "[limits]")));
    }
    return config;
}

ErrorOr<ProxyConfig> load_proxy_config(std::string const& path)
{
    auto bytes = TRY(sys::read_file(path, MAX_CONFIG_SIZE));
    return parse_proxy_config(as_chars(bytes), path);
}

ErrorOr<void> check_proxy_config(ProxyConfig const& config, ProxyMode mode, std::string_view source)
{
    if (mode == ProxyMode::Enclave) {
        if (config.outbound.empty())
            return config_error(fmt::format("{}: enclave mode needs at least one [[outbound]] table", source));
        // Only the enclave listens on enclave_port: the parent may well have
        // several rules for port 443 on different hosts.
        std::map<std::uint16_t, std::size_t> enclave_ports;
        for (auto const& rule : config.outbound) {
            if (auto [it, fresh] = enclave_ports.emplace(rule.enclave_port, rule.line); !fresh)
                return config_error(fmt::format("{}:{}: [[outbound]]: enclave_port {} is already used on line {} (set enclave_port to tell the rules apart)",
                    source, rule.line, rule.enclave_port, it->second));
        }
    }
    if (config.outbound.empty() && config.inbound.empty())
        return config_error(fmt::format("{}: no [[outbound]] or [[inbound]] tables", source));
    return {};
}

ErrorOr<ProxyConfig> single_rule_config(std::uint64_t vsock_port, std::string const& host, std::uint64_t port)
{
    auto prefix = [](std::string_view option, ErrorOr<void> result) -> ErrorOr<void> {
        if (result.is_error())
            return config_error(fmt::format("{}: {}", option, result.error().message()));
        return {};
    };
    TRY(prefix("-l", check_vsock_port("vsock_port", vsock_port)));
    TRY(prefix("-a", check_host(host)));
    TRY(prefix("-p", check_tcp_port("port", port)));
    OutboundRule rule;
    rule.vsock_port = static_cast<std::uint32_t>(vsock_port);
    rule.host = host;
    rule.port = static_cast<std::uint16_t>(port);
    rule.enclave_port = rule.port;
    ProxyConfig config;
    config.outbound.push_back(std::move(rule));
    return config;
}

} // namespace qtbox::proxy
