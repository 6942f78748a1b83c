// The local attestation PKI (docs/FORMATS.md §4 "PKI directory layout" and "Chain").
//
// A directory (QTBOX_PKI_DIR, default /var/lib/qtbox/pki, docs/FORMATS.md §1) holds:
//   root.pem    self-signed P-384 root, "CN=qtbox-root, O=qtbox", 30 years,
//               CA without a path length (like QingTian's root), keyUsage
//               keyCertSign | cRLSign
//   root.key    its SEC1 PEM private key, mode 0600; with --offline-root
//               (InitOptions::offline_root_directory) it is written there
//               instead, with a copy of root.pem, and never read again: the
//               parent CA is all the VMM needs
//   parent.pem  the parent CA, "CN=<parent name>.parent, O=qtbox", issued by
//               the root for as long as the root is valid, CA with
//               pathLenConstraint 0 (it issues only leaves), keyUsage
//               keyCertSign | cRLSign
//   parent.key  its private key, mode 0600
// Private keys are written through sys::AtomicFile, whose temporary file is
// created 0600 by mkostemp, so a key is never group or world readable, not
// even while it is being written. init() never replaces an existing file
// unless told to (force). The directory is created 0700; load() trusts it
// and its files only when they are owned by the caller's user or root and
// writable by nobody else (PkiError::Invalid otherwise).
//
// Leaves (leaf.hpp) are issued by the parent CA in memory, per enclave.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/x509.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::pki {

constexpr std::string_view DEFAULT_PKI_DIR = "/var/lib/qtbox/pki";
constexpr std::string_view PKI_DIR_ENVIRONMENT = "QTBOX_PKI_DIR";
constexpr std::string_view ROOT_CERTIFICATE_FILE = "root.pem";
constexpr std::string_view ROOT_KEY_FILE = "root.key";
constexpr std::string_view PARENT_CERTIFICATE_FILE = "parent.pem";
constexpr std::string_view PARENT_KEY_FILE = "parent.key";
// Upper bound when reading any of the four files.
constexpr std::size_t MAX_PKI_FILE_SIZE = 64 * 1024;

constexpr std::string_view ROOT_SUBJECT = "CN=qtbox-root,O=qtbox";
constexpr std::string_view DEFAULT_PARENT_NAME = "qtbox";
// docs/FORMATS.md §4: 30 years (of 365.25 days).
constexpr std::int64_t ROOT_LIFETIME_MS = 30LL * 36525 * 24 * 3600 * 1000 / 100;

enum class PkiError {
    // init without force found one of the four files (the message names it).
    AlreadyExists = 1,
    // load/show: a file is missing (the message names it).
    Missing,
    // A file does not parse, the parent is not issued by the root, a key
    // does not match its certificate, a key file is readable by group or
    // others, or a file or the directory is owned by another user or
    // writable by group or others.
    Invalid,
    // A name given by the caller (--parent-name, --offline-root) is not allowed.
    InvalidName,
};

// $QTBOX_PKI_DIR, or DEFAULT_PKI_DIR when unset or empty.
std::string pki_directory();

// What a leaf issuer needs (the root key stays on disk).
struct Authority {
    crypto::Certificate root;
    crypto::Certificate parent;
    crypto::PrivateKey parent_key;
};

struct InitOptions {
    // The parent CA's subject is "CN=<parent_name>.parent,O=qtbox". A
    // QingTian parent is named by its instance id (docs/FORMATS.md §2, PCR4); qtbox
    // takes whatever identifies this host to the caller: 1..57 characters
    // of [A-Za-z0-9._-] (the CN stays within RFC 5280's 64-character bound).
    std::string parent_name { DEFAULT_PARENT_NAME };
    // The instant the certificates start; now when unset (tests fix it).
    std::optional<UnixMillis> now;
    // Where root.key (and a copy of root.pem) go instead of the PKI
    // directory: removable media kept offline. Created 0700; must be
    // another directory. Empty: root.key stays beside parent.key.
    std::string offline_root_directory;
};

// A new root and parent CA in memory, nothing written (init() writes them;
// a debug enclave without a local PKI gets a throwaway one, vmm/qtsm.hpp).
struct Generated {
    Authority authority;
    crypto::PrivateKey root_key;
};
ErrorOr<Generated> generate(InitOptions const& options = {});

// Creates `directory` (mode 0700) if needed, makes the root and the parent
// CA, writes the four files (keys 0600, certificates 0644; root.key in the
// offline root directory when one is given, removing an old one from
// `directory`) and returns the authority. Without `force` it refuses, before writing anything, when any of
// the four files exists (PkiError::AlreadyExists, "<path> already exists
// (use --force to replace it)").
ErrorOr<Authority> init(std::string const& directory, bool force, InitOptions const& options = {});

// Reads root.pem, parent.pem and parent.key, and checks that the parent is a
// CA issued by the root (signature and constraints; validity is not checked
// here) and that the key matches parent.pem. Refuses a parent.key that is
// group or world accessible, and any file or a directory that another user
// owns or that group or others may write (PkiError::Invalid), as ssh does.
ErrorOr<Authority> load(std::string const& directory);

// For `qt pki show`.
struct CertificateSummary {
    std::string path;
    std::string subject;
    std::string issuer;
    std::string serial_hex;
    UnixMillis not_before { 0 };
    UnixMillis not_after { 0 };
    std::string sha256_fingerprint; // lowercase hex
    bool is_ca { false };
    std::optional<unsigned> max_path_length;
    std::string key_usage;    // key_usage_names()
    std::string key_type;     // "P-384"
    std::string signature_algorithm;
};

struct Summary {
    std::string directory;
    CertificateSummary root;
    CertificateSummary parent;
};

// Loads like load() (same checks) and describes both certificates.
ErrorOr<Summary> show(std::string const& directory);

CertificateSummary summarize(crypto::Certificate const& certificate, std::string path);

} // namespace qtbox::pki
