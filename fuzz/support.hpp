// Helpers shared by the fuzz targets: property checks, and the input as an
// anonymous regular file (memfd) for the parsers that read a descriptor (the
// EIF reader, the tar reader's ByteSource), so that no run leaves anything on
// disk and the parser sees what it sees on a real file (fstat, pread,
// S_ISREG).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/base/sys.hpp>

#include <cstdlib>
#include <string>
#include <sys/mman.h>

namespace qtbox::fuzz {

// A broken property, or a failure to set up the input (a broken
// environment), ends the run the way libFuzzer records a finding.
inline void require(bool condition)
{
    if (!condition)
        std::abort();
}

inline UniqueFd memory_file(ByteView bytes)
{
    UniqueFd fd(::memfd_create("qtbox-fuzz", MFD_CLOEXEC));
    require(fd.get() >= 0);
    require(!sys::write_all(fd.get(), bytes).is_error());
    return fd;
}

// A path that opens the same file (for APIs that take a path).
inline std::string fd_path(UniqueFd const& fd)
{
    return "/proc/self/fd/" + std::to_string(fd.get());
}

} // namespace qtbox::fuzz
