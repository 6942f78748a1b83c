// A file held in memory behind eif::ByteSource, for tests of what the EIF
// reader and the VMM's launch read, and when (tests/eif, tests/vmm). It
// counts the reads of every byte and of one watched range, and can serve
// that range differently on later reads, as a file on FUSE or NFS, or one a
// writer races, would.
//
//   auto file = test::memory_file(bytes, section.data_offset, section.size);
//   file->on_range_read = test::replace_from_read(2, tampered);
//   auto reader = eif::EifReader::from_source(std::make_unique<test::MemorySource>(file), "memory.eif");
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/sys.hpp>
#include <qtbox/eif/reader.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

namespace qtbox::test {

struct MemoryFile {
    Bytes bytes;
    std::vector<int> reads; // per byte
    std::uint64_t watch_offset { 0 };
    std::uint64_t watch_size { 0 };
    int range_reads { 0 };
    // Called for each read that touches the watched range, with the read's
    // number (1, 2, ...), where in the range the read's part starts, and
    // that part of the bytes it returns, which the callback may change.
    std::function<void(int read, std::uint64_t within, std::span<std::uint8_t> part)> on_range_read;
};

class MemorySource final : public eif::ByteSource {
public:
    explicit MemorySource(std::shared_ptr<MemoryFile> file) : m_file(std::move(file)) { }

    ErrorOr<std::uint64_t> size() const override { return m_file->bytes.size(); }

    ErrorOr<void> read_at(std::uint64_t offset, std::span<std::uint8_t> out) const override
    {
        auto& file = *m_file;
        if (offset > file.bytes.size() || out.size() > file.bytes.size() - offset)
            return Error::from_code(sys::SysError::UnexpectedEnd, "read past the end of the file");
        std::copy_n(file.bytes.begin() + static_cast<long>(offset), out.size(), out.begin());
        for (std::size_t i = 0; i < out.size() && offset + i < file.reads.size(); ++i)
            ++file.reads[offset + i];
        std::uint64_t begin = std::max(offset, file.watch_offset);
        std::uint64_t end = std::min(offset + out.size(), file.watch_offset + file.watch_size);
        if (begin < end) {
            ++file.range_reads;
            if (file.on_range_read)
                file.on_range_read(file.range_reads, begin - file.watch_offset, out.subspan(begin - offset, end - begin));
        }
        return {};
    }

private:
    std::shared_ptr<MemoryFile> m_file;
};

inline std::shared_ptr<MemoryFile> memory_file(Bytes bytes, std::uint64_t watch_offset = 0, std::uint64_t watch_size = 0)
{
    auto file = std::make_shared<MemoryFile>();
    file->bytes = std::move(bytes);
    file->reads.assign(file->bytes.size(), 0);
    file->watch_offset = watch_offset;
    file->watch_size = watch_size;
    return file;
}

// From the `first`-th read of the watched range on, it reads as
// `replacement` (as many bytes as the range).
inline auto replace_from_read(int first, Bytes replacement)
{
    return [first, replacement = std::move(replacement)](int read, std::uint64_t within, std::span<std::uint8_t> part) {
        if (read < first)
            return;
        for (std::size_t i = 0; i < part.size() && within + i < replacement.size(); ++i)
            part[i] = replacement[within + i];
    };
}

} // namespace qtbox::test
