#include <qtbox/enclave/env.hpp>
#include <qtbox/enclave/errors.hpp>

#include "../support/must.hpp"
#include "../support/temp_dir.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <map>

using namespace qtbox;
using namespace qtbox::enclave;
using qtbox::test::must;
using qtbox::test::read_text;
using qtbox::test::require_error;
using qtbox::test::TempDir;

namespace {

constexpr char const* HUGE_2M = "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
constexpr char const* HUGE_1G = "kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages";

EnvConfig parse(std::string_view text)
{
    return must(parse_env_config(text, "test.conf"));
}

// A sysfs tree: CPUs `online`, both page sizes with the given counts.
void fake_sysfs(TempDir const& dir, std::string_view online, int pages_2m = 0, int pages_1g = 0)
{
    dir.write("sys/devices/system/cpu/online", std::string(online) + "\n");
    dir.write(std::string("sys/") + HUGE_2M, fmt::format("{}\n", pages_2m));
    if (pages_1g >= 0)
        dir.write(std::string("sys/") + HUGE_1G, fmt::format("{}\n", pages_1g));
}

std::string attribute(TempDir const& dir, char const* relative)
{
    return read_text(dir / (std::string("sys/") + relative));
}

// A kernel that keeps at most `limit` pages of any size, whatever is asked.
struct FragmentedKernel {
    std::map<std::string, std::string> files;
    std::uint64_t limit { 0 };
    std::vector<std::string> writes;

    SysfsAccess access()
    {
        SysfsAccess sysfs;
        sysfs.read = [this](std::string const& relative) -> ErrorOr<std::string> {
            auto it = files.find(relative);
            if (it == files.end())
                return Error::from_errno(relative, ENOENT);
            return it->second;
        };
        sysfs.write = [this](std::string const& relative, std::string const& text) -> ErrorOr<void> {
            writes.push_back(relative + "=" + text);
            std::uint64_t asked = std::stoull(text);
            files[relative] = fmt::format("{}\n", std::min(asked, limit));
            return {};
        };
        return sysfs;
    }
};

} // namespace

TEST_CASE("env: QingTian's sample file (docs/PLATFORMS.md §Q2)")
{
    auto config = parse("#Configure the size of hugepages. The value can be 2 or 1024.\n"
                        "hugepage_size:1024 \n"
                        "# The value must be an integer multiple of the hugepage size.\n"
                        "memory_mib:1024 \n"
                        "cpu_count:2 \n"
                        "# cpu_list:2,3\n");
    CHECK(config.present);
    CHECK(config.path == "test.conf");
    CHECK(config.hugepage_size_mib == 1024);
    CHECK(config.memory_mib == 1024);
    CHECK(config.cpu_count == 2);
    CHECK(config.cpu_list.empty());
    CHECK(config.max_enclaves == DEFAULT_MAX_ENCLAVES);
}

TEST_CASE("env: cpu_list with ranges, blanks, CRLF and trailing comments; max_enclaves")
{
    auto config
        = parse("hugepage_size : 2\r\nmemory_mib:512   # half a GiB\r\n  cpu_list: 5 , 2-3\r\nmax_enclaves:4\r\n\r\n");
    CHECK(config.hugepage_size_mib == 2);
    CHECK(config.memory_mib == 512);
    CHECK(config.cpu_count == 0);
    CHECK(config.cpu_list == std::vector<unsigned> { 2, 3, 5 });
    CHECK(config.max_enclaves == 4);
}

TEST_CASE("env: cpu_count and cpu_list together are invalid (06), naming both lines")
{
    auto result = parse_env_config("hugepage_size:2\nmemory_mib:256\ncpu_count:2\n\ncpu_list:2,3\n", "/etc/x.conf");
    require_error(result, QtError::InvalidConfiguration);
    CHECK(result.error().message()
        == "/etc/x.conf:5: cpu_count (line 3) and cpu_list (line 5) exclude each other (hint: keep one)");
}

TEST_CASE("env: bad values are InvalidConfiguration (06) with the line")
{
    struct Case {
        char const* text;
        char const* message;
    };
    Case const cases[] = {
        { "hugepage_size:4\nmemory_mib:1024\ncpu_count:2\n",
            "test.conf:1: hugepage_size '4' must be 2 or 1024 (MiB: 2 MiB or 1 GiB pages)" },
        { "hugepage_size:1024\nmemory_mib:1536\ncpu_count:2\n",
            "test.conf:2: memory_mib 1536 is not a multiple of hugepage_size 1024 (line 1; hint: memory_mib:1024)" },
        { "hugepage_size:2\nmemory_mib:100\ncpu_count:2\n",
            "test.conf:2: memory_mib '100' must be a number of MiB from 128 to 1048576" },
        { "hugepage_size:2\nmemory_mib:-2\ncpu_count:2\n",
            "test.conf:2: memory_mib '-2' must be a number of MiB from 128 to 1048576" },
        { "hugepage_size:2\nmemory_mib:256\ncpu_list:0,1\n",
            "test.conf:3: cpu_list names CPU 0, which stays with the parent (hint: list other CPUs)" },
        { "hugepage_size:2\nmemory_mib:256\ncpu_list:2,2\n", "test.conf:3: cpu_list: CPU 2 is listed twice" },
        { "hugepage_size:2\nmemory_mib:256\ncpu_list:3-1\n",
            "test.conf:3: cpu_list: '3-1' is not a CPU id or a range of them (like 2,3 or 2-5)" },
        { "hugepage_size:2\nmemory_mib:256\ncpu_list:2048\n",
            "test.conf:3: cpu_list names CPU 2048; the highest id is 1023" },
        { "hugepage_size:2\nmemory_mib:256\ncpu_count:0\n",
            "test.conf:3: cpu_count '0' must be a number of CPUs from 1 to 1023" },
        { "hugepage_size:2\nmemory_mib:256\ncpu_count:2\nmax_enclaves:65\n",
            "test.conf:4: max_enclaves '65' must be from 1 to 64" },
        { "hugepage_size:2\nmemory_mib 256\n",
            "test.conf:2: 'memory_mib 256' is not a key:value line "
            "(hint: the keys are hugepage_size, memory_mib, cpu_count or cpu_list, and max_enclaves)" },
        { "hugepage_size:2\nmemory:256\n",
            "test.conf:2: unknown key 'memory' "
            "(hint: the keys are hugepage_size, memory_mib, cpu_count or cpu_list, and max_enclaves)" },
        { "hugepage_size:2\nhugepage_size:1024\n",
            "test.conf:2: hugepage_size is given twice (lines 1 and 2; hint: keep one)" },
    };
    for (auto const& c : cases) {
        CAPTURE(c.text);
        auto result = parse_env_config(c.text, "test.conf");
        require_error(result, QtError::InvalidConfiguration);
        CHECK(result.error().message() == c.message);
    }
}

TEST_CASE("env: missing values are MissingConfiguration (07)")
{
    struct Case {
        char const* text;
        char const* message;
    };
    Case const cases[] = {
        { "memory_mib:1024\ncpu_count:2\n",
            "test.conf: no hugepage_size line (hint: add 'hugepage_size:1024' for 1 GiB pages or 'hugepage_size:2' for "
            "2 MiB pages)" },
        { "hugepage_size:1024\ncpu_count:2\n",
            "test.conf: no memory_mib line (hint: add 'memory_mib:1024', a multiple of hugepage_size)" },
        { "hugepage_size:1024\nmemory_mib:1024\n# cpu_count:2\n",
            "test.conf: neither cpu_count nor cpu_list (hint: add 'cpu_count:2' or 'cpu_list:2,3')" },
        { "hugepage_size:1024\nmemory_mib:\ncpu_count:2\n",
            "test.conf:2: memory_mib has no value (hint: for instance 'memory_mib:1024')" },
        { "",
            "test.conf: no hugepage_size line (hint: add 'hugepage_size:1024' for 1 GiB pages or 'hugepage_size:2' for "
            "2 MiB pages)" },
    };
    for (auto const& c : cases) {
        CAPTURE(c.text);
        auto result = parse_env_config(c.text, "test.conf");
        require_error(result, QtError::MissingConfiguration);
        CHECK(result.error().message() == c.message);
    }
}

TEST_CASE("env: an absent file gives QingTian's defaults; QTBOX_ENV_CONF moves it (docs/FORMATS.md §1)")
{
    TempDir dir;
    auto config = must(load_env_config(dir / "absent.conf"));
    CHECK_FALSE(config.present);
    CHECK(config.path == dir / "absent.conf");
    CHECK(config.hugepage_size_mib == 1024);
    CHECK(config.memory_mib == 1024);
    CHECK(config.cpu_count == 2);
    CHECK(config.max_enclaves == 2);

    ::unsetenv(ENV_CONF_VARIABLE);
    CHECK(env_conf_path() == "/etc/qingtian/enclave/qt-enclave-env.conf");
    ::setenv(ENV_CONF_VARIABLE, "/tmp/q.conf", 1);
    CHECK(env_conf_path() == "/tmp/q.conf");
    ::unsetenv(ENV_CONF_VARIABLE);
    ::unsetenv(SYSFS_ROOT_VARIABLE);
    CHECK(sysfs_root() == "/sys");
    CHECK(pool_path("/run/qtbox") == "/run/qtbox/pool.json");

    // A directory where the file should be cannot be read: 03.
    require_error(load_env_config(dir.path()), QtError::FileOperation);
}

TEST_CASE("env: CPU lists in Linux's cpulist format")
{
    CHECK(must(parse_cpu_ranges("0-3,8")) == std::vector<unsigned> { 0, 1, 2, 3, 8 });
    CHECK(must(parse_cpu_ranges("7")) == std::vector<unsigned> { 7 });
    CHECK(parse_cpu_ranges("").is_error());
    CHECK(parse_cpu_ranges("1,,2").is_error());
    CHECK(parse_cpu_ranges("a").is_error());
    CHECK(parse_cpu_ranges("0-9000").is_error());
    CHECK(format_cpu_ranges({ 1, 2, 3, 5, 7, 8 }) == "1-3,5,7-8");
    CHECK(format_cpu_ranges({}) == "");
}

TEST_CASE("env: apply reserves the missing hugepages, picks the highest CPUs but 0, and is idempotent")
{
    TempDir dir;
    fake_sysfs(dir, "0-7", 0, 3);
    auto sysfs = sysfs_files(dir / "sys");
    auto run = dir / "run";
    auto config = parse("hugepage_size:1024\nmemory_mib:2048\ncpu_count:3\n");

    auto first = must(apply_pool(config, run, sysfs));
    CHECK(first.pool.applied);
    CHECK(first.pool.cpus == std::vector<unsigned> { 5, 6, 7 });
    CHECK(first.pool.cpu_count == 3);
    CHECK(first.pool.hugepages_reserved == 2);
    CHECK(first.hugepages_added == 2);
    CHECK(first.hugepages_total == 5);
    CHECK(attribute(dir, HUGE_1G) == "5\n");

    auto record = nlohmann::json::parse(read_text(pool_path(run)));
    CHECK(record["HugepageSizeMiB"] == 1024);
    CHECK(record["MemoryMiB"] == 2048);
    CHECK(record["CPUs"] == nlohmann::json { 5, 6, 7 });
    CHECK(record["HugepagesReserved"] == 2);

    // Twice: nothing more is reserved.
    auto second = must(apply_pool(config, run, sysfs));
    CHECK(second.hugepages_added == 0);
    CHECK(second.hugepages_total == 5);
    CHECK(attribute(dir, HUGE_1G) == "5\n");

    // Smaller: the difference goes back.
    auto smaller = must(apply_pool(parse("hugepage_size:1024\nmemory_mib:1024\ncpu_list:1-2\n"), run, sysfs));
    CHECK(smaller.hugepages_added == -1);
    CHECK(attribute(dir, HUGE_1G) == "4\n");
    CHECK(smaller.pool.cpus == std::vector<unsigned> { 1, 2 });

    // Another page size: the new pages, then the old ones given back.
    auto other = must(apply_pool(parse("hugepage_size:2\nmemory_mib:256\ncpu_count:1\n"), run, sysfs));
    CHECK(other.hugepages_added == 128);
    CHECK(attribute(dir, HUGE_2M) == "128\n");
    CHECK(attribute(dir, HUGE_1G) == "3\n");
    CHECK(other.pool.cpus == std::vector<unsigned> { 7 });

    auto recorded = must(read_applied_pool(run));
    REQUIRE(recorded.has_value());
    CHECK(recorded->applied);
    CHECK(recorded->hugepage_size_mib == 2);
    CHECK(recorded->memory_mib == 256);
    CHECK(recorded->hugepages_reserved == 128);
    CHECK(recorded->cpus == std::vector<unsigned> { 7 });
}

TEST_CASE("env: a kernel that gives fewer pages is AddMemory (09), undone, nothing recorded")
{
    TempDir dir;
    FragmentedKernel kernel;
    kernel.files["devices/system/cpu/online"] = "0-3\n";
    kernel.files[HUGE_2M] = "10\n";
    kernel.limit = 60;
    auto result = apply_pool(parse("hugepage_size:2\nmemory_mib:128\ncpu_count:2\n"), dir / "run", kernel.access());
    require_error(result, QtError::AddMemory);
    CHECK(result.error().message()
        == "asked the kernel for 64 more 2 MiB hugepages, it gave 50 (hint: memory is too fragmented; apply right "
           "after boot, "
           "as qt-enclave-env.service does, or lower memory_mib)");
    CHECK(kernel.files[HUGE_2M] == "10\n");
    CHECK(kernel.writes == std::vector<std::string> { std::string(HUGE_2M) + "=74\n", std::string(HUGE_2M) + "=10\n" });
    CHECK_FALSE(must(read_applied_pool(dir / "run")).has_value());
}

TEST_CASE("env: CPUs that are not there are AddCpu (11); a kernel without the page size is AddMemory (09)")
{
    TempDir dir;
    fake_sysfs(dir, "0-3", 0, -1);
    auto sysfs = sysfs_files(dir / "sys");
    auto offline = apply_pool(parse("hugepage_size:2\nmemory_mib:128\ncpu_list:2,4\n"), dir / "run", sysfs);
    require_error(offline, QtError::AddCpu);
    CHECK(offline.error().message()
        == "test.conf: cpu_list names CPU 4, which is not online (online: 0-3; hint: name online CPUs other than 0)");

    auto too_many = apply_pool(parse("hugepage_size:2\nmemory_mib:128\ncpu_count:4\n"), dir / "run", sysfs);
    require_error(too_many, QtError::AddCpu);
    CHECK(too_many.error().message()
        == "test.conf: cpu_count 4 but only 3 CPUs are online besides CPU 0 (online: 0-3; hint: lower cpu_count, CPU 0 "
           "stays with the parent)");

    auto no_gigantic = apply_pool(parse("hugepage_size:1024\nmemory_mib:1024\ncpu_count:1\n"), dir / "run", sysfs);
    require_error(no_gigantic, QtError::AddMemory);
    CHECK(no_gigantic.error().message().starts_with("this kernel offers no 1024 MiB hugepages: "));
    CHECK(no_gigantic.error().message().ends_with(
        "(hint: use hugepage_size:2, or a CPU and kernel with 1 GiB pages (pdpe1gb))"));
    CHECK(attribute(dir, HUGE_2M) == "0\n");
    CHECK_FALSE(must(read_applied_pool(dir / "run")).has_value());
}

TEST_CASE("env: current_pool is the applied pool, else the file's values unapplied")
{
    TempDir dir;
    auto run = dir / "run";
    ::setenv(ENV_CONF_VARIABLE, (dir / "absent.conf").c_str(), 1);
    auto defaults = must(current_pool(run));
    CHECK_FALSE(defaults.applied);
    CHECK(defaults.hugepage_size_mib == 1024);
    CHECK(defaults.memory_mib == 1024);
    CHECK(defaults.cpu_count == 2);
    CHECK(defaults.cpus.empty());
    CHECK(defaults.max_enclaves == 2);

    auto conf = dir.write("env.conf", "hugepage_size:2\nmemory_mib:512\ncpu_list:1,3\nmax_enclaves:3\n");
    ::setenv(ENV_CONF_VARIABLE, conf.c_str(), 1);
    auto unapplied = must(current_pool(run));
    CHECK_FALSE(unapplied.applied);
    CHECK(unapplied.memory_mib == 512);
    CHECK(unapplied.cpus == std::vector<unsigned> { 1, 3 });
    CHECK(unapplied.cpu_count == 2);
    CHECK(unapplied.max_enclaves == 3);
    CHECK(unapplied.hugepages_reserved == 0);

    fake_sysfs(dir, "0-3");
    must(apply_pool(must(load_env_config(conf)), run, sysfs_files(dir / "sys")));
    auto applied = must(current_pool(run));
    CHECK(applied.applied);
    CHECK(applied.hugepage_size_mib == 2);
    CHECK(applied.hugepages_reserved == 256);
    CHECK(applied.cpus == std::vector<unsigned> { 1, 3 });
    CHECK(applied.max_enclaves == 3);

    // A bad file is reported even with nothing applied.
    dir.write("env.conf", "hugepage_size:3\n");
    require_error(current_pool(dir / "other-run"), QtError::InvalidConfiguration);
    // A damaged record is a file problem (03), with a hint.
    dir.write("run/pool.json", "{\"HugepageSizeMiB\": 3}");
    auto damaged = current_pool(run);
    require_error(damaged, QtError::FileOperation);
    CHECK(damaged.error().message().ends_with(
        "(hint: remove it and run 'qt env apply'; the hugepages it recorded stay reserved)"));
    ::unsetenv(ENV_CONF_VARIABLE);
}
