#include "../support/must.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/crypto/chain.hpp>
#include <qtbox/pki/leaf.hpp>
#include <qtbox/pki/pki.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace qtbox;
using pki::PkiError;
using test::must;

namespace {

// 2026-03-01T12:00:00.250Z: the fraction checks that X.509 times are floored.
constexpr UnixMillis T0 = 1772366400250;
constexpr UnixMillis T0_SECOND = 1772366400000;
constexpr std::int64_t HOUR = 3600 * 1000;
constexpr std::int64_t SECOND = 1000;

// DIR/pki inside a temporary directory: pki::init creates it.
struct Directory {
    std::string file(std::string_view name) const { return path + "/" + std::string(name); }
    test::TempDir base;
    std::string path = base / "pki";
};

mode_t mode_of(std::string const& path) { return must(sys::stat(path)).st_mode & 07777; }

std::string contents(std::string const& path)
{
    return std::string(as_chars(must(sys::read_file(path, 1 << 20))));
}

pki::InitOptions options_at(UnixMillis now, std::string name = "host-1")
{
    pki::InitOptions options;
    options.parent_name = std::move(name);
    options.now = now;
    return options;
}

} // namespace

TEST_CASE("pki: init writes the four files, keys 0600 and certificates 0644, even under umask 0")
{
    Directory directory;
    mode_t old_umask = ::umask(0);
    auto authority = pki::init(directory.path, false, options_at(T0));
    ::umask(old_umask);
    REQUIRE_MESSAGE(!authority.is_error(), authority.error().message());
    CHECK(mode_of(directory.file("root.key")) == 0600);
    CHECK(mode_of(directory.file("parent.key")) == 0600);
    CHECK(mode_of(directory.file("root.pem")) == 0644);
    CHECK(mode_of(directory.file("parent.pem")) == 0644);
    CHECK(contents(directory.file("root.key")).starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
    // Nothing else (no leftover temporary files).
    std::size_t entries = 0;
    for ([[maybe_unused]] auto const& entry : std::filesystem::directory_iterator(directory.path))
        ++entries;
    CHECK(entries == 4);
}

TEST_CASE("pki: the root and parent CA have the docs/FORMATS.md §4 shape")
{
    Directory directory;
    auto authority = must(pki::init(directory.path, false, options_at(T0)));
    auto const& root = authority.root;
    auto const& parent = authority.parent;
    CHECK(root.subject() == "CN=qtbox-root, O=qtbox");
    CHECK(root.is_self_issued());
    CHECK(root.is_ca());
    CHECK(root.max_path_length() == std::nullopt);
    CHECK(root.key_usage() == (crypto::key_usage::KEY_CERT_SIGN | crypto::key_usage::CRL_SIGN));
    CHECK(root.not_before() == T0_SECOND);
    CHECK(root.not_after() == T0_SECOND + pki::ROOT_LIFETIME_MS);
    CHECK(format_rfc3339(root.not_after()) == "2056-03-01T00:00:00Z");
    CHECK(root.public_key().type() == crypto::KeyType::EcP384);
    CHECK(root.signature_algorithm() == "ECDSA with SHA384");

    CHECK(parent.subject() == "CN=host-1.parent, O=qtbox");
    CHECK(parent.issuer() == "CN=qtbox-root, O=qtbox");
    CHECK(parent.is_ca());
    CHECK(parent.max_path_length() == 0u);
    CHECK(parent.key_usage() == (crypto::key_usage::KEY_CERT_SIGN | crypto::key_usage::CRL_SIGN));
    CHECK(parent.not_before() == root.not_before());
    CHECK(parent.not_after() == root.not_after());
    must(parent.verify_signed_by(root));
    CHECK(authority.parent_key.matches(parent.public_key()));
    auto root_key = must(crypto::PrivateKey::parse(as_bytes(contents(directory.file("root.key")))));
    CHECK(root_key.matches(root.public_key()));
}

TEST_CASE("pki: init refuses to overwrite without force, naming the file, and changes nothing")
{
    Directory directory;
    must(pki::init(directory.path, false, options_at(T0)));
    auto root_before = contents(directory.file("root.pem"));
    auto key_before = contents(directory.file("parent.key"));
    auto again = pki::init(directory.path, false, options_at(T0));
    REQUIRE(again.is_error());
    CHECK(again.error().is(PkiError::AlreadyExists));
    CHECK(again.error().message() == directory.file("root.pem") + " already exists (use --force to replace it)");
    CHECK(contents(directory.file("root.pem")) == root_before);
    CHECK(contents(directory.file("parent.key")) == key_before);

    // Any one of the four is enough to refuse.
    std::filesystem::remove(directory.file("root.pem"));
    std::filesystem::remove(directory.file("root.key"));
    std::filesystem::remove(directory.file("parent.pem"));
    auto partial = pki::init(directory.path, false, options_at(T0));
    REQUIRE(partial.is_error());
    CHECK(partial.error().message() == directory.file("parent.key") + " already exists (use --force to replace it)");
    CHECK(contents(directory.file("parent.key")) == key_before);

    auto forced = must(pki::init(directory.path, true, options_at(T0)));
    CHECK(contents(directory.file("root.pem")) != root_before);
    CHECK(contents(directory.file("parent.key")) != key_before);
    CHECK(mode_of(directory.file("parent.key")) == 0600);
    CHECK(must(pki::load(directory.path)).root == forced.root);
}

TEST_CASE("pki: load returns what init made; show describes it")
{
    Directory directory;
    auto made = must(pki::init(directory.path, false, options_at(T0, "i-0123")));
    auto loaded = must(pki::load(directory.path));
    CHECK(loaded.root == made.root);
    CHECK(loaded.parent == made.parent);
    CHECK(loaded.parent_key.matches(made.parent.public_key()));

    auto summary = must(pki::show(directory.path));
    CHECK(summary.directory == directory.path);
    CHECK(summary.root.path == directory.file("root.pem"));
    CHECK(summary.root.subject == "CN=qtbox-root, O=qtbox");
    CHECK(summary.root.issuer == "CN=qtbox-root, O=qtbox");
    CHECK(summary.root.sha256_fingerprint == hex_encode(made.root.sha256_fingerprint()));
    CHECK(summary.root.not_before == T0_SECOND);
    CHECK(summary.root.is_ca);
    CHECK(summary.root.max_path_length == std::nullopt);
    CHECK(summary.root.key_usage == "keyCertSign, cRLSign");
    CHECK(summary.root.key_type == "P-384");
    CHECK(summary.root.signature_algorithm == "ECDSA with SHA384");
    CHECK(summary.root.serial_hex == made.root.serial_hex());
    CHECK(summary.parent.subject == "CN=i-0123.parent, O=qtbox");
    CHECK(summary.parent.max_path_length == 0u);
    CHECK(summary.parent.sha256_fingerprint == hex_encode(made.parent.sha256_fingerprint()));
}

TEST_CASE("pki: load refuses missing, exposed, mismatched and foreign files")
{
    Directory directory;
    auto missing = pki::load(directory.path);
    REQUIRE(missing.is_error());
    CHECK(missing.error().is(PkiError::Missing));
    CHECK(missing.error().message() == directory.file("root.pem") + ": no such file (the PKI is created by `qt pki init`)");

    must(pki::init(directory.path, false, options_at(T0)));
    REQUIRE(::chmod(directory.file("parent.key").c_str(), 0640) == 0);
    auto exposed = pki::load(directory.path);
    REQUIRE(exposed.is_error());
    CHECK(exposed.error().is(PkiError::Invalid));
    CHECK(exposed.error().message()
        == directory.file("parent.key") + ": the private key is accessible by group or others (mode 0640); it must be 0600");
    REQUIRE(::chmod(directory.file("parent.key").c_str(), 0600) == 0);

    std::filesystem::copy_file(directory.file("root.key"), directory.file("parent.key"), std::filesystem::copy_options::overwrite_existing);
    auto mismatched = pki::load(directory.path);
    REQUIRE(mismatched.is_error());
    CHECK(mismatched.error().is(PkiError::Invalid));
    CHECK(mismatched.error().message() == directory.file("parent.key") + " does not match " + directory.file("parent.pem"));

    // A parent CA from another PKI.
    Directory other;
    must(pki::init(other.path, false, options_at(T0)));
    must(pki::init(directory.path, true, options_at(T0)));
    std::filesystem::copy_file(other.file("parent.pem"), directory.file("parent.pem"), std::filesystem::copy_options::overwrite_existing);
    auto foreign = pki::load(directory.path);
    REQUIRE(foreign.is_error());
    CHECK(foreign.error().is(PkiError::Invalid));
    CHECK(foreign.error().message().starts_with(directory.file("parent.pem") + ": not issued by " + directory.file("root.pem")));

    sys::write_file_atomic(directory.file("root.pem"), as_bytes("garbage"), 0644).release_value();
    auto garbage = pki::load(directory.path);
    REQUIRE(garbage.is_error());
    CHECK(garbage.error().is(PkiError::Invalid));
}

TEST_CASE("pki: init creates the directory 0700, and neither init nor load trusts one others may write")
{
    Directory directory;
    mode_t old_umask = ::umask(0);
    must(pki::init(directory.path, false, options_at(T0)));
    ::umask(old_umask);
    CHECK(mode_of(directory.path) == 0700);

    REQUIRE(::chmod(directory.path.c_str(), 0777) == 0);
    auto open_directory = pki::load(directory.path);
    REQUIRE(open_directory.is_error());
    CHECK(open_directory.error().is(PkiError::Invalid));
    CHECK(open_directory.error().message()
        == "PKI directory " + directory.path + " is writable by everyone (mode 0777); make it 0755 or stricter");
    auto init_open = pki::init(directory.path, true, options_at(T0));
    REQUIRE(init_open.is_error());
    CHECK(init_open.error().is(PkiError::Invalid));
    REQUIRE(::chmod(directory.path.c_str(), 0770) == 0);
    CHECK(pki::load(directory.path).error().message()
        == "PKI directory " + directory.path + " is writable by its group (mode 0770); make it 0755 or stricter");
    // Readable is fine: the keys themselves are 0600.
    REQUIRE(::chmod(directory.path.c_str(), 0755) == 0);
    must(pki::load(directory.path));
}

TEST_CASE("pki: load refuses a certificate others may write, and files another user owns")
{
    Directory directory;
    must(pki::init(directory.path, false, options_at(T0)));
    REQUIRE(::chmod(directory.file("parent.pem").c_str(), 0666) == 0);
    auto writable = pki::load(directory.path);
    REQUIRE(writable.is_error());
    CHECK(writable.error().is(PkiError::Invalid));
    CHECK(writable.error().message() == directory.file("parent.pem") + ": writable by group or others (mode 0666)");
    REQUIRE(::chmod(directory.file("parent.pem").c_str(), 0644) == 0);
    must(pki::load(directory.path));
    if (::geteuid() != 0)
        return; // giving a file away needs root
    REQUIRE(::chown(directory.file("parent.key").c_str(), 4321, 4321) == 0);
    auto foreign_key = pki::load(directory.path);
    REQUIRE(foreign_key.is_error());
    CHECK(foreign_key.error().is(PkiError::Invalid));
    CHECK(foreign_key.error().message() == directory.file("parent.key") + ": owned by uid 4321, not by this user (uid 0) or root");
    REQUIRE(::chown(directory.file("parent.key").c_str(), 0, 0) == 0);
    REQUIRE(::chown(directory.path.c_str(), 4321, 4321) == 0);
    auto foreign_directory = pki::load(directory.path);
    REQUIRE(foreign_directory.is_error());
    CHECK(foreign_directory.error().is(PkiError::Invalid));
    CHECK(foreign_directory.error().message() == "PKI directory " + directory.path + " is owned by uid 4321, not by this user (uid 0) or root");
}

TEST_CASE("pki: with an offline root directory, root.key is written there and never beside parent.key")
{
    Directory directory;
    // A PKI made before, with its root key online.
    must(pki::init(directory.path, false, options_at(T0)));
    REQUIRE(std::filesystem::exists(directory.file("root.key")));
    auto offline = directory.base / "media/qtbox-root";
    auto options = options_at(T0 + HOUR);
    options.offline_root_directory = offline;
    auto refused = pki::init(directory.path, false, options);
    REQUIRE(refused.is_error());
    CHECK(refused.error().is(PkiError::AlreadyExists));

    auto authority = must(pki::init(directory.path, true, options));
    CHECK(!std::filesystem::exists(directory.file("root.key")));
    CHECK(mode_of(offline) == 0700);
    CHECK(mode_of(offline + "/root.key") == 0600);
    CHECK(contents(offline + "/root.pem") == contents(directory.file("root.pem")));
    auto root_key = must(crypto::PrivateKey::parse(as_bytes(contents(offline + "/root.key"))));
    CHECK(root_key.matches(authority.root.public_key()));
    // The PKI directory alone is all load() needs.
    auto loaded = must(pki::load(directory.path));
    CHECK(loaded.root.sha256_fingerprint() == authority.root.sha256_fingerprint());
    std::size_t entries = 0;
    for ([[maybe_unused]] auto const& entry : std::filesystem::directory_iterator(directory.path))
        ++entries;
    CHECK(entries == 3);

    // Not the PKI directory itself, and not one others may write.
    options.offline_root_directory = directory.path + "/.";
    auto same = pki::init(directory.path, true, options);
    REQUIRE(same.is_error());
    CHECK(same.error().is(PkiError::InvalidName));
    REQUIRE(::chmod(offline.c_str(), 0777) == 0);
    options.offline_root_directory = offline;
    auto open_offline = pki::init(directory.path, true, options);
    REQUIRE(open_offline.is_error());
    CHECK(open_offline.error().message() == "offline root directory " + offline + " is writable by everyone (mode 0777); make it 0755 or stricter");
}

TEST_CASE("pki: parent names and module ids are restricted to a safe alphabet")
{
    Directory directory;
    for (std::string name : std::vector<std::string> { "", "a,b", "CN=x", std::string(58, 'a'), "space name" }) {
        auto result = pki::init(directory.path, false, options_at(T0, name));
        REQUIRE(result.is_error());
        CHECK(result.error().message().starts_with("invalid parent name"));
    }
    CHECK_FALSE(std::filesystem::exists(directory.path));
    auto authority = must(pki::init(directory.path, false, options_at(T0, std::string(57, 'a'))));
    for (std::string id : std::vector<std::string> { "", "x,O=evil", std::string(65, 'b') }) {
        auto leaf = pki::issue_leaf(authority, id, T0);
        REQUIRE(leaf.is_error());
        CHECK(leaf.error().message().starts_with("invalid module id"));
    }
}

TEST_CASE("pki: the directory comes from QTBOX_PKI_DIR, else /var/lib/qtbox/pki")
{
    ::unsetenv("QTBOX_PKI_DIR");
    CHECK(pki::pki_directory() == "/var/lib/qtbox/pki");
    ::setenv("QTBOX_PKI_DIR", "", 1);
    CHECK(pki::pki_directory() == "/var/lib/qtbox/pki");
    ::setenv("QTBOX_PKI_DIR", "/tmp/elsewhere", 1);
    CHECK(pki::pki_directory() == "/tmp/elsewhere");
    ::unsetenv("QTBOX_PKI_DIR");
}

TEST_CASE("leaf: a P-384 leaf valid 3 h with digitalSignature only, and the cabundle root first")
{
    Directory directory;
    auto authority = must(pki::init(directory.path, false, options_at(T0)));
    std::string module_id = "4662b7a3-7898-46c9-a6c5-20e9025e50bc.enc-37d1e07b3da3c427";
    auto leaf = must(pki::issue_leaf(authority, module_id, T0 + HOUR));
    auto const& certificate = leaf->certificate;
    CHECK(certificate.subject() == "CN=" + module_id + ", O=qtbox");
    CHECK(certificate.issuer() == "CN=host-1.parent, O=qtbox");
    CHECK_FALSE(certificate.is_ca());
    CHECK(certificate.key_usage() == crypto::key_usage::DIGITAL_SIGNATURE);
    CHECK(certificate.not_before() == T0_SECOND + HOUR);
    CHECK(certificate.not_after() == T0_SECOND + 4 * HOUR);
    CHECK(leaf->issued_at == T0_SECOND + HOUR);
    CHECK(leaf->key.type() == crypto::KeyType::EcP384);
    CHECK(leaf->key.matches(certificate.public_key()));
    REQUIRE(leaf->cabundle.size() == 2);
    CHECK(std::ranges::equal(leaf->cabundle[0], authority.root.der()));
    CHECK(std::ranges::equal(leaf->cabundle[1], authority.parent.der()));

    std::vector intermediates { authority.parent };
    std::vector roots { authority.root };
    must(crypto::verify_chain(certificate, intermediates, roots, T0 + HOUR));
    auto signature = must(leaf->key.sign(as_bytes("document")));
    must(certificate.public_key().verify(as_bytes("document"), signature));
}

TEST_CASE("leaf: the issuer rotates after 1 h; an old leaf expires at 3 h, checked at 3 h + 1 s")
{
    Directory directory;
    auto authority = must(pki::init(directory.path, false, options_at(T0)));
    std::vector intermediates { authority.parent };
    std::vector roots { authority.root };
    std::atomic<UnixMillis> now { T0 };
    auto issuer = must(pki::LeafIssuer::create(std::move(authority), "module-1", [&] { return now.load(); }));
    CHECK(issuer->module_id() == "module-1");

    auto first = must(issuer->current());
    CHECK(first->issued_at == T0_SECOND);
    now = T0_SECOND + HOUR - 1;
    CHECK(must(issuer->current()) == first);

    now = T0_SECOND + HOUR;
    auto second = must(issuer->current());
    CHECK(second != first);
    CHECK(second->issued_at == T0_SECOND + HOUR);
    CHECK(second->certificate.serial() != first->certificate.serial());
    CHECK_FALSE(second->key.matches(first->certificate.public_key()));

    // The first leaf is still good at exactly 3 h, and expired one second later.
    must(crypto::verify_chain(first->certificate, intermediates, roots, T0_SECOND + 3 * HOUR));
    auto late = crypto::verify_chain(first->certificate, intermediates, roots, T0_SECOND + 3 * HOUR + SECOND);
    REQUIRE(late.is_error());
    CHECK(late.error().is(crypto::ChainError::Expired));
    must(crypto::verify_chain(second->certificate, intermediates, roots, T0_SECOND + 3 * HOUR + SECOND));

    now = T0_SECOND + 2 * HOUR + 30 * 60 * SECOND;
    auto third = must(issuer->current());
    CHECK(third != second);
    CHECK(third->issued_at == now.load());

    // A clock that went back before the current leaf's start gets a new leaf.
    now = T0_SECOND;
    auto fourth = must(issuer->current());
    CHECK(fourth != third);
    CHECK(fourth->issued_at == T0_SECOND);
}

TEST_CASE("leaf: concurrent callers share one leaf")
{
    Directory directory;
    auto authority = must(pki::init(directory.path, false, options_at(T0)));
    auto issuer = must(pki::LeafIssuer::create(std::move(authority), "module-2", [] { return T0 + 5 * HOUR; }));
    std::vector<std::shared_ptr<pki::Leaf const>> seen(8);
    std::vector<std::thread> threads;
    for (std::size_t index = 0; index < seen.size(); ++index) {
        threads.emplace_back([&, index] {
            auto leaf = issuer->current();
            if (!leaf.is_error())
                seen[index] = leaf.release_value();
        });
    }
    for (auto& thread : threads)
        thread.join();
    for (auto const& leaf : seen) {
        REQUIRE(leaf != nullptr);
        CHECK(leaf == seen[0]);
    }
}
