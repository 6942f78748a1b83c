// The pure half of init (see init.hpp): the module list and module file
// names. /cmd, /env and /workdir are eif's format (app_config.cpp).
#include <qtbox/init/init.hpp>

#include <fmt/format.h>

namespace qtbox::init {

ErrorOr<std::vector<std::string>> parse_module_list(std::string_view text)
{
    auto paths = TRY(eif::parse_lines(text, eif::MODULE_LIST_PATH, true));
    for (auto const& path : paths) {
        if (path.front() != '/')
            return Error::from_code(eif::AppConfigError::Malformed,
                fmt::format("{}: '{}' is not an absolute path", eif::MODULE_LIST_PATH, path));
    }
    return paths;
}

Compression module_compression(std::string_view path)
{
    if (path.ends_with(".ko.gz"))
        return Compression::Gzip;
    if (path.ends_with(".ko.xz"))
        return Compression::Xz;
    if (path.ends_with(".ko.zst"))
        return Compression::Zstd;
    return Compression::None;
}

} // namespace qtbox::init
