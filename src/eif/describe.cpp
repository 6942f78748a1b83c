#include <qtbox/eif/build.hpp>
#include <qtbox/eif/describe.hpp>
#include <qtbox/eif/reader.hpp>
#include <qtbox/eif/signature.hpp>

#include <fmt/format.h>

namespace qtbox::eif {

namespace {

// nlohmann::json serialises recursively: refuse deeper metadata than this
// before parsing it.
constexpr int MAX_METADATA_DEPTH = 64;

bool nesting_within(std::string_view text, int limit)
{
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit)
                return false;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return true;
}

std::string crc_text(std::uint32_t crc)
{
    return fmt::format("0x{:08x}", crc);
}

} // namespace

ErrorOr<Description> describe_eif(std::string const& path, UnixMillis at)
{
    auto reader = TRY(EifReader::open(path));
    auto verification = TRY(reader.verify({}, true));
    if (!verification.crc_ok)
        return Error::from_code(EifError::BadCrc,
            fmt::format("CRC mismatch: the header says {}, the contents give {}", crc_text(verification.stored_crc), crc_text(verification.computed_crc)));

    Description description;
    auto& json = description.json;
    auto const& header = reader.header();
    std::string arch = (header.flags & FLAG_ARCH_AARCH64) ? "aarch64" : "x86_64";
    json["EifVersion"] = header.version;
    json["ArchType"] = arch;
    nlohmann::ordered_json header_json;
    header_json["Magic"] = ".eif";
    header_json["Version"] = header.version;
    header_json["Flags"] = header.flags;
    header_json["DefaultMemory"] = header.default_memory;
    header_json["DefaultCpus"] = header.default_cpus;
    header_json["NumSections"] = header.num_sections;
    header_json["Crc32"] = crc_text(header.crc32);
    header_json["FileSize"] = reader.file_size();
    json["Header"] = std::move(header_json);
    auto sections = nlohmann::ordered_json::array();
    for (auto const& section : reader.sections()) {
        nlohmann::ordered_json item;
        item["Index"] = section.index;
        item["Type"] = section_type_name(section.type);
        item["HeaderOffset"] = section.header_offset;
        item["DataOffset"] = section.data_offset;
        item["Size"] = section.size;
        sections.push_back(std::move(item));
    }
    json["Sections"] = std::move(sections);
    json["CheckCRC"] = verification.crc_ok;
    json["Measurements"] = measurements_json(verification.measurements);
    json["IsSigned"] = reader.is_signed();

    if (auto const* signature = reader.signature()) {
        auto bytes = TRY(reader.read_section(*signature, MAX_SIGNATURE_SIZE));
        auto check = TRY(check_signature(bytes, verification.measurements.pcr0, at));
        if (!check.signature_valid || !check.pcr0_matches)
            TRY(require_valid(check, at));
        nlohmann::ordered_json signature_json;
        signature_json["SignatureValid"] = check.signature_valid;
        signature_json["Pcr0Match"] = check.pcr0_matches;
        signature_json["CertificateValid"] = check.certificate_valid;
        signature_json["CheckedAt"] = format_rfc3339(at);
        signature_json["Subject"] = check.certificate.subject();
        signature_json["Issuer"] = check.certificate.issuer();
        signature_json["Serial"] = check.certificate.serial_hex();
        signature_json["NotBefore"] = format_rfc3339(check.certificate.not_before());
        signature_json["NotAfter"] = format_rfc3339(check.certificate.not_after());
        signature_json["FingerprintSha256"] = hex_encode(check.certificate.sha256_fingerprint());
        json["SignatureCheck"] = std::move(signature_json);
        if (!check.certificate_valid) {
            description.warnings.push_back(fmt::format("the signing certificate is not valid at {} (valid {} to {})", format_rfc3339(at),
                format_rfc3339(check.certificate.not_before()), format_rfc3339(check.certificate.not_after())));
        }
    }

    json["Cmdline"] = TRY(reader.read_cmdline());
    nlohmann::ordered_json metadata;
    if (auto const* section = reader.metadata()) {
        auto bytes = TRY(reader.read_section(*section, MAX_METADATA_SIZE));
        auto text = as_chars(bytes);
        if (nesting_within(text, MAX_METADATA_DEPTH))
            metadata = nlohmann::ordered_json::parse(text.begin(), text.end(), nullptr, false);
        if (metadata.is_discarded() || !metadata.is_object()) {
            description.warnings.push_back("the metadata section is not a JSON object (it is not measured; shown as null)");
            metadata = nullptr;
        }
    }
    auto string_member = [&](char const* key) -> nlohmann::ordered_json {
        if (metadata.is_object() && metadata.contains(key) && metadata[key].is_string())
            return metadata[key];
        return nullptr;
    };
    json["ImageName"] = string_member("ImageName");
    json["ImageVersion"] = string_member("ImageVersion");
    json["Metadata"] = metadata;
    return description;
}

} // namespace qtbox::eif
