#include <qtbox/attest/verify.hpp>

#include <qtbox/crypto/chain.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace qtbox::attest {

namespace {

Error failure(VerifyError kind, std::string message)
{
    return Error::from_code(kind, std::move(message));
}

std::string describe(crypto::Certificate const& certificate)
{
    auto name = certificate.subject_common_name();
    return name ? "CN=" + *name : certificate.subject();
}

// Step 2: cabundle[0] must be the pinned root; returns the anchor to verify with.
ErrorOr<crypto::Certificate> pinned_root(ParsedDocument const& parsed, TrustAnchor const& anchor)
{
    if (anchor.roots.empty() && !anchor.fingerprint)
        return failure(VerifyError::Chain, "chain: no trusted root given");
    crypto::Certificate const& bundle_root = parsed.bundle.front();
    std::optional<crypto::Certificate> match;
    if (anchor.fingerprint) {
        auto fingerprint = bundle_root.sha256_fingerprint();
        if (constant_time_equal(fingerprint, *anchor.fingerprint))
            match = bundle_root;
    }
    for (auto const& root : anchor.roots) {
        if (constant_time_equal(root.der(), bundle_root.der()))
            match = root;
    }
    if (!match)
        return failure(VerifyError::Chain, fmt::format("chain: cabundle[0] ({}, sha256 {}) is not the pinned root",
            describe(bundle_root), hex_encode(bundle_root.sha256_fingerprint())));
    return *match;
}

ErrorOr<void> check_chain(ParsedDocument const& parsed, crypto::Certificate const& root, UnixMillis at, crypto::LinkCache* cache)
{
    // cabundle is root first (docs/FORMATS.md §4); the chain runs leaf → issuer → … → root.
    std::vector<crypto::Certificate> intermediates(parsed.bundle.rbegin(), parsed.bundle.rend() - 1);
    auto verified = crypto::verify_chain(parsed.leaf, intermediates, std::span(&root, 1), at, cache);
    if (!verified.is_error())
        return {};
    Error const& error = verified.error();
    if (error.is(crypto::ChainError::Expired) || error.is(crypto::ChainError::NotYetValid))
        return failure(VerifyError::Time, "time: " + error.message());
    if (error.is(crypto::ChainError::Malformed))
        return failure(VerifyError::Malformed, "malformed document: " + error.message());
    return failure(VerifyError::Chain, "chain: " + error.message());
}

ErrorOr<void> check_freshness(Document const& document, Expectations const& expectations, UnixMillis at)
{
    if (!expectations.max_age_ms)
        return {};
    auto timestamp = static_cast<std::int64_t>(document.timestamp);
    if (timestamp > at && timestamp - at > MAX_CLOCK_SKEW_MS)
        return failure(VerifyError::Time, fmt::format("time: the document's timestamp {} is after {} (by more than {} s)",
            format_rfc3339(timestamp), format_rfc3339(at), MAX_CLOCK_SKEW_MS / 1000));
    if (timestamp < at && at - timestamp > *expectations.max_age_ms)
        return failure(VerifyError::Time, fmt::format("time: the document is stale: issued {}, {} ms before {}, max age {} ms",
            format_rfc3339(timestamp), at - timestamp, format_rfc3339(at), *expectations.max_age_ms));
    return {};
}

ErrorOr<void> check_nonce(Document const& document, Expectations const& expectations)
{
    for (auto const& expected : expectations.nonces) {
        if (!document.nonce || document.nonce->empty())
            return failure(VerifyError::Nonce, "nonce: the document carries no nonce");
        if (!constant_time_equal(*document.nonce, expected))
            return failure(VerifyError::Nonce, fmt::format("nonce: the document's nonce {} is not the expected one",
                hex_encode(*document.nonce)));
    }
    return {};
}

ErrorOr<void> check_pcrs(Document const& document, Expectations const& expectations)
{
    for (auto const& requirement : expectations.pcrs) {
        Bytes const* value = document.pcr(requirement.index);
        if (value == nullptr)
            return failure(VerifyError::Policy, fmt::format("policy: PCR{} is not in the document", requirement.index));
        bool matched = std::any_of(requirement.accepted.begin(), requirement.accepted.end(),
            [&](Bytes const& accepted) { return constant_time_equal(accepted, *value); });
        if (!matched)
            return failure(VerifyError::Policy, fmt::format("policy: PCR{} is {}, not an accepted value", requirement.index,
                hex_encode(*value)));
    }
    return {};
}

} // namespace

ErrorOr<VerifiedDocument> verify_document(ByteView cose, VerifyOptions const& options)
{
    // 1. Syntax and limits.
    auto parsed_or_error = parse_document(cose);
    if (parsed_or_error.is_error())
        return failure(VerifyError::Malformed, "malformed document: " + parsed_or_error.error().message());
    ParsedDocument parsed = parsed_or_error.release_value();

    // 2. Chain to the pinned root at `at`.
    crypto::Certificate root = TRY(pinned_root(parsed, options.anchor));
    TRY(check_chain(parsed, root, options.at, options.link_cache));

    // 3. COSE signature with the leaf's key, either byte order.
    auto order = options.signature_order
        ? cose::verify_sign1_in_order(parsed.envelope, parsed.leaf.public_key(), *options.signature_order)
        : cose::verify_sign1(parsed.envelope, parsed.leaf.public_key());
    if (order.is_error())
        return failure(VerifyError::Signature, "signature: " + order.error().message());

    // 4..6. Freshness, nonce, PCRs.
    TRY(check_freshness(parsed.document, options.expectations, options.at));
    TRY(check_nonce(parsed.document, options.expectations));
    TRY(check_pcrs(parsed.document, options.expectations));

    return VerifiedDocument { std::move(parsed.document), std::move(parsed.leaf), std::move(root), order.value() };
}

bool is_debug_document(Document const& document)
{
    Bytes const* pcr0 = document.pcr(0);
    return pcr0 != nullptr && std::all_of(pcr0->begin(), pcr0->end(), [](std::uint8_t byte) { return byte == 0; });
}

ErrorOr<void> check_seal_recipient(VerifiedDocument const& verified, Expectations const& expectations, bool allow_debug)
{
    if (expectations.pcrs.empty())
        return failure(VerifyError::Policy, "policy: sealing needs at least one PCR requirement (--pcr or a policy's pcrs)");
    if (is_debug_document(verified.document) && !allow_debug)
        return failure(VerifyError::Policy,
            "policy: PCR0 is all zeros, a debug-mode enclave whose console the parent can read; not sealing to it "
            "without --allow-debug");
    return {};
}

std::string claims_json(VerifiedDocument const& verified, int indent)
{
    using Json = nlohmann::ordered_json;
    auto optional_hex = [](std::optional<Bytes> const& field) -> Json {
        if (!field)
            return nullptr;
        return hex_encode(*field);
    };
    Document const& document = verified.document;
    Json pcrs = Json::object();
    for (auto const& pcr : document.pcrs)
        pcrs[std::to_string(pcr.index)] = hex_encode(pcr.value);
    crypto::Certificate const& leaf = verified.leaf;
    Json certificate = {
        { "subject", leaf.subject() },
        { "issuer", leaf.issuer() },
        { "serial", leaf.serial_hex() },
        { "not_before", format_rfc3339(leaf.not_before()) },
        { "not_after", format_rfc3339(leaf.not_after()) },
        { "sha256", hex_encode(leaf.sha256_fingerprint()) },
    };
    Json claims = {
        { "profile", profile_name(document.profile) },
        { "module_id", document.module_id },
        { "timestamp", document.timestamp },
        { "time", format_rfc3339(static_cast<UnixMillis>(document.timestamp)) },
        { "digest", document.digest },
        { "pcrs", std::move(pcrs) },
        { "public_key", optional_hex(document.public_key) },
        { "user_data", optional_hex(document.user_data) },
        { "nonce", optional_hex(document.nonce) },
        { "certificate", std::move(certificate) },
        { "root_sha256", hex_encode(verified.root.sha256_fingerprint()) },
        { "signature_order", cose::signature_order_name(verified.signature_order) },
        { "debug", is_debug_document(document) },
    };
    // Strings from the document (module_id, names) may hold any bytes that
    // passed CBOR's UTF-8 check; replace rather than throw on anything else.
    return claims.dump(indent, ' ', false, Json::error_handler_t::replace);
}

} // namespace qtbox::attest
