// libFuzzer target: an OCI image layout's JSON (image-spec image-layout.md,
// image-index.md, manifest.md, config.md) through load_oci_layout, the path
// `eif-build --oci` takes. The input is three documents separated by the
// line "--8<--": index.json, the manifest blob and the config blob. The
// target writes them as a layout in a private directory, each blob under
// blobs/sha256/<its digest>, and replaces the placeholders @MANIFEST@ and
// @CONFIG@ (digests, "sha256:<hex>") and @MANIFEST_SIZE@ and @CONFIG_SIZE@
// (sizes) in the documents that name them, so that the fuzzer gets past the
// digest checks into the parsers. A layer blob, when a manifest names
// @LAYER@ and @LAYER_SIZE@, is an empty tar (two zero blocks).
// Properties checked beyond "no crash, no hang, no leak": parse_image_config
// agrees with itself on the config alone; a loaded image puts nothing
// outside "rootfs" in the tree; a second load of the same layout gives the
// same image name and version.
#include "support.hpp"

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/crypto/hash.hpp>
#include <qtbox/image/image.hpp>
#include <qtbox/image/tree.hpp>

#include <cstdint>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <unistd.h>

namespace {

using namespace qtbox;
using qtbox::fuzz::require;

constexpr std::string_view SEPARATOR = "\n--8<--\n";

std::string const& layout_directory()
{
    static std::string const directory = [] {
        char const* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base && *base ? base : "/tmp") + "/qtbox-fuzz-oci.XXXXXX";
        require(::mkdtemp(pattern.data()) != nullptr);
        require(!sys::mkdir_p(pattern + "/blobs/sha256", 0700).is_error());
        return pattern;
    }();
    return directory;
}

std::string digest_of(std::string_view text)
{
    return "sha256:" + hex_encode(crypto::sha256(as_bytes(text)));
}

void replace_all(std::string& text, std::string_view from, std::string const& to)
{
    for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
}

void write(std::string const& path, std::string_view text)
{
    auto fd = sys::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    require(!fd.is_error());
    require(!sys::write_all(fd.value().get(), as_bytes(text)).is_error());
}

void write_blob(std::string_view text)
{
    write(layout_directory() + "/blobs/sha256/" + digest_of(text).substr(7), text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    std::string_view input(reinterpret_cast<char const*>(data), size);
    std::string parts[3];
    for (auto& part : parts) {
        auto cut = input.find(SEPARATOR);
        part = std::string(input.substr(0, cut));
        input = cut == std::string_view::npos ? std::string_view() : input.substr(cut + SEPARATOR.size());
    }
    auto& [index, manifest, config] = parts;

    std::string const& directory = layout_directory();
    // Blobs of earlier runs stay: they are named by their digests.
    std::string layer(1024, '\0');
    write_blob(layer);
    replace_all(config, "@LAYER@", digest_of(layer));
    (void)image::parse_image_config(config);
    replace_all(manifest, "@LAYER@", digest_of(layer));
    replace_all(manifest, "@LAYER_SIZE@", std::to_string(layer.size()));
    replace_all(manifest, "@CONFIG@", digest_of(config));
    replace_all(manifest, "@CONFIG_SIZE@", std::to_string(config.size()));
    replace_all(index, "@MANIFEST@", digest_of(manifest));
    replace_all(index, "@MANIFEST_SIZE@", std::to_string(manifest.size()));
    write_blob(config);
    write_blob(manifest);
    write(directory + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    write(directory + "/index.json", index);

    image::FileTree tree;
    auto loaded = image::load_oci_layout(directory, std::nullopt, tree, "rootfs");
    if (loaded.is_error())
        return 0;
    for (auto const& [path, node] : tree.nodes())
        require(path == "rootfs" || path.starts_with("rootfs/"));
    image::FileTree again;
    auto second = image::load_oci_layout(directory, std::nullopt, again, "rootfs");
    require(!second.is_error());
    require(second.value().name == loaded.value().name && second.value().version == loaded.value().version);
    return 0;
}
