// Test helpers: byte sources over in-memory data, temporary directories.
#pragma once

#include <qtbox/base/sys.hpp>
#include <qtbox/image/source.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <ftw.h>
#include <memory>
#include <string>
#include <unistd.h>

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

class TempDir {
public:
    TempDir()
    {
        char const* tmpdir = std::getenv("TMPDIR");
        std::string pattern = std::string((tmpdir && *tmpdir) ? tmpdir : "/tmp") + "/qtbox-image-test.XXXXXX";
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        m_path = pattern;
    }
    ~TempDir()
    {
        ::nftw(m_path.c_str(), [](char const* path, struct stat const*, int, struct FTW*) { return ::remove(path); }, 16, FTW_DEPTH | FTW_PHYS);
    }
    TempDir(TempDir const&) = delete;
    TempDir& operator=(TempDir const&) = delete;
    std::string const& path() const { return m_path; }
    std::string operator/(std::string const& name) const { return m_path + "/" + name; }

    void write(std::string const& name, std::string_view contents, mode_t mode = 0644) const
    {
        auto path = *this / name;
        auto slash = path.rfind('/');
        REQUIRE(!sys::mkdir_p(path.substr(0, slash), 0755).is_error());
        auto fd = sys::open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
        REQUIRE(!fd.is_error());
        REQUIRE(!sys::write_all(fd.value().get(), contents).is_error());
        ::fchmod(fd.value().get(), mode);
    }
    void write(std::string const& name, ByteView contents, mode_t mode = 0644) const
    {
        write(name, as_chars(contents), mode);
    }

private:
    std::string m_path;
};

inline std::string read_text(std::string const& path)
{
    auto bytes = sys::read_file(path, 1 << 26);
    REQUIRE(!bytes.is_error());
    return std::string(as_chars(bytes.value()));
}

} // namespace qtbox::test
