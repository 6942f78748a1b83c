#include "../support/tar_builder.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/crypto/hash.hpp>
#include <qtbox/image/image.hpp>

#include "../../src/image/oci_index.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

using namespace qtbox;
using qtbox::test::TarBuilder;

namespace {

std::string gzip(std::string const& data)
{
    z_stream stream {};
    REQUIRE(deflateInit2(&stream, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&stream, data.size()) + 64, '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&stream, Z_FINISH) == Z_STREAM_END);
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return out;
}

std::string sha(std::string const& data)
{
    return hex_encode(crypto::sha256(as_bytes(data)));
}

std::string layer_one()
{
    return TarBuilder().directory("app/").file("app/run.sh", "#!/bin/sh\necho hi\n", 0755).file("etc/os-release", "ID=test\n").finish_string();
}

std::string layer_two()
{
    return TarBuilder().file("etc/.wh.os-release", "").file("app/data", "payload", 0600, 1000, 1000).finish_string();
}

std::string config_json(std::vector<std::string> const& layers, std::string const& architecture = "amd64")
{
    nlohmann::json config;
    config["architecture"] = architecture;
    config["os"] = "linux";
    config["config"] = {
        { "Entrypoint", { "/app/run.sh" } },
        { "Cmd", { "--serve", "8080" } },
        { "Env", { "PATH=/usr/bin:/bin", "MODE=prod" } },
        { "WorkingDir", "/app" },
    };
    nlohmann::json diff_ids = nlohmann::json::array();
    for (auto const& layer : layers)
        diff_ids.push_back("sha256:" + sha(layer));
    config["rootfs"] = { { "type", "layers" }, { "diff_ids", diff_ids } };
    return config.dump();
}

// An OCI layout in `dir` with the given (stored) layers; `tags` name the manifests.
void write_oci(test::TempDir const& dir, std::vector<std::string> const& stored, std::vector<std::string> const& uncompressed,
    std::vector<std::string> const& tags, std::string const& config_override = {})
{
    dir.write("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    auto config = config_override.empty() ? config_json(uncompressed) : config_override;
    dir.write("blobs/sha256/" + sha(config), config);
    nlohmann::json manifest;
    manifest["schemaVersion"] = 2;
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json";
    manifest["config"] = { { "mediaType", "application/vnd.oci.image.config.v1+json" }, { "digest", "sha256:" + sha(config) }, { "size", config.size() } };
    manifest["layers"] = nlohmann::json::array();
    for (auto const& layer : stored) {
        dir.write("blobs/sha256/" + sha(layer), layer);
        manifest["layers"].push_back({ { "mediaType", "application/vnd.oci.image.layer.v1.tar+gzip" }, { "digest", "sha256:" + sha(layer) }, { "size", layer.size() } });
    }
    auto manifest_text = manifest.dump();
    dir.write("blobs/sha256/" + sha(manifest_text), manifest_text);
    nlohmann::json index;
    index["schemaVersion"] = 2;
    index["manifests"] = nlohmann::json::array();
    for (auto const& tag : tags) {
        index["manifests"].push_back({ { "mediaType", "application/vnd.oci.image.manifest.v1+json" }, { "digest", "sha256:" + sha(manifest_text) },
            { "size", manifest_text.size() }, { "annotations", { { "org.opencontainers.image.ref.name", tag } } } });
    }
    dir.write("index.json", index.dump());
}

std::string docker_archive(std::vector<std::string> const& layers, std::vector<std::string> const& tags, bool classic = true)
{
    auto config = config_json(layers);
    TarBuilder archive;
    nlohmann::json entry;
    entry["RepoTags"] = tags;
    entry["Layers"] = nlohmann::json::array();
    if (classic) {
        entry["Config"] = sha(config) + ".json";
        archive.file(sha(config) + ".json", config);
        for (std::size_t i = 0; i < layers.size(); ++i) {
            auto directory = std::string(64, static_cast<char>('a' + i));
            archive.directory(directory + "/").file(directory + "/layer.tar", layers[i]);
            entry["Layers"].push_back(directory + "/layer.tar");
        }
    } else {
        entry["Config"] = "blobs/sha256/" + sha(config);
        archive.file("blobs/sha256/" + sha(config), config);
        for (auto const& layer : layers) {
            archive.file("blobs/sha256/" + sha(layer), layer);
            entry["Layers"].push_back("blobs/sha256/" + sha(layer));
        }
    }
    archive.file("manifest.json", nlohmann::json::array({ entry }).dump());
    return archive.finish_string();
}

image::FileTree mounted()
{
    image::FileTree tree;
    REQUIRE(!tree.ensure_directory("rootfs", 0755).is_error());
    return tree;
}

void check_tree(image::FileTree const& tree)
{
    CHECK(tree.find("rootfs/app/run.sh") != nullptr);
    CHECK(tree.find("rootfs/app/run.sh")->mode == 0755);
    CHECK(tree.find("rootfs/app/data")->uid == 1000);
    CHECK(tree.find("rootfs/etc/os-release") == nullptr);
    CHECK(tree.find("rootfs/etc") != nullptr);
}

} // namespace

TEST_CASE("image: config parsing keeps null and empty apart and checks types")
{
    auto config = image::parse_image_config(R"({"architecture":"amd64","config":{"Entrypoint":null,"Cmd":[],"Env":["A=1"],"WorkingDir":"/w","User":"app"}})");
    REQUIRE(!config.is_error());
    CHECK(!config.value().entrypoint.has_value());
    CHECK(config.value().cmd.has_value());
    CHECK(config.value().cmd->empty());
    CHECK(config.value().env == std::vector<std::string> { "A=1" });
    CHECK(config.value().working_dir == "/w");
    CHECK(config.value().user == "app");
    CHECK(image::parse_image_config(R"({"config":{"Cmd":"not an array"}})").error().is(image::ImageError::Malformed));
    CHECK(image::parse_image_config(R"({"config":{"Env":[1]}})").error().is(image::ImageError::Malformed));
    CHECK(image::parse_image_config("[1]").error().is(image::ImageError::Malformed));
    CHECK(image::parse_image_config("{").error().is(image::ImageError::Malformed));
    CHECK(!image::parse_image_config("{}").is_error());
}

TEST_CASE("image: an OCI layout with gzip layers, picked by tag")
{
    test::TempDir dir;
    auto one = layer_one();
    auto two = layer_two();
    write_oci(dir, { gzip(one), gzip(two) }, { one, two }, { "v1", "latest" });
    auto tree = mounted();
    auto info = image::load_oci_layout(dir.path(), std::string("v1"), tree, "rootfs");
    REQUIRE_MESSAGE(!info.is_error(), info.error().message());
    check_tree(tree);
    CHECK(info.value().name == "v1");
    CHECK(info.value().config.entrypoint == std::vector<std::string> { "/app/run.sh" });
    CHECK(info.value().config.working_dir == "/app");
    CHECK(info.value().version.size() == 64);
}

TEST_CASE("image: OCI tag selection errors name the tags that exist")
{
    test::TempDir dir;
    auto one = layer_one();
    write_oci(dir, { one }, { one }, { "v1", "v2" });
    auto tree = mounted();
    auto missing = image::load_oci_layout(dir.path(), std::string("v3"), tree, "rootfs");
    REQUIRE(missing.is_error());
    CHECK(missing.error().is(image::ImageError::NotFound));
    CHECK(missing.error().message() == fmt::format("tag 'v3' is not in {} (tags: v1, v2)", dir.path()));
    auto ambiguous = image::load_oci_layout(dir.path(), std::nullopt, tree, "rootfs");
    REQUIRE(ambiguous.is_error());
    CHECK(ambiguous.error().is(image::ImageError::NotFound));
    CHECK(ambiguous.error().message().find("pick one with") != std::string::npos);
}

TEST_CASE("image: OCI blobs are checked against their digests and sizes before use")
{
    auto one = layer_one();
    SUBCASE("a layer whose bytes changed")
    {
        test::TempDir dir;
        write_oci(dir, { one }, { one }, { "t" });
        auto tampered = one;
        tampered[600] ^= 1;
        dir.write("blobs/sha256/" + sha(one), tampered);
        auto tree = mounted();
        auto result = image::load_oci_layout(dir.path(), std::nullopt, tree, "rootfs");
        REQUIRE(result.is_error());
        CHECK(result.error().is(image::ImageError::DigestMismatch));
        CHECK(result.error().message().find("digest mismatch: expected sha256:" + sha(one)) != std::string::npos);
    }
    SUBCASE("a diff_id that does not match the uncompressed layer")
    {
        test::TempDir dir;
        auto other = layer_two();
        write_oci(dir, { gzip(one) }, { other }, { "t" });
        auto tree = mounted();
        auto result = image::load_oci_layout(dir.path(), std::nullopt, tree, "rootfs");
        REQUIRE(result.is_error());
        CHECK(result.error().is(image::ImageError::DigestMismatch));
        CHECK(result.error().message().find("uncompressed") != std::string::npos);
    }
    SUBCASE("a digest that is not sha256 hex cannot become a path")
    {
        test::TempDir dir;
        write_oci(dir, { one }, { one }, { "t" });
        dir.write("index.json", R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../../etc/passwd","size":1}]})");
        auto tree = mounted();
        auto result = image::load_oci_layout(dir.path(), std::nullopt, tree, "rootfs");
        REQUIRE(result.is_error());
        CHECK(result.error().is(image::ImageError::Malformed));
    }
    SUBCASE("not a layout at all")
    {
        test::TempDir dir;
        auto tree = mounted();
        auto result = image::load_oci_layout(dir.path(), std::nullopt, tree, "rootfs");
        REQUIRE(result.is_error());
        CHECK(result.error().is(image::ImageError::NotFound));
    }
    SUBCASE("an arm64 image is loaded; the EIF builder refuses it")
    {
        test::TempDir dir;
        write_oci(dir, { one }, { one }, { "t" }, config_json({ one }, "arm64"));
        auto tree = mounted();
        auto result = image::load_oci_layout(dir.path(), std::nullopt, tree, "rootfs");
        REQUIRE(!result.is_error());
        CHECK(result.value().config.architecture == "arm64");
    }
}

namespace {

// Rewrites `dir`'s index.json as a tree of nested indexes `depth` deep in
// which every index names the next one `fan_out` times, the last one naming
// the layout's image manifest `fan_out` times: depth + 1 small blobs that a
// walk following every path would visit fan_out^(depth + 1) times.
void nest_indexes(test::TempDir const& dir, int fan_out, int depth)
{
    auto top = nlohmann::json::parse(test::read_text(dir / "index.json"));
    auto child = top["manifests"][0];
    child.erase("annotations");
    for (int level = 0; level <= depth; ++level) {
        nlohmann::json index;
        index["schemaVersion"] = 2;
        index["mediaType"] = "application/vnd.oci.image.index.v1+json";
        index["manifests"] = nlohmann::json::array();
        for (int i = 0; i < fan_out; ++i)
            index["manifests"].push_back(child);
        auto text = index.dump();
        if (level == depth) {
            for (auto& entry : index["manifests"])
                entry["annotations"] = { { "org.opencontainers.image.ref.name", "nested" } };
            dir.write("index.json", index.dump());
            break;
        }
        dir.write("blobs/sha256/" + sha(text), text);
        child = { { "mediaType", "application/vnd.oci.image.index.v1+json" }, { "digest", "sha256:" + sha(text) }, { "size", text.size() } };
    }
}

} // namespace

TEST_CASE("image: nested OCI indexes are read once each, however often they are named")
{
    // Fan-out 20, depth 4: five index blobs (index.json and four nested
    // ones) holding 20 descriptors each. Following every path would read
    // 20 + 400 + 8000 + 160000 index blobs and find 3.2 million manifests.
    test::TempDir dir;
    auto one = layer_one();
    write_oci(dir, { gzip(one) }, { one }, { "t" });
    nest_indexes(dir, 20, 4);

    auto walk = image::detail::walk_oci_indexes(dir.path());
    REQUIRE_MESSAGE(!walk.is_error(), walk.error().message());
    CHECK(walk.value().index_blobs_read == 4);
    CHECK(walk.value().descriptors_visited == 100);
    CHECK(walk.value().manifests == 1);

    auto tree = mounted();
    auto info = image::load_oci_layout(dir.path(), std::nullopt, tree, "rootfs");
    REQUIRE_MESSAGE(!info.is_error(), info.error().message());
    CHECK(info.value().name == "nested");
    CHECK(tree.find("rootfs/app/run.sh") != nullptr);
}

TEST_CASE("image: the descriptors of all OCI indexes together are bounded")
{
    // Distinct nested indexes, so nothing is shared: 70 indexes of 60
    // manifests each are 4270 descriptors, past MAX_INDEX_DESCRIPTORS.
    test::TempDir dir;
    auto one = layer_one();
    write_oci(dir, { one }, { one }, { "t" });
    auto top = nlohmann::json::parse(test::read_text(dir / "index.json"));
    auto manifest = top["manifests"][0];
    manifest.erase("annotations");
    nlohmann::json index;
    index["schemaVersion"] = 2;
    index["manifests"] = nlohmann::json::array();
    for (int n = 0; n < 70; ++n) {
        nlohmann::json nested;
        nested["schemaVersion"] = 2;
        nested["manifests"] = nlohmann::json::array();
        for (int i = 0; i < 60; ++i) {
            auto entry = manifest;
            entry["annotations"] = { { "org.opencontainers.image.ref.name", fmt::format("t{}-{}", n, i) } };
            nested["manifests"].push_back(entry);
        }
        auto text = nested.dump();
        dir.write("blobs/sha256/" + sha(text), text);
        index["manifests"].push_back({ { "mediaType", "application/vnd.oci.image.index.v1+json" }, { "digest", "sha256:" + sha(text) }, { "size", text.size() } });
    }
    dir.write("index.json", index.dump());

    auto walk = image::detail::walk_oci_indexes(dir.path());
    REQUIRE(walk.is_error());
    CHECK(walk.error().is(image::ImageError::LimitExceeded));
    CHECK(walk.error().message() == fmt::format("the image's indexes hold more than {} descriptors in all", image::MAX_INDEX_DESCRIPTORS));
    auto tree = mounted();
    auto result = image::load_oci_layout(dir.path(), std::string("t0-0"), tree, "rootfs");
    REQUIRE(result.is_error());
    CHECK(result.error().is(image::ImageError::LimitExceeded));
}

TEST_CASE("image: docker-archives, classic and OCI-style, give the same tree")
{
    auto one = layer_one();
    auto two = layer_two();
    for (bool classic : { true, false }) {
        test::TempDir dir;
        dir.write("image.tar", docker_archive({ one, two }, { "registry.example/app:1.0" }, classic));
        auto tree = mounted();
        auto info = image::load_docker_archive(dir / "image.tar", std::nullopt, tree, "rootfs");
        REQUIRE_MESSAGE(!info.is_error(), info.error().message());
        check_tree(tree);
        CHECK(info.value().name == "registry.example/app");
        CHECK(info.value().version == sha(config_json({ one, two })));
    }
}

TEST_CASE("image: docker-archive errors")
{
    auto one = layer_one();
    test::TempDir dir;
    dir.write("image.tar", docker_archive({ one }, { "app:1.0", "app:latest" }));
    auto tree = mounted();
    SUBCASE("tags")
    {
        CHECK(!image::load_docker_archive(dir / "image.tar", std::string("app"), tree, "rootfs").is_error());
        auto missing = image::load_docker_archive(dir / "image.tar", std::string("app:2.0"), tree, "rootfs");
        REQUIRE(missing.is_error());
        CHECK(missing.error().is(image::ImageError::NotFound));
        CHECK(missing.error().message().find("(tags: app:1.0, app:latest)") != std::string::npos);
    }
    SUBCASE("a layer digest mismatch")
    {
        auto archive = docker_archive({ one }, { "app:1" });
        auto position = archive.find("#!/bin/sh");
        REQUIRE(position != std::string::npos);
        archive[position + 2] = 'X';
        dir.write("bad.tar", archive);
        auto result = image::load_docker_archive(dir / "bad.tar", std::nullopt, tree, "rootfs");
        REQUIRE(result.is_error());
        CHECK(result.error().is(image::ImageError::DigestMismatch));
        CHECK(result.error().message().find("layer 1") != std::string::npos);
    }
    SUBCASE("a truncated archive")
    {
        auto archive = docker_archive({ one }, { "app:1" });
        dir.write("short.tar", archive.substr(0, archive.size() / 2));
        auto result = image::load_docker_archive(dir / "short.tar", std::nullopt, tree, "rootfs");
        REQUIRE(result.is_error());
        CHECK(result.error().is(image::ImageError::Truncated));
    }
    SUBCASE("a gzip-compressed archive")
    {
        dir.write("image.tar.gz", gzip(docker_archive({ one }, { "app:1" })));
        CHECK(!image::load_docker_archive(dir / "image.tar.gz", std::nullopt, tree, "rootfs").is_error());
    }
    SUBCASE("a truncated gzip layer")
    {
        auto compressed = gzip(one);
        test::TempDir oci;
        write_oci(oci, { compressed.substr(0, compressed.size() - 10) }, { one }, { "t" });
        // The blob is registered under the digest of its (cut) bytes, so only the gzip stream is wrong.
        auto result = image::load_oci_layout(oci.path(), std::nullopt, tree, "rootfs");
        REQUIRE(result.is_error());
        CHECK(result.error().is(image::ImageError::Truncated));
    }
}

TEST_CASE("image: PATH[:TAG] splitting prefers an existing path")
{
    test::TempDir dir;
    dir.write("a:b/oci-layout", "{}");
    dir.write("file.tar", "x");
    auto whole = image::split_image_reference(dir / "a:b", true);
    REQUIRE(!whole.is_error());
    CHECK(whole.value().path == dir / "a:b");
    CHECK(!whole.value().tag);
    auto tagged = image::split_image_reference(dir / "a:b:v1", true);
    REQUIRE(!tagged.is_error());
    CHECK(tagged.value().path == dir / "a:b");
    CHECK(tagged.value().tag == "v1");
    auto file = image::split_image_reference(dir / "file.tar:app:1.0", false);
    REQUIRE(!file.is_error());
    CHECK(file.value().tag == "app:1.0");
    CHECK(image::split_image_reference(dir / "none:tag", true).error().is(image::ImageError::NotFound));
}
