// Route building is pure: these tests open no socket and make no system
// call beyond what the configuration parser needs.
#include <qtbox/proxy/config.hpp>
#include <qtbox/proxy/routes.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace qtbox;
using namespace qtbox::proxy;
using net::Family;
using net::SocketError;

namespace {

ProxyConfig config_of(std::string const& text)
{
    auto config = parse_proxy_config(text, "routes.toml");
    REQUIRE_MESSAGE(!config.is_error(), (config.is_error() ? config.error().message() : ""));
    return config.release_value();
}

RouteSettings parent(bool af_vsock = false, Family family = Family::Any)
{
    return RouteSettings {
        .mode = ProxyMode::Parent,
        .run_dir = "/r",
        .vsock_dir = "/r/vsock",
        .af_vsock = af_vsock,
        .family = family,
    };
}

RouteSettings enclave_mode(std::string vsock_dir)
{
    return RouteSettings {
        .mode = ProxyMode::Enclave,
        .run_dir = {},
        .vsock_dir = std::move(vsock_dir),
        .af_vsock = false,
        .family = Family::Any,
    };
}

std::vector<ListenerSpec> specs_of(ProxyConfig const& config, RouteSettings const& settings, RuleCounters const& running = {})
{
    auto specs = build_listener_specs(config, settings, running);
    REQUIRE_MESSAGE(!specs.is_error(), (specs.is_error() ? specs.error().message() : ""));
    return specs.release_value();
}

std::string const OUTBOUND = "[[outbound]]\nvsock_port = 8000\nhost = \"kms.example.com\"\nport = 443\nmax_connections = 5\n";

} // namespace

TEST_CASE("proxy routes: an outbound rule listens on its hybrid socket and connects to host:port")
{
    auto specs = specs_of(config_of(OUTBOUND), parent());
    REQUIRE(specs.size() == 1);
    auto const& spec = specs[0];
    CHECK(spec.kind == ListenerSpec::Kind::Unix);
    CHECK(spec.path == "/r/vsock/3_8000");
    CHECK(spec.key == "unix:/r/vsock/3_8000");
    REQUIRE(spec.route);
    CHECK(spec.route->name == "out:8000");
    CHECK(spec.route->max_connections == 5u);
    REQUIRE(spec.route->counter);
    CHECK(spec.route->counter->active == 0);
    auto const& target = spec.route->target;
    CHECK(target.kind == TargetKind::Tcp);
    CHECK(target.host == "kms.example.com");
    CHECK(target.port == 443);
    CHECK(target.family == Family::Any);
    CHECK(target.text == "kms.example.com:443");
}

TEST_CASE("proxy routes: with AF_VSOCK in use an outbound rule also listens on its vsock port, with the same route")
{
    auto specs = specs_of(config_of(OUTBOUND), parent(true));
    REQUIRE(specs.size() == 2);
    CHECK(specs[0].kind == ListenerSpec::Kind::Unix);
    CHECK(specs[0].key == "unix:/r/vsock/3_8000");
    CHECK(specs[1].kind == ListenerSpec::Kind::Vsock);
    CHECK(specs[1].vsock_port == 8000);
    CHECK(specs[1].key == "vsock:8000");
    CHECK(specs[1].route == specs[0].route);
}

TEST_CASE("proxy routes: numeric targets; IPv6 is written in brackets, names pass -4/-6 on to the resolver")
{
    auto specs = specs_of(config_of("[[outbound]]\nvsock_port = 6\nhost = \"::1\"\nport = 80\n"
                                    "[[outbound]]\nvsock_port = 7\nhost = \"[2001:db8::1]\"\nport = 81\n"
                                    "[[outbound]]\nvsock_port = 8\nhost = \"192.0.2.1\"\nport = 82\n"),
        parent());
    REQUIRE(specs.size() == 3);
    CHECK(specs[0].route->target.text == "[::1]:80");
    CHECK(specs[1].route->target.text == "[2001:db8::1]:81");
    CHECK(specs[1].route->target.host == "[2001:db8::1]");
    CHECK(specs[2].route->target.text == "192.0.2.1:82");

    auto named = specs_of(config_of(OUTBOUND), parent(false, Family::Ipv6));
    REQUIRE(named.size() == 1);
    CHECK(named[0].route->target.family == Family::Ipv6);
}

TEST_CASE("proxy routes: a numeric target of the family -4/-6 excludes is refused")
{
    auto v6_target = config_of("[[outbound]]\nvsock_port = 6\nhost = \"::1\"\nport = 80\n");
    auto v4_only = build_listener_specs(v6_target, parent(false, Family::Ipv4));
    REQUIRE(v4_only.is_error());
    CHECK(v4_only.error().is(ConfigError::Invalid));
    CHECK(v4_only.error().message() == "rule out:6: ::1 is not an IPv4 address (-4)");

    auto v4_target = config_of(OUTBOUND + "[[outbound]]\nvsock_port = 9\nhost = \"192.0.2.1\"\nport = 80\n");
    auto v6_only = build_listener_specs(v4_target, parent(false, Family::Ipv6));
    REQUIRE(v6_only.is_error());
    CHECK(v6_only.error().is(ConfigError::Invalid));
    CHECK(v6_only.error().message() == "rule out:9: 192.0.2.1 is not an IPv6 address (-6)");

    CHECK_FALSE(build_listener_specs(v4_target, parent(false, Family::Ipv4)).is_error());
}

TEST_CASE("proxy routes: an inbound rule by enclave id goes to that enclave's vsock.sock")
{
    auto specs = specs_of(config_of("[[inbound]]\nlisten = \"127.0.0.1:5050\"\nenclave_id = 17\nvsock_port = 5000\n"
                                    "max_connections = 2\n"),
        parent(true));
    REQUIRE(specs.size() == 1);
    auto const& spec = specs[0];
    CHECK(spec.kind == ListenerSpec::Kind::Tcp);
    CHECK(spec.key == "tcp:127.0.0.1:5050");
    CHECK(spec.address.to_string() == "127.0.0.1:5050");
    CHECK(spec.route->name == "in:127.0.0.1:5050");
    CHECK(spec.route->max_connections == 2u);
    auto const& target = spec.route->target;
    CHECK(target.kind == TargetKind::Enclave);
    CHECK(target.enclave_socket == "/r/enclaves/17/vsock.sock");
    CHECK(target.vsock_port == 5000);
    // An enclave known by id has no CID to fall back to.
    CHECK_FALSE(target.vsock_cid);
    CHECK(target.text == "enclave:17:5000");
}

TEST_CASE("proxy routes: an inbound rule by CID goes to cid-<cid>/vsock.sock, then AF_VSOCK when in use")
{
    auto config = config_of("[[inbound]]\nlisten = \"[::1]:5051\"\nenclave_cid = 7\nvsock_port = 1\n");
    auto without = specs_of(config, parent(false));
    REQUIRE(without.size() == 1);
    CHECK(without[0].key == "tcp:[::1]:5051");
    CHECK(without[0].route->name == "in:[::1]:5051");
    CHECK(without[0].route->target.kind == TargetKind::Enclave);
    CHECK(without[0].route->target.enclave_socket == "/r/enclaves/cid-7/vsock.sock");
    CHECK(without[0].route->target.text == "enclave:cid-7:1");
    CHECK_FALSE(without[0].route->target.vsock_cid);

    auto with = specs_of(config, parent(true));
    REQUIRE(with.size() == 1);
    CHECK(with[0].route->target.vsock_cid == 7u);
}

TEST_CASE("proxy routes: outbound listeners come first, each kind in configuration order")
{
    auto specs = specs_of(config_of("[[inbound]]\nlisten = \"127.0.0.1:2\"\nenclave_id = 0\nvsock_port = 2\n"
                                    "[[outbound]]\nvsock_port = 20\nhost = \"a.example\"\nport = 1\n"
                                    "[[inbound]]\nlisten = \"127.0.0.1:1\"\nenclave_id = 0\nvsock_port = 1\n"
                                    "[[outbound]]\nvsock_port = 10\nhost = \"b.example\"\nport = 1\n"),
        parent());
    REQUIRE(specs.size() == 4);
    CHECK(specs[0].key == "unix:/r/vsock/3_20");
    CHECK(specs[1].key == "unix:/r/vsock/3_10");
    CHECK(specs[2].key == "tcp:127.0.0.1:2");
    CHECK(specs[3].key == "tcp:127.0.0.1:1");
}

TEST_CASE("proxy routes: enclave mode tunnels 127.0.0.1:<enclave_port> to CID 3, or to the hybrid socket")
{
    auto config = config_of("[[outbound]]\nvsock_port = 8000\nhost = \"kms.example.com\"\nport = 443\nenclave_port = 8443\n"
                            "max_connections = 3\n"
                            "[[inbound]]\nlisten = \"127.0.0.1:5050\"\nenclave_id = 0\nvsock_port = 5050\n");
    auto over_vsock = specs_of(config, enclave_mode({}));
    // [[inbound]] is the parent's business.
    REQUIRE(over_vsock.size() == 1);
    auto const& spec = over_vsock[0];
    CHECK(spec.kind == ListenerSpec::Kind::Tcp);
    CHECK(spec.key == "tcp:127.0.0.1:8443");
    CHECK(spec.address.to_string() == "127.0.0.1:8443");
    CHECK(spec.route->name == "tunnel:8443");
    CHECK(spec.route->max_connections == 3u);
    CHECK(spec.route->target.kind == TargetKind::Fixed);
    CHECK(spec.route->target.address.to_string() == "vsock:3:8000");
    CHECK(spec.route->target.text == "vsock:3:8000");

    auto over_hybrid = specs_of(config, enclave_mode("/h"));
    REQUIRE(over_hybrid.size() == 1);
    CHECK(over_hybrid[0].route->target.address.to_string() == "unix:/h/3_8000");
    CHECK(over_hybrid[0].route->target.text == "unix:/h/3_8000");
}

TEST_CASE("proxy routes: enclave mode refuses a hybrid directory too long for a socket path")
{
    auto specs = build_listener_specs(config_of(OUTBOUND), enclave_mode(std::string(120, 'd')));
    REQUIRE(specs.is_error());
    CHECK(specs.error().is(SocketError::PathTooLong));
}

TEST_CASE("proxy routes: a rebuild keeps each running rule's counter, by name; new rules start at zero")
{
    auto first = specs_of(config_of(OUTBOUND), parent(true));
    REQUIRE(first.size() == 2);
    auto counter = first[0].route->counter;
    CHECK(first[1].route->counter == counter);
    counter->active = 4;

    RuleCounters running { { first[0].route->name, counter } };
    auto second = specs_of(config_of(OUTBOUND + "[[outbound]]\nvsock_port = 8001\nhost = \"other.example\"\nport = 80\n"),
        parent(true), running);
    REQUIRE(second.size() == 4);
    CHECK(second[0].route->counter == counter);
    CHECK(second[0].route->counter->active == 4);
    CHECK(second[2].route->name == "out:8001");
    REQUIRE(second[2].route->counter);
    CHECK(second[2].route->counter != counter);
    CHECK(second[2].route->counter->active == 0);
    // The caller's map is left as it was.
    CHECK(running.size() == 1);
}
