// eif-build's output, byte for byte. A small image, every input generated
// here (no binary committed), is built the way `SOURCE_DATE_EPOCH=0
// eif-build --docker-archive` builds it, and the EIF's SHA-256 and PCRs are
// compared with values committed below. They were computed by the code
// before the PCR0/PCR2 hashing was reorganised (issue 17), so a change to
// how the writer hashes or streams cannot alter a byte unnoticed; every
// hashing mode of the writer must give the same file.
//
// The inputs avoid what depends on the machine: the layer is a tar (owners
// from its headers, not from the user running the test), the kernel, init
// and modules are tests/eif/support.hpp's fixed fixtures. The metadata
// section holds QTBOX_VERSION (docs/FORMATS.md §3), so a version bump
// changes the file: the test then says so, and the values are recomputed
// with the same code and committed together with the bump.
#include "support.hpp"

#include "../support/tar_builder.hpp"

#include <qtbox/crypto/hash.hpp>
#include <qtbox/eif/build.hpp>

#include <nlohmann/json.hpp>

using namespace qtbox;

namespace {

constexpr std::string_view GOLDEN_VERSION = "0.1.0";
constexpr std::string_view GOLDEN_SHA256 = "cfc9dcbc22a01dd37e106e61b809c1fea32fe83d2fafdf0a4783ecc4fbe2efa2";
constexpr std::string_view GOLDEN_PCR0 =
    "76cc8718307cd0882c17c006c48ac9a2822d5f54f09a1998428bb0a2bcb28c26d88c65e88567698d52aefba60e44dbcd";
constexpr std::string_view GOLDEN_PCR1 =
    "169f7ca8f55555123b9d6a37df558874a697888472492fe1487c1a2aefc9ea85a2d31e9bcceb44bdbb9db444b130cedf";
constexpr std::string_view GOLDEN_PCR2 =
    "4efc8082f852e3dc36d303cf03624e0b907b8b6176584fbd64a186f5a19b7f06a8c23e8d5d3473665a13a69fc557ac12";

// Deterministic bytes (xorshift64), so a large file needs no fixture.
std::string pseudo_random(std::size_t size, std::uint64_t seed)
{
    std::string bytes(size, '\0');
    std::uint64_t state = seed;
    for (std::size_t i = 0; i < size; ++i) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes[i] = static_cast<char>(state >> 56);
    }
    return bytes;
}

std::string sha256_hex(std::string_view data)
{
    return hex_encode(crypto::sha256(as_bytes(data)));
}

// One layer: files of several sizes (one spans several of the cpio
// writer's 1 MiB buffers, one is not a multiple of SHA-384's block), a
// symlink, a hard link, owners other than root, an empty file.
std::string layer()
{
    return test::TarBuilder()
        .directory("app/")
        .file("app/run.sh", "#!/bin/sh\nexec /app/server \"$@\"\n", 0755)
        .file("app/server", pseudo_random((3 << 20) + 4321, 0x9e3779b97f4a7c15ull), 0755, 1000, 1000)
        .file("app/data/table.bin", pseudo_random(200'003, 42), 0640, 1000, 100)
        .file("app/data/empty", "", 0600)
        .hardlink("app/data/table-link.bin", "app/data/table.bin")
        .symlink("app/start", "run.sh")
        .directory("etc/")
        .file("etc/app.conf", "greeting=hi\n")
        .finish_string();
}

std::string docker_archive()
{
    auto contents = layer();
    nlohmann::json config;
    config["architecture"] = "amd64";
    config["os"] = "linux";
    config["config"] = {
        { "Entrypoint", { "/app/run.sh" } },
        { "Cmd", { "--port", "8000" } },
        { "Env", { "PATH=/usr/bin:/bin", "MODE=prod" } },
        { "WorkingDir", "/app" },
    };
    config["rootfs"] = { { "type", "layers" }, { "diff_ids", { "sha256:" + sha256_hex(contents) } } };
    auto config_text = config.dump();
    nlohmann::json entry;
    entry["Config"] = "blobs/sha256/" + sha256_hex(config_text);
    entry["RepoTags"] = { "golden:v1" };
    entry["Layers"] = { "blobs/sha256/" + sha256_hex(contents) };
    return test::TarBuilder()
        .file("blobs/sha256/" + sha256_hex(config_text), config_text)
        .file("blobs/sha256/" + sha256_hex(contents), contents)
        .file("manifest.json", nlohmann::json::array({ entry }).dump())
        .finish_string();
}

} // namespace

TEST_CASE("build: a fixed image builds to the committed bytes, with or without the parallel hashing")
{
    REQUIRE_MESSAGE(std::string_view(QTBOX_VERSION) == GOLDEN_VERSION,
        "tests/eif/test_golden.cpp's committed digests are for version ", GOLDEN_VERSION,
        "'s metadata; recompute them with the same code and commit them with the version bump");
    test::TempDir dir;
    test::GuestFixture guest(dir);
    dir.write("image.tar", docker_archive());
    for (bool parallel : { true, false }) {
        CAPTURE(parallel);
        eif::BuildRequest request;
        request.kind = eif::InputKind::DockerArchive;
        request.input = dir / "image.tar";
        request.output = dir / (parallel ? "parallel.eif" : "serial.eif");
        request.kernel = guest.kernel;
        request.modules = guest.modules;
        request.cmdline = "console=ttyS0 quiet";
        request.init = guest.init;
        // What SOURCE_DATE_EPOCH=0 sets (applets/support/eif_inputs.cpp).
        request.mtime = 0;
        request.build_time = UnixMillis { 0 };
        request.now = UnixMillis { 0 };
        request.parallel_hashing = parallel;
        auto result = eif::build_eif(request);
        REQUIRE_MESSAGE(!result.is_error(), result.error().message());
        CHECK(hex_encode(result.value().measurements.pcr0) == GOLDEN_PCR0);
        CHECK(hex_encode(result.value().measurements.pcr1) == GOLDEN_PCR1);
        CHECK(hex_encode(result.value().measurements.pcr2) == GOLDEN_PCR2);
        CHECK(sha256_hex(test::read_text(request.output)) == GOLDEN_SHA256);
    }
}
