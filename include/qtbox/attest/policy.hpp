// The relying party's expectations: PCR values, freshness and nonce (docs/FORMATS.md §9),
// from the command line and from a policy file.
//
// Policy file (JSON, strict: unknown keys and wrong types are errors, so a
// typo can never weaken a policy):
//   {"pcrs": {"0": ["<hex>", ...], "8": ["<hex>"]}, "max_age_s": 900, "nonce": "<hex>"}
// Every key is optional. A PCR matches when it equals any listed value (like
// kms:RecipientAttestation/PCRn); a PCR the policy names but the document
// lacks does not match. Requirements add up: a PCR named both by --pcr and
// by the policy must satisfy both, both nonces must match, and the smaller
// maximum age applies.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace qtbox::attest {

// A policy file larger than this is refused unread.
constexpr std::size_t MAX_POLICY_FILE_SIZE = 1024 * 1024;
// Accepted values for one PCR in a policy.
constexpr std::size_t MAX_POLICY_VALUES = 1024;
// The policy's max_age_s, at most ten years: a larger number is a mistake.
constexpr std::int64_t MAX_POLICY_AGE_S = 10LL * 366 * 24 * 3600;

struct PcrRequirement {
    unsigned index { 0 };
    std::vector<Bytes> accepted; // any one of these
};

struct Expectations {
    std::vector<PcrRequirement> pcrs; // all must hold
    std::optional<std::int64_t> max_age_ms;
    std::vector<Bytes> nonces;        // each must equal the document's nonce
};

// Parses a policy file's JSON text and adds its requirements to `into`.
// Errors name the offending key ("policy: pcrs.\"0\"[1]: not hex").
ErrorOr<void> add_policy_json(std::string_view json_text, Expectations& into);

// "N=HEX" from --pcr: N in 0..31, HEX a PCR value (32, 48 or 64 bytes).
ErrorOr<PcrRequirement> parse_pcr_argument(std::string_view text);

} // namespace qtbox::attest
