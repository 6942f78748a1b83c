// A temporary directory for one test: made with mkdtemp under $TMPDIR (or
// /tmp), removed with everything in it when the object goes. path() is the
// directory, dir / "name" (or dir.file("name")) a path inside it, and
// write("a/b", contents, mode) creates a file there, parent directories
// included, with exactly that mode. read_text(path) reads a file back.
// Needs doctest (a failed set-up REQUIREs). Used by tests/base, crypto, eif,
// image, net, pki, proxy and qtsm.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/sys.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace qtbox::test {

class TempDir {
public:
    TempDir()
    {
        char const* tmpdir = std::getenv("TMPDIR");
        std::string pattern = std::string((tmpdir && *tmpdir) ? tmpdir : "/tmp") + "/qtbox-test.XXXXXX";
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        m_path = pattern;
    }
    ~TempDir()
    {
        std::error_code ignored;
        std::filesystem::remove_all(m_path, ignored);
    }
    TempDir(TempDir const&) = delete;
    TempDir& operator=(TempDir const&) = delete;

    std::string const& path() const { return m_path; }
    std::string operator/(std::string_view name) const { return m_path + "/" + std::string(name); }
    std::string file(std::string_view name) const { return *this / name; }

    // Creates (or truncates) the file `name`, and its parent directories;
    // the mode is set with fchmod, so the umask does not apply. Returns the
    // file's path.
    std::string write(std::string_view name, std::string_view contents, mode_t mode = 0644) const
    {
        auto path = *this / name;
        auto slash = path.rfind('/');
        REQUIRE(!sys::mkdir_p(path.substr(0, slash), 0755).is_error());
        auto fd = sys::open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
        REQUIRE(!fd.is_error());
        REQUIRE(!sys::write_all(fd.value().get(), contents).is_error());
        ::fchmod(fd.value().get(), mode);
        return path;
    }
    std::string write(std::string_view name, ByteView contents, mode_t mode = 0644) const
    {
        return write(name, as_chars(contents), mode);
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
