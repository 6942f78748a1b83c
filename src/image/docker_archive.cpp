// `docker save` output. manifest.json is an array of
//   {"Config": "<member>", "RepoTags": ["name:tag", ...], "Layers": ["<member>", ...]}
// with members either "<id>/layer.tar" + "<hex>.json" (classic) or
// "blobs/sha256/<hex>" (Docker 25 and later). The config's rootfs.diff_ids
// are the SHA-256 of each uncompressed layer; a member named by its digest is
// checked against that too. Classic archives store a layer that repeats an
// earlier one as a symbolic link to it; those links are followed inside the
// archive only.
#include <qtbox/image/image.hpp>
#include <qtbox/image/tar.hpp>

#include "json_util.hpp"

#include <fmt/format.h>

#include <map>

namespace qtbox::image {

namespace {

constexpr int MAX_MEMBER_LINK_HOPS = 8;

struct Member {
    TarEntry::Type type;
    std::uint64_t offset;
    std::uint64_t size;
    std::string link_target;
};

class Archive {
public:
    static ErrorOr<Archive> open(std::string const& path, std::uint64_t& budget)
    {
        Archive archive;
        auto raw = TRY(ByteSource::open_file(path));
        auto compression = TRY(sniff_compression(raw));
        if (compression == Compression::Gzip) {
            auto opened = TRY(open_layer(raw, budget));
            archive.m_data = std::move(opened.content);
        } else if (compression != Compression::None) {
            return Error::from_code(ImageError::Unsupported, "only uncompressed or gzip-compressed docker-archives are supported");
        } else {
            archive.m_data = std::move(raw);
        }
        TarReader reader(archive.m_data);
        while (auto entry = TRY(reader.next())) {
            auto name = TRY(normalize_path(entry->path));
            if (archive.m_members.size() >= MAX_TREE_ENTRIES)
                return Error::from_code(ImageError::LimitExceeded, "the archive has too many members");
            archive.m_members[name] = Member { entry->type, entry->data_offset, entry->size, entry->link_target };
        }
        return archive;
    }

    // The contents of a regular member, following symbolic links within the archive.
    ErrorOr<ByteSource> member(std::string const& raw_name, std::string_view what) const
    {
        auto name = TRY(normalize_path(raw_name));
        for (int hop = 0; hop <= MAX_MEMBER_LINK_HOPS; ++hop) {
            auto it = m_members.find(name);
            if (it == m_members.end())
                return Error::from_code(ImageError::NotFound, fmt::format("{}: '{}' is not in the archive", what, raw_name));
            auto const& member = it->second;
            if (member.type == TarEntry::Type::Regular)
                return m_data.slice(member.offset, member.size);
            if (member.type != TarEntry::Type::Symlink && member.type != TarEntry::Type::HardLink)
                return Error::from_code(ImageError::Malformed, fmt::format("{}: '{}' is not a file", what, raw_name));
            std::string base;
            if (member.type == TarEntry::Type::Symlink && !member.link_target.starts_with("/")) {
                auto slash = name.rfind('/');
                base = slash == std::string::npos ? "" : name.substr(0, slash + 1);
            }
            name = TRY(normalize_path(base + member.link_target));
        }
        return Error::from_code(ImageError::Malformed, fmt::format("{}: too many links from '{}'", what, raw_name));
    }

private:
    ByteSource m_data;
    std::map<std::string, Member> m_members;
};

// "<64 hex>.json" (classic config), "blobs/sha256/<64 hex>" (OCI-style), or
// "<64 hex>/layer.tar" (classic layer, whose directory is NOT the content
// digest but a v1 id): the digest a member name promises, if any.
std::optional<std::string> digest_in_name(std::string const& name)
{
    auto is_hex64 = [](std::string_view text) {
        if (text.size() != 64)
            return false;
        for (char c : text) {
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                return false;
        }
        return true;
    };
    std::string_view view = name;
    if (view.starts_with("blobs/sha256/") && is_hex64(view.substr(13)))
        return std::string(view.substr(13));
    if (view.size() == 69 && view.ends_with(".json") && is_hex64(view.substr(0, 64)))
        return std::string(view.substr(0, 64));
    return std::nullopt;
}

bool tag_matches(std::string const& repo_tag, std::string const& wanted)
{
    if (repo_tag == wanted)
        return true;
    // "name" means "name:latest", as docker does; a tag is what follows the
    // last ':' that comes after the last '/'.
    auto slash = wanted.rfind('/');
    auto colon = wanted.rfind(':');
    bool has_tag = colon != std::string::npos && (slash == std::string::npos || colon > slash);
    return !has_tag && repo_tag == wanted + ":latest";
}

} // namespace

ErrorOr<ImageInfo> load_docker_archive(std::string const& path, std::optional<std::string> const& tag, FileTree& tree, std::string const& mount)
{
    std::uint64_t budget = MAX_UNPACKED_BYTES;
    auto archive = TRY(Archive::open(path, budget));
    auto manifest_source = TRY(archive.member("manifest.json", "docker-archive"));
    auto manifest_text = TRY(detail::read_json_text(manifest_source, "manifest.json"));
    auto manifest = nlohmann::json::parse(manifest_text, nullptr, false);
    if (manifest.is_discarded() || !manifest.is_array())
        return Error::from_code(ImageError::Malformed, "manifest.json is not a JSON array (not a docker-archive?)");
    if (manifest.empty())
        return Error::from_code(ImageError::Malformed, "manifest.json lists no image");

    nlohmann::json const* chosen = nullptr;
    std::vector<std::string> all_tags;
    std::string chosen_tag;
    for (auto const& entry : manifest) {
        if (!entry.is_object())
            return Error::from_code(ImageError::Malformed, "manifest.json: an entry is not an object");
        auto tags = TRY(detail::get_string_array(entry, "RepoTags", "manifest.json")).value_or(std::vector<std::string> {});
        for (auto const& repo_tag : tags) {
            all_tags.push_back(repo_tag);
            if (tag && !chosen && tag_matches(repo_tag, *tag)) {
                chosen = &entry;
                chosen_tag = repo_tag;
            }
        }
    }
    auto tag_list = all_tags.empty() ? std::string("none") : fmt::format("{}", fmt::join(all_tags, ", "));
    if (tag && !chosen)
        return Error::from_code(ImageError::NotFound, fmt::format("tag '{}' is not in {} (tags: {})", *tag, path, tag_list));
    if (!tag) {
        if (manifest.size() != 1)
            return Error::from_code(ImageError::NotFound,
                fmt::format("{} holds {} images; pick one with {}:TAG (tags: {})", path, manifest.size(), path, tag_list));
        chosen = &manifest[0];
        auto tags = TRY(detail::get_string_array(*chosen, "RepoTags", "manifest.json")).value_or(std::vector<std::string> {});
        if (!tags.empty())
            chosen_tag = tags.front();
    }

    auto config_name = TRY(detail::get_string(*chosen, "Config", "manifest.json"));
    if (!config_name)
        return Error::from_code(ImageError::Malformed, "manifest.json: the image has no \"Config\"");
    auto config_source = TRY(archive.member(*config_name, "image config"));
    auto config_text = TRY(detail::read_json_text(config_source, "image config"));
    auto config_digest = crypto::sha256(as_bytes(config_text));
    if (auto expected = digest_in_name(TRY(normalize_path(*config_name))))
        TRY(detail::check_digest(fmt::format("image config {}", *config_name), *expected, config_digest));
    auto config = TRY(parse_image_config(config_text));
    auto config_document = TRY(detail::parse_json_object(config_text, "image config"));

    auto layers = TRY(detail::get_string_array(*chosen, "Layers", "manifest.json")).value_or(std::vector<std::string> {});
    if (layers.size() > MAX_LAYERS)
        return Error::from_code(ImageError::LimitExceeded, fmt::format("the image has {} layers (limit {})", layers.size(), MAX_LAYERS));
    std::vector<std::string> diff_ids;
    if (auto rootfs = config_document.find("rootfs"); rootfs != config_document.end() && rootfs->is_object())
        diff_ids = TRY(detail::get_string_array(*rootfs, "diff_ids", "image config rootfs")).value_or(std::vector<std::string> {});
    if (diff_ids.size() != layers.size())
        return Error::from_code(ImageError::Malformed,
            fmt::format("the manifest lists {} layers but the config has {} diff_ids", layers.size(), diff_ids.size()));

    for (std::size_t i = 0; i < layers.size(); ++i) {
        auto what = fmt::format("layer {} ({})", i + 1, layers[i]);
        auto expected_content = TRY(detail::digest_hex(diff_ids[i], what));
        auto stored = TRY(archive.member(layers[i], what));
        // A member named by its digest is verified before it is inflated or
        // parsed; the diff_id below covers the uncompressed tar either way.
        if (auto expected_blob = digest_in_name(TRY(normalize_path(layers[i])))) {
            auto stored_digest = TRY(sha256_of(stored));
            TRY(detail::check_digest(what, *expected_blob, stored_digest));
        }
        auto opened = open_layer(stored, budget);
        if (opened.is_error())
            return opened.release_error().context(what);
        TRY(detail::check_digest(what, expected_content, opened.value().content_digest));
        auto applied = apply_layer(tree, mount, opened.value().content);
        if (applied.is_error())
            return applied.release_error().context(what);
    }

    ImageInfo info;
    info.config = std::move(config);
    info.version = hex_encode(config_digest);
    if (!chosen_tag.empty()) {
        auto slash = chosen_tag.rfind('/');
        auto colon = chosen_tag.rfind(':');
        info.name = (colon != std::string::npos && (slash == std::string::npos || colon > slash)) ? chosen_tag.substr(0, colon) : chosen_tag;
    } else {
        auto slash = path.rfind('/');
        info.name = slash == std::string::npos ? path : path.substr(slash + 1);
    }
    return info;
}

} // namespace qtbox::image
