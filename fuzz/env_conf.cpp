// libFuzzer target: qt-enclave-env.conf (QingTian's `key:value` pool file,
// qt(1) "qt env") and the CPU range lists it carries, on arbitrary text.
// Properties checked beyond "no crash, no hang, no leak": an accepted
// configuration keeps every field in its documented range (env.hpp: one of
// cpu_count and cpu_list, the list ascending without duplicates or CPU 0, the
// hugepage size 2 or 1024 MiB); a CPU list that parses prints back to text
// that parses to the same list and prints identically.
#include "support.hpp"

#include <qtbox/enclave/env.hpp>

#include <algorithm>
#include <cstdint>
#include <string_view>

using qtbox::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    using namespace qtbox;
    std::string_view text(reinterpret_cast<char const*>(data), size);

    if (auto cpus = enclave::parse_cpu_ranges(text); !cpus.is_error()) {
        auto printed = enclave::format_cpu_ranges(cpus.value());
        auto again = enclave::parse_cpu_ranges(printed);
        require(!again.is_error() && again.value() == cpus.value());
        require(enclave::format_cpu_ranges(again.value()) == printed);
    }

    auto parsed = enclave::parse_env_config(text, "qt-enclave-env.conf");
    if (parsed.is_error())
        return 0;
    auto const& config = parsed.value();
    require(config.hugepage_size_mib == 2 || config.hugepage_size_mib == 1024);
    require(config.memory_mib <= enclave::MAX_POOL_MEMORY_MIB);
    require((config.cpu_count > 0) != !config.cpu_list.empty());
    require(std::is_sorted(config.cpu_list.begin(), config.cpu_list.end()));
    require(std::adjacent_find(config.cpu_list.begin(), config.cpu_list.end()) == config.cpu_list.end());
    for (unsigned cpu : config.cpu_list)
        require(cpu != 0 && cpu <= enclave::MAX_CPU_ID);
    require(config.max_enclaves >= 1 && config.max_enclaves <= enclave::MAX_MAX_ENCLAVES);
    return 0;
}
