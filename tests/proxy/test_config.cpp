#include <qtbox/proxy/config.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>
#include <unistd.h>

using namespace qtbox;
using namespace qtbox::proxy;

namespace {

std::string error_of(std::string_view text)
{
    auto result = parse_proxy_config(text, "p.toml");
    if (!result.is_error())
        return "(no error)";
    CHECK(result.error().is(ConfigError::Invalid));
    return result.error().message();
}

} // namespace

TEST_CASE("proxy config: a complete file")
{
    auto config = parse_proxy_config(R"(
[[outbound]]
vsock_port = 8000
host = "kms.example.com"
port = 443

[[outbound]]
vsock_port = 8001
host = "2001:db8::1"
port = 80
enclave_port = 8080
max_connections = 10

[[inbound]]
listen = "127.0.0.1:5050"
enclave_id = 0
vsock_port = 5050

[[inbound]]
listen = "[::]:5051"
enclave_cid = 4
vsock_port = 6000
max_connections = 3

[limits]
max_connections = 2000
idle_timeout = "1m30s"
connect_timeout = 5
)", "p.toml");
    REQUIRE_FALSE(config.is_error());
    auto const& c = config.value();
    REQUIRE(c.outbound.size() == 2);
    CHECK(c.outbound[0].vsock_port == 8000);
    CHECK(c.outbound[0].host == "kms.example.com");
    CHECK(c.outbound[0].port == 443);
    CHECK(c.outbound[0].enclave_port == 443);
    CHECK_FALSE(c.outbound[0].max_connections);
    CHECK(c.outbound[0].line == 2);
    CHECK(c.outbound[1].host == "2001:db8::1");
    CHECK(c.outbound[1].enclave_port == 8080);
    CHECK(c.outbound[1].max_connections == 10u);
    REQUIRE(c.inbound.size() == 2);
    CHECK(c.inbound[0].listen.to_string() == "127.0.0.1:5050");
    CHECK(c.inbound[0].enclave_id == 0u);
    CHECK_FALSE(c.inbound[0].enclave_cid);
    CHECK(c.inbound[0].vsock_port == 5050);
    CHECK(c.inbound[1].listen.to_string() == "[::]:5051");
    CHECK(c.inbound[1].enclave_cid == 4u);
    CHECK(c.inbound[1].max_connections == 3u);
    CHECK(c.limits.max_connections == 2000);
    CHECK(c.limits.idle_timeout_ms == 90'000);
    CHECK(c.limits.connect_timeout_ms == 5'000);
}

TEST_CASE("proxy config: defaults")
{
    auto config = parse_proxy_config("[[outbound]]\nvsock_port = 1\nhost = \"h\"\nport = 2\n", "p.toml");
    REQUIRE_FALSE(config.is_error());
    CHECK(config.value().limits.max_connections == 1024);
    CHECK(config.value().limits.idle_timeout_ms == 600'000);
    CHECK(config.value().limits.connect_timeout_ms == 10'000);
    CHECK(config.value().inbound.empty());
}

TEST_CASE("proxy config: syntax errors name the line and column")
{
    CHECK(error_of("[[outbound]]\nvsock_port = = 1\n").starts_with("p.toml:2:14: "));
    CHECK(error_of("[[outbound]]\nvsock_port = 1\nvsock_port = 2\n").starts_with("p.toml:3:"));
}

TEST_CASE("proxy config: non-ASCII text outside comments is refused without undefined behaviour")
{
    // fuzz/regressions/proxy_config: toml++ 3.3.0 reached TOML_UNREACHABLE on
    // these code points where it looks for whitespace (U+FEFD, U+00E9, U+00A7).
    CHECK(error_of("\xef\xbb\xbd").starts_with("p.toml:1:1: "));
    CHECK(error_of("\xc3\xa9 = 1\n").starts_with("p.toml:1:1: "));
    CHECK(error_of("[limits]\nmax_connections = 1\xc3\xa9\n").starts_with("p.toml:2:20: "));
    CHECK(error_of("s = \"\"\"\\\n\xc2\xa7\"\"\"\n") == "p.toml:1: unknown key 's'");
    CHECK(error_of("[[outbound]]\nvsock_port = 8000\nhost = \"k\xc3\xa9.example\"\nport = 443\n").starts_with("p.toml:3: [[outbound]]: "));
    // Malformed UTF-8 is refused with its line.
    CHECK(error_of("# ok\n# \xc3\x28\n") == "p.toml:2: not valid UTF-8");
    CHECK(error_of("# \xed\xa0\x80\n") == "p.toml:1: not valid UTF-8");
    // Comments may be in any language; a leading byte order mark is skipped.
    auto config = parse_proxy_config("\xef\xbb\xbf# \xe4\xbb\xa3\xe7\x90\x86\xe3\x80\x82 caf\xc3\xa9\n[limits] # \xf0\x9f\x94\x92\n"
                                     "max_connections = 7\n", "p.toml");
    REQUIRE_FALSE(config.is_error());
    CHECK(config.value().limits.max_connections == 7);
}

TEST_CASE("proxy config: a missing key after '[', '[[', '.', '{' or ',' is a syntax error")
{
    // toml++ 3.3.0 asserts (or, with NDEBUG, assumes) that a key follows:
    // found by fuzz_proxy_config with asserts on, on "[\0" (config.cpp).
    std::string const texts[] = { "[=", "[\n", std::string("[\0", 2), "[[=", "[a.!]", "x = { a.! }", "x = { a = 1, ! }",
        "[limits]\nmax_connections = 1\n[#" };
    for (auto const& text : texts) {
        CAPTURE(text);
        auto error = error_of(text);
        CHECK(error.starts_with("p.toml:"));
        CHECK(error.find("key") != std::string::npos);
    }
}

TEST_CASE("proxy config: unknown keys are errors, reported in file order")
{
    CHECK(error_of("zeta = 1\nalpha = 2\n") == "p.toml:1: unknown key 'zeta'");
    CHECK(error_of("[[outbound]]\nvsock_port = 1\nhots = \"x\"\nhost = \"h\"\nport = 2\n")
        == "p.toml:3: [[outbound]]: unknown key 'hots'");
    CHECK(error_of("[[inbound]]\nlisten = \"127.0.0.1:1\"\nenclave = 4\n") == "p.toml:3: [[inbound]]: unknown key 'enclave'");
    CHECK(error_of("[limits]\nidle = \"1s\"\n") == "p.toml:2: [limits]: unknown key 'idle'");
}

TEST_CASE("proxy config: wrong types are errors")
{
    CHECK(error_of("outbound = 1\n") == "p.toml:1: 'outbound' must be an array of tables ([[outbound]])");
    CHECK(error_of("[outbound]\nvsock_port = 1\n") == "p.toml:1: 'outbound' must be an array of tables ([[outbound]])");
    CHECK(error_of("limits = [1]\n") == "p.toml:1: 'limits' must be a table ([limits])");
    CHECK(error_of("[[outbound]]\nvsock_port = \"8000\"\nhost = \"h\"\nport = 1\n") == "p.toml:2: [[outbound]]: 'vsock_port' must be an integer");
    CHECK(error_of("[[outbound]]\nvsock_port = 8000.0\nhost = \"h\"\nport = 1\n") == "p.toml:2: [[outbound]]: 'vsock_port' must be an integer");
    CHECK(error_of("[[outbound]]\nvsock_port = 8000\nhost = 1\nport = 1\n") == "p.toml:3: [[outbound]]: 'host' must be a string");
    CHECK(error_of("[[inbound]]\nlisten = 5050\nenclave_id = 0\nvsock_port = 1\n") == "p.toml:2: [[inbound]]: 'listen' must be a string");
    CHECK(error_of("[limits]\nidle_timeout = true\n")
        == "p.toml:2: [limits]: 'idle_timeout' must be a duration such as \"30s\" or an integer of seconds");
}

TEST_CASE("proxy config: missing keys name the table's line")
{
    CHECK(error_of("\n[[outbound]]\nhost = \"h\"\nport = 1\n") == "p.toml:2: [[outbound]]: missing 'vsock_port'");
    CHECK(error_of("[[outbound]]\nvsock_port = 1\nport = 1\n") == "p.toml:1: [[outbound]]: missing 'host'");
    CHECK(error_of("[[outbound]]\nvsock_port = 1\nhost = \"h\"\n") == "p.toml:1: [[outbound]]: missing 'port'");
    CHECK(error_of("[[inbound]]\nenclave_id = 0\nvsock_port = 1\n") == "p.toml:1: [[inbound]]: missing 'listen'");
    CHECK(error_of("[[inbound]]\nlisten = \"127.0.0.1:1\"\nenclave_id = 0\n") == "p.toml:1: [[inbound]]: missing 'vsock_port'");
}

TEST_CASE("proxy config: values out of range")
{
    auto outbound = [](std::string body) { return error_of("[[outbound]]\n" + body); };
    CHECK(outbound("vsock_port = 0\nhost = \"h\"\nport = 1\n") == "p.toml:2: [[outbound]]: 'vsock_port' must be from 1 to 4294967294, not 0");
    CHECK(outbound("vsock_port = 4294967295\nhost = \"h\"\nport = 1\n")
        == "p.toml:2: [[outbound]]: 'vsock_port' must be from 1 to 4294967294, not 4294967295");
    CHECK(outbound("vsock_port = -1\nhost = \"h\"\nport = 1\n") == "p.toml:2: [[outbound]]: 'vsock_port' must not be negative, not -1");
    CHECK(outbound("vsock_port = 9000\nhost = \"h\"\nport = 1\n") == "p.toml:2: [[outbound]]: vsock_port 9000 is reserved for the enclave heartbeat");
    CHECK(outbound("vsock_port = 9001\nhost = \"h\"\nport = 1\n") == "p.toml:2: [[outbound]]: vsock_port 9001 is reserved for QTSM");
    CHECK(outbound("vsock_port = 1\nhost = \"h\"\nport = 65536\n") == "p.toml:4: [[outbound]]: 'port' must be from 1 to 65535, not 65536");
    CHECK(outbound("vsock_port = 1\nhost = \"h\"\nport = 1\nenclave_port = 0\n") == "p.toml:5: [[outbound]]: 'enclave_port' must be from 1 to 65535, not 0");
    CHECK(outbound("vsock_port = 1\nhost = \"bad host\"\nport = 1\n") == "p.toml:3: [[outbound]]: invalid host name 'bad host': character ' ' is not allowed");
    CHECK(outbound("vsock_port = 1\nhost = \"\"\nport = 1\n") == "p.toml:3: [[outbound]]: invalid host name '': empty");
    CHECK(outbound("vsock_port = 1\nhost = \"h\"\nport = 1\nmax_connections = 0\n")
        == "p.toml:5: [[outbound]]: 'max_connections' must be from 1 to 1000000, not 0");

    auto inbound = [](std::string body) { return error_of("[[inbound]]\n" + body); };
    CHECK(inbound("listen = \"localhost:80\"\nenclave_id = 0\nvsock_port = 1\n")
        == "p.toml:2: [[inbound]]: invalid address 'localhost:80': not a numeric IPv4 address (write IPv6 as [address]:port)");
    CHECK(inbound("listen = \"127.0.0.1:80\"\nvsock_port = 1\n") == "p.toml:1: [[inbound]]: give exactly one of 'enclave_cid' and 'enclave_id'");
    CHECK(inbound("listen = \"127.0.0.1:80\"\nenclave_id = 0\nenclave_cid = 4\nvsock_port = 1\n")
        == "p.toml:1: [[inbound]]: give exactly one of 'enclave_cid' and 'enclave_id'");
    CHECK(inbound("listen = \"127.0.0.1:80\"\nenclave_cid = 3\nvsock_port = 1\n") == "p.toml:3: [[inbound]]: 'enclave_cid' must be from 4 to 4294967294, not 3");
    CHECK(inbound("listen = \"127.0.0.1:80\"\nenclave_id = -2\nvsock_port = 1\n") == "p.toml:3: [[inbound]]: 'enclave_id' must not be negative, not -2");
    CHECK(inbound("listen = \"127.0.0.1:80\"\nenclave_id = 1\nvsock_port = 0\n") == "p.toml:4: [[inbound]]: 'vsock_port' must be from 1 to 4294967294, not 0");

    CHECK(error_of("[limits]\nmax_connections = 1000001\n") == "p.toml:2: [limits]: 'max_connections' must be from 1 to 1000000, not 1000001");
    CHECK(error_of("[limits]\nconnect_timeout = \"0s\"\n") == "p.toml:2: [limits]: 'connect_timeout' must be from 1ms to 10m");
    CHECK(error_of("[limits]\nconnect_timeout = \"11m\"\n") == "p.toml:2: [limits]: 'connect_timeout' must be from 1ms to 10m");
    CHECK(error_of("[limits]\nidle_timeout = -1\n") == "p.toml:2: [limits]: 'idle_timeout' must be from 0 (none) to 7d");
    CHECK(error_of("[limits]\nidle_timeout = \"8d\"\n") == "p.toml:2: [limits]: 'idle_timeout' must be from 0 (none) to 7d");
    CHECK(error_of("[limits]\nidle_timeout = \"5 minutes\"\n")
        == "p.toml:2: [limits]: 'idle_timeout': invalid duration '5 minutes': unknown unit (use ms, s, m, h or d)");
}

TEST_CASE("proxy config: idle_timeout 0 turns it off")
{
    auto config = parse_proxy_config("[[outbound]]\nvsock_port = 1\nhost = \"h\"\nport = 2\n[limits]\nidle_timeout = 0\n", "p.toml");
    REQUIRE_FALSE(config.is_error());
    CHECK(config.value().limits.idle_timeout_ms == 0);
}

TEST_CASE("proxy config: duplicates point at the first use")
{
    CHECK(error_of("[[outbound]]\nvsock_port = 8000\nhost = \"a\"\nport = 1\n"
                   "[[outbound]]\nvsock_port = 8000\nhost = \"b\"\nport = 2\n")
        == "p.toml:6: [[outbound]]: vsock_port 8000 is already used on line 1");
    CHECK(error_of("[[inbound]]\nlisten = \"127.0.0.1:80\"\nenclave_id = 0\nvsock_port = 1\n"
                   "[[inbound]]\nlisten = \"127.0.0.1:80\"\nenclave_id = 1\nvsock_port = 2\n")
        == "p.toml:6: [[inbound]]: listen 127.0.0.1:80 is already used on line 1");
}

TEST_CASE("proxy config: enclave ports must differ in enclave mode only")
{
    auto config = parse_proxy_config("[[outbound]]\nvsock_port = 1\nhost = \"a\"\nport = 443\n"
                                     "[[outbound]]\nvsock_port = 2\nhost = \"b\"\nport = 443\n",
        "p.toml");
    REQUIRE_FALSE(config.is_error());
    CHECK_FALSE(check_proxy_config(config.value(), ProxyMode::Parent, "p.toml").is_error());
    auto enclave = check_proxy_config(config.value(), ProxyMode::Enclave, "p.toml");
    REQUIRE(enclave.is_error());
    CHECK(enclave.error().message() == "p.toml:5: [[outbound]]: enclave_port 443 is already used on line 1 (set enclave_port to tell the rules apart)");
    config.value().outbound[1].enclave_port = 8443;
    CHECK_FALSE(check_proxy_config(config.value(), ProxyMode::Enclave, "p.toml").is_error());
}

TEST_CASE("proxy config: each mode needs rules of its own")
{
    auto empty = parse_proxy_config("", "p.toml");
    REQUIRE_FALSE(empty.is_error());
    auto none = check_proxy_config(empty.value(), ProxyMode::Parent, "p.toml");
    REQUIRE(none.is_error());
    CHECK(none.error().message() == "p.toml: no [[outbound]] or [[inbound]] tables");
    auto inbound_only = parse_proxy_config("[[inbound]]\nlisten = \"127.0.0.1:80\"\nenclave_id = 0\nvsock_port = 1\n", "p.toml");
    REQUIRE_FALSE(inbound_only.is_error());
    CHECK_FALSE(check_proxy_config(inbound_only.value(), ProxyMode::Parent, "p.toml").is_error());
    auto enclave = check_proxy_config(inbound_only.value(), ProxyMode::Enclave, "p.toml");
    REQUIRE(enclave.is_error());
    CHECK(enclave.error().message() == "p.toml: enclave mode needs at least one [[outbound]] table");
}

TEST_CASE("proxy config: the -l/-a/-p command line is checked like a table")
{
    auto config = single_rule_config(8000, "127.0.0.1", 9000);
    REQUIRE_FALSE(config.is_error());
    REQUIRE(config.value().outbound.size() == 1);
    CHECK(config.value().outbound[0].vsock_port == 8000);
    CHECK(config.value().outbound[0].port == 9000);
    CHECK(single_rule_config(0, "h", 1).error().message() == "-l: 'vsock_port' must be from 1 to 4294967294, not 0");
    CHECK(single_rule_config(9000, "h", 1).error().message() == "-l: vsock_port 9000 is reserved for the enclave heartbeat");
    CHECK(single_rule_config(1, "a..b", 1).error().message() == "-a: invalid host name 'a..b': empty label");
    CHECK(single_rule_config(1, "h", 70000).error().message() == "-p: 'port' must be from 1 to 65535, not 70000");
}

TEST_CASE("proxy config: unreadable and oversized files are refused")
{
    auto missing = load_proxy_config("/nonexistent/qt-proxy.toml");
    REQUIRE(missing.is_error());
    CHECK(missing.error().message() == "open /nonexistent/qt-proxy.toml: No such file or directory");

    char path[] = "/tmp/qtbox-proxy-config.XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    std::string comment = "# " + std::string(MAX_CONFIG_SIZE, 'x') + "\n";
    REQUIRE(::write(fd, comment.data(), comment.size()) == static_cast<ssize_t>(comment.size()));
    ::close(fd);
    auto big = load_proxy_config(path);
    ::unlink(path);
    REQUIRE(big.is_error());
    CHECK(big.error().message() == std::string(path) + ": input is larger than the limit of 1048576 bytes");
}
