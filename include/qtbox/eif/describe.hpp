// `eif-build describe F` and `qt enclave query-eif --eif F` (docs/FORMATS.md §7, §8):
// everything about an EIF as one JSON document, computed from the bytes
// (never from what the file says about itself, except where labelled):
//
//   {"EifVersion", "ArchType", "Header": {...}, "Sections": [{"Index",
//    "Type", "HeaderOffset", "DataOffset", "Size"}, ...], "CheckCRC",
//    "Measurements": {...}, "IsSigned", "SignatureCheck"?: {...},
//    "Cmdline", "ImageName", "ImageVersion", "Metadata"}
//
// A file that fails a check that makes its contents meaningless (structure,
// CRC, a signature that does not verify, a signed PCR0 that is not the
// image's) gives an error instead of a document. A signing certificate
// outside its validity at `at` is reported ("CertificateValid": false) and
// added to the warnings.
#pragma once

#include <qtbox/base/time.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qtbox::eif {

struct Description {
    nlohmann::ordered_json json;
    std::vector<std::string> warnings;
};

ErrorOr<Description> describe_eif(std::string const& path, UnixMillis at);

} // namespace qtbox::eif
