#include <qtbox/attest/policy.hpp>

#include <qtbox/attest/document.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <set>
#include <string>

namespace qtbox::attest {

namespace {

using Json = nlohmann::json;

// Nonces are at most 1024 bytes in either profile (docs/PLATFORMS.md §N4.2).
constexpr std::size_t MAX_NONCE_SIZE = NITRO_MAX_OPTIONAL_FIELD;

Error policy_error(std::string where, std::string why)
{
    return Error::from_string(fmt::format("policy: {}: {}", where, why));
}

// "0".."31", plain decimal: no sign, no leading zero, no spaces.
std::optional<unsigned> parse_index(std::string_view text)
{
    if (text.empty() || text.size() > 2 || (text.size() > 1 && text[0] == '0'))
        return std::nullopt;
    unsigned index = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), index);
    if (error != std::errc {} || end != text.data() + text.size() || index >= PCR_COUNT)
        return std::nullopt;
    return index;
}

ErrorOr<Bytes> parse_pcr_value(std::string_view hex)
{
    auto bytes = hex_decode(hex);
    if (bytes.is_error())
        return Error::from_string("not hex");
    auto size = bytes.value().size();
    if (size != 32 && size != PCR_SIZE && size != 64)
        return Error::from_string(fmt::format("{} bytes, a PCR value has 48 (or 32 or 64)", size));
    return bytes.release_value();
}

ErrorOr<Bytes> parse_nonce(std::string_view hex)
{
    auto bytes = hex_decode(hex);
    if (bytes.is_error())
        return Error::from_string("not hex");
    if (bytes.value().size() > MAX_NONCE_SIZE)
        return Error::from_string(fmt::format("{} bytes, more than the {} a nonce may have", bytes.value().size(),
            MAX_NONCE_SIZE));
    return bytes.release_value();
}

// nlohmann::json keeps the last of two equal keys; a policy must not be
// ambiguous, so the parser callback refuses duplicates at every level.
struct DuplicateKeyCheck {
    std::vector<std::set<std::string>> keys;
    std::optional<std::string> duplicate;

    bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed)
    {
        switch (event) {
        case Json::parse_event_t::object_start:
            keys.emplace_back();
            break;
        case Json::parse_event_t::object_end:
            if (!keys.empty())
                keys.pop_back();
            break;
        case Json::parse_event_t::key:
            if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second && !duplicate)
                duplicate = parsed.get<std::string>();
            break;
        default:
            break;
        }
        return true;
    }
};

} // namespace

ErrorOr<void> add_policy_json(std::string_view json_text, Expectations& into)
{
    if (json_text.size() > MAX_POLICY_FILE_SIZE)
        return Error::from_string(fmt::format("policy: larger than {} bytes", MAX_POLICY_FILE_SIZE));
    DuplicateKeyCheck check;
    Json policy = Json::parse(json_text.begin(), json_text.end(),
        [&check](int depth, Json::parse_event_t event, Json& parsed) { return check(depth, event, parsed); },
        /*allow_exceptions=*/false);
    if (policy.is_discarded())
        return Error::from_string("policy: not valid JSON");
    if (check.duplicate)
        return policy_error(fmt::format("\"{}\"", *check.duplicate), "duplicate key");
    if (!policy.is_object())
        return Error::from_string("policy: the top level is not a JSON object");

    Expectations parsed;
    for (auto const& [key, value] : policy.items()) {
        if (key == "pcrs") {
            if (!value.is_object())
                return policy_error("pcrs", "not an object");
            for (auto const& [index_text, accepted] : value.items()) {
                std::string where = fmt::format("pcrs.\"{}\"", index_text);
                auto index = parse_index(index_text);
                if (!index)
                    return policy_error(where, fmt::format("not a PCR index 0..{}", PCR_COUNT - 1));
                if (!accepted.is_array() || accepted.empty())
                    return policy_error(where, "not a non-empty array of hex strings");
                if (accepted.size() > MAX_POLICY_VALUES)
                    return policy_error(where, fmt::format("more than {} values", MAX_POLICY_VALUES));
                PcrRequirement requirement { *index, {} };
                for (std::size_t i = 0; i < accepted.size(); ++i) {
                    std::string item_where = fmt::format("{}[{}]", where, i);
                    if (!accepted[i].is_string())
                        return policy_error(item_where, "not a string");
                    auto bytes = parse_pcr_value(accepted[i].get<std::string>());
                    if (bytes.is_error())
                        return policy_error(item_where, bytes.error().message());
                    requirement.accepted.push_back(bytes.release_value());
                }
                parsed.pcrs.push_back(std::move(requirement));
            }
        } else if (key == "max_age_s") {
            // Strict: an integer, not 900.0 or "900".
            if (!value.is_number_unsigned())
                return policy_error("max_age_s", "not a non-negative integer");
            auto seconds = value.get<std::uint64_t>();
            if (seconds > static_cast<std::uint64_t>(MAX_POLICY_AGE_S))
                return policy_error("max_age_s", fmt::format("{} is more than {}", seconds, MAX_POLICY_AGE_S));
            parsed.max_age_ms = static_cast<std::int64_t>(seconds) * 1000;
        } else if (key == "nonce") {
            if (!value.is_string())
                return policy_error("nonce", "not a string");
            auto nonce = parse_nonce(value.get<std::string>());
            if (nonce.is_error())
                return policy_error("nonce", nonce.error().message());
            parsed.nonces.push_back(nonce.release_value());
        } else {
            return policy_error(fmt::format("\"{}\"", key), "unknown key (known: pcrs, max_age_s, nonce)");
        }
    }

    // Only now, so that a bad file adds nothing.
    for (auto& requirement : parsed.pcrs)
        into.pcrs.push_back(std::move(requirement));
    if (parsed.max_age_ms)
        into.max_age_ms = into.max_age_ms ? std::min(*into.max_age_ms, *parsed.max_age_ms) : *parsed.max_age_ms;
    for (auto& nonce : parsed.nonces)
        into.nonces.push_back(std::move(nonce));
    return {};
}

ErrorOr<PcrRequirement> parse_pcr_argument(std::string_view text)
{
    auto equals = text.find('=');
    if (equals == std::string_view::npos)
        return Error::from_string(fmt::format("--pcr {}: expected N=HEX", text));
    auto index = parse_index(text.substr(0, equals));
    if (!index)
        return Error::from_string(fmt::format("--pcr {}: {} is not a PCR index 0..{}", text, text.substr(0, equals),
            PCR_COUNT - 1));
    auto value = parse_pcr_value(text.substr(equals + 1));
    if (value.is_error())
        return Error::from_string(fmt::format("--pcr {}: {}", text, value.error().message()));
    return PcrRequirement { *index, { value.release_value() } };
}

} // namespace qtbox::attest
