// Container images as enclave root file systems: a docker-archive (the
// `docker save` tar: manifest.json, config, layer tars; both the classic
// layout and Docker 25's OCI-in-tar) or an OCI image layout directory
// (oci-layout, index.json -> manifest -> config + layers, tar or tar+gzip).
//
// Nothing here trusts the image: every JSON document is size-limited and
// type-checked, blob names are validated as `sha256:<64 hex>` before they
// become paths, every layer and blob is hashed and compared with its
// manifest digest and the config's diff_id BEFORE its headers are parsed,
// and layers are applied with tree.hpp's path rules.
#pragma once

#include <qtbox/image/tree.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qtbox::image {

// The parts of the OCI image config ("config" object) that decide how the
// enclave runs its application.
struct ImageConfig {
    std::optional<std::vector<std::string>> entrypoint;
    std::optional<std::vector<std::string>> cmd;
    std::vector<std::string> env;
    std::string working_dir;
    std::string user;
    std::string architecture;
    std::string os;
};

struct ImageInfo {
    ImageConfig config;
    std::string name;     // repository name or tag; see load_* for defaults
    std::string version;  // the image ID (config digest, hex) or the tag
};

// Parses an image config JSON document (OCI image-spec config.md).
ErrorOr<ImageConfig> parse_image_config(std::string_view json);

// `tag` picks one image: for a docker-archive, an entry of RepoTags
// ("name:tag", or "name" meaning "name:latest"); for an OCI layout, the
// org.opencontainers.image.ref.name annotation. Without a tag the input
// must hold exactly one image. Layers go under `mount` in `tree`.
// Gzip layers are inflated into anonymous temporary files in $TMPDIR.
ErrorOr<ImageInfo> load_docker_archive(std::string const& path, std::optional<std::string> const& tag, FileTree& tree, std::string const& mount);
ErrorOr<ImageInfo> load_oci_layout(std::string const& directory, std::optional<std::string> const& tag, FileTree& tree, std::string const& mount);

// Splits "PATH[:TAG]" where PATH exists on disk (a directory for OCI, a file
// for docker-archive): the shortest prefix before a ':' that names an
// existing object of that kind wins, so paths with colons still work.
struct ImageReference {
    std::string path;
    std::optional<std::string> tag;
};
ErrorOr<ImageReference> split_image_reference(std::string const& argument, bool want_directory);

} // namespace qtbox::image
