#include <qtbox/crypto/chain.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace qtbox::crypto {

std::string_view chain_failure_name(ChainError failure)
{
    switch (failure) {
    case ChainError::Malformed: return "malformed certificate";
    case ChainError::TooLong: return "chain too long";
    case ChainError::Untrusted: return "not issued by a trusted root";
    case ChainError::ConstraintViolated: return "CA constraints violated";
    case ChainError::Expired: return "certificate expired";
    case ChainError::NotYetValid: return "certificate not yet valid";
    }
    return "unknown chain failure";
}

namespace {

Error chain_error(ChainError failure, std::string message)
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

ErrorOr<void> check_link(Certificate const& child, Certificate const& parent, LinkCache* cache)
{
    if (cache != nullptr)
        return cache->verify_signed_by(child, parent);
    return child.verify_signed_by(parent);
}

// RFC 5280 §4.2.1.9 and §4.2.1.3, as chain.hpp states them.
ErrorOr<void> check_constraints(std::vector<Certificate const*> const& path)
{
    for (std::size_t index = 0; index < path.size(); ++index) {
        auto const& certificate = *path[index];
        auto usage = certificate.key_usage();
        auto fail = [&](std::string_view why) {
            return chain_error(ChainError::ConstraintViolated, fmt::format("{}: {}", describe(path, index), why));
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
            return chain_error(ChainError::NotYetValid,
                fmt::format("{}: not valid before {} (checked at {})", describe(path, index),
                    format_rfc3339(certificate.not_before()), format_rfc3339(at)));
        if (at > certificate.not_after())
            return chain_error(ChainError::Expired,
                fmt::format("{}: expired at {} (checked at {})", describe(path, index),
                    format_rfc3339(certificate.not_after()), format_rfc3339(at)));
    }
    return {};
}

bool same_name(ByteView a, ByteView b)
{
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

// The trusted root that issued `certificate`: only roots whose subject is
// its issuer name are tried, so a signature is verified only for those.
// Null when none did; `failure` then holds the first candidate's error.
Certificate const* issuing_root(Certificate const& certificate, std::span<Certificate const> roots, std::optional<Error>& failure,
    LinkCache* cache)
{
    for (auto const& candidate : roots) {
        if (!same_name(candidate.subject_der(), certificate.issuer_der()))
            continue;
        auto link = check_link(certificate, candidate, cache);
        if (!link.is_error())
            return &candidate;
        if (!failure)
            failure = link.release_error();
    }
    return nullptr;
}

} // namespace

std::string LinkCache::key(Certificate const& subject, Certificate const& issuer)
{
    // Length-prefixed, so no two pairs of DER strings give the same key.
    ByteView parts[2] = { subject.der(), issuer.der() };
    std::string key;
    key.reserve(16 + parts[0].size() + parts[1].size());
    for (auto part : parts) {
        std::uint64_t size = part.size();
        key.append(reinterpret_cast<char const*>(&size), sizeof size);
        key.append(reinterpret_cast<char const*>(part.data()), part.size());
    }
    return key;
}

ErrorOr<void> LinkCache::verify_signed_by(Certificate const& subject, Certificate const& issuer)
{
    auto pair = key(subject, issuer);
    {
        std::lock_guard lock(m_mutex);
        if (m_verified.contains(pair)) {
            ++m_hits;
            return {};
        }
    }
    TRY(subject.verify_signed_by(issuer));
    std::lock_guard lock(m_mutex);
    if (m_verified.size() < MAX_ENTRIES)
        m_verified.insert(std::move(pair));
    return {};
}

std::size_t LinkCache::size() const
{
    std::lock_guard lock(m_mutex);
    return m_verified.size();
}

std::size_t LinkCache::hits() const
{
    std::lock_guard lock(m_mutex);
    return m_hits;
}

ErrorOr<void> verify_chain(Certificate const& leaf, std::span<Certificate const> intermediates,
    std::span<Certificate const> roots, UnixMillis at, LinkCache* cache)
{
    if (roots.empty())
        return chain_error(ChainError::Malformed, "no trusted root certificate given");
    if (roots.size() > MAX_TRUSTED_ROOTS)
        return chain_error(ChainError::TooLong, fmt::format("{} trusted roots, at most {}", roots.size(), MAX_TRUSTED_ROOTS));
    // A caller may pass the whole bundle, root included, as intermediates
    // (the attestation cabundle starts with the root): the root is then
    // taken from `roots`, not from the untrusted list.
    if (!intermediates.empty()) {
        auto const& last = intermediates.back();
        if (std::any_of(roots.begin(), roots.end(), [&](auto const& root) { return root == last; }))
            intermediates = intermediates.first(intermediates.size() - 1);
    }
    if (intermediates.size() + 2 > MAX_CHAIN_LENGTH)
        return chain_error(ChainError::TooLong,
            fmt::format("{} certificates in the chain, at most {}", intermediates.size() + 2, MAX_CHAIN_LENGTH));

    std::vector<Certificate const*> path;
    path.push_back(&leaf);
    for (auto const& certificate : intermediates)
        path.push_back(&certificate);

    // 2. Every link, once: name, algorithm and signature (verify_signed_by),
    // then the top to one trusted root.
    for (std::size_t index = 0; index + 1 < path.size(); ++index) {
        auto link = check_link(*path[index], *path[index + 1], cache);
        if (link.is_error()) {
            return chain_error(ChainError::Untrusted,
                fmt::format("{}: {}", index == 0 ? fmt::format("the leaf ({})", path[0]->subject())
                                                 : fmt::format("intermediate {} ({})", index, path[index]->subject()),
                    link.error().message()));
        }
    }
    std::optional<Error> root_failure;
    Certificate const* root = issuing_root(*path.back(), roots, root_failure, cache);
    if (root == nullptr) {
        auto top = fmt::format("{} ({})", path.size() == 1 ? "the leaf" : "the last intermediate", path.back()->subject());
        // A root with the right name that did not sign it says why.
        if (root_failure)
            return chain_error(ChainError::Untrusted, fmt::format("{}: {}", top, root_failure->message()));
        return chain_error(ChainError::Untrusted,
            fmt::format("{} is not issued by a trusted root (issuer \"{}\")", top, path.back()->issuer()));
    }
    // The path must end at the first certificate a trusted root issued: a
    // chain that goes on above it (a re-issued root, or a root key
    // certified again under the same name) is not the path to the anchor.
    for (std::size_t index = 0; index + 1 < path.size(); ++index) {
        std::optional<Error> ignored;
        if (auto const* shortcut = issuing_root(*path[index], roots, ignored, cache)) {
            return chain_error(ChainError::Untrusted,
                fmt::format("{} is issued by the trusted root ({}) itself, but the chain goes on above it", describe(path, index),
                    shortcut->subject()));
        }
    }
    path.push_back(root);

    // 3. CA constraints, 4. validity at `at`.
    TRY(check_constraints(path));
    TRY(check_times(path, at));
    return {};
}

ErrorOr<void> verify_chain_der(ByteView leaf, std::span<Bytes const> intermediates, std::span<Bytes const> roots, UnixMillis at)
{
    if (intermediates.size() + 2 > MAX_CHAIN_LENGTH + 1)
        return chain_error(ChainError::TooLong,
            fmt::format("{} certificates in the chain, at most {}", intermediates.size() + 2, MAX_CHAIN_LENGTH));
    if (roots.size() > MAX_TRUSTED_ROOTS)
        return chain_error(ChainError::TooLong, fmt::format("{} trusted roots, at most {}", roots.size(), MAX_TRUSTED_ROOTS));
    auto parse = [](ByteView der, std::string_view what) -> ErrorOr<Certificate> {
        auto certificate = Certificate::parse_der(der);
        if (certificate.is_error())
            return chain_error(ChainError::Malformed, fmt::format("{}: {}", what, certificate.error().message()));
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
