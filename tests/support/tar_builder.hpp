// Builds tar archives in memory for tests: ustar headers with correct
// checksums, optional pax records, GNU long names, and hooks to corrupt
// them. Independent of src/image/tar.cpp so that the tests check the reader
// against the format, not against itself. Used by tests/image and by
// fuzz/make_seeds.cpp (the tar_layer seeds), so it does not use doctest.
#pragma once

#include <qtbox/base/bytes.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qtbox::test {

class TarBuilder {
public:
    struct Header {
        Header(std::string name_, char type_, unsigned mode_ = 0644, unsigned uid_ = 0, unsigned gid_ = 0, std::string link_ = {},
            unsigned major_ = 0, unsigned minor_ = 0, bool gnu_magic_ = false)
            : name(std::move(name_)), type(type_), mode(mode_), uid(uid_), gid(gid_), link(std::move(link_)), major(major_),
              minor(minor_), gnu_magic(gnu_magic_) { }
        std::string name;
        char type;
        unsigned mode;
        unsigned uid;
        unsigned gid;
        std::string link;
        unsigned major;
        unsigned minor;
        bool gnu_magic;
    };

    TarBuilder& file(std::string name, std::string_view data, unsigned mode = 0644, unsigned uid = 0, unsigned gid = 0)
    {
        return entry({ std::move(name), '0', mode, uid, gid }, data);
    }
    TarBuilder& directory(std::string name, unsigned mode = 0755, unsigned uid = 0, unsigned gid = 0)
    {
        return entry({ std::move(name), '5', mode, uid, gid }, {});
    }
    TarBuilder& symlink(std::string name, std::string target)
    {
        return entry({ std::move(name), '2', 0777, 0, 0, std::move(target) }, {});
    }
    TarBuilder& hardlink(std::string name, std::string target)
    {
        return entry({ std::move(name), '1', 0644, 0, 0, std::move(target) }, {});
    }
    TarBuilder& device(std::string name, char type, unsigned major, unsigned minor)
    {
        return entry({ std::move(name), type, 0600, 0, 0, {}, major, minor }, {});
    }
    // A pax 'x' header with the given records, then the entry.
    TarBuilder& pax(std::vector<std::pair<std::string, std::string>> const& records)
    {
        std::string body;
        for (auto const& [key, value] : records) {
            std::string record = " " + key + "=" + value + "\n";
            std::size_t length = record.size() + 1;
            while (std::to_string(length).size() + record.size() != length)
                ++length;
            body += std::to_string(length) + record;
        }
        return entry({ "PaxHeader", 'x' }, body);
    }
    TarBuilder& gnu_long_name(std::string const& name)
    {
        std::string body = name;
        body.push_back('\0');
        return entry({ "././@LongLink", 'L', 0644, 0, 0, {}, 0, 0, true }, body);
    }

    TarBuilder& entry(Header const& header, std::string_view data, long long declared_size = -1)
    {
        std::uint8_t block[512] {};
        std::memcpy(block, header.name.data(), std::min<std::size_t>(header.name.size(), 100));
        octal(block + 100, 8, header.mode);
        octal(block + 108, 8, header.uid);
        octal(block + 116, 8, header.gid);
        octal(block + 124, 12, declared_size >= 0 ? static_cast<unsigned long long>(declared_size) : data.size());
        octal(block + 136, 12, 0);
        block[156] = static_cast<std::uint8_t>(header.type);
        std::memcpy(block + 157, header.link.data(), std::min<std::size_t>(header.link.size(), 100));
        if (header.gnu_magic)
            std::memcpy(block + 257, "ustar  ", 8);
        else
            std::memcpy(block + 257, "ustar\0" "00", 8);
        octal(block + 329, 8, header.major);
        octal(block + 337, 8, header.minor);
        fix_checksum(block);
        m_bytes.insert(m_bytes.end(), block, block + 512);
        m_bytes.insert(m_bytes.end(), data.begin(), data.end());
        m_bytes.resize((m_bytes.size() + 511) / 512 * 512, 0);
        return *this;
    }

    Bytes finish(bool end_marker = true) const
    {
        Bytes bytes = m_bytes;
        if (end_marker)
            bytes.resize(bytes.size() + 1024, 0);
        return bytes;
    }
    std::string finish_string(bool end_marker = true) const
    {
        auto bytes = finish(end_marker);
        return std::string(bytes.begin(), bytes.end());
    }

    // Recomputes a header's checksum after a test edited it.
    static void fix_checksum(std::uint8_t* block)
    {
        std::memset(block + 148, ' ', 8);
        unsigned sum = 0;
        for (int i = 0; i < 512; ++i)
            sum += block[i];
        octal(block + 148, 7, sum);
        block[155] = ' ';
    }

private:
    static void octal(std::uint8_t* field, std::size_t size, unsigned long long value)
    {
        for (std::size_t i = size - 1; i-- > 0;) {
            field[i] = static_cast<std::uint8_t>('0' + (value & 7));
            value >>= 3;
        }
        field[size - 1] = 0;
    }

    Bytes m_bytes;
};

} // namespace qtbox::test
