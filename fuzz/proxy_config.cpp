// libFuzzer target: qt-proxy's TOML configuration (parse_proxy_config, with
// toml++ compiled into the same instrumented unit) on arbitrary text, then
// check_proxy_config in both modes.
//
// Properties checked beyond "no crash, no hang, no leak, no exception":
//   - an accepted configuration obeys every documented rule: ports and CIDs
//     in range, the heartbeat and QTSM ports never used, outbound vsock
//     ports and inbound listen addresses unique, exactly one of enclave_cid
//     and enclave_id, limits within their bounds, at most MAX_RULES rules;
//   - written back out as TOML, it parses to the same configuration.
#include "support.hpp"

#include <qtbox/proxy/config.hpp>
#include <qtbox/vsock/address.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

namespace {

using namespace qtbox;
using fuzz::require;

void check_rules(proxy::ProxyConfig const& config)
{
    require(config.outbound.size() <= proxy::MAX_RULES && config.inbound.size() <= proxy::MAX_RULES);
    std::set<std::uint32_t> vsock_ports;
    for (auto const& rule : config.outbound) {
        require(rule.vsock_port >= 1 && rule.vsock_port <= vsock::LAST_ENCLAVE_CID);
        require(rule.vsock_port != vsock::HEARTBEAT_PORT && rule.vsock_port != vsock::QTSM_PORT);
        require(vsock_ports.insert(rule.vsock_port).second);
        require(!rule.host.empty() && rule.port >= 1 && rule.enclave_port >= 1);
        if (rule.max_connections)
            require(*rule.max_connections >= 1 && *rule.max_connections <= proxy::MAX_CONNECTIONS_LIMIT);
    }
    std::set<std::string> listens;
    for (auto const& rule : config.inbound) {
        require(listens.insert(rule.listen.to_string()).second);
        require(rule.enclave_cid.has_value() != rule.enclave_id.has_value());
        if (rule.enclave_cid)
            require(*rule.enclave_cid >= vsock::FIRST_ENCLAVE_CID && *rule.enclave_cid <= vsock::LAST_ENCLAVE_CID);
        if (rule.enclave_id)
            require(*rule.enclave_id <= static_cast<std::uint64_t>(INT64_MAX));
        require(rule.vsock_port >= 1 && rule.vsock_port <= vsock::LAST_ENCLAVE_CID);
        if (rule.max_connections)
            require(*rule.max_connections >= 1 && *rule.max_connections <= proxy::MAX_CONNECTIONS_LIMIT);
    }
    auto const& limits = config.limits;
    require(limits.max_connections >= 1 && limits.max_connections <= proxy::MAX_CONNECTIONS_LIMIT);
    require(limits.idle_timeout_ms >= 0 && limits.idle_timeout_ms <= proxy::MAX_IDLE_TIMEOUT_MS);
    require(limits.connect_timeout_ms >= 1 && limits.connect_timeout_ms <= proxy::MAX_CONNECT_TIMEOUT_MS);
}

// A TOML basic string (TOML 1.0 §String).
std::string quoted(std::string_view text)
{
    std::string result = "\"";
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\')
            result += fmt::format("\\{}", c);
        else if (byte < 0x20 || byte == 0x7f)
            result += fmt::format("\\u{:04X}", byte);
        else
            result += c;
    }
    return result + "\"";
}

std::string render(proxy::ProxyConfig const& config)
{
    std::string text;
    for (auto const& rule : config.outbound) {
        text += fmt::format("[[outbound]]\nvsock_port = {}\nhost = {}\nport = {}\nenclave_port = {}\n", rule.vsock_port,
            quoted(rule.host), rule.port, rule.enclave_port);
        if (rule.max_connections)
            text += fmt::format("max_connections = {}\n", *rule.max_connections);
    }
    for (auto const& rule : config.inbound) {
        text += fmt::format("[[inbound]]\nlisten = {}\nvsock_port = {}\n", quoted(rule.listen.to_string()), rule.vsock_port);
        if (rule.enclave_cid)
            text += fmt::format("enclave_cid = {}\n", *rule.enclave_cid);
        if (rule.enclave_id)
            text += fmt::format("enclave_id = {}\n", *rule.enclave_id);
        if (rule.max_connections)
            text += fmt::format("max_connections = {}\n", *rule.max_connections);
    }
    text += fmt::format("[limits]\nmax_connections = {}\nidle_timeout = \"{}ms\"\nconnect_timeout = \"{}ms\"\n",
        config.limits.max_connections, config.limits.idle_timeout_ms, config.limits.connect_timeout_ms);
    return text;
}

void require_same(proxy::ProxyConfig const& a, proxy::ProxyConfig const& b)
{
    require(a.outbound.size() == b.outbound.size() && a.inbound.size() == b.inbound.size());
    for (std::size_t i = 0; i < a.outbound.size(); ++i) {
        auto const& x = a.outbound[i];
        auto const& y = b.outbound[i];
        require(x.vsock_port == y.vsock_port && x.host == y.host && x.port == y.port && x.enclave_port == y.enclave_port
            && x.max_connections == y.max_connections);
    }
    for (std::size_t i = 0; i < a.inbound.size(); ++i) {
        auto const& x = a.inbound[i];
        auto const& y = b.inbound[i];
        require(x.listen.to_string() == y.listen.to_string() && x.enclave_cid == y.enclave_cid && x.enclave_id == y.enclave_id
            && x.vsock_port == y.vsock_port && x.max_connections == y.max_connections);
    }
    require(a.limits.max_connections == b.limits.max_connections && a.limits.idle_timeout_ms == b.limits.idle_timeout_ms
        && a.limits.connect_timeout_ms == b.limits.connect_timeout_ms);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    if (size > proxy::MAX_CONFIG_SIZE)
        return 0;
    std::string_view text(reinterpret_cast<char const*>(data), size);
    auto parsed = proxy::parse_proxy_config(text, "fuzz.toml");
    if (parsed.is_error())
        return 0;
    auto const& config = parsed.value();
    check_rules(config);
    auto parent = proxy::check_proxy_config(config, proxy::ProxyMode::Parent, "fuzz.toml");
    auto enclave = proxy::check_proxy_config(config, proxy::ProxyMode::Enclave, "fuzz.toml");
    require(parent.is_error() == (config.outbound.empty() && config.inbound.empty()));
    if (config.outbound.empty())
        require(enclave.is_error());

    auto again = proxy::parse_proxy_config(render(config), "rendered.toml");
    require(!again.is_error());
    require_same(config, again.value());
    return 0;
}
