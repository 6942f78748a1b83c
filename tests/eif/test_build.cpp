#include "support.hpp"

#include <qtbox/cbor/encoder.hpp>
#include <qtbox/crypto/pem.hpp>
#include <qtbox/crypto/x509_write.hpp>
#include <qtbox/eif/build.hpp>
#include <qtbox/eif/describe.hpp>
#include <qtbox/eif/reader.hpp>
#include <qtbox/eif/signature.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <sys/time.h>

using namespace qtbox;

namespace {

constexpr char const* CMDLINE = "console=ttyS0 quiet";

eif::BuildRequest request_for(test::TempDir const& dir, test::GuestFixture const& guest, std::string const& output = "out.eif")
{
    eif::BuildRequest request;
    request.kind = eif::InputKind::Rootfs;
    request.input = dir / "rootfs";
    request.output = dir / output;
    request.kernel = guest.kernel;
    request.modules = guest.modules;
    request.cmdline = CMDLINE;
    request.init = guest.init;
    request.overrides.cmd = std::vector<std::string> { "/bin/app", "--flag" };
    request.now = now_millis();
    return request;
}

void make_rootfs(test::TempDir const& dir)
{
    dir.write("rootfs/bin/app", "#!/bin/sh\necho app\n", 0755);
    dir.write("rootfs/etc/config", "key=value\n");
    ::chmod((dir / "rootfs").c_str(), 0755);
}

// The application ramdisk's cpio, cut out of the EIF.
std::string section_text(std::string const& path, eif::Section const& section)
{
    auto bytes = test::read_text(path);
    return bytes.substr(section.data_offset, section.size);
}

struct Signer {
    explicit Signer(test::TempDir const& dir, UnixMillis not_before, UnixMillis not_after, crypto::KeyType type = crypto::KeyType::EcP384)
    {
        auto key = crypto::PrivateKey::generate(type);
        REQUIRE(!key.is_error());
        crypto::CertificateProfile profile;
        profile.subject = "CN=eif-signer,O=qtbox-test";
        profile.not_before = not_before;
        profile.not_after = not_after;
        profile.key_usage = crypto::key_usage::DIGITAL_SIGNATURE;
        auto certificate = crypto::self_sign_certificate(profile, key.value());
        REQUIRE(!certificate.is_error());
        auto pem = key.value().to_pem();
        REQUIRE(!pem.is_error());
        dir.write("key.pem", as_chars(pem.value().view()), 0600);
        dir.write("cert.pem", certificate.value().pem());
        der = Bytes(certificate.value().der().begin(), certificate.value().der().end());
        key_path = dir / "key.pem";
        certificate_path = dir / "cert.pem";
    }
    Bytes der;
    std::string key_path;
    std::string certificate_path;
};

constexpr UnixMillis HOUR = 3'600'000;

} // namespace

TEST_CASE("build: command words are a JSON array or shell words")
{
    CHECK(eif::parse_command_words(R"(["/bin/app", "a b", ""])").value() == std::vector<std::string> { "/bin/app", "a b", "" });
    CHECK(eif::parse_command_words(R"(/bin/sh -c 'echo "$HOME" x' "a\"b" c\ d)").value()
        == std::vector<std::string> { "/bin/sh", "-c", "echo \"$HOME\" x", "a\"b", "c d" });
    CHECK(eif::parse_command_words("  ").value().empty());
    CHECK(eif::parse_command_words("'unterminated").error().is(eif::EifError::BadInput));
    CHECK(eif::parse_command_words("\"unterminated").error().is(eif::EifError::BadInput));
    CHECK(eif::parse_command_words("trailing\\").error().is(eif::EifError::BadInput));
    CHECK(eif::parse_command_words("[1, 2]").error().is(eif::EifError::BadInput));
    CHECK(eif::parse_command_words("[not json").error().is(eif::EifError::BadInput));
}

TEST_CASE("build: ENTRYPOINT + CMD as Docker runs them, with overrides")
{
    image::ImageConfig config;
    config.entrypoint = std::vector<std::string> { "/entry", "-x" };
    config.cmd = std::vector<std::string> { "serve" };
    config.env = { "PATH=/usr/bin", "MODE=dev" };
    config.working_dir = "/srv/app/";

    auto plain = eif::resolve_run_config(config, {});
    REQUIRE(!plain.is_error());
    CHECK(plain.value().argv == std::vector<std::string> { "/entry", "-x", "serve" });
    CHECK(plain.value().env == std::vector<std::string> { "PATH=/usr/bin", "MODE=dev" });
    CHECK(plain.value().working_dir == "/srv/app");

    eif::RunOverrides cmd_only;
    cmd_only.cmd = std::vector<std::string> { "check" };
    cmd_only.env = { "MODE=prod", "EXTRA=1" };
    auto replaced = eif::resolve_run_config(config, cmd_only);
    CHECK(replaced.value().argv == std::vector<std::string> { "/entry", "-x", "check" });
    CHECK(replaced.value().env == std::vector<std::string> { "PATH=/usr/bin", "MODE=prod", "EXTRA=1" });

    eif::RunOverrides entry_only;
    entry_only.entrypoint = std::vector<std::string> { "/other" };
    CHECK(eif::resolve_run_config(config, entry_only).value().argv == std::vector<std::string> { "/other" });

    image::ImageConfig bare;
    auto none = eif::resolve_run_config(bare, {});
    REQUIRE(none.is_error());
    CHECK(none.error().is(eif::EifError::BadInput));
    eif::RunOverrides cmd;
    cmd.cmd = std::vector<std::string> { "/app" };
    auto defaulted = eif::resolve_run_config(bare, cmd);
    CHECK(defaulted.value().env == std::vector<std::string> { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" });
    CHECK(defaulted.value().working_dir == "/");

    eif::RunOverrides newline;
    newline.cmd = std::vector<std::string> { "a\nb" };
    CHECK(eif::resolve_run_config(bare, newline).error().is(eif::EifError::BadInput));
    eif::RunOverrides bad_env;
    bad_env.cmd = cmd.cmd;
    bad_env.env = { "=x" };
    CHECK(eif::resolve_run_config(bare, bad_env).error().is(eif::EifError::BadInput));
    image::ImageConfig escaping;
    escaping.working_dir = "/../..";
    CHECK(eif::resolve_run_config(escaping, cmd).error().is(image::ImageError::PathEscape));
}

TEST_CASE("build: a rootfs EIF, measured as written, reproducible, with the docs/FORMATS.md §3 ramdisk layout")
{
    test::TempDir dir;
    test::GuestFixture guest(dir);
    make_rootfs(dir);
    auto request = request_for(dir, guest);
    request.overrides.env = { "GREETING=hello world" };
    auto result = eif::build_eif(request);
    REQUIRE_MESSAGE(!result.is_error(), result.error().message());
    CHECK(result.value().kernel_release == "6.1.0-test-amd64");
    CHECK(result.value().warnings.size() == 1); // the synthetic kernel is no bzImage
    CHECK(result.value().image_name == "rootfs");

    auto reader = eif::EifReader::open(request.output);
    REQUIRE(!reader.is_error());
    auto verification = reader.value().verify();
    REQUIRE(!verification.is_error());
    CHECK(verification.value().crc_ok);
    CHECK(verification.value().measurements.pcr0 == result.value().measurements.pcr0);
    CHECK(verification.value().measurements.pcr1 == result.value().measurements.pcr1);
    CHECK(verification.value().measurements.pcr2 == result.value().measurements.pcr2);
    CHECK(reader.value().read_cmdline().value() == CMDLINE);

    auto ramdisks = reader.value().ramdisks();
    REQUIRE(ramdisks.size() == 2);
    auto bootstrap = section_text(request.output, *ramdisks[0]);
    auto application = section_text(request.output, *ramdisks[1]);
    auto release_dir = std::string("lib/modules/6.1.0-test-amd64/kernel/drivers/virtio/virtio_mmio.ko");
    CHECK(bootstrap.find(release_dir) != std::string::npos);
    CHECK(bootstrap.find("/lib/modules/6.1.0-test-amd64/kernel/drivers/virtio/virtio_ring.ko\n"
                         "/lib/modules/6.1.0-test-amd64/kernel/drivers/virtio/virtio.ko\n"
                         "/lib/modules/6.1.0-test-amd64/kernel/drivers/virtio/virtio_mmio.ko\n"
                         "/lib/modules/6.1.0-test-amd64/kernel/net/vmw_vsock/vsock.ko\n")
        != std::string::npos);
    CHECK(bootstrap.find("#!init") != std::string::npos);
    CHECK(application.find("/bin/app\n--flag\n") != std::string::npos);
    CHECK(application.find("GREETING=hello world\n") != std::string::npos);
    for (auto name : { "rootfs/dev", "rootfs/proc", "rootfs/sys", "rootfs/run", "rootfs/tmp", "rootfs/bin/app", "workdir" })
        CHECK(application.find(name) != std::string::npos);
    // Bytewise order: cmd, env, rootfs..., workdir.
    CHECK(application.find("cmd") < application.find("env"));
    CHECK(application.find("env") < application.find("rootfs"));
    CHECK(application.rfind("rootfs/") < application.find("workdir"));

    auto metadata = nlohmann::json::parse(section_text(request.output, *reader.value().metadata()));
    CHECK(metadata["ImageName"] == "rootfs");
    CHECK(metadata["ImageVersion"] == "1.0");
    CHECK(metadata["BuildMetadata"]["BuildTool"] == "eif-build");
    CHECK(!metadata["BuildMetadata"].contains("BuildTime"));
    CHECK(metadata["ImageConfig"]["Cmd"] == nlohmann::json({ "/bin/app", "--flag" }));
    CHECK(metadata["ImageConfig"]["WorkingDir"] == "/");
    CHECK(metadata["CustomMetadata"].is_null());

    // Touch files, wait, build again: the same bytes.
    ::utimes((dir / "rootfs/bin/app").c_str(), nullptr);
    auto again = request;
    again.output = dir / "again.eif";
    again.parallel_hashing = false;
    REQUIRE(!eif::build_eif(again).is_error());
    CHECK(test::read_text(again.output) == test::read_text(request.output));

    // SOURCE_DATE_EPOCH-style mtime and a build time change the bytes but not PCR1's inputs' structure.
    auto stamped = request;
    stamped.output = dir / "stamped.eif";
    stamped.mtime = 1700000000;
    stamped.build_time = UnixMillis { 1700000000000 };
    auto stamped_result = eif::build_eif(stamped);
    REQUIRE(!stamped_result.is_error());
    CHECK(stamped_result.value().measurements.pcr2 != result.value().measurements.pcr2);
    auto stamped_reader = eif::EifReader::open(stamped.output);
    auto stamped_metadata = nlohmann::json::parse(section_text(stamped.output, *stamped_reader.value().metadata()));
    CHECK(stamped_metadata["BuildMetadata"]["BuildTime"] == "2023-11-14T22:13:20Z");
}

TEST_CASE("build: failures leave no output file")
{
    test::TempDir dir;
    test::GuestFixture guest(dir);
    make_rootfs(dir);
    auto check_fails = [&](eif::BuildRequest const& request, auto failure) {
        auto result = eif::build_eif(request);
        REQUIRE(result.is_error());
        INFO(result.error().message());
        CHECK(result.error().is(failure));
        CHECK(::access(request.output.c_str(), F_OK) != 0);
        return result.error().message();
    };
    auto no_command = request_for(dir, guest);
    no_command.overrides.cmd.reset();
    check_fails(no_command, eif::EifError::BadInput);
    auto missing_kernel = request_for(dir, guest);
    missing_kernel.kernel = dir / "nope";
    check_fails(missing_kernel, eif::EifError::MissingInput);
    auto bad_cmdline = request_for(dir, guest);
    bad_cmdline.cmdline = std::string(3000, 'x');
    check_fails(bad_cmdline, eif::EifError::BadInput);
    auto missing_init = request_for(dir, guest);
    missing_init.init = dir / "nope";
    check_fails(missing_init, eif::EifError::MissingInput);
    auto escape = request_for(dir, guest);
    ::symlink("/etc", (dir / "rootfs/evil").c_str());
    CHECK(!eif::build_eif(escape).is_error()); // a symlink in a host rootfs is just a symlink
    ::unlink(escape.output.c_str());
}

TEST_CASE("build: text that is not UTF-8 is refused before anything is written (the metadata is JSON)")
{
    test::TempDir dir;
    test::GuestFixture guest(dir);
    make_rootfs(dir);
    auto check_refused = [&](eif::BuildRequest const& request, std::string const& expected) {
        auto result = eif::build_eif(request);
        REQUIRE(result.is_error());
        CHECK(result.error().is(eif::EifError::BadInput));
        CHECK(result.error().message() == expected);
        CHECK(::access(request.output.c_str(), F_OK) != 0);
        CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()) == 4);
    };
    auto env = request_for(dir, guest);
    env.overrides.env = { "GOOD=1", "BAD=\xff" };
    check_refused(env, "--env is not valid UTF-8 (byte 0xFF at offset 4)");
    auto cmd = request_for(dir, guest);
    cmd.overrides.cmd = std::vector<std::string> { "/bin/app", "\xc3(" };
    check_refused(cmd, "command word is not valid UTF-8 (byte 0xC3 at offset 0)");
    auto name = request_for(dir, guest);
    name.name = "caf\xe9";
    check_refused(name, "--name is not valid UTF-8 (byte 0xE9 at offset 3)");
    auto surrogate = request_for(dir, guest);
    surrogate.version = "\xed\xa0\x80";
    check_refused(surrogate, "--version is not valid UTF-8 (byte 0xED at offset 0)");
    // A host directory's own name is the default image name.
    dir.write("r\xff/bin/app", "#!/bin/sh\n", 0755);
    auto directory_name = request_for(dir, guest);
    directory_name.input = dir / "r\xff";
    auto result = eif::build_eif(directory_name);
    REQUIRE(result.is_error());
    CHECK(result.error().message() == "the image name (give --name) is not valid UTF-8 (byte 0xFF at offset 1)");
    name.name = "caf\xc3\xa9";
    CHECK(!eif::build_eif(name).is_error());
}

TEST_CASE("build: the image's User becomes /user, looked up in the image's own passwd and group files")
{
    image::FileTree tree;
    REQUIRE(!tree.ensure_directory("rootfs", 0755).is_error());
    auto add = [&](std::string const& path, std::string const& text) {
        image::Node node;
        node.type = image::NodeType::Regular;
        node.mode = 0644;
        node.size = text.size();
        node.content = { image::Content::Kind::Inline, tree.add_inline(to_bytes(text)), 0 };
        REQUIRE(!tree.put(path, node).is_error());
    };
    add("rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\n");
    add("rootfs/etc/group", "root:x:0:\nstaff:x:50:app\n");
    auto resolved = [&](std::string_view user) {
        auto ids = eif::resolve_user(user, tree, "rootfs");
        REQUIRE_MESSAGE(!ids.is_error(), ids.error().message());
        return ids.value();
    };
    CHECK(!resolved("").has_value());
    CHECK(!resolved("root").has_value());
    CHECK(!resolved("0").has_value());
    CHECK(!resolved("0:0").has_value());
    CHECK(resolved("app") == eif::UserIds { 1000, 1001 });
    CHECK(resolved("1000") == eif::UserIds { 1000, 1001 });
    CHECK(resolved("app:staff") == eif::UserIds { 1000, 50 });
    CHECK(resolved("app:7") == eif::UserIds { 1000, 7 });
    CHECK(resolved("4242") == eif::UserIds { 4242, 0 });
    CHECK(resolved("4242:4343") == eif::UserIds { 4242, 4343 });
    CHECK(resolved("root:staff") == eif::UserIds { 0, 50 });
    auto refused = [&](std::string_view user, std::string const& expected) {
        auto ids = eif::resolve_user(user, tree, "rootfs");
        REQUIRE(ids.is_error());
        CHECK(ids.error().is(eif::EifError::BadInput));
        CHECK(ids.error().message() == expected);
    };
    refused("ghost", "the image's User 'ghost': no user 'ghost' in the image's /etc/passwd");
    refused("app:wheel", "the image's User 'app:wheel': no group 'wheel' in the image's /etc/group");
    refused("app:", "the image's User 'app:' is not USER[:GROUP]");
    refused("99999999999", "the image's User '99999999999': uid out of range");
    image::FileTree empty;
    REQUIRE(!empty.ensure_directory("rootfs", 0755).is_error());
    auto no_passwd = eif::resolve_user("app", empty, "rootfs");
    REQUIRE(no_passwd.is_error());
    CHECK(no_passwd.error().message() == "the image's User 'app': no user 'app' in the image's /etc/passwd");
    CHECK(eif::resolve_user("1000:1000", empty, "rootfs").value() == eif::UserIds { 1000, 1000 });
}

TEST_CASE("build: signed images carry PCR8 and a verifiable COSE signature over PCR0")
{
    test::TempDir dir;
    test::GuestFixture guest(dir);
    make_rootfs(dir);
    auto now = now_millis();
    Signer signer(dir, now - HOUR, now + 24 * HOUR);
    auto request = request_for(dir, guest);
    request.private_key = signer.key_path;
    request.signing_certificate = signer.certificate_path;
    auto result = eif::build_eif(request);
    REQUIRE_MESSAGE(!result.is_error(), result.error().message());
    REQUIRE(result.value().measurements.pcr8);
    CHECK(*result.value().measurements.pcr8 == eif::measure(signer.der));

    auto reader = eif::EifReader::open(request.output);
    REQUIRE(!reader.is_error());
    CHECK(reader.value().is_signed());
    CHECK(reader.value().sections().back().type == eif::SectionType::Signature);
    auto verification = reader.value().verify();
    REQUIRE(!verification.is_error());
    CHECK(verification.value().crc_ok);
    CHECK(verification.value().measurements.pcr8 == result.value().measurements.pcr8);
    CHECK(verification.value().measurements.pcr0 == result.value().measurements.pcr0);
    auto section = reader.value().read_section(*reader.value().signature(), eif::MAX_SIGNATURE_SIZE);
    auto check = eif::check_signature(section.value(), verification.value().measurements.pcr0, now);
    REQUIRE(!check.is_error());
    CHECK(check.value().signature_valid);
    CHECK(check.value().pcr0_matches);
    CHECK(check.value().certificate_valid);
    CHECK(eif::require_valid(check.value(), now).is_error() == false);
    // Another PCR0, or a time past the certificate, fails the check.
    auto other = eif::check_signature(section.value(), verification.value().measurements.pcr1, now);
    CHECK(eif::require_valid(other.value(), now).error().is(eif::EifError::Pcr0Mismatch));
    auto later = now + 48 * HOUR;
    auto expired = eif::check_signature(section.value(), verification.value().measurements.pcr0, later);
    CHECK(eif::require_valid(expired.value(), later).error().is(eif::EifError::CertificateTime));

    auto description = eif::describe_eif(request.output, now);
    REQUIRE_MESSAGE(!description.is_error(), description.error().message());
    auto const& json = description.value().json;
    CHECK(json["IsSigned"] == true);
    CHECK(json["SignatureCheck"]["SignatureValid"] == true);
    CHECK(json["Measurements"]["PCR8"] == hex_encode(eif::measure(signer.der)));
    CHECK(json["Sections"].size() == 6);
    CHECK(json["Sections"][5]["Type"] == "signature");
}

TEST_CASE("build: the signature section also parses in serde_cbor's array-of-bytes form")
{
    // {"signing_certificate": [bytes...], "signature": [bytes...]} inside an array.
    auto byte_array = [](std::string_view text) {
        std::vector<cbor::Value> items;
        for (char c : text)
            items.push_back(cbor::Value::unsigned_integer(static_cast<std::uint8_t>(c)));
        return cbor::Value::array(std::move(items));
    };
    auto map = cbor::Value::map();
    map.insert(cbor::Value::text_string("signing_certificate"), byte_array("PEM\xff"));
    map.insert(cbor::Value::text_string("signature"), byte_array("COSE"));
    auto section = cbor::encode(cbor::Value::array({ std::move(map) }));
    auto entry = eif::parse_signature_section(section);
    REQUIRE_MESSAGE(!entry.is_error(), entry.error().message());
    CHECK(entry.value().certificate_pem == to_bytes("PEM\xff"));
    CHECK(entry.value().cose_sign1 == to_bytes("COSE"));
    CHECK(eif::parse_signature_section(as_bytes("\x80")).error().is(eif::EifError::BadSignature));
    CHECK(eif::parse_signature_section(as_bytes("junk")).error().is(eif::EifError::BadSignature));
}

TEST_CASE("build: signing refuses a key that is not the certificate's, a non-P-384 key, and (with strict) an expired certificate")
{
    test::TempDir dir;
    test::GuestFixture guest(dir);
    make_rootfs(dir);
    auto now = now_millis();
    Signer signer(dir, now - HOUR, now + HOUR);
    test::TempDir other_dir;
    Signer other(other_dir, now - HOUR, now + HOUR);

    auto mismatch = request_for(dir, guest);
    mismatch.private_key = other.key_path;
    mismatch.signing_certificate = signer.certificate_path;
    auto result = eif::build_eif(mismatch);
    REQUIRE(result.is_error());
    CHECK(result.error().is(eif::EifError::KeyMismatch));
    CHECK(::access(mismatch.output.c_str(), F_OK) != 0);

    test::TempDir p256_dir;
    Signer p256(p256_dir, now - HOUR, now + HOUR, crypto::KeyType::EcP256);
    auto wrong_curve = request_for(dir, guest);
    wrong_curve.private_key = p256.key_path;
    wrong_curve.signing_certificate = p256.certificate_path;
    CHECK(eif::build_eif(wrong_curve).error().is(eif::EifError::BadInput));

    test::TempDir expired_dir;
    Signer expired(expired_dir, now - 48 * HOUR, now - 24 * HOUR);
    auto strict = request_for(dir, guest);
    strict.private_key = expired.key_path;
    strict.signing_certificate = expired.certificate_path;
    strict.strict = true;
    auto refused = eif::build_eif(strict);
    REQUIRE(refused.is_error());
    CHECK(refused.error().is(eif::EifError::CertificateTime));
    CHECK(::access(strict.output.c_str(), F_OK) != 0);
    strict.strict = false;
    auto warned = eif::build_eif(strict);
    REQUIRE(!warned.is_error());
    CHECK(warned.value().warnings.back().find("the signing certificate is not valid now") != std::string::npos);
    auto description = eif::describe_eif(strict.output, now);
    REQUIRE(!description.is_error());
    CHECK(description.value().json["SignatureCheck"]["CertificateValid"] == false);
    CHECK(description.value().warnings.size() == 1);
}

TEST_CASE("build: describe refuses a corrupted signature and a bad CRC")
{
    test::TempDir dir;
    test::GuestFixture guest(dir);
    make_rootfs(dir);
    auto now = now_millis();
    Signer signer(dir, now - HOUR, now + HOUR);
    auto request = request_for(dir, guest);
    request.private_key = signer.key_path;
    request.signing_certificate = signer.certificate_path;
    REQUIRE(!eif::build_eif(request).is_error());
    auto bytes = test::read_text(request.output);
    // The last bytes of the file are the COSE signature's s value.
    auto forged = bytes;
    forged[forged.size() - 1] ^= 1;
    dir.write("forged.eif", forged);
    auto crc_error = eif::describe_eif(dir / "forged.eif", now);
    REQUIRE(crc_error.is_error());
    CHECK(crc_error.error().is(eif::EifError::BadCrc));
    CHECK(crc_error.error().message().find("CRC mismatch") != std::string::npos);
    test::fix_eif_crc(dir / "forged.eif");
    auto forged_error = eif::describe_eif(dir / "forged.eif", now);
    REQUIRE(forged_error.is_error());
    CHECK(forged_error.error().is(eif::EifError::BadSignature));
}

TEST_CASE("build: the default command line is docs/FORMATS.md §3's unless the blobs have one")
{
    test::TempDir dir;
    auto absent = eif::default_cmdline(dir / "no-blobs");
    REQUIRE(!absent.is_error());
    CHECK(absent.value() == "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
                            "random.trust_cpu=on cryptomgr.notests quiet");
    CHECK(absent.value() == eif::DEFAULT_CMDLINE);

    dir.write("blobs/cmdline", "  console=ttyS0 quiet\n");
    auto given = eif::default_cmdline(dir / "blobs");
    REQUIRE(!given.is_error());
    CHECK(given.value() == "console=ttyS0 quiet");

    dir.write("big/cmdline", std::string(5000, 'a'));
    auto big = eif::default_cmdline(dir / "big");
    REQUIRE(big.is_error());
    CHECK(big.error().is(eif::EifError::MissingInput));
}
