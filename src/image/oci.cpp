// OCI image layout (image-spec image-layout.md): `oci-layout`, `index.json`,
// `blobs/sha256/<hex>`. The image is picked by the
// org.opencontainers.image.ref.name annotation; nested indexes (multi-platform
// images) are followed to a linux/amd64 manifest. Every blob is checked
// against its descriptor's size and digest; layers also against the config's
// diff_ids.
#include <qtbox/image/image.hpp>

#include "json_util.hpp"

#include <fmt/format.h>

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

// Collects the image manifests reachable from an index, giving nested
// entries their parent's ref name when they have none.
ErrorOr<void> collect_manifests(Layout const& layout, nlohmann::json const& index, std::string const& inherited_name, int depth,
    std::vector<Descriptor>& out)
{
    if (depth > MAX_INDEX_DEPTH)
        return Error::from_code(ImageError::LimitExceeded, "image indexes nest too deeply");
    auto manifests = index.find("manifests");
    if (manifests == index.end() || !manifests->is_array())
        return Error::from_code(ImageError::Malformed, "image index has no \"manifests\" array");
    for (auto const& value : *manifests) {
        if (out.size() >= MAX_INDEX_ENTRIES)
            return Error::from_code(ImageError::LimitExceeded, "image index lists too many manifests");
        auto descriptor = TRY(parse_descriptor(value, "index.json"));
        if (descriptor.ref_name.empty())
            descriptor.ref_name = inherited_name;
        if (descriptor.media_type == OCI_INDEX || descriptor.media_type == DOCKER_LIST) {
            auto nested = TRY(layout.json_blob(descriptor, "image index"));
            TRY(collect_manifests(layout, nested, descriptor.ref_name, depth + 1, out));
            continue;
        }
        if (descriptor.media_type == OCI_MANIFEST || descriptor.media_type == DOCKER_MANIFEST || descriptor.media_type.empty())
            out.push_back(std::move(descriptor));
        // Other artifacts (attestations, signatures) are not images.
    }
    return {};
}

} // namespace

ErrorOr<ImageInfo> load_oci_layout(std::string const& directory, std::optional<std::string> const& tag, FileTree& tree, std::string const& mount)
{
    Layout layout(directory);
    TRY(layout.check_marker());
    auto index_source = ByteSource::open_file(directory + "/index.json");
    if (index_source.is_error())
        return Error::from_code(ImageError::NotFound, fmt::format("{}: no index.json", directory));
    auto index_text = TRY(detail::read_json_text(index_source.value(), "index.json"));
    auto index = TRY(detail::parse_json_object(index_text, "index.json"));

    std::vector<Descriptor> manifests;
    TRY(collect_manifests(layout, index, "", 0, manifests));
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
