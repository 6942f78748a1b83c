// Private helpers shared by the docker-archive and OCI loaders.
#pragma once

#include <qtbox/image/source.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qtbox::image::detail {

// Parses without exceptions; refuses anything that is not a JSON object.
ErrorOr<nlohmann::json> parse_json_object(std::string_view text, std::string_view what);
ErrorOr<std::string> read_json_text(ByteSource const& source, std::string_view what);

// Optional typed members: absent or null give nullopt; a wrong type is an error.
ErrorOr<std::optional<std::string>> get_string(nlohmann::json const& object, char const* key, std::string_view what);
ErrorOr<std::optional<std::vector<std::string>>> get_string_array(nlohmann::json const& object, char const* key, std::string_view what);

// "sha256:<64 lowercase hex>" -> the hex part; anything else is refused, so
// a digest can safely become a file name.
ErrorOr<std::string> digest_hex(std::string_view digest, std::string_view what);
ErrorOr<void> check_digest(std::string_view what, std::string_view expected_hex, crypto::Sha256Digest const& actual);

} // namespace qtbox::image::detail
