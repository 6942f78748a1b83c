#include "json_util.hpp"

#include <fmt/format.h>

namespace qtbox::image::detail {

ErrorOr<std::string> read_json_text(ByteSource const& source, std::string_view what)
{
    if (source.size() > MAX_JSON_SIZE)
        return Error::from_code(ImageError::LimitExceeded, fmt::format("{} is {} bytes (limit {})", what, source.size(), MAX_JSON_SIZE));
    std::string text(static_cast<std::size_t>(source.size()), '\0');
    TRY(source.read_at(0, std::span(reinterpret_cast<std::uint8_t*>(text.data()), text.size())));
    return text;
}

ErrorOr<nlohmann::json> parse_json_object(std::string_view text, std::string_view what)
{
    auto value = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
    if (value.is_discarded())
        return Error::from_code(ImageError::Malformed, fmt::format("{} is not valid JSON", what));
    if (!value.is_object())
        return Error::from_code(ImageError::Malformed, fmt::format("{} is not a JSON object", what));
    return value;
}

ErrorOr<std::optional<std::string>> get_string(nlohmann::json const& object, char const* key, std::string_view what)
{
    auto it = object.find(key);
    if (it == object.end() || it->is_null())
        return std::optional<std::string> {};
    if (!it->is_string())
        return Error::from_code(ImageError::Malformed, fmt::format("{}: \"{}\" is not a string", what, key));
    return std::optional<std::string>(it->get<std::string>());
}

ErrorOr<std::optional<std::vector<std::string>>> get_string_array(nlohmann::json const& object, char const* key, std::string_view what)
{
    auto it = object.find(key);
    if (it == object.end() || it->is_null())
        return std::optional<std::vector<std::string>> {};
    if (!it->is_array())
        return Error::from_code(ImageError::Malformed, fmt::format("{}: \"{}\" is not an array", what, key));
    std::vector<std::string> values;
    values.reserve(it->size());
    for (auto const& element : *it) {
        if (!element.is_string())
            return Error::from_code(ImageError::Malformed, fmt::format("{}: \"{}\" holds a non-string", what, key));
        values.push_back(element.get<std::string>());
    }
    return std::optional<std::vector<std::string>>(std::move(values));
}

ErrorOr<std::string> digest_hex(std::string_view digest, std::string_view what)
{
    constexpr std::string_view PREFIX = "sha256:";
    if (!digest.starts_with(PREFIX)) {
        auto colon = digest.find(':');
        if (colon != std::string_view::npos && colon < 16)
            return Error::from_code(ImageError::Unsupported,
                fmt::format("{}: digest algorithm '{}' is not supported (sha256 only)", what, digest.substr(0, colon)));
        return Error::from_code(ImageError::Malformed, fmt::format("{}: '{}' is not a digest", what, digest.substr(0, 80)));
    }
    auto hex = digest.substr(PREFIX.size());
    bool valid = hex.size() == 64;
    for (char c : hex)
        valid = valid && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!valid)
        return Error::from_code(ImageError::Malformed, fmt::format("{}: '{}' is not a sha256 digest (64 lowercase hex digits)", what, digest.substr(0, 80)));
    return std::string(hex);
}

ErrorOr<void> check_digest(std::string_view what, std::string_view expected_hex, crypto::Sha256Digest const& actual)
{
    auto actual_hex = hex_encode(actual);
    if (actual_hex != expected_hex)
        return Error::from_code(ImageError::DigestMismatch,
            fmt::format("{}: digest mismatch: expected sha256:{}, got sha256:{}", what, expected_hex, actual_hex));
    return {};
}

} // namespace qtbox::image::detail
