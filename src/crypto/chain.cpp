#include <qtbox/crypto/chain.hpp>

#include "support.hpp"

#include <fmt/format.h>

#include <mbedtls/md.h>
#include <mbedtls/x509_crt.h>

#include <algorithm>
#include <array>
#include <vector>

namespace qtbox::crypto {

std::string_view chain_failure_name(ChainFailure failure)
{
    switch (failure) {
    case ChainFailure::Malformed: return "malformed certificate";
    case ChainFailure::TooLong: return "chain too long";
    case ChainFailure::Untrusted: return "not issued by a trusted root";
    case ChainFailure::ConstraintViolated: return "CA constraints violated";
    case ChainFailure::Expired: return "certificate expired";
    case ChainFailure::NotYetValid: return "certificate not yet valid";
    }
    return "unknown chain failure";
}

namespace {

Error chain_error(ChainFailure failure, std::string message)
{
    return Error::from_code(failure, std::move(message));
}

// "the leaf (CN=a, O=b)", "intermediate 2 (…)", "the root (…)".
std::string describe(std::vector<Certificate const*> const& path, std::size_t index)
{
    std::string role;
    if (index == 0)
        role = "the leaf";
    else if (index + 1 == path.size())
        role = "the root";
    else
        role = fmt::format("intermediate {}", index);
    return fmt::format("{} ({})", role, path[index]->subject());
}

ErrorOr<void> check_link(Certificate const& child, Certificate const& parent)
{
    return child.verify_signed_by(parent);
}

// RFC 5280 §4.2.1.9 and §4.2.1.3, as chain.hpp states them.
ErrorOr<void> check_constraints(std::vector<Certificate const*> const& path)
{
    for (std::size_t index = 0; index < path.size(); ++index) {
        auto const& certificate = *path[index];
        auto usage = certificate.key_usage();
        auto fail = [&](std::string_view why) {
            return chain_error(ChainFailure::ConstraintViolated, fmt::format("{}: {}", describe(path, index), why));
        };
        if (index == 0) {
            if (certificate.is_ca())
                return fail("a CA certificate cannot be the leaf");
            if (!usage.has_value() || (*usage & key_usage::DIGITAL_SIGNATURE) == 0)
                return fail("keyUsage lacks digitalSignature");
            continue;
        }
        if (!certificate.is_ca())
            return fail("issues certificates but is not a CA (basicConstraints)");
        if (!usage.has_value() || (*usage & key_usage::KEY_CERT_SIGN) == 0)
            return fail("issues certificates but keyUsage lacks keyCertSign");
        // Intermediates between this CA and the leaf.
        std::size_t below = index - 1;
        auto limit = certificate.max_path_length();
        if (limit.has_value() && below > *limit)
            return fail(fmt::format("pathLenConstraint {} but {} intermediate CA(s) below it", *limit, below));
    }
    return {};
}

ErrorOr<void> check_times(std::vector<Certificate const*> const& path, UnixMillis at)
{
    for (std::size_t index = 0; index < path.size(); ++index) {
        auto const& certificate = *path[index];
        if (at < certificate.not_before())
            return chain_error(ChainFailure::NotYetValid,
                fmt::format("{}: not valid before {} (checked at {})", describe(path, index),
                    format_rfc3339(certificate.not_before()), format_rfc3339(at)));
        if (at > certificate.not_after())
            return chain_error(ChainFailure::Expired,
                fmt::format("{}: expired at {} (checked at {})", describe(path, index),
                    format_rfc3339(certificate.not_after()), format_rfc3339(at)));
    }
    return {};
}

struct CertificateList {
    CertificateList() { mbedtls_x509_crt_init(&head); }
    ~CertificateList() { mbedtls_x509_crt_free(&head); }
    CertificateList(CertificateList const&) = delete;
    CertificateList& operator=(CertificateList const&) = delete;

    ErrorOr<void> add(Certificate const& certificate)
    {
        auto der = certificate.der();
        int result = mbedtls_x509_crt_parse_der(&head, der.data(), der.size());
        if (result != 0)
            return mbedtls_error(Failure::Internal, "copy certificate", result);
        return {};
    }
    mbedtls_x509_crt head;
};

struct VerifyTrace {
    int deepest { -1 };
    int count { 0 };
};

// mbedTLS compares validity with the real clock; qtbox checks time itself
// against `at`, so the callback removes those two verdicts (chain.hpp).
int trace_and_mask_time(void* data, mbedtls_x509_crt*, int depth, std::uint32_t* flags)
{
    auto* trace = static_cast<VerifyTrace*>(data);
    trace->deepest = std::max(trace->deepest, depth);
    ++trace->count;
    *flags &= ~static_cast<std::uint32_t>(MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE);
    return 0;
}

// The same chain through mbedTLS's own verifier (path building, profile,
// critical extensions): a second opinion that must agree.
ErrorOr<void> mbedtls_verify(std::vector<Certificate const*> const& path)
{
    CertificateList chain;
    for (std::size_t index = 0; index + 1 < path.size(); ++index)
        TRY(chain.add(*path[index]));
    CertificateList trusted;
    TRY(trusted.add(*path.back()));

    static mbedtls_x509_crt_profile const PROFILE = {
        MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA256) | MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA384) | MBEDTLS_X509_ID_FLAG(MBEDTLS_MD_SHA512),
        MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_ECKEY) | MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_ECDSA) | MBEDTLS_X509_ID_FLAG(MBEDTLS_PK_RSA),
        MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP256R1) | MBEDTLS_X509_ID_FLAG(MBEDTLS_ECP_DP_SECP384R1),
        static_cast<std::uint32_t>(MIN_RSA_BITS),
    };
    std::uint32_t flags = 0;
    VerifyTrace trace;
    int result = mbedtls_x509_crt_verify_with_profile(&chain.head, &trusted.head, nullptr, &PROFILE, nullptr, &flags,
        trace_and_mask_time, &trace);
    if (result != 0 || flags != 0) {
        std::array<char, 512> info {};
        mbedtls_x509_crt_verify_info(info.data(), info.size(), "", flags);
        std::string text(info.data());
        std::replace(text.begin(), text.end(), '\n', ';');
        while (!text.empty() && (text.back() == ';' || text.back() == ' '))
            text.pop_back();
        return chain_error(ChainFailure::Untrusted,
            fmt::format("mbedTLS rejects the chain: {}", text.empty() ? "verification failed" : text));
    }
    if (trace.count != static_cast<int>(path.size()) || trace.deepest + 1 != static_cast<int>(path.size()))
        return chain_error(ChainFailure::Untrusted,
            fmt::format("mbedTLS built a path of {} certificates instead of the {} given", trace.count, path.size()));
    return {};
}

} // namespace

ErrorOr<void> verify_chain(Certificate const& leaf, std::span<Certificate const> intermediates,
    std::span<Certificate const> roots, UnixMillis at)
{
    if (roots.empty())
        return chain_error(ChainFailure::Malformed, "no trusted root certificate given");
    if (roots.size() > MAX_TRUSTED_ROOTS)
        return chain_error(ChainFailure::TooLong, fmt::format("{} trusted roots, at most {}", roots.size(), MAX_TRUSTED_ROOTS));
    // A caller may pass the whole bundle, root included, as intermediates
    // (the attestation cabundle starts with the root): the root is then
    // taken from `roots`, not from the untrusted list.
    if (!intermediates.empty()) {
        auto const& last = intermediates.back();
        if (std::any_of(roots.begin(), roots.end(), [&](auto const& root) { return root == last; }))
            intermediates = intermediates.first(intermediates.size() - 1);
    }
    if (intermediates.size() + 2 > MAX_CHAIN_LENGTH)
        return chain_error(ChainFailure::TooLong,
            fmt::format("{} certificates in the chain, at most {}", intermediates.size() + 2, MAX_CHAIN_LENGTH));

    std::vector<Certificate const*> path;
    path.push_back(&leaf);
    for (auto const& certificate : intermediates)
        path.push_back(&certificate);

    // 1. Every link: name and signature, then the top to one trusted root.
    for (std::size_t index = 0; index + 1 < path.size(); ++index) {
        auto link = check_link(*path[index], *path[index + 1]);
        if (link.is_error()) {
            return chain_error(ChainFailure::Untrusted,
                fmt::format("{}: {}", index == 0 ? fmt::format("the leaf ({})", path[0]->subject())
                                                 : fmt::format("intermediate {} ({})", index, path[index]->subject()),
                    link.error().message()));
        }
    }
    Certificate const* root = nullptr;
    for (auto const& candidate : roots) {
        if (!check_link(*path.back(), candidate).is_error()) {
            root = &candidate;
            break;
        }
    }
    if (root == nullptr)
        return chain_error(ChainFailure::Untrusted,
            fmt::format("{} ({}) is not issued by a trusted root (issuer \"{}\")", path.size() == 1 ? "the leaf" : "the last intermediate",
                path.back()->subject(), path.back()->issuer()));
    path.push_back(root);

    // 2. CA constraints, 3. validity at `at`, 4. mbedTLS's own verdict.
    TRY(check_constraints(path));
    TRY(check_times(path, at));
    TRY(mbedtls_verify(path));
    return {};
}

ErrorOr<void> verify_chain_der(ByteView leaf, std::span<Bytes const> intermediates, std::span<Bytes const> roots, UnixMillis at)
{
    if (intermediates.size() + 2 > MAX_CHAIN_LENGTH + 1)
        return chain_error(ChainFailure::TooLong,
            fmt::format("{} certificates in the chain, at most {}", intermediates.size() + 2, MAX_CHAIN_LENGTH));
    if (roots.size() > MAX_TRUSTED_ROOTS)
        return chain_error(ChainFailure::TooLong, fmt::format("{} trusted roots, at most {}", roots.size(), MAX_TRUSTED_ROOTS));
    auto parse = [](ByteView der, std::string_view what) -> ErrorOr<Certificate> {
        auto certificate = Certificate::parse_der(der);
        if (certificate.is_error())
            return chain_error(ChainFailure::Malformed, fmt::format("{}: {}", what, certificate.error().message()));
        return certificate.release_value();
    };
    auto parsed_leaf = TRY(parse(leaf, "the leaf"));
    std::vector<Certificate> parsed_intermediates;
    for (std::size_t index = 0; index < intermediates.size(); ++index)
        parsed_intermediates.push_back(TRY(parse(intermediates[index], fmt::format("intermediate {}", index + 1))));
    std::vector<Certificate> parsed_roots;
    for (std::size_t index = 0; index < roots.size(); ++index)
        parsed_roots.push_back(TRY(parse(roots[index], fmt::format("root {}", index + 1))));
    return verify_chain(parsed_leaf, parsed_intermediates, parsed_roots, at);
}

} // namespace qtbox::crypto
