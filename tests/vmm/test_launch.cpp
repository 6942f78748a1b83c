#include "support.hpp"

#include "../support/memory_eif.hpp"
#include "../support/temp_dir.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/crypto/x509_write.hpp>
#include <qtbox/eif/reader.hpp>
#include <qtbox/eif/signature.hpp>
#include <qtbox/eif/writer.hpp>
#include <qtbox/vmm/launch.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <fcntl.h>
#include <memory>
#include <optional>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace qtbox;
using namespace qtbox::vmm;

namespace {

constexpr std::string_view CMDLINE = "console=ttyS0 quiet init=/init";
constexpr std::string_view TAMPERED_CMDLINE = "console=ttyS0 quiet init=/evil";
constexpr UnixMillis HOUR = 3'600'000;

struct Image {
    std::string path;
    Bytes bytes; // the whole file as written
    Bytes kernel;
    std::vector<Bytes> ramdisks;
    std::optional<Bytes> signing_der;
};

eif::SigningIdentity make_identity()
{
    auto key = crypto::PrivateKey::generate(crypto::KeyType::EcP384);
    REQUIRE(!key.is_error());
    auto now = now_millis();
    crypto::CertificateProfile profile;
    profile.subject = "CN=eif-signer,O=qtbox-test";
    profile.not_before = now - HOUR;
    profile.not_after = now + 24 * HOUR;
    profile.key_usage = crypto::key_usage::DIGITAL_SIGNATURE;
    auto certificate = crypto::self_sign_certificate(profile, key.value());
    REQUIRE(!certificate.is_error());
    return eif::SigningIdentity { key.release_value(), certificate.release_value() };
}

// kernel (a bootable tiny bzImage), cmdline, metadata, two ramdisks, and a
// signature section when `sign`.
Image make_eif(test::TempDir const& dir, bool sign)
{
    Image image;
    image.path = dir / "image.eif";
    image.kernel = test::tiny_bzimage(4096);
    image.ramdisks.push_back(to_bytes("bootstrap ramdisk " + std::string(1000, 'b')));
    image.ramdisks.push_back(to_bytes("app ramdisk " + std::string(5000, 'a')));
    auto fd = sys::open(image.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    REQUIRE(!fd.is_error());
    auto writer = eif::EifWriter::create(fd.value().get());
    REQUIRE(!writer.is_error());
    auto& w = writer.value();
    REQUIRE(!w.write_section(eif::SectionType::Kernel, image.kernel).is_error());
    REQUIRE(!w.write_section(eif::SectionType::Cmdline, as_bytes(CMDLINE)).is_error());
    REQUIRE(!w.write_section(eif::SectionType::Metadata, as_bytes("{}")).is_error());
    for (auto const& ramdisk : image.ramdisks)
        REQUIRE(!w.write_section(eif::SectionType::Ramdisk, ramdisk).is_error());
    if (sign) {
        auto identity = make_identity();
        auto section = eif::make_signature_section(identity, w.measurements().pcr0);
        REQUIRE(!section.is_error());
        REQUIRE(!w.write_section(eif::SectionType::Signature, section.value()).is_error());
        image.signing_der = Bytes(identity.certificate.der().begin(), identity.certificate.der().end());
    }
    REQUIRE(!w.finish().is_error());
    image.bytes = to_bytes(test::read_text(image.path));
    return image;
}

// PCR0 recomputed from the parts (docs/FORMATS.md §2), independently of the reader.
eif::Pcr expected_pcr0(Image const& image)
{
    Bytes all = image.kernel;
    all.insert(all.end(), CMDLINE.begin(), CMDLINE.end());
    for (auto const& ramdisk : image.ramdisks)
        all.insert(all.end(), ramdisk.begin(), ramdisk.end());
    return eif::measure(all);
}

eif::Section section_of(std::string const& path, eif::SectionType type)
{
    auto reader = eif::EifReader::open(path);
    REQUIRE(!reader.is_error());
    for (auto const& section : reader.value().sections()) {
        if (section.type == type)
            return section;
    }
    FAIL("no such section");
    return {};
}

Bytes data_of(Bytes const& bytes, eif::Section const& section)
{
    auto begin = bytes.begin() + static_cast<long>(section.data_offset);
    return Bytes(begin, begin + static_cast<long>(section.size));
}

LaunchOptions options_for(std::string const& path)
{
    LaunchOptions options;
    options.eif = path;
    options.memory_mib = 256;
    options.vsock_socket = "unused/vsock.sock";
    options.listener_dir = "unused";
    return options;
}

LaunchOptions options_for(std::shared_ptr<test::MemoryFile> const& image)
{
    auto options = options_for("changing.eif");
    options.open_eif = [image](std::string const& path) {
        return eif::EifReader::from_source(std::make_unique<test::MemorySource>(image), path);
    };
    return options;
}

// What Machine::create does with fill_initrds: one buffer per ramdisk.
ErrorOr<void> second_pass(Launch& launch, std::vector<Bytes>& buffers)
{
    buffers.clear();
    for (auto size : launch.machine.initrd_sizes)
        buffers.emplace_back(static_cast<std::size_t>(size));
    std::vector<std::span<std::uint8_t>> slots(buffers.begin(), buffers.end());
    return launch.machine.fill_initrds(slots);
}

std::unique_ptr<Launch> prepare(LaunchOptions const& options)
{
    auto launch = prepare_launch(options);
    REQUIRE_MESSAGE(!launch.is_error(), launch.error().message());
    return launch.release_value();
}

void overwrite(std::string const& path, std::size_t offset, ByteView bytes)
{
    auto fd = sys::open(path, O_WRONLY);
    REQUIRE(!fd.is_error());
    REQUIRE(::pwrite(fd.value().get(), bytes.data(), bytes.size(), static_cast<off_t>(offset)) == static_cast<ssize_t>(bytes.size()));
}

// The CRC-32 an EIF's header holds for these bytes (docs/FORMATS.md §3).
std::uint32_t file_crc(Bytes const& bytes)
{
    auto crc = eif::crc32_update(0, ByteView(bytes.data(), eif::CRC_OFFSET));
    return eif::crc32_update(crc, ByteView(bytes.data() + eif::HEADER_SIZE, bytes.size() - eif::HEADER_SIZE));
}

// Flips bits of bytes[at, at + 4) so that file_crc(bytes) is `want`. For a
// fixed length the CRC is affine in the data bits, and the 32 bits of four
// consecutive bytes reach every value: solve for them over GF(2).
void force_crc(Bytes& bytes, std::size_t at, std::uint32_t want)
{
    auto flip = [&](unsigned bit) { bytes[at + bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8)); };
    std::uint32_t base = file_crc(bytes);
    // basis[b]: (effect on the CRC with highest bit b, the data bits that make it)
    std::array<std::pair<std::uint32_t, std::uint32_t>, 32> basis {};
    for (unsigned bit = 0; bit < 32; ++bit) {
        flip(bit);
        std::uint32_t effect = file_crc(bytes) ^ base;
        flip(bit);
        std::uint32_t combination = 1u << bit;
        for (int top = 31; top >= 0 && effect; --top) {
            if (!((effect >> top) & 1))
                continue;
            if (!basis[static_cast<std::size_t>(top)].first) {
                basis[static_cast<std::size_t>(top)] = { effect, combination };
                break;
            }
            effect ^= basis[static_cast<std::size_t>(top)].first;
            combination ^= basis[static_cast<std::size_t>(top)].second;
        }
    }
    std::uint32_t target = base ^ want;
    std::uint32_t flips = 0;
    for (int top = 31; top >= 0; --top) {
        if (!((target >> top) & 1))
            continue;
        REQUIRE(basis[static_cast<std::size_t>(top)].first);
        target ^= basis[static_cast<std::size_t>(top)].first;
        flips ^= basis[static_cast<std::size_t>(top)].second;
    }
    for (unsigned bit = 0; bit < 32; ++bit) {
        if ((flips >> bit) & 1)
            flip(bit);
    }
    REQUIRE(file_crc(bytes) == want);
}

// Changes one base64 character near the end of the signing certificate's
// PEM, inside the certificate's own signature value: it still parses, as
// another certificate (another DER, another PCR8), and its public key, which
// checks the COSE signature, is unchanged.
void change_certificate(Bytes& bytes, eif::Section const& signature)
{
    std::string_view marker = "-----END CERTIFICATE-----";
    auto begin = bytes.begin() + static_cast<long>(signature.data_offset);
    auto end = begin + static_cast<long>(signature.size);
    auto found = std::search(begin, end, marker.begin(), marker.end());
    REQUIRE(found != end);
    auto at = static_cast<std::size_t>(found - bytes.begin()) - 1;
    while (bytes[at] == '\n' || bytes[at] == '\r' || bytes[at] == '=')
        --at;
    at -= 8;
    while (bytes[at] == '\n' || bytes[at] == '\r')
        --at;
    bytes[at] = bytes[at] == 'A' ? 'B' : 'A';
}

// Where four bytes can change without breaking the signature section's
// structure: inside the COSE_Sign1's signature value, its last element.
std::size_t cose_signature_offset(Bytes const& bytes, eif::Section const& signature)
{
    ByteView section(bytes.data() + signature.data_offset, static_cast<std::size_t>(signature.size));
    auto entry = eif::parse_signature_section(section);
    REQUIRE(!entry.is_error());
    auto const& cose = entry.value().cose_sign1;
    auto found = std::search(section.begin(), section.end(), cose.begin(), cose.end());
    REQUIRE(found != section.end());
    return signature.data_offset + static_cast<std::size_t>(found - section.begin()) + cose.size() - 8;
}

} // namespace

TEST_CASE("launch: an unchanged EIF boots the measured kernel and cmdline, and the second pass loads its ramdisks")
{
    test::TempDir dir;
    auto image = make_eif(dir, true);
    auto launch = prepare(options_for(image.path));
    CHECK(launch->machine.cmdline == CMDLINE);
    CHECK(launch->kernel == image.kernel);
    CHECK(launch->verification.measurements.pcr0 == expected_pcr0(image));
    REQUIRE(launch->verification.measurements.pcr8);
    CHECK(*launch->verification.measurements.pcr8 == eif::measure(*image.signing_der));
    std::vector<std::uint64_t> sizes { image.ramdisks[0].size(), image.ramdisks[1].size() };
    CHECK(launch->machine.initrd_sizes == sizes);
    std::vector<Bytes> loaded;
    auto result = second_pass(*launch, loaded);
    REQUIRE_MESSAGE(!result.is_error(), result.error().message());
    CHECK(loaded == image.ramdisks);
}

TEST_CASE("launch: a cmdline whose bytes change on their second read is read once; the machine gets the measured one")
{
    test::TempDir dir;
    auto image = make_eif(dir, false);
    auto cmdline = section_of(image.path, eif::SectionType::Cmdline);
    REQUIRE(cmdline.size == CMDLINE.size());
    auto changing = test::memory_file(image.bytes, cmdline.data_offset, cmdline.size);
    changing->on_range_read = test::replace_from_read(2, to_bytes(TAMPERED_CMDLINE));

    auto launch = prepare(options_for(changing));
    // The first pass read the cmdline once, measured it, and kept that copy.
    CHECK(changing->range_reads == 1);
    CHECK(launch->machine.cmdline == CMDLINE);
    CHECK(launch->verification.measurements.pcr0 == expected_pcr0(image));

    // The second pass reads the changed bytes: they measure differently.
    std::vector<Bytes> loaded;
    auto result = second_pass(*launch, loaded);
    CHECK(changing->range_reads == 2);
    REQUIRE(result.is_error());
    CHECK_MESSAGE(result.error().is(LaunchError::ImageChanged), result.error().message());
}

TEST_CASE("launch: a signature section whose bytes change on their second read is read once and checked as measured")
{
    test::TempDir dir;
    auto image = make_eif(dir, true);
    auto signature = section_of(image.path, eif::SectionType::Signature);
    auto changed = image.bytes;
    change_certificate(changed, signature);
    auto changing = test::memory_file(image.bytes, signature.data_offset, signature.size);
    changing->on_range_read = test::replace_from_read(2, data_of(changed, signature));

    auto launch = prepare(options_for(changing));
    CHECK(changing->range_reads == 1);
    CHECK(launch->verification.signature == data_of(image.bytes, signature));
    REQUIRE(launch->verification.measurements.pcr8);
    CHECK(*launch->verification.measurements.pcr8 == eif::measure(*image.signing_der));

    // The second pass reads the other certificate: PCR8 differs.
    std::vector<Bytes> loaded;
    auto result = second_pass(*launch, loaded);
    CHECK(changing->range_reads == 2);
    REQUIRE(result.is_error());
    CHECK_MESSAGE(result.error().is(LaunchError::ImageChanged), result.error().message());
}

TEST_CASE("launch: a ramdisk byte changed between the two passes is refused with ImageChanged")
{
    test::TempDir dir;
    auto image = make_eif(dir, false);
    auto launch = prepare(options_for(image.path));
    auto app = section_of(image.path, eif::SectionType::Ramdisk);
    overwrite(image.path, app.data_offset + 100, as_bytes("X"));
    std::vector<Bytes> loaded;
    auto result = second_pass(*launch, loaded);
    REQUIRE(result.is_error());
    CHECK_MESSAGE(result.error().is(LaunchError::ImageChanged), result.error().message());
    CHECK(result.error().message() == "EIF " + image.path + ": the file changed while it was being loaded");
}

TEST_CASE("launch: a header changed between the two passes is refused with ImageChanged")
{
    test::TempDir dir;
    auto image = make_eif(dir, false);
    auto launch = prepare(options_for(image.path));
    overwrite(image.path, 8, as_bytes("\x7f")); // default_mem
    std::vector<Bytes> loaded;
    auto result = second_pass(*launch, loaded);
    REQUIRE(result.is_error());
    CHECK_MESSAGE(result.error().is(LaunchError::ImageChanged), result.error().message());
}

TEST_CASE("launch: another signing certificate between the two passes, with the CRC and PCR0/1/2 unchanged, is refused on PCR8")
{
    test::TempDir dir;
    auto image = make_eif(dir, true);
    auto launch = prepare(options_for(image.path));
    auto first = launch->verification;

    // Another certificate, and four bytes of the COSE signature chosen so
    // that the file's CRC-32 stays what its header says: only PCR8 tells.
    auto signature = section_of(image.path, eif::SectionType::Signature);
    auto changed = image.bytes;
    change_certificate(changed, signature);
    force_crc(changed, cose_signature_offset(changed, signature), first.stored_crc);
    overwrite(image.path, 0, changed);
    auto reread = eif::EifReader::open(image.path);
    REQUIRE(!reread.is_error());
    auto again = reread.value().verify();
    REQUIRE_MESSAGE(!again.is_error(), again.error().message());
    CHECK(again.value().crc_ok);
    CHECK(again.value().computed_crc == first.computed_crc);
    CHECK(again.value().measurements.pcr0 == first.measurements.pcr0);
    CHECK(again.value().measurements.pcr1 == first.measurements.pcr1);
    CHECK(again.value().measurements.pcr2 == first.measurements.pcr2);
    REQUIRE(again.value().measurements.pcr8);
    CHECK(*again.value().measurements.pcr8 != *first.measurements.pcr8);

    std::vector<Bytes> loaded;
    auto result = second_pass(*launch, loaded);
    REQUIRE(result.is_error());
    CHECK_MESSAGE(result.error().is(LaunchError::ImageChanged), result.error().message());
}
