#include "support.hpp"
#include "../support/memory_eif.hpp"

#include <qtbox/eif/reader.hpp>
#include <qtbox/eif/writer.hpp>


using namespace qtbox;

namespace {

struct Written {
    std::string path;
    eif::Measurements measurements;
};

// kernel, cmdline, metadata, two ramdisks (one streamed in pieces).
Written write_eif(test::TempDir const& dir, std::string const& name = "image.eif")
{
    auto path = dir / name;
    auto fd = sys::open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    REQUIRE(!fd.is_error());
    auto writer = eif::EifWriter::create(fd.value().get());
    REQUIRE(!writer.is_error());
    auto& w = writer.value();
    REQUIRE(!w.write_section(eif::SectionType::Kernel, as_bytes("KERNEL-BYTES")).is_error());
    REQUIRE(!w.write_section(eif::SectionType::Cmdline, as_bytes("console=ttyS0")).is_error());
    REQUIRE(!w.write_section(eif::SectionType::Metadata, as_bytes(R"({"ImageName":"t"})")).is_error());
    REQUIRE(!w.write_section(eif::SectionType::Ramdisk, as_bytes("bootstrap")).is_error());
    REQUIRE(!w.begin_section(eif::SectionType::Ramdisk).is_error());
    REQUIRE(!w.section_sink().write(as_bytes("app-")).is_error());
    REQUIRE(!w.section_sink().write(as_bytes(std::string(3 << 20, 'a'))).is_error());
    REQUIRE(w.end_section().value() == 4 + (3u << 20));
    Written written { path, w.measurements() };
    REQUIRE(!w.finish().is_error());
    return written;
}

std::string contents(std::string const& path)
{
    return test::read_text(path);
}

void overwrite(std::string const& path, std::size_t offset, std::string_view bytes)
{
    auto fd = sys::open(path, O_WRONLY);
    REQUIRE(!fd.is_error());
    REQUIRE(::pwrite(fd.value().get(), bytes.data(), bytes.size(), static_cast<off_t>(offset)) == static_cast<ssize_t>(bytes.size()));
}

void put_be64(std::string& bytes, std::size_t offset, std::uint64_t value)
{
    for (int i = 0; i < 8; ++i)
        bytes[offset + static_cast<std::size_t>(i)] = static_cast<char>(value >> (56 - 8 * i));
}

Error open_error(std::string const& path)
{
    auto reader = eif::EifReader::open(path);
    REQUIRE(reader.is_error());
    return reader.release_error();
}

} // namespace

TEST_CASE("eif writer/reader: layout, offsets, CRC and PCRs agree with an independent computation")
{
    test::TempDir dir;
    auto written = write_eif(dir);
    auto bytes = contents(written.path);
    CHECK(bytes.substr(0, 4) == ".eif");
    // Sections back to back from 548: kernel, cmdline, metadata, ramdisk, ramdisk.
    CHECK(bytes.substr(548, 2) == std::string("\0\1", 2));
    CHECK(bytes.substr(560, 12) == "KERNEL-BYTES");
    CHECK(bytes.substr(572, 2) == std::string("\0\2", 2));

    auto reader = eif::EifReader::open(written.path);
    REQUIRE_MESSAGE(!reader.is_error(), reader.error().message());
    auto const& sections = reader.value().sections();
    REQUIRE(sections.size() == 5);
    CHECK(sections[0].header_offset == 548);
    CHECK(sections[0].data_offset == 560);
    CHECK(sections[1].header_offset == 572);
    CHECK(sections[2].type == eif::SectionType::Metadata);
    CHECK(sections[4].size == 4 + (3u << 20));
    CHECK(reader.value().header().num_sections == 5);
    CHECK(reader.value().header().section_offsets[4] == sections[4].header_offset);
    CHECK(reader.value().ramdisks().size() == 2);
    CHECK(!reader.value().is_signed());
    CHECK(reader.value().read_cmdline().value() == "console=ttyS0");

    auto crc = static_cast<std::uint32_t>(crc32(0, reinterpret_cast<Bytef const*>(bytes.data()), 544));
    crc = static_cast<std::uint32_t>(crc32(crc, reinterpret_cast<Bytef const*>(bytes.data()) + 548, static_cast<uInt>(bytes.size() - 548)));
    std::string ramdisk1 = "app-" + std::string(3 << 20, 'a');
    std::vector<std::pair<std::uint64_t, std::uint64_t>> seen;
    auto verification = reader.value().verify([&](eif::Section const& section, std::uint64_t offset, ByteView chunk) -> ErrorOr<void> {
        seen.emplace_back(section.index, offset + chunk.size());
        return {};
    });
    REQUIRE(!verification.is_error());
    CHECK(verification.value().crc_ok);
    CHECK(verification.value().computed_crc == crc);
    CHECK(reader.value().header().crc32 == crc);
    auto const& m = verification.value().measurements;
    CHECK(m.pcr0 == eif::measure(as_bytes("KERNEL-BYTESconsole=ttyS0bootstrap" + ramdisk1)));
    CHECK(m.pcr1 == eif::measure(as_bytes("KERNEL-BYTESconsole=ttyS0bootstrap")));
    CHECK(m.pcr2 == eif::measure(as_bytes(ramdisk1)));
    CHECK(m.pcr0 == written.measurements.pcr0);
    CHECK(m.pcr2 == written.measurements.pcr2);
    CHECK(!m.pcr8);
    // The visitor saw every byte of every section, in order.
    CHECK(seen.front().first == 0);
    CHECK(seen.back() == std::pair<std::uint64_t, std::uint64_t>(4, 4 + (3u << 20)));
}

TEST_CASE("eif writer: refuses sections out of docs/FORMATS.md §3 order")
{
    test::TempDir dir;
    auto fd = sys::open(dir / "x.eif", O_RDWR | O_CREAT, 0644);
    auto writer = eif::EifWriter::create(fd.value().get());
    REQUIRE(!writer.is_error());
    CHECK(writer.value().write_section(eif::SectionType::Cmdline, {}).is_error() == false);
    CHECK(writer.value().write_section(eif::SectionType::Kernel, {}).error().is(eif::EifError::Malformed));
    CHECK(writer.value().write_section(eif::SectionType::Cmdline, {}).error().is(eif::EifError::Malformed));
    CHECK(writer.value().write_section(eif::SectionType::Invalid, {}).error().is(eif::EifError::Malformed));
}

TEST_CASE("eif reader: truncation anywhere is refused with the section named")
{
    test::TempDir dir;
    auto written = write_eif(dir);
    auto bytes = contents(written.path);
    for (std::size_t cut : { std::size_t { 0 }, std::size_t { 100 }, std::size_t { 547 }, std::size_t { 555 }, std::size_t { 565 }, bytes.size() - 1 }) {
        dir.write("cut.eif", bytes.substr(0, cut));
        auto error = open_error(dir / "cut.eif");
        INFO("cut at " << cut << ": " << error.message());
        CHECK(error.is(eif::EifError::Truncated));
    }
    dir.write("cut.eif", bytes.substr(0, bytes.size() - 1));
    CHECK(open_error(dir / "cut.eif").message().find("section 4 (ramdisk) declares 3145732 bytes") != std::string::npos);
}

TEST_CASE("eif reader: a flipped data byte fails the CRC")
{
    test::TempDir dir;
    auto written = write_eif(dir);
    overwrite(written.path, 561, "X");
    auto reader = eif::EifReader::open(written.path);
    REQUIRE(!reader.is_error());
    auto verification = reader.value().verify();
    REQUIRE(!verification.is_error());
    CHECK(!verification.value().crc_ok);
    CHECK(verification.value().computed_crc != verification.value().stored_crc);
}

TEST_CASE("eif reader: structural defects")
{
    test::TempDir dir;
    auto written = write_eif(dir);
    auto pristine = contents(written.path);
    auto check = [&](std::string bytes, eif::EifError failure, std::string_view needle) {
        dir.write("bad.eif", bytes);
        test::fix_eif_crc(dir / "bad.eif");
        auto error = open_error(dir / "bad.eif");
        INFO(error.message());
        CHECK(error.is(failure));
        CHECK(error.message().find(needle) != std::string::npos);
    };
    SUBCASE("bad magic")
    {
        auto bytes = pristine;
        bytes[1] = 'x';
        check(bytes, eif::EifError::Malformed, "bad magic");
    }
    SUBCASE("another version")
    {
        auto bytes = pristine;
        bytes[5] = 3;
        check(bytes, eif::EifError::UnsupportedVersion, "EIF version 3");
    }
    SUBCASE("unknown header flags")
    {
        auto bytes = pristine;
        bytes[6] = 0x80;
        check(bytes, eif::EifError::Malformed, "unknown EIF header flags");
    }
    SUBCASE("unknown section type")
    {
        auto bytes = pristine;
        bytes[572 + 1] = 9;
        check(bytes, eif::EifError::Malformed, "section 1 at offset 572 has unknown type 9");
    }
    SUBCASE("type 0 (Invalid)")
    {
        auto bytes = pristine;
        bytes[572 + 1] = 0;
        check(bytes, eif::EifError::Malformed, "unknown type 0");
    }
    SUBCASE("section flags")
    {
        auto bytes = pristine;
        bytes[572 + 3] = 1;
        check(bytes, eif::EifError::Malformed, "unknown flags");
    }
    SUBCASE("huge declared size")
    {
        auto bytes = pristine;
        put_be64(bytes, 548 + 4, 0xFFFF'FFFF'FFFF'FFF0ull);
        check(bytes, eif::EifError::Truncated, "declares 18446744073709551600 bytes");
    }
    SUBCASE("cmdline beyond its limit")
    {
        // A cmdline section grown to 4 KiB: rebuild the file around it.
        test::TempDir other;
        auto fd = sys::open(other / "big.eif", O_RDWR | O_CREAT, 0644);
        auto writer = eif::EifWriter::create(fd.value().get());
        REQUIRE(!writer.value().write_section(eif::SectionType::Kernel, as_bytes("k")).is_error());
        REQUIRE(!writer.value().write_section(eif::SectionType::Cmdline, as_bytes(std::string(4096, 'c'))).is_error());
        REQUIRE(!writer.value().write_section(eif::SectionType::Ramdisk, as_bytes("r")).is_error());
        REQUIRE(!writer.value().finish().is_error());
        auto error = open_error(other / "big.eif");
        CHECK(error.is(eif::EifError::LimitExceeded));
    }
    SUBCASE("sections out of order")
    {
        // Swap the kernel and cmdline type fields.
        auto bytes = pristine;
        bytes[548 + 1] = 2;
        bytes[572 + 1] = 1;
        check(bytes, eif::EifError::Malformed, "section 1 (kernel) is out of order");
    }
    SUBCASE("header section count disagrees")
    {
        auto bytes = pristine;
        bytes[27] = 4;
        check(bytes, eif::EifError::Malformed, "claims 4 sections but the file holds 5");
    }
    SUBCASE("offset table points elsewhere (overlapping sections)")
    {
        auto bytes = pristine;
        put_be64(bytes, 28 + 8 * 2, 560);
        check(bytes, eif::EifError::Malformed, "section table entry 2");
    }
    SUBCASE("size table disagrees")
    {
        auto bytes = pristine;
        put_be64(bytes, 284 + 8 * 3, 1);
        check(bytes, eif::EifError::Malformed, "section table entry 3");
    }
    SUBCASE("stray entries past num_sections")
    {
        auto bytes = pristine;
        put_be64(bytes, 28 + 8 * 20, 7);
        check(bytes, eif::EifError::Malformed, "section table entry 20");
    }
    SUBCASE("no ramdisk")
    {
        test::TempDir other;
        auto fd = sys::open(other / "nr.eif", O_RDWR | O_CREAT, 0644);
        auto writer = eif::EifWriter::create(fd.value().get());
        REQUIRE(!writer.value().write_section(eif::SectionType::Kernel, as_bytes("k")).is_error());
        REQUIRE(!writer.value().write_section(eif::SectionType::Cmdline, as_bytes("c")).is_error());
        REQUIRE(!writer.value().finish().is_error());
        CHECK(open_error(other / "nr.eif").message() == "the image has no ramdisk");
    }
}

TEST_CASE("eif reader: reads are bounded by their section")
{
    test::TempDir dir;
    auto written = write_eif(dir);
    auto reader = eif::EifReader::open(written.path);
    REQUIRE(!reader.is_error());
    std::array<std::uint8_t, 4> out {};
    CHECK(!reader.value().read(reader.value().kernel(), 8, out).is_error());
    CHECK(std::string(out.begin(), out.end()) == "YTES");
    CHECK(reader.value().read(reader.value().kernel(), 9, out).error().is(eif::EifError::Malformed));
    CHECK(reader.value().read_section(*reader.value().ramdisks()[1], 1024).error().is(eif::EifError::LimitExceeded));
}

TEST_CASE("eif reader: every single-byte corruption is refused or fails the CRC, without a crash")
{
    test::TempDir dir;
    auto fd = sys::open(dir / "small.eif", O_RDWR | O_CREAT | O_TRUNC, 0644);
    auto writer = eif::EifWriter::create(fd.value().get());
    REQUIRE(!writer.value().write_section(eif::SectionType::Kernel, as_bytes("kernel")).is_error());
    REQUIRE(!writer.value().write_section(eif::SectionType::Cmdline, as_bytes("quiet")).is_error());
    REQUIRE(!writer.value().write_section(eif::SectionType::Metadata, as_bytes("{}")).is_error());
    REQUIRE(!writer.value().write_section(eif::SectionType::Ramdisk, as_bytes("r0")).is_error());
    REQUIRE(!writer.value().write_section(eif::SectionType::Ramdisk, as_bytes("r1")).is_error());
    REQUIRE(!writer.value().finish().is_error());
    auto pristine = test::read_text(dir / "small.eif");
    std::uint32_t state = 12345;
    auto next = [&] {
        state = state * 1103515245u + 12345u;
        return state >> 8;
    };
    int refused = 0, crc_failures = 0;
    for (int round = 0; round < 2000; ++round) {
        auto bytes = pristine;
        auto position = round < static_cast<int>(bytes.size()) ? static_cast<std::size_t>(round) : next() % bytes.size();
        auto flip = static_cast<char>(1 + next() % 255);
        bytes[position] = static_cast<char>(bytes[position] ^ flip);
        dir.write("mutated.eif", bytes);
        auto reader = eif::EifReader::open(dir / "mutated.eif");
        if (reader.is_error()) {
            ++refused;
            continue;
        }
        auto verification = reader.value().verify();
        INFO("byte " << position << " ^ " << static_cast<int>(static_cast<unsigned char>(flip)));
        REQUIRE(!verification.is_error());
        CHECK(!verification.value().crc_ok);
        ++crc_failures;
    }
    CHECK(refused > 0);
    CHECK(crc_failures > 0);
}

namespace {

std::shared_ptr<test::MemoryFile> memory_image(std::string const& path)
{
    auto text = contents(path);
    return test::memory_file(Bytes(text.begin(), text.end()));
}

} // namespace

TEST_CASE("eif reader: verify reads every byte of the file exactly once")
{
    test::TempDir dir;
    auto written = write_eif(dir);
    auto image = memory_image(written.path);
    auto reader = eif::EifReader::from_source(std::make_unique<test::MemorySource>(image), "memory.eif");
    REQUIRE_MESSAGE(!reader.is_error(), reader.error().message());
    std::fill(image->reads.begin(), image->reads.end(), 0);
    auto verification = reader.value().verify();
    REQUIRE(!verification.is_error());
    CHECK(verification.value().crc_ok);
    CHECK(verification.value().measurements.pcr0 == written.measurements.pcr0);
    CHECK(verification.value().signature.empty());
    CHECK(std::all_of(image->reads.begin(), image->reads.end(), [](int count) { return count == 1; }));
}

TEST_CASE("eif reader: the visitor gets the very bytes that were measured, even when every read differs")
{
    test::TempDir dir;
    auto written = write_eif(dir);
    auto image = memory_image(written.path);
    auto opened = eif::EifReader::from_source(std::make_unique<test::MemorySource>(image), "memory.eif");
    REQUIRE(!opened.is_error());
    auto const& reader = opened.value();
    image->watch_offset = reader.cmdline().data_offset;
    image->watch_size = reader.cmdline().size;
    // Every read of the cmdline differs: its last byte is the read's number.
    image->on_range_read = [&](int read, std::uint64_t within, std::span<std::uint8_t> part) {
        if (within + part.size() == image->watch_size)
            part.back() = static_cast<std::uint8_t>('0' + read % 10);
    };

    std::string cmdline;
    auto verification = reader.verify([&](eif::Section const& section, std::uint64_t, ByteView chunk) -> ErrorOr<void> {
        if (section.type == eif::SectionType::Cmdline)
            cmdline.append(as_chars(chunk));
        return {};
    });
    REQUIRE(!verification.is_error());
    CHECK(image->range_reads == 1);
    CHECK(cmdline == "console=ttyS1");
    CHECK(!verification.value().crc_ok);
    std::string ramdisk1 = "app-" + std::string(3 << 20, 'a');
    auto measured = "KERNEL-BYTES" + cmdline + "bootstrap" + ramdisk1;
    CHECK(verification.value().measurements.pcr0 == eif::measure(as_bytes(measured)));
    // A read outside verify() gets yet other bytes.
    CHECK(reader.read_cmdline().value() == "console=ttyS2");
}

TEST_CASE("eif reader: a source that ends early or is not a regular file is refused")
{
    test::TempDir dir;
    auto written = write_eif(dir);
    auto image = memory_image(written.path);
    auto opened = eif::EifReader::from_source(std::make_unique<test::MemorySource>(image), "memory.eif");
    REQUIRE(!opened.is_error());
    image->bytes.resize(image->bytes.size() - 1);
    auto verification = opened.value().verify();
    REQUIRE(verification.is_error());
    CHECK(verification.error().is(eif::EifError::Truncated));

    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    ::close(fds[1]);
    auto piped = eif::EifReader::from_fd(UniqueFd(fds[0]), "pipe");
    REQUIRE(piped.is_error());
    CHECK(piped.error().is(eif::EifError::Malformed));
    CHECK(piped.error().message() == "not a regular file");
}

TEST_CASE("eif reader: cmdline_text takes printable ASCII up to the limit")
{
    CHECK(eif::cmdline_text(as_bytes("console=ttyS0 quiet")).value() == "console=ttyS0 quiet");
    CHECK(eif::cmdline_text({}).value().empty());
    CHECK(eif::cmdline_text(as_bytes(std::string(eif::MAX_CMDLINE_SIZE, 'c'))).value().size() == eif::MAX_CMDLINE_SIZE);
    auto too_long = std::string(eif::MAX_CMDLINE_SIZE + 1, 'c');
    CHECK(eif::cmdline_text(as_bytes(too_long)).error().is(eif::EifError::LimitExceeded));
    CHECK(eif::cmdline_text(as_bytes(std::string("quiet\n", 6))).error().is(eif::EifError::Malformed));
    CHECK(eif::cmdline_text(as_bytes(std::string("a\0b", 3))).error().is(eif::EifError::Malformed));
    CHECK(eif::cmdline_text(as_bytes("caf\xc3\xa9")).error().is(eif::EifError::Malformed));
}
