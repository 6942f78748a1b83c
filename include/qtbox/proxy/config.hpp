// qt-proxy's configuration file (TOML, read with toml++), strictly checked:
// an unknown key, a wrong type or a value out of range is an error that
// names the file and line.
//
//   [[outbound]]            # enclave -> parent -> network
//   vsock_port = 8000       # enclaves connect to CID 3 : 8000
//   host = "kms.example.com"
//   port = 443
//   enclave_port = 8000     # enclave mode: TCP port on 127.0.0.1 (default: port)
//   max_connections = 64    # optional, this rule only
//
//   [[inbound]]             # network -> parent -> enclave
//   listen = "0.0.0.0:5050" # or "[::]:5050"
//   enclave_id = 0          # <run>/enclaves/0/vsock.sock, or
//   # enclave_cid = 4       # <run>/enclaves/cid-4/vsock.sock (or AF_VSOCK 4)
//   vsock_port = 5050
//
//   [limits]
//   max_connections = 1024  # all rules together
//   idle_timeout = "10m"    # no byte either way for this long: close; "0": never
//   connect_timeout = "10s" # resolve + connect + handshake
//
// One file serves both ends, like qproxy's: the parent reads every table;
// enclave mode reads [[outbound]] (listening on 127.0.0.1:enclave_port) and
// [limits], and ignores [[inbound]], which only the parent acts on.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/net/socket.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::proxy {

// Every refusal of a configuration (file, command line or reload) is this;
// the message names the line or option and why.
enum class ConfigError {
    Invalid = 1,
};

enum class ProxyMode {
    Parent,
    Enclave,
};

constexpr std::size_t MAX_CONFIG_SIZE = 1024 * 1024;
constexpr std::size_t MAX_RULES = 1024;
constexpr std::uint32_t MAX_CONNECTIONS_LIMIT = 1'000'000;
constexpr std::int64_t MAX_CONNECT_TIMEOUT_MS = 10 * 60 * 1000;
constexpr std::int64_t MAX_IDLE_TIMEOUT_MS = 7 * 24 * 3600 * 1000LL;

struct OutboundRule {
    std::uint32_t vsock_port { 0 };
    std::string host;
    std::uint16_t port { 0 };
    std::uint16_t enclave_port { 0 };
    std::optional<std::uint32_t> max_connections;
    std::size_t line { 0 };
};

struct InboundRule {
    net::SocketAddress listen;
    std::optional<std::uint32_t> enclave_cid;
    std::optional<std::uint64_t> enclave_id;
    std::uint32_t vsock_port { 0 };
    std::optional<std::uint32_t> max_connections;
    std::size_t line { 0 };
};

struct ProxyLimits {
    std::uint32_t max_connections { 1024 };
    // 0: no idle timeout.
    std::int64_t idle_timeout_ms { 10 * 60 * 1000 };
    std::int64_t connect_timeout_ms { 10 * 1000 };
};

struct ProxyConfig {
    std::vector<OutboundRule> outbound;
    std::vector<InboundRule> inbound;
    ProxyLimits limits;
};

// Parses TOML text; `source` names it in messages ("<source>:<line>: ...").
ErrorOr<ProxyConfig> parse_proxy_config(std::string_view text, std::string_view source);
// Reads (at most MAX_CONFIG_SIZE bytes) and parses a file.
ErrorOr<ProxyConfig> load_proxy_config(std::string const& path);
// The rules the given mode acts on must not be empty.
ErrorOr<void> check_proxy_config(ProxyConfig const& config, ProxyMode mode, std::string_view source);

// The QingTian command line `-l VSOCK_PORT -a HOST -p PORT`, checked like a
// [[outbound]] table.
ErrorOr<ProxyConfig> single_rule_config(std::uint64_t vsock_port, std::string const& host, std::uint64_t port);

} // namespace qtbox::proxy
