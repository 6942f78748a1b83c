#include <qtbox/pki/pki.hpp>

#include "names.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/crypto/x509_write.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qtbox::pki {

namespace {

constexpr std::size_t MAX_PARENT_NAME_SIZE = 57; // "<name>.parent" ≤ 64 (RFC 5280 ub-common-name)
constexpr std::string_view ORGANIZATION = "O=qtbox";
constexpr std::uint16_t CA_KEY_USAGE = crypto::key_usage::KEY_CERT_SIGN | crypto::key_usage::CRL_SIGN;

std::string path_in(std::string const& directory, std::string_view file)
{
    return fmt::format("{}/{}", directory, file);
}

Error pki_error(PkiError code, std::string message)
{
    return Error::from_code(code, std::move(message));
}

ErrorOr<bool> exists(std::string const& path)
{
    auto status = sys::lstat(path);
    if (!status.is_error())
        return true;
    if (status.error().is_errno(ENOENT))
        return false;
    return status.release_error();
}

// A PKI file is trusted only when nobody but this user (or root) could have
// put it there or changed it: owned by one of them, writable by no one
// else, and, for a private key, readable by no one else either (as ssh
// treats its keys).
ErrorOr<UniqueFd> open_pki_file(std::string const& path, bool private_key)
{
    auto fd = sys::open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd.is_error() && fd.error().is_errno(ENOENT))
        return pki_error(PkiError::Missing, fmt::format("{}: no such file (the PKI is created by `qt pki init`)", path));
    auto file = TRY(std::move(fd));
    auto status = TRY(sys::fstat(file.get()));
    if (!S_ISREG(status.st_mode))
        return pki_error(PkiError::Invalid, fmt::format("{}: not a regular file", path));
    if (status.st_uid != ::geteuid() && status.st_uid != 0)
        return pki_error(PkiError::Invalid, fmt::format("{}: owned by uid {}, not by this user (uid {}) or root", path, status.st_uid, ::geteuid()));
    if (private_key && (status.st_mode & 077) != 0)
        return pki_error(PkiError::Invalid,
            fmt::format("{}: the private key is accessible by group or others (mode {:04o}); it must be 0600", path, status.st_mode & 07777));
    if ((status.st_mode & 022) != 0)
        return pki_error(PkiError::Invalid, fmt::format("{}: writable by group or others (mode {:04o})", path, status.st_mode & 07777));
    return file;
}

ErrorOr<Bytes> read_pki_file(std::string const& path)
{
    auto file = TRY(open_pki_file(path, false));
    return sys::read_fd(file.get(), MAX_PKI_FILE_SIZE);
}

ErrorOr<void> check_directory(std::string const& directory, std::string_view what)
{
    // A missing directory is left to the file it should hold to report.
    auto checked = sys::check_trusted_directory(directory, what);
    if (checked.is_error() && checked.error().is_errno(ENOENT))
        return {};
    if (checked.is_error())
        return pki_error(PkiError::Invalid, checked.error().message());
    return {};
}

ErrorOr<crypto::Certificate> read_certificate(std::string const& path)
{
    auto bytes = TRY(read_pki_file(path));
    auto certificate = crypto::Certificate::parse(bytes);
    if (certificate.is_error())
        return pki_error(PkiError::Invalid, fmt::format("{}: {}", path, certificate.error().message()));
    return certificate.release_value();
}

ErrorOr<crypto::PrivateKey> read_private_key(std::string const& path)
{
    auto file = TRY(open_pki_file(path, true));
    auto bytes = TRY(sys::read_fd(file.get(), MAX_PKI_FILE_SIZE));
    auto key = crypto::PrivateKey::parse(bytes);
    secure_zero(bytes.data(), bytes.size());
    if (key.is_error())
        return pki_error(PkiError::Invalid, fmt::format("{}: {}", path, key.error().message()));
    return key.release_value();
}

ErrorOr<void> write_key(std::string const& path, crypto::PrivateKey const& key)
{
    auto pem = TRY(key.to_pem());
    // AtomicFile's temporary is created 0600 (mkostemp): the key is never
    // readable by anyone else, not even before the rename.
    return sys::write_file_atomic(path, pem.view(), 0600);
}

} // namespace

std::string pki_directory()
{
    char const* value = std::getenv(std::string(PKI_DIR_ENVIRONMENT).c_str());
    if (value == nullptr || *value == '\0')
        return std::string(DEFAULT_PKI_DIR);
    return value;
}

ErrorOr<Generated> generate(InitOptions const& options)
{
    TRY(check_name(options.parent_name, MAX_PARENT_NAME_SIZE, "parent name"));
    UnixMillis now = options.now.value_or(now_millis());
    auto root_key = TRY(crypto::PrivateKey::generate(crypto::KeyType::EcP384));
    crypto::CertificateProfile root_profile;
    root_profile.subject = std::string(ROOT_SUBJECT);
    root_profile.not_before = now;
    root_profile.not_after = now + ROOT_LIFETIME_MS;
    root_profile.is_ca = true;
    root_profile.key_usage = CA_KEY_USAGE;
    auto root = TRY(crypto::self_sign_certificate(root_profile, root_key));

    auto parent_key = TRY(crypto::PrivateKey::generate(crypto::KeyType::EcP384));
    crypto::CertificateProfile parent_profile = root_profile;
    parent_profile.subject = fmt::format("CN={}.parent,{}", options.parent_name, ORGANIZATION);
    // Only leaves below the parent CA (docs/FORMATS.md §4 "Chain").
    parent_profile.path_length = 0;
    auto parent = TRY(crypto::issue_certificate(parent_profile, parent_key.public_key(), root, root_key));
    return Generated { Authority { std::move(root), std::move(parent), std::move(parent_key) }, std::move(root_key) };
}

ErrorOr<Authority> init(std::string const& directory, bool force, InitOptions const& options)
{
    TRY(check_name(options.parent_name, MAX_PARENT_NAME_SIZE, "parent name"));
    bool offline = !options.offline_root_directory.empty();
    std::string const root_certificate_path = path_in(directory, ROOT_CERTIFICATE_FILE);
    std::string const online_root_key_path = path_in(directory, ROOT_KEY_FILE);
    std::string const root_key_path = offline ? path_in(options.offline_root_directory, ROOT_KEY_FILE) : online_root_key_path;
    std::string const parent_certificate_path = path_in(directory, PARENT_CERTIFICATE_FILE);
    std::string const parent_key_path = path_in(directory, PARENT_KEY_FILE);
    if (!force) {
        for (auto const* path : { &root_certificate_path, &root_key_path, &parent_certificate_path, &parent_key_path }) {
            if (TRY(exists(*path)))
                return pki_error(PkiError::AlreadyExists, fmt::format("{} already exists (use --force to replace it)", *path));
        }
    }
    // Private to its owner from the start; one that already exists must
    // not be open to anyone else (load() checks the same).
    TRY(sys::mkdir_p(directory, 0700));
    TRY(check_directory(directory, "PKI directory"));
    if (offline) {
        TRY(sys::mkdir_p(options.offline_root_directory, 0700));
        TRY(check_directory(options.offline_root_directory, "offline root directory"));
        auto pki_status = TRY(sys::stat(directory));
        auto offline_status = TRY(sys::stat(options.offline_root_directory));
        if (pki_status.st_dev == offline_status.st_dev && pki_status.st_ino == offline_status.st_ino)
            return pki_error(PkiError::InvalidName,
                fmt::format("the offline root directory {} is the PKI directory; give a directory on other media", options.offline_root_directory));
    }
    auto generated = TRY(generate(options));
    Authority& authority = generated.authority;

    // Keys first: a crash between the writes leaves certificates that do
    // not match, which load() reports, never a certificate without its key.
    TRY(write_key(root_key_path, generated.root_key));
    TRY(write_key(parent_key_path, authority.parent_key));
    TRY(sys::write_file_atomic(root_certificate_path, as_bytes(authority.root.pem()), 0644));
    TRY(sys::write_file_atomic(parent_certificate_path, as_bytes(authority.parent.pem()), 0644));
    if (offline) {
        // The root key's certificate goes with it; a root key left online
        // by an earlier init would outlive the root it belonged to.
        TRY(sys::write_file_atomic(path_in(options.offline_root_directory, ROOT_CERTIFICATE_FILE), as_bytes(authority.root.pem()), 0644));
        if (::unlink(online_root_key_path.c_str()) < 0 && errno != ENOENT)
            return Error::from_errno(fmt::format("remove the old {}", online_root_key_path));
    }
    return std::move(authority);
}

ErrorOr<Authority> load(std::string const& directory)
{
    std::string const root_path = path_in(directory, ROOT_CERTIFICATE_FILE);
    std::string const parent_path = path_in(directory, PARENT_CERTIFICATE_FILE);
    std::string const key_path = path_in(directory, PARENT_KEY_FILE);
    TRY(check_directory(directory, "PKI directory"));
    auto root = TRY(read_certificate(root_path));
    auto parent = TRY(read_certificate(parent_path));
    auto parent_key = TRY(read_private_key(key_path));
    if (!root.is_ca() || !root.is_self_issued())
        return pki_error(PkiError::Invalid, fmt::format("{}: not a self-signed CA certificate", root_path));
    if (!parent.is_ca())
        return pki_error(PkiError::Invalid, fmt::format("{}: not a CA certificate", parent_path));
    auto signed_by_root = parent.verify_signed_by(root);
    if (signed_by_root.is_error())
        return pki_error(PkiError::Invalid, fmt::format("{}: not issued by {}: {}", parent_path, root_path, signed_by_root.error().message()));
    if (!parent_key.matches(parent.public_key()))
        return pki_error(PkiError::Invalid, fmt::format("{} does not match {}", key_path, parent_path));
    return Authority { std::move(root), std::move(parent), std::move(parent_key) };
}

CertificateSummary summarize(crypto::Certificate const& certificate, std::string path)
{
    CertificateSummary summary;
    summary.path = std::move(path);
    summary.subject = certificate.subject();
    summary.issuer = certificate.issuer();
    summary.serial_hex = certificate.serial_hex();
    summary.not_before = certificate.not_before();
    summary.not_after = certificate.not_after();
    summary.sha256_fingerprint = hex_encode(certificate.sha256_fingerprint());
    summary.is_ca = certificate.is_ca();
    summary.max_path_length = certificate.max_path_length();
    summary.key_usage = crypto::key_usage_names(certificate.key_usage().value_or(0));
    summary.key_type = std::string(crypto::key_type_name(certificate.public_key().type()));
    summary.signature_algorithm = certificate.signature_algorithm();
    return summary;
}

ErrorOr<Summary> show(std::string const& directory)
{
    auto authority = TRY(load(directory));
    return Summary {
        directory,
        summarize(authority.root, path_in(directory, ROOT_CERTIFICATE_FILE)),
        summarize(authority.parent, path_in(directory, PARENT_CERTIFICATE_FILE)),
    };
}

} // namespace qtbox::pki
