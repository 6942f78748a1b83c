#include <qtbox/init/init.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <csignal>
#include <lzma.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

using namespace qtbox;
using namespace qtbox::init;

namespace {

struct AppRun {
    int exit_status { -1 };
    std::string notices; // "<severity>|<text>\n" each
};

// run_app in a child of the test, so that its signal mask and reaping stay
// there; every notice, whichever process sends it, goes up a pipe.
AppRun run_app_in_child(eif::AppConfig const& config)
{
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(fds[0]);
        int out = fds[1];
        auto status = run_app(config, [out](Notice const& notice) {
            auto line = fmt::format("{}|{}\n", static_cast<int>(notice.severity), notice.text);
            [[maybe_unused]] auto written = ::write(out, line.data(), line.size());
        });
        ::_exit(status.is_error() || !WIFEXITED(status.value()) ? 100 : WEXITSTATUS(status.value()));
    }
    ::close(fds[1]);
    AppRun run;
    char buffer[512];
    ssize_t n;
    while ((n = ::read(fds[0], buffer, sizeof(buffer))) > 0)
        run.notices.append(buffer, static_cast<std::size_t>(n));
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    run.exit_status = WEXITSTATUS(status);
    return run;
}

} // namespace

TEST_CASE("init: the module list holds absolute paths, blank lines skipped")
{
    auto list = parse_module_list("/lib/modules/6.1/kernel/drivers/virtio/virtio_ring.ko\n\n/lib/modules/6.1/virtio.ko.xz\n");
    REQUIRE(!list.is_error());
    CHECK(list.value() == std::vector<std::string> { "/lib/modules/6.1/kernel/drivers/virtio/virtio_ring.ko", "/lib/modules/6.1/virtio.ko.xz" });
    auto relative = parse_module_list("virtio.ko\n");
    REQUIRE(relative.is_error());
    CHECK(relative.error().message() == "/etc/qtbox/modules: 'virtio.ko' is not an absolute path");
    CHECK(parse_module_list("").value().empty());
}

TEST_CASE("init: module compression is told by the file name")
{
    CHECK(module_compression("/m/virtio.ko") == Compression::None);
    CHECK(module_compression("/m/virtio.ko.gz") == Compression::Gzip);
    CHECK(module_compression("/m/virtio.ko.xz") == Compression::Xz);
    CHECK(module_compression("/m/virtio.ko.zst") == Compression::Zstd);
    CHECK(module_compression("/m/virtio.xz") == Compression::None);
}

namespace {

// A module-like image: an ELF magic, then text that compresses well, then
// bytes that do not.
Bytes sample_module()
{
    Bytes image { 0x7f, 'E', 'L', 'F' };
    for (int i = 0; i < 20000; ++i)
        image.push_back(static_cast<std::uint8_t>("virtio_mmio"[i % 11]));
    std::uint32_t state = 12345;
    for (int i = 0; i < 50000; ++i) {
        state = state * 1103515245u + 12345u;
        image.push_back(static_cast<std::uint8_t>(state >> 24));
    }
    return image;
}

Bytes gzip_of(ByteView input)
{
    z_stream stream {};
    REQUIRE(deflateInit2(&stream, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    Bytes out(deflateBound(&stream, input.size()) + 32);
    stream.next_in = const_cast<Bytef*>(input.data());
    stream.avail_in = static_cast<uInt>(input.size());
    stream.next_out = out.data();
    stream.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&stream, Z_FINISH) == Z_STREAM_END);
    out.resize(stream.total_out);
    deflateEnd(&stream);
    return out;
}

Bytes xz_of(ByteView input)
{
    // As the kernel's Makefile.modinst does: xz --check=crc32 --lzma2=dict=1MiB.
    Bytes out(lzma_stream_buffer_bound(input.size()));
    std::size_t length = 0;
    REQUIRE(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr, input.data(), input.size(), out.data(), &length, out.size())
        == LZMA_OK);
    out.resize(length);
    return out;
}

Bytes zstd_of(ByteView input)
{
    // With the content checksum, as the zstd command writes by default.
    ZSTD_CCtx* context = ZSTD_createCCtx();
    REQUIRE(context != nullptr);
    ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, 19);
    ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1);
    Bytes out(ZSTD_compressBound(input.size()));
    auto length = ZSTD_compress2(context, out.data(), out.size(), input.data(), input.size());
    ZSTD_freeCCtx(context);
    REQUIRE(!ZSTD_isError(length));
    out.resize(length);
    return out;
}

} // namespace

TEST_CASE("init: gzip, xz and zstd modules decompress; corrupt, truncated, padded and oversized ones are refused")
{
    auto image = sample_module();
    struct Case {
        Compression compression;
        Bytes compressed;
        std::string name;
    };
    for (auto const& each : { Case { Compression::Gzip, gzip_of(image), "gzip" }, Case { Compression::Xz, xz_of(image), "xz" },
             Case { Compression::Zstd, zstd_of(image), "zstd" } }) {
        // Plain names, not a structured binding: clang 14 cannot capture
        // those (CAPTURE makes a lambda), and the fuzz build uses clang.
        auto const& name = each.name;
        auto const& compressed = each.compressed;
        auto compression = each.compression;
        CAPTURE(name);
        auto out = decompress_module(compressed, compression);
        REQUIRE(!out.is_error());
        CHECK(out.value() == image);

        auto truncated = decompress_module(ByteView(compressed).first(compressed.size() - 7), compression);
        REQUIRE(truncated.is_error());
        CHECK(truncated.error().message().starts_with(fmt::format("corrupt {} data", name)));

        Bytes padded = compressed;
        padded.push_back(0);
        auto trailing = decompress_module(padded, compression);
        REQUIRE(trailing.is_error());
        CHECK(trailing.error().message().starts_with(fmt::format("corrupt {} data", name)));

        // A flipped byte in the middle: a CRC or structure error, never a
        // silently different module.
        Bytes flipped = compressed;
        flipped[flipped.size() / 2] ^= 0x10;
        auto damaged = decompress_module(flipped, compression);
        if (!damaged.is_error())
            CHECK(damaged.value() == image); // only if the flip hit slack bits
        else
            CHECK(damaged.error().message().starts_with(fmt::format("corrupt {} data", name)));

        auto small = decompress_module(compressed, compression, 64 << 10);
        REQUIRE(small.is_error());
        CHECK(small.error().message() == "larger than 65536 bytes once decompressed");

        auto junk = decompress_module(ByteView(image).first(4096), compression);
        REQUIRE(junk.is_error());
        CHECK(junk.error().message().starts_with(fmt::format("corrupt {} data", name)));

        auto empty = decompress_module(ByteView(), compression);
        CHECK(empty.is_error());
    }
    auto plain = decompress_module(image, Compression::None);
    REQUIRE(!plain.is_error());
    CHECK(plain.value() == image);
}

TEST_CASE("init: wait statuses read as sentences")
{
    CHECK(describe_wait_status(3 << 8) == "exited with status 3");
    CHECK(describe_wait_status(0) == "exited with status 0");
    CHECK(describe_wait_status(SIGKILL) == "was killed by signal 9 (SIGKILL)");
    CHECK(describe_wait_status(SIGSEGV | 0x80) == "was killed by signal 11 (SIGSEGV), core dumped");
}

TEST_CASE("init: an app that cannot start is reported through the notice sink, from its child")
{
    eif::AppConfig missing;
    missing.argv = { "/nonexistent/qtbox-test-app" };
    missing.env = { "PATH=/nonexistent" };
    auto run = run_app_in_child(missing);
    CHECK(run.exit_status == 127);
    CHECK(run.notices == "3|cannot run /nonexistent/qtbox-test-app: No such file or directory\n");

    eif::AppConfig bad_directory;
    bad_directory.argv = { "/bin/true" };
    bad_directory.working_dir = "/dev/null/app";
    run = run_app_in_child(bad_directory);
    CHECK(run.exit_status == 126);
    CHECK(run.notices == "3|cannot enter the working directory /dev/null/app: Not a directory\n");
}

TEST_CASE("init: an app that runs reports nothing and its exit status comes back")
{
    eif::AppConfig app;
    app.argv = { "sh", "-c", "exit 7" };
    app.env = { "PATH=/usr/bin:/bin" };
    auto run = run_app_in_child(app);
    CHECK(run.exit_status == 7);
    CHECK(run.notices.empty());
}
