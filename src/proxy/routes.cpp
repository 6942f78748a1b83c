#include <qtbox/enclave/paths.hpp>
#include <qtbox/proxy/routes.hpp>
#include <qtbox/vsock/address.hpp>

#include <fmt/format.h>

namespace qtbox::proxy {

using net::Family;
using net::IpAddress;
using net::SocketAddress;

ErrorOr<std::vector<ListenerSpec>> build_listener_specs(ProxyConfig const& config, RouteSettings const& settings,
    RuleCounters const& running)
{
    // A rule keeps its connection counter across reloads (by name), so a
    // per-rule limit still counts the connections opened before.
    RuleCounters counters = running;
    auto counter_for = [&](std::string const& name) {
        auto& counter = counters[name];
        if (!counter)
            counter = std::make_shared<Counter>();
        return counter;
    };

    std::vector<ListenerSpec> specs;
    if (settings.mode == ProxyMode::Enclave) {
        for (auto const& rule : config.outbound) {
            auto route = std::make_shared<Route>();
            route->name = fmt::format("tunnel:{}", rule.enclave_port);
            route->target.kind = TargetKind::Fixed;
            if (settings.vsock_dir.empty())
                route->target.address = SocketAddress::vsock(vsock::PARENT_CID, rule.vsock_port);
            else
                route->target.address = TRY(SocketAddress::unix_path(enclave::listener_path(settings.vsock_dir, rule.vsock_port)));
            route->target.text = route->target.address.to_string();
            route->max_connections = rule.max_connections;
            route->counter = counter_for(route->name);
            ListenerSpec spec;
            spec.kind = ListenerSpec::Kind::Tcp;
            spec.address = SocketAddress::ip(IpAddress::v4(127, 0, 0, 1), rule.enclave_port);
            spec.key = fmt::format("tcp:{}", spec.address.to_string());
            spec.route = route;
            specs.push_back(std::move(spec));
        }
        return specs;
    }

    for (auto const& rule : config.outbound) {
        auto route = std::make_shared<Route>();
        route->name = fmt::format("out:{}", rule.vsock_port);
        route->target.kind = TargetKind::Tcp;
        route->target.host = rule.host;
        route->target.port = rule.port;
        route->target.family = settings.family;
        route->target.text = fmt::format("{}:{}", rule.host, rule.port);
        if (auto numeric = IpAddress::parse(rule.host)) {
            // A numeric target the address family forbids can never work:
            // refuse the configuration rather than every connection.
            if (!numeric->matches(settings.family))
                return Error::from_code(ConfigError::Invalid,
                    fmt::format("rule out:{}: {} is not an {} address ({})", rule.vsock_port, rule.host,
                        settings.family == Family::Ipv4 ? "IPv4" : "IPv6", settings.family == Family::Ipv4 ? "-4" : "-6"));
            if (numeric->is_v6)
                route->target.text = fmt::format("[{}]:{}", numeric->to_string(), rule.port);
        }
        route->max_connections = rule.max_connections;
        route->counter = counter_for(route->name);
        ListenerSpec unix_spec;
        unix_spec.kind = ListenerSpec::Kind::Unix;
        unix_spec.path = enclave::listener_path(settings.vsock_dir, rule.vsock_port);
        unix_spec.key = fmt::format("unix:{}", unix_spec.path);
        unix_spec.route = route;
        specs.push_back(std::move(unix_spec));
        if (settings.af_vsock) {
            ListenerSpec vsock_spec;
            vsock_spec.kind = ListenerSpec::Kind::Vsock;
            vsock_spec.vsock_port = rule.vsock_port;
            vsock_spec.key = fmt::format("vsock:{}", rule.vsock_port);
            vsock_spec.route = route;
            specs.push_back(std::move(vsock_spec));
        }
    }
    for (auto const& rule : config.inbound) {
        auto route = std::make_shared<Route>();
        route->name = fmt::format("in:{}", rule.listen.to_string());
        route->target.kind = TargetKind::Enclave;
        route->target.vsock_port = rule.vsock_port;
        if (rule.enclave_id) {
            route->target.enclave_socket = enclave::enclave_socket_path(settings.run_dir, *rule.enclave_id);
        } else {
            route->target.enclave_socket = enclave::enclave_socket_path_for_cid(settings.run_dir, *rule.enclave_cid);
            if (settings.af_vsock)
                route->target.vsock_cid = rule.enclave_cid;
        }
        route->target.text = rule.enclave_id ? fmt::format("enclave:{}:{}", *rule.enclave_id, rule.vsock_port)
                                             : fmt::format("enclave:cid-{}:{}", *rule.enclave_cid, rule.vsock_port);
        route->max_connections = rule.max_connections;
        route->counter = counter_for(route->name);
        ListenerSpec spec;
        spec.kind = ListenerSpec::Kind::Tcp;
        spec.address = rule.listen;
        spec.key = fmt::format("tcp:{}", rule.listen.to_string());
        spec.route = route;
        specs.push_back(std::move(spec));
    }
    return specs;
}

} // namespace qtbox::proxy
