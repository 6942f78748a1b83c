#include <qtbox/eif/format.hpp>
#include <qtbox/eif/pcr.hpp>

#include <doctest/doctest.h>

#include <zlib.h>

using namespace qtbox;

TEST_CASE("eif format: the 548-byte header is big-endian at Nitro's offsets")
{
    eif::Header header;
    header.flags = 1;
    header.num_sections = 2;
    header.section_offsets[0] = 548;
    header.section_offsets[1] = 0x0102030405060708ull;
    header.section_sizes[0] = 16;
    header.section_sizes[31] = 0xAABB;
    header.crc32 = 0xDEADBEEF;
    auto bytes = eif::encode_header(header);
    static_assert(eif::HEADER_SIZE == 548);
    CHECK(std::string(bytes.begin(), bytes.begin() + 4) == ".eif");
    CHECK(bytes[4] == 0);
    CHECK(bytes[5] == 4);
    CHECK(bytes[7] == 1);
    // default_mem = 1 GiB, default_cpus = 2
    CHECK(bytes[8 + 4] == 0x40);
    CHECK(bytes[16 + 7] == 2);
    CHECK(bytes[27] == 2);
    CHECK(bytes[28 + 6] == 0x02);
    CHECK(bytes[28 + 7] == 0x24);
    CHECK(bytes[36] == 0x01);
    CHECK(bytes[43] == 0x08);
    CHECK(bytes[284 + 7] == 16);
    CHECK(bytes[284 + 31 * 8 + 6] == 0xAA);
    CHECK(bytes[544] == 0xDE);
    CHECK(bytes[547] == 0xEF);
    auto decoded = eif::decode_header(bytes);
    REQUIRE(!decoded.is_error());
    CHECK(decoded.value().section_offsets[1] == 0x0102030405060708ull);
    CHECK(decoded.value().section_sizes[31] == 0xAABB);
    CHECK(decoded.value().crc32 == 0xDEADBEEF);
    CHECK(eif::encode_header(decoded.value()) == bytes);

    bytes[0] = 'x';
    CHECK(eif::decode_header(bytes).error().is(eif::EifError::Malformed));
    CHECK(eif::decode_header(ByteView(bytes.data(), 100)).error().is(eif::EifError::Truncated));
}

TEST_CASE("eif format: section headers and CRC helpers")
{
    auto bytes = eif::encode_section_header({ eif::SectionType::Metadata, 0, 0x1122334455667788ull });
    CHECK(bytes[0] == 0);
    CHECK(bytes[1] == 5);
    CHECK(bytes[4] == 0x11);
    CHECK(bytes[11] == 0x88);
    auto decoded = eif::decode_section_header(bytes);
    CHECK(decoded.type == eif::SectionType::Metadata);
    CHECK(decoded.size == 0x1122334455667788ull);

    std::string a = "header bytes", b = "section data that follows";
    std::string both = a + b;
    auto whole = static_cast<std::uint32_t>(crc32(0, reinterpret_cast<Bytef const*>(both.data()), static_cast<uInt>(both.size())));
    auto combined = eif::crc32_join(eif::crc32_update(0, as_bytes(a)), eif::crc32_update(0, as_bytes(b)), b.size());
    CHECK(combined == whole);
    CHECK(eif::crc32_update(0, as_bytes("123456789")) == 0xCBF43926u); // CRC-32/ISO-HDLC check value
}

TEST_CASE("pcr: measure is one extend of the SHA-384 digest into zeros")
{
    CHECK(hex_encode(eif::measure({})) == "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a");
    CHECK(hex_encode(eif::measure(as_bytes("abc"))) == "93732e3733514a841c982cfa75ea76ab55fe011acb9cd980ef4523913c65be1b0998e04d77f8c174f81a82151619ca40");
}

TEST_CASE("pcr: the section hasher routes sections to PCR0/1/2 and checksums each section, in parallel or not")
{
    for (bool parallel : { false, true }) {
        eif::SectionHasher hasher(parallel);
        hasher.begin_section(eif::SectionType::Kernel);
        hasher.update(as_bytes("K"));
        hasher.begin_section(eif::SectionType::Cmdline);
        hasher.update(as_bytes("C"));
        hasher.begin_section(eif::SectionType::Metadata);
        hasher.update(as_bytes("ignored"));
        hasher.begin_section(eif::SectionType::Ramdisk);
        hasher.update(as_bytes("R0"));
        hasher.begin_section(eif::SectionType::Ramdisk);
        hasher.update(as_bytes("R1"));
        hasher.update(as_bytes("+"));
        CHECK(hasher.section_crc() == eif::crc32_update(0, as_bytes("R1+")));
        hasher.begin_section(eif::SectionType::Ramdisk);
        hasher.update(as_bytes("R2"));
        CHECK(hasher.section_crc() == eif::crc32_update(0, as_bytes("R2")));
        auto result = hasher.finish();
        CHECK(result.pcr0 == eif::measure(as_bytes("KCR0R1+R2")));
        CHECK(result.pcr1 == eif::measure(as_bytes("KCR0")));
        CHECK(result.pcr2 == eif::measure(as_bytes("R1+R2")));
        CHECK(!result.pcr8);
    }
}
