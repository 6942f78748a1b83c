// Private to the image module and its tests: what walking an OCI layout's
// indexes cost, so that tests can assert the bound on work (src/image/oci.cpp)
// by counting rather than by timing.
#pragma once

#include <qtbox/base/error.hpp>

#include <cstddef>
#include <string>

namespace qtbox::image::detail {

struct OciIndexWalk {
    std::size_t descriptors_visited { 0 }; // descriptors parsed, in every index
    std::size_t index_blobs_read { 0 };    // nested index blobs read and hashed
    std::size_t manifests { 0 };           // distinct image manifests found
};

// Walks `directory`'s index.json and the indexes nested in it, as
// load_oci_layout does, and reports the counts.
ErrorOr<OciIndexWalk> walk_oci_indexes(std::string const& directory);

} // namespace qtbox::image::detail
