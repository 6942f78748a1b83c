#include <qtbox/image/image.hpp>

#include "json_util.hpp"

#include <fmt/format.h>

#include <sys/stat.h>

namespace qtbox::image {

ErrorOr<ImageConfig> parse_image_config(std::string_view json)
{
    auto document = TRY(detail::parse_json_object(json, "image config"));
    ImageConfig config;
    config.architecture = TRY(detail::get_string(document, "architecture", "image config")).value_or("");
    config.os = TRY(detail::get_string(document, "os", "image config")).value_or("");
    auto it = document.find("config");
    if (it == document.end() || it->is_null())
        return config;
    if (!it->is_object())
        return Error::from_code(ImageError::Malformed, "image config: \"config\" is not an object");
    auto const& section = *it;
    config.entrypoint = TRY(detail::get_string_array(section, "Entrypoint", "image config"));
    config.cmd = TRY(detail::get_string_array(section, "Cmd", "image config"));
    config.env = TRY(detail::get_string_array(section, "Env", "image config")).value_or(std::vector<std::string> {});
    config.working_dir = TRY(detail::get_string(section, "WorkingDir", "image config")).value_or("");
    config.user = TRY(detail::get_string(section, "User", "image config")).value_or("");
    return config;
}

ErrorOr<ImageReference> split_image_reference(std::string const& argument, bool want_directory)
{
    auto is_kind = [&](std::string const& path) {
        struct stat st { };
        if (::stat(path.c_str(), &st) < 0)
            return false;
        return want_directory ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
    };
    if (is_kind(argument))
        return ImageReference { argument, std::nullopt };
    std::size_t colon = 0;
    while ((colon = argument.find(':', colon)) != std::string::npos) {
        auto path = argument.substr(0, colon);
        auto tag = argument.substr(colon + 1);
        if (!path.empty() && !tag.empty() && is_kind(path))
            return ImageReference { path, tag };
        ++colon;
    }
    return Error::from_code(ImageError::NotFound,
        fmt::format("{}: no such {}", argument, want_directory ? "directory" : "file"));
}

} // namespace qtbox::image
