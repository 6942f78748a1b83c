#include <qtbox/pki/leaf.hpp>

#include "names.hpp"

#include <qtbox/crypto/x509_write.hpp>

#include <fmt/format.h>

namespace qtbox::pki {

ErrorOr<std::shared_ptr<Leaf const>> issue_leaf(Authority const& authority, std::string const& module_id, UnixMillis now)
{
    TRY(check_name(module_id, MAX_MODULE_ID_SIZE, "module id"));
    auto key = TRY(crypto::PrivateKey::generate(crypto::KeyType::EcP384));
    // X.509 times have whole seconds: start at the second, so that
    // issued_at is exactly the certificate's notBefore.
    UnixMillis start = now - ((now % 1000) + 1000) % 1000;
    crypto::CertificateProfile profile;
    profile.subject = fmt::format("CN={},O=qtbox", module_id);
    profile.not_before = start;
    profile.not_after = start + LEAF_LIFETIME_MS;
    profile.is_ca = false;
    profile.key_usage = crypto::key_usage::DIGITAL_SIGNATURE;
    auto certificate = TRY(crypto::issue_certificate(profile, key.public_key(), authority.parent, authority.parent_key));
    auto root_der = authority.root.der();
    auto parent_der = authority.parent.der();
    std::vector<Bytes> cabundle {
        Bytes(root_der.begin(), root_der.end()),
        Bytes(parent_der.begin(), parent_der.end()),
    };
    return std::make_shared<Leaf const>(Leaf { std::move(key), std::move(certificate), std::move(cabundle), start });
}

ErrorOr<std::unique_ptr<LeafIssuer>> LeafIssuer::create(Authority authority, std::string module_id, Clock clock)
{
    TRY(check_name(module_id, MAX_MODULE_ID_SIZE, "module id"));
    std::unique_ptr<LeafIssuer> issuer(new LeafIssuer(std::move(authority), std::move(module_id), std::move(clock)));
    TRY(issuer->current());
    return issuer;
}

ErrorOr<std::shared_ptr<Leaf const>> LeafIssuer::current()
{
    std::lock_guard lock(m_mutex);
    UnixMillis now = m_clock();
    bool due = m_current == nullptr || now - m_current->issued_at >= LEAF_ROTATION_MS || now < m_current->issued_at;
    if (due)
        m_current = TRY(issue_leaf(m_authority, m_module_id, now));
    return m_current;
}

} // namespace qtbox::pki
