#include "fixture.hpp"

#include "../support/must.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/crypto/x509_write.hpp>

#include <doctest/doctest.h>

namespace qtbox::test {

Chain make_chain(std::string const& name)
{
    constexpr UnixMillis YEAR_MS = 365LL * 24 * HOUR_MS;
    auto root_key = must(crypto::PrivateKey::generate(crypto::KeyType::EcP384));
    crypto::CertificateProfile root_profile;
    root_profile.subject = "CN=" + name + "-root,O=qtbox tests";
    root_profile.not_before = FIXTURE_NOW - 5 * YEAR_MS;
    root_profile.not_after = FIXTURE_NOW + 5 * YEAR_MS;
    root_profile.is_ca = true;
    root_profile.key_usage = crypto::key_usage::KEY_CERT_SIGN | crypto::key_usage::CRL_SIGN;
    auto root = must(crypto::self_sign_certificate(root_profile, root_key));

    auto ca_key = must(crypto::PrivateKey::generate(crypto::KeyType::EcP384));
    crypto::CertificateProfile ca_profile;
    ca_profile.subject = "CN=" + name + "-ca,O=qtbox tests";
    ca_profile.not_before = FIXTURE_NOW - YEAR_MS / 2;
    ca_profile.not_after = FIXTURE_NOW + YEAR_MS / 2;
    ca_profile.is_ca = true;
    ca_profile.path_length = 0;
    ca_profile.key_usage = crypto::key_usage::KEY_CERT_SIGN | crypto::key_usage::CRL_SIGN;
    auto ca = must(crypto::issue_certificate(ca_profile, ca_key.public_key(), root, root_key));

    auto leaf_key = must(crypto::PrivateKey::generate(crypto::KeyType::EcP384));
    crypto::CertificateProfile leaf_profile;
    leaf_profile.subject = "CN=" + name + "-leaf,O=qtbox tests";
    leaf_profile.not_before = FIXTURE_NOW - HOUR_MS;
    leaf_profile.not_after = FIXTURE_NOW + 2 * HOUR_MS;
    leaf_profile.key_usage = crypto::key_usage::DIGITAL_SIGNATURE | crypto::key_usage::NON_REPUDIATION;
    auto leaf = must(crypto::issue_certificate(leaf_profile, leaf_key.public_key(), ca, ca_key));

    return Chain { std::move(root_key), std::move(root), std::move(ca_key), std::move(ca), std::move(leaf_key),
        std::move(leaf) };
}

attest::Document qingtian_document(Chain const& chain)
{
    attest::Document document;
    document.profile = attest::Profile::QingTian;
    document.module_id = "4662b7a3-7898-46c9-a6c5-20e9025e50bc.enc-0123456789abcdef";
    document.timestamp = FIXTURE_NOW;
    document.digest = "SHA384";
    for (unsigned index = 0; index < attest::QINGTIAN_SYSTEM_PCRS; ++index)
        document.pcrs.push_back({ index, Bytes(attest::PCR_SIZE, static_cast<std::uint8_t>(index)) });
    document.pcrs[0].value = Bytes(attest::PCR_SIZE, 0xa0);
    auto der = [](crypto::Certificate const& certificate) {
        return Bytes(certificate.der().begin(), certificate.der().end());
    };
    document.certificate = der(chain.leaf);
    document.cabundle = { der(chain.root), der(chain.ca) };
    document.user_data = Bytes {};
    document.nonce = Bytes {};
    document.public_key = Bytes {};
    return document;
}

Bytes sign_payload(ByteView payload, crypto::PrivateKey const& key, cose::SignatureOrder order)
{
    cose::SignOptions options;
    options.order = order;
    return must(cose::sign_sign1(payload, key, options));
}

Bytes sign_document(attest::Document const& document, crypto::PrivateKey const& key, cose::SignatureOrder order)
{
    return sign_payload(attest::encode_qingtian_payload(document), key, order);
}

Bytes nitro_vector()
{
    auto text = must(sys::read_file(QTBOX_TEST_DATA "/nitro-attestation-doc-2026-02-02.b64", 64 * 1024));
    return must(base64_decode(as_chars(text)));
}

} // namespace qtbox::test
