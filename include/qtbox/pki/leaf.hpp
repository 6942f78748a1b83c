// Leaf certificates for attestation documents (docs/FORMATS.md §4 "Chain"): per
// enclave, the key generated in memory (the VMM's; it is never written
// anywhere), issued by the parent CA, valid 3 hours, re-issued every hour so
// that a document is always signed by a leaf with at least 2 hours left.
//
// Leaf: subject "CN=<module id>,O=qtbox", P-384, basicConstraints CA:false,
// keyUsage digitalSignature only (critical), ECDSA-SHA384 by the parent.
//
// The clock is injectable: tests pass a function returning the instant they
// want, to step over the 1 h rotation and the 3 h expiry without waiting.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/crypto/keys.hpp>
#include <qtbox/crypto/x509.hpp>
#include <qtbox/pki/pki.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace qtbox::pki {

constexpr std::int64_t LEAF_LIFETIME_MS = 3 * 3600 * 1000;
constexpr std::int64_t LEAF_ROTATION_MS = 1 * 3600 * 1000;
// The module id is the leaf's commonName, whose upper bound is 64
// characters (RFC 5280 Appendix A ub-common-name); docs/FORMATS.md §4's
// "<instance-id>.enc-<16 hex>" has 57.
constexpr std::size_t MAX_MODULE_ID_SIZE = 64;

using Clock = std::function<UnixMillis()>;

// One issued leaf. Immutable; held by shared_ptr so that a signer can keep
// using the leaf it took while the issuer rotates to a new one.
struct Leaf {
    crypto::PrivateKey key;
    crypto::Certificate certificate;
    // DER, root first, the leaf's issuer (the parent CA) last: the
    // attestation document's `cabundle` (docs/FORMATS.md §4).
    std::vector<Bytes> cabundle;
    // The instant it was issued (= certificate.not_before(), in whole seconds).
    UnixMillis issued_at { 0 };
};

class LeafIssuer {
public:
    // `module_id` becomes the leaf's CN: 1..MAX_MODULE_ID_SIZE characters
    // of [A-Za-z0-9._-]. The first leaf is issued here.
    static ErrorOr<std::unique_ptr<LeafIssuer>> create(Authority authority, std::string module_id,
        Clock clock = now_millis);

    // The current leaf; issues a new one first when the current one is
    // LEAF_ROTATION_MS old or older, or when the clock went back before its
    // start. Thread-safe.
    ErrorOr<std::shared_ptr<Leaf const>> current();

    std::string const& module_id() const { return m_module_id; }
    Authority const& authority() const { return m_authority; }

private:
    LeafIssuer(Authority authority, std::string module_id, Clock clock)
        : m_authority(std::move(authority)), m_module_id(std::move(module_id)), m_clock(std::move(clock)) { }

    Authority m_authority;
    std::string m_module_id;
    Clock m_clock;
    std::mutex m_mutex;
    std::shared_ptr<Leaf const> m_current;
};

// Issues one leaf at `now` without rotation bookkeeping (tests, tools).
ErrorOr<std::shared_ptr<Leaf const>> issue_leaf(Authority const& authority, std::string const& module_id, UnixMillis now);

} // namespace qtbox::pki
