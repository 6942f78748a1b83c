#include "../support/must.hpp"

#include <qtbox/eif/app_config.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace qtbox;
using namespace qtbox::eif;

TEST_CASE("app config: /cmd lines become argv; empty entries and NUL bytes are refused")
{
    auto config = parse_app_config("/bin/sh\n-c\necho hello enclave\n", "", "");
    REQUIRE(!config.is_error());
    CHECK(config.value().argv == std::vector<std::string> { "/bin/sh", "-c", "echo hello enclave" });
    CHECK(config.value().working_dir == "/");

    auto no_newline = parse_app_config("/app", "", "");
    REQUIRE(!no_newline.is_error());
    CHECK(no_newline.value().argv == std::vector<std::string> { "/app" });

    auto empty_entry = parse_app_config("/bin/echo\n\nx\n", "", "");
    REQUIRE(empty_entry.is_error());
    CHECK(empty_entry.error().message() == "/cmd line 2: empty entry");

    auto nothing = parse_app_config("", "", "");
    REQUIRE(nothing.is_error());
    CHECK(nothing.error().message() == "/cmd: no command to run");

    auto nul = parse_app_config(std::string_view("/a\0b\n", 5), "", "");
    REQUIRE(nul.is_error());
    CHECK(nul.error().message() == "/cmd line 1: contains a NUL byte");
}

TEST_CASE("app config: /env entries are KEY=VALUE, PATH defaults to Docker's")
{
    auto config = parse_app_config("/app\n", "A=1\n\nB=x=y\n", "");
    REQUIRE(!config.is_error());
    CHECK(config.value().env == std::vector<std::string> { "A=1", "B=x=y", std::string("PATH=") + DEFAULT_PATH });
    CHECK(path_of(config.value().env) == DEFAULT_PATH);

    auto with_path = parse_app_config("/app\n", "PATH=/opt/bin\n", "");
    REQUIRE(!with_path.is_error());
    CHECK(with_path.value().env == std::vector<std::string> { "PATH=/opt/bin" });
    CHECK(path_of(with_path.value().env) == "/opt/bin");

    auto bad = parse_app_config("/app\n", "JUSTAKEY\n", "");
    REQUIRE(bad.is_error());
    CHECK(bad.error().message() == "/env: 'JUSTAKEY' is not KEY=VALUE");
    CHECK(test::fails_with(parse_app_config("/app\n", "=value\n", ""), AppConfigError::Malformed));
}

TEST_CASE("app config: /workdir is one absolute path")
{
    auto config = parse_app_config("/app\n", "", "/srv/app\n");
    REQUIRE(!config.is_error());
    CHECK(config.value().working_dir == "/srv/app");
    CHECK(test::fails_with(parse_app_config("/app\n", "", "srv\n"), AppConfigError::Malformed));
    CHECK(test::fails_with(parse_app_config("/app\n", "", "/a\n/b\n"), AppConfigError::Malformed));
}

TEST_CASE("app config: /user is UID:GID, absent meaning root")
{
    CHECK(parse_app_config("/app\n", "", "").value().user == UserIds { 0, 0 });
    auto config = parse_app_config("/app\n", "", "", "1000:2000\n");
    REQUIRE(!config.is_error());
    CHECK(config.value().user == UserIds { 1000, 2000 });
    CHECK(encode_user({ 65534, 65534 }) == "65534:65534");
    CHECK(parse_user_entry("4294967294:0").value() == UserIds { 4294967294u, 0 });
    for (auto bad : { "1000", "app:1000", "1000:", ":1000", "-1:0", "4294967295:0", "0:4294967295", "1 :2", "12345678901:0" }) {
        INFO(bad);
        auto refused = parse_user_entry(bad);
        REQUIRE(refused.is_error());
        CHECK(refused.error().is(AppConfigError::Malformed));
    }
    CHECK(parse_app_config("/app\n", "", "", "1:1\n2:2\n").error().is(AppConfigError::Malformed));
}

TEST_CASE("app config: too many entries are refused")
{
    std::string many;
    for (std::size_t i = 0; i <= MAX_ENTRIES; ++i)
        many += "x\n";
    auto result = parse_lines(many, "/cmd", false);
    REQUIRE(result.is_error());
    CHECK(result.error().is(AppConfigError::TooManyEntries));
    many.resize(many.size() - 2);
    CHECK(!parse_lines(many, "/cmd", false).is_error());
}

TEST_CASE("app config: the entry rules eif-build checks and init applies")
{
    CHECK(fits_one_line("echo hello"));
    CHECK(fits_one_line(""));
    CHECK(!fits_one_line("two\nlines"));
    CHECK(!fits_one_line(std::string_view("nul\0byte", 8)));

    CHECK(is_env_entry("A=1"));
    CHECK(is_env_entry("A="));
    CHECK(is_env_entry("B=x=y"));
    CHECK(!is_env_entry("JUSTAKEY"));
    CHECK(!is_env_entry("=value"));
    CHECK(!is_env_entry(""));

    CHECK(env_key("PATH=/bin") == "PATH");
    CHECK(env_key("B=x=y") == "B");
    CHECK(env_key("JUSTAKEY") == "JUSTAKEY");
}

TEST_CASE("app config: what eif-build encodes, init parses back")
{
    std::vector<std::string> argv { "/bin/sh", "-c", "echo 'a b'" };
    std::vector<std::string> env { "PATH=/opt/bin", "A=1" };
    std::vector<std::string> workdir { "/srv/app" };
    auto cmd_file = encode_lines(argv);
    CHECK(std::string(as_chars(cmd_file)) == "/bin/sh\n-c\necho 'a b'\n");
    CHECK(encode_lines({}).empty());
    auto config = parse_app_config(as_chars(cmd_file), as_chars(encode_lines(env)), as_chars(encode_lines(workdir)));
    REQUIRE(!config.is_error());
    CHECK(config.value().argv == argv);
    CHECK(config.value().env == env);
    CHECK(config.value().working_dir == "/srv/app");
}
