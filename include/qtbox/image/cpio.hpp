// The deterministic newc cpio writer (docs/FORMATS.md §3; format: the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst, "newc").
//
//   - entries in the tree's bytewise path order, the archive root omitted;
//   - mtime = the given value (SOURCE_DATE_EPOCH or 0) for every entry;
//   - inode numbers 1..N in order of first appearance, shared by hard links
//     (whose data travels with the last link, as GNU cpio writes it; the
//     kernel accepts it on any link);
//   - nlink: 2 + subdirectories for a directory, the link count for a file;
//   - owners, modes and device numbers as in the tree; no compression;
//   - file contents streamed from their source through a bounded buffer.
#pragma once

#include <qtbox/image/tree.hpp>

#include <functional>

namespace qtbox::image {

struct CpioOptions {
    std::uint32_t mtime { 0 };
    // Called after each file's contents with the bytes copied so far.
    std::function<void(std::uint64_t)> progress;
};

// Writes the archive, TRAILER!!! included, into `sink` (through a
// BufferedSink of its own). Returns the number of bytes written.
ErrorOr<std::uint64_t> write_cpio(FileTree const& tree, ByteSink& sink, CpioOptions const& options = {});

} // namespace qtbox::image
