// Replays inputs through a libFuzzer entry point without libFuzzer, so the
// normal (gcc) build runs every seed and every regression input as a unit
// test: a crash the fuzzer once found stays fixed. Arguments are files or
// directories (their regular files, sorted); a missing directory is skipped.
#include <qtbox/base/sys.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size);

namespace {

// Larger than any seed or regression input the project keeps.
constexpr std::size_t MAX_REPLAY_INPUT = 4 * 1024 * 1024;

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::string> paths;
    for (int i = 1; i < argc; ++i) {
        std::filesystem::path path(argv[i]);
        std::error_code error;
        if (std::filesystem::is_directory(path, error)) {
            for (auto const& entry : std::filesystem::directory_iterator(path)) {
                if (entry.is_regular_file())
                    paths.push_back(entry.path().string());
            }
        } else if (std::filesystem::exists(path, error)) {
            paths.push_back(path.string());
        }
    }
    std::sort(paths.begin(), paths.end());
    for (auto const& path : paths) {
        auto bytes = qtbox::sys::read_file(path, MAX_REPLAY_INPUT);
        if (bytes.is_error()) {
            fmt::print(stderr, "replay: {}\n", bytes.error().message());
            return 1;
        }
        fmt::print("replay: {} ({} bytes)\n", path, bytes.value().size());
        LLVMFuzzerTestOneInput(bytes.value().data(), bytes.value().size());
    }
    fmt::print("replay: {} inputs, no crash\n", paths.size());
    return paths.empty() ? 1 : 0;
}
