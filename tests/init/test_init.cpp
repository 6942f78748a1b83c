#include <qtbox/init/init.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <sys/wait.h>

using namespace qtbox;
using namespace qtbox::init;

TEST_CASE("init: /cmd lines become argv; empty entries and NUL bytes are refused")
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

TEST_CASE("init: /env entries are KEY=VALUE, PATH defaults to Docker's")
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
    CHECK(parse_app_config("/app\n", "=value\n", "").is_error());
}

TEST_CASE("init: /workdir is one absolute path")
{
    auto config = parse_app_config("/app\n", "", "/srv/app\n");
    REQUIRE(!config.is_error());
    CHECK(config.value().working_dir == "/srv/app");
    CHECK(parse_app_config("/app\n", "", "srv\n").is_error());
    CHECK(parse_app_config("/app\n", "", "/a\n/b\n").is_error());
}

TEST_CASE("init: too many entries are refused")
{
    std::string many;
    for (std::size_t i = 0; i <= MAX_ENTRIES; ++i)
        many += "x\n";
    auto result = parse_lines(many, "/cmd", false);
    REQUIRE(result.is_error());
    CHECK(result.error().code() == E2BIG);
    many.resize(many.size() - 2);
    CHECK(!parse_lines(many, "/cmd", false).is_error());
}

TEST_CASE("init: the module list holds absolute paths, blank lines skipped")
{
    auto list = parse_module_list("/lib/modules/6.1/kernel/drivers/virtio/virtio_ring.ko\n\n/lib/modules/6.1/virtio.ko.xz\n");
    REQUIRE(!list.is_error());
    CHECK(list.value() == std::vector<std::string> { "/lib/modules/6.1/kernel/drivers/virtio/virtio_ring.ko", "/lib/modules/6.1/virtio.ko.xz" });
    auto relative = parse_module_list("virtio.ko\n");
    REQUIRE(relative.is_error());
    CHECK(relative.error().message() == "/etc/qtbox/modules: 'virtio.ko' is not an absolute path");
    CHECK(parse_module_list("").value().empty());
}

TEST_CASE("init: module compression is told by the file name")
{
    CHECK(module_compression("/m/virtio.ko") == Compression::None);
    CHECK(module_compression("/m/virtio.ko.gz") == Compression::Gzip);
    CHECK(module_compression("/m/virtio.ko.xz") == Compression::Xz);
    CHECK(module_compression("/m/virtio.ko.zst") == Compression::Zstd);
    CHECK(module_compression("/m/virtio.xz") == Compression::None);
}

TEST_CASE("init: wait statuses read as sentences")
{
    CHECK(describe_wait_status(3 << 8) == "exited with status 3");
    CHECK(describe_wait_status(0) == "exited with status 0");
    CHECK(describe_wait_status(SIGKILL) == "was killed by signal 9 (SIGKILL)");
    CHECK(describe_wait_status(SIGSEGV | 0x80) == "was killed by signal 11 (SIGSEGV), core dumped");
}
