// Helpers of the image tests only: image::ByteSource over bytes held in
// memory, for the readers that take a source (the tar reader, layer
// application). source_of(bytes) copies them into an unlinked temporary
// file, as a layer blob would be on disk. Shared helpers (TempDir,
// TarBuilder) are in tests/support/.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/image/source.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <string_view>

namespace qtbox::test {

inline image::ByteSource source_of(ByteView bytes)
{
    auto fd = image::create_temporary_file();
    REQUIRE(!fd.is_error());
    REQUIRE(!sys::write_all(fd.value().get(), bytes).is_error());
    return image::ByteSource(std::make_shared<UniqueFd const>(fd.release_value()), 0, bytes.size());
}

inline image::ByteSource source_of(std::string_view text)
{
    return source_of(as_bytes(text));
}

} // namespace qtbox::test
