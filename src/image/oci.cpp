// OCI image layout (image-spec image-layout.md): `oci-layout`, `index.json`,
// `blobs/sha256/<hex>`. The image is picked by the
// org.opencontainers.image.ref.name annotation; nested indexes (multi-platform
// images) are followed to a linux/amd64 manifest. Every blob is checked
// against its descriptor's size and digest; layers also against the config's
// diff_ids.
#include <qtbox/image/image.hpp>

#include "json_util.hpp"
#include "oci_index.hpp"

#include <fmt/format.h>

#include <map>
#include <set>
#include <tuple>

namespace qtbox::image {

namespace {

constexpr char const* REF_NAME = "org.opencontainers.image.ref.name";
constexpr int MAX_INDEX_DEPTH = 4;
constexpr std::size_t MAX_INDEX_ENTRIES = 4096;

constexpr std::string_view OCI_INDEX = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";

struct Descriptor {
    std::string media_type;
    std::string hex;   // validated sha256 hex
    std::uint64_t size { 0 };
    std::string ref_name;
    std::string architecture;
    std::string os;
};

class Layout {
public:
    explicit Layout(std::string directory) : m_directory(std::move(directory)) { }

    ErrorOr<void> check_marker() const
    {
        auto marker = ByteSource::open_file(m_directory + "/oci-layout");
        if (marker.is_error())
            return Error::from_code(ImageError::NotFound, fmt::format("{} is not an OCI image layout (no oci-layout file)", m_directory));
        auto text = TRY(detail::read_json_text(marker.value(), "oci-layout"));
        auto document = TRY(detail::parse_json_object(text, "oci-layout"));
        auto version = TRY(detail::get_string(document, "imageLayoutVersion", "oci-layout"));
        if (!version || *version != "1.0.0")
            return Error::from_code(ImageError::Unsupported, fmt::format("{}: unsupported imageLayoutVersion", m_directory));
        return {};
    }

    ErrorOr<ByteSource> blob(Descriptor const& descriptor, std::string_view what) const
    {
        auto path = fmt::format("{}/blobs/sha256/{}", m_directory, descriptor.hex);
        auto source = ByteSource::open_file(path);
        if (source.is_error())
            return Error::from_code(ImageError::NotFound, fmt::format("{}: blob sha256:{} is missing: {}", what, descriptor.hex, source.error().message()));
        if (source.value().size() != descriptor.size)
            return Error::from_code(ImageError::DigestMismatch,
                fmt::format("{}: blob sha256:{} is {} bytes, the descriptor says {}", what, descriptor.hex, source.value().size(), descriptor.size));
        return source;
    }

    // A JSON blob, verified before it is parsed.
    ErrorOr<nlohmann::json> json_blob(Descriptor const& descriptor, std::string_view what) const
    {
        auto source = TRY(blob(descriptor, what));
        auto text = TRY(detail::read_json_text(source, what));
        TRY(detail::check_digest(what, descriptor.hex, crypto::sha256(as_bytes(text))));
        return detail::parse_json_object(text, what);
    }

    std::string const& directory() const { return m_directory; }

private:
    std::string m_directory;
};

ErrorOr<Descriptor> parse_descriptor(nlohmann::json const& value, std::string_view what)
{
    if (!value.is_object())
        return Error::from_code(ImageError::Malformed, fmt::format("{}: descriptor is not an object", what));
    Descriptor descriptor;
    descriptor.media_type = TRY(detail::get_string(value, "mediaType", what)).value_or("");
    auto digest = TRY(detail::get_string(value, "digest", what));
    if (!digest)
        return Error::from_code(ImageError::Malformed, fmt::format("{}: descriptor without a digest", what));
    descriptor.hex = TRY(detail::digest_hex(*digest, what));
    auto size = value.find("size");
    if (size == value.end() || !size->is_number_unsigned())
        return Error::from_code(ImageError::Malformed, fmt::format("{}: descriptor without a valid size", what));
    descriptor.size = size->get<std::uint64_t>();
    if (auto annotations = value.find("annotations"); annotations != value.end() && annotations->is_object())
        descriptor.ref_name = TRY(detail::get_string(*annotations, REF_NAME, what)).value_or("");
    if (auto platform = value.find("platform"); platform != value.end() && platform->is_object()) {
        descriptor.architecture = TRY(detail::get_string(*platform, "architecture", what)).value_or("");
        descriptor.os = TRY(detail::get_string(*platform, "os", what)).value_or("");
    }
    return descriptor;
}

// Collects the image manifests reachable from index.json, giving nested
// entries their parent's ref name when they have none. The walk is bounded
// by the work it does, not only by what it finds: every descriptor read
// counts against MAX_INDEX_DESCRIPTORS, and each nested index blob is read,
// hashed and parsed once, however many descriptors name it (a tree of
// indexes that name one another many times over is small on disk and
// would otherwise be walked once per path through it).
class IndexWalker {
public:
    explicit IndexWalker(Layout const& layout) : m_layout(layout) { }

    ErrorOr<std::vector<Descriptor>> walk(nlohmann::json const& index) { return expand(index, 0); }

    detail::OciIndexWalk counts(std::size_t manifests) const { return { m_descriptors_visited, m_index_blobs_read, manifests }; }

private:
    // The manifests below one index, each with its own ref name or, when it
    // has none, the name of the nearest nested index descriptor that has
    // one; names still empty are filled in by the caller.
    ErrorOr<std::vector<Descriptor>> expand(nlohmann::json const& index, int depth)
    {
        if (depth > MAX_INDEX_DEPTH)
            return Error::from_code(ImageError::LimitExceeded, "image indexes nest too deeply");
        auto manifests = index.find("manifests");
        if (manifests == index.end() || !manifests->is_array())
            return Error::from_code(ImageError::Malformed, "image index has no \"manifests\" array");
        Collected out;
        std::set<std::pair<std::string, std::string>> nested_merged;
        for (auto const& value : *manifests) {
            if (++m_descriptors_visited > MAX_INDEX_DESCRIPTORS)
                return Error::from_code(ImageError::LimitExceeded,
                    fmt::format("the image's indexes hold more than {} descriptors in all", MAX_INDEX_DESCRIPTORS));
            auto descriptor = TRY(parse_descriptor(value, "index.json"));
            if (descriptor.media_type == OCI_INDEX || descriptor.media_type == DOCKER_LIST) {
                auto const* nested = TRY(nested_index(descriptor, depth + 1));
                // The same index under the same name adds nothing new.
                if (!nested_merged.emplace(descriptor.hex, descriptor.ref_name).second)
                    continue;
                for (auto child : *nested) {
                    if (child.ref_name.empty())
                        child.ref_name = descriptor.ref_name;
                    TRY(out.add(std::move(child)));
                }
                continue;
            }
            if (descriptor.media_type == OCI_MANIFEST || descriptor.media_type == DOCKER_MANIFEST || descriptor.media_type.empty())
                TRY(out.add(std::move(descriptor)));
            // Other artifacts (attestations, signatures) are not images.
        }
        return std::move(out.list);
    }

    // Distinct manifests, in the order first found: a descriptor listed twice
    // (same digest, name and platform) is one image, not two.
    struct Collected {
        std::vector<Descriptor> list;
        std::set<std::tuple<std::string, std::string, std::string, std::string, std::string>> seen;

        ErrorOr<void> add(Descriptor descriptor)
        {
            if (!seen.emplace(descriptor.hex, descriptor.ref_name, descriptor.architecture, descriptor.os, descriptor.media_type).second)
                return {};
            if (list.size() >= MAX_INDEX_ENTRIES)
                return Error::from_code(ImageError::LimitExceeded, "image index lists too many manifests");
            list.push_back(std::move(descriptor));
            return {};
        }
    };

    ErrorOr<std::vector<Descriptor> const*> nested_index(Descriptor const& descriptor, int depth)
    {
        if (auto it = m_expanded.find(descriptor.hex); it != m_expanded.end())
            return &it->second;
        ++m_index_blobs_read;
        auto nested = TRY(m_layout.json_blob(descriptor, "image index"));
        auto found = TRY(expand(nested, depth));
        return &m_expanded.emplace(descriptor.hex, std::move(found)).first->second;
    }

    Layout const& m_layout;
    // Nested indexes already read, by digest: blobs are content-addressed,
    // so one digest always expands to the same manifests.
    std::map<std::string, std::vector<Descriptor>> m_expanded;
    std::size_t m_descriptors_visited { 0 };
    std::size_t m_index_blobs_read { 0 };
};

ErrorOr<nlohmann::json> read_top_index(std::string const& directory)
{
    auto index_source = ByteSource::open_file(directory + "/index.json");
    if (index_source.is_error())
        return Error::from_code(ImageError::NotFound, fmt::format("{}: no index.json", directory));
    auto index_text = TRY(detail::read_json_text(index_source.value(), "index.json"));
    return detail::parse_json_object(index_text, "index.json");
}

} // namespace

ErrorOr<detail::OciIndexWalk> detail::walk_oci_indexes(std::string const& directory)
{
    Layout layout(directory);
    TRY(layout.check_marker());
    auto index = TRY(read_top_index(directory));
    IndexWalker walker(layout);
    auto manifests = TRY(walker.walk(index));
    return walker.counts(manifests.size());
}

ErrorOr<ImageInfo> load_oci_layout(std::string const& directory, std::optional<std::string> const& tag, FileTree& tree, std::string const& mount)
{
    Layout layout(directory);
    TRY(layout.check_marker());
    auto index = TRY(read_top_index(directory));
    IndexWalker walker(layout);
    auto manifests = TRY(walker.walk(index));
    std::vector<std::string> tags;
    for (auto const& descriptor : manifests) {
        if (!descriptor.ref_name.empty() && std::find(tags.begin(), tags.end(), descriptor.ref_name) == tags.end())
            tags.push_back(descriptor.ref_name);
    }
    auto tag_list = tags.empty() ? std::string("none") : fmt::format("{}", fmt::join(tags, ", "));

    std::vector<Descriptor const*> candidates;
    for (auto const& descriptor : manifests) {
        if (!tag || descriptor.ref_name == *tag)
            candidates.push_back(&descriptor);
    }
    if (tag && candidates.empty())
        return Error::from_code(ImageError::NotFound, fmt::format("tag '{}' is not in {} (tags: {})", *tag, directory, tag_list));
    if (candidates.empty())
        return Error::from_code(ImageError::NotFound, fmt::format("{} holds no image manifest", directory));
    if (candidates.size() > 1) {
        // A multi-platform image: the enclave is x86_64 Linux.
        std::vector<Descriptor const*> amd64;
        for (auto const* descriptor : candidates) {
            if (descriptor->architecture == "amd64" && (descriptor->os.empty() || descriptor->os == "linux"))
                amd64.push_back(descriptor);
        }
        if (amd64.size() != 1) {
            if (!tag)
                return Error::from_code(ImageError::NotFound,
                    fmt::format("{} holds {} images; pick one with {}:TAG (tags: {})", directory, candidates.size(), directory, tag_list));
            return Error::from_code(ImageError::NotFound, fmt::format("tag '{}' in {} names {} images and not exactly one linux/amd64 image", *tag, directory, candidates.size()));
        }
        candidates = amd64;
    }
    auto const& chosen = *candidates.front();

    auto manifest = TRY(layout.json_blob(chosen, "image manifest"));
    auto config_value = manifest.find("config");
    if (config_value == manifest.end())
        return Error::from_code(ImageError::Malformed, "image manifest has no config");
    auto config_descriptor = TRY(parse_descriptor(*config_value, "image manifest config"));
    auto config_source = TRY(layout.blob(config_descriptor, "image config"));
    auto config_text = TRY(detail::read_json_text(config_source, "image config"));
    TRY(detail::check_digest("image config", config_descriptor.hex, crypto::sha256(as_bytes(config_text))));
    auto config = TRY(parse_image_config(config_text));
    auto config_document = TRY(detail::parse_json_object(config_text, "image config"));

    auto layers_value = manifest.find("layers");
    if (layers_value == manifest.end() || !layers_value->is_array())
        return Error::from_code(ImageError::Malformed, "image manifest has no \"layers\" array");
    if (layers_value->size() > MAX_LAYERS)
        return Error::from_code(ImageError::LimitExceeded, fmt::format("the image has {} layers (limit {})", layers_value->size(), MAX_LAYERS));
    std::vector<std::string> diff_ids;
    if (auto rootfs = config_document.find("rootfs"); rootfs != config_document.end() && rootfs->is_object())
        diff_ids = TRY(detail::get_string_array(*rootfs, "diff_ids", "image config rootfs")).value_or(std::vector<std::string> {});
    if (diff_ids.size() != layers_value->size())
        return Error::from_code(ImageError::Malformed,
            fmt::format("the manifest lists {} layers but the config has {} diff_ids", layers_value->size(), diff_ids.size()));

    std::uint64_t budget = MAX_UNPACKED_BYTES;
    for (std::size_t i = 0; i < layers_value->size(); ++i) {
        auto layer = TRY(parse_descriptor((*layers_value)[i], "image manifest layer"));
        auto what = fmt::format("layer {} (sha256:{})", i + 1, layer.hex);
        auto expected_content = TRY(detail::digest_hex(diff_ids[i], what));
        auto stored = TRY(layout.blob(layer, what));
        // Verified before a byte of it is inflated or parsed.
        auto stored_digest = TRY(sha256_of(stored));
        TRY(detail::check_digest(what, layer.hex, stored_digest));
        auto opened = open_layer(stored, budget);
        if (opened.is_error())
            return opened.release_error().context(what);
        TRY(detail::check_digest(fmt::format("{} uncompressed", what), expected_content, opened.value().content_digest));
        auto applied = apply_layer(tree, mount, opened.value().content);
        if (applied.is_error())
            return applied.release_error().context(what);
    }

    ImageInfo info;
    info.config = std::move(config);
    info.version = config_descriptor.hex;
    if (!chosen.ref_name.empty()) {
        info.name = chosen.ref_name;
    } else {
        auto trimmed = directory;
        while (trimmed.size() > 1 && trimmed.back() == '/')
            trimmed.pop_back();
        auto slash = trimmed.rfind('/');
        info.name = slash == std::string::npos ? trimmed : trimmed.substr(slash + 1);
    }
    return info;
}

} // namespace qtbox::image
