// qt-proxy's routes: from a configuration to the sockets to listen on and
// where each one's connections go. Pure: no sockets and no system calls
// (the engine, proxy.hpp, binds and serves what this describes).
//
//   parent, [[outbound]]  unix <vsock-dir>/3_<vsock_port>, plus AF_VSOCK
//                         port <vsock_port> when AF_VSOCK is in use
//                         -> the rule's host:port (resolved per connection)
//   parent, [[inbound]]   tcp <listen> -> <run>/enclaves/<id>/vsock.sock, or
//                         <run>/enclaves/cid-<cid>/vsock.sock (then AF_VSOCK
//                         <cid>, when in use), with "CONNECT <vsock_port>\n"
//   enclave, [[outbound]] tcp 127.0.0.1:<enclave_port> -> AF_VSOCK
//                         3:<vsock_port>, or <vsock-dir>/3_<vsock_port>
//                         when a vsock dir is given
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/net/socket.hpp>
#include <qtbox/proxy/config.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qtbox::proxy {

enum class TargetKind {
    // A rule's host:port, resolved per connection.
    Tcp,
    // A fixed socket address (enclave mode: CID 3, or <vsock-dir>/3_<port>).
    Fixed,
    // An enclave's vsock.sock with the CONNECT handshake, then AF_VSOCK.
    Enclave,
};

struct Target {
    TargetKind kind { TargetKind::Tcp };
    std::string host;
    std::uint16_t port { 0 };
    net::Family family { net::Family::Any };
    net::SocketAddress address;
    std::string enclave_socket;
    std::optional<std::uint32_t> vsock_cid;
    std::uint32_t vsock_port { 0 };
    // For the connection's line.
    std::string text;
};

// Connections of a rule; shared by the rule's listeners and kept across
// reloads, so that a per-rule limit counts what was opened before. Workers
// count into it from their own threads.
struct Counter {
    std::atomic<std::size_t> active { 0 };
};

// What a listener serves. Connections keep the route they were accepted
// with: a reload never changes where a live connection goes.
struct Route {
    std::string name;
    Target target;
    std::optional<std::uint32_t> max_connections;
    std::shared_ptr<Counter> counter;
};

// One socket to listen on, and the rule it serves. `key` names the socket
// ("unix:<path>", "vsock:<port>", "tcp:<address>"): a reload keeps the
// listeners whose key it still has.
struct ListenerSpec {
    std::string key;
    enum class Kind { Unix, Vsock, Tcp } kind { Kind::Tcp };
    std::string path;
    std::uint32_t vsock_port { 0 };
    net::SocketAddress address;
    std::shared_ptr<Route const> route;
};

// What routes depend on besides the configuration (ProxyOptions, once the
// engine knows whether AF_VSOCK is in use).
struct RouteSettings {
    ProxyMode mode { ProxyMode::Parent };
    // Parent: where the enclaves' state directories are.
    std::string run_dir;
    // Parent: where the 3_<port> listeners are. Enclave: the hybrid socket
    // directory to connect to instead of AF_VSOCK; empty means AF_VSOCK.
    std::string vsock_dir;
    // Parent: AF_VSOCK is in use, so [[outbound]] rules listen on it too and
    // [[inbound]] rules by CID fall back to it.
    bool af_vsock { false };
    // -4 / -6: numeric targets of the other family are refused.
    net::Family family { net::Family::Any };
};

// The counters of the running rules, by rule name.
using RuleCounters = std::map<std::string, std::shared_ptr<Counter>>;

// One spec per socket to listen on, in configuration order: for each
// [[outbound]] rule its Unix (then AF_VSOCK) listener, then one TCP
// listener per [[inbound]] rule; in enclave mode one TCP listener per
// [[outbound]] rule, [[inbound]] ignored. A rule found in `running` keeps
// its counter; the others get a new one. Errors: a numeric target of the
// family -4/-6 excludes (ConfigError::Invalid), a hybrid socket path too
// long for a Unix address (net::SocketError::PathTooLong). Duplicates are
// not checked here: parse_proxy_config and check_proxy_config refuse them.
ErrorOr<std::vector<ListenerSpec>> build_listener_specs(ProxyConfig const& config, RouteSettings const& settings,
    RuleCounters const& running = {});

} // namespace qtbox::proxy
