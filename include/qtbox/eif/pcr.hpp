// EIF measurements (docs/FORMATS.md §2): measure(x) = SHA384(0^48 ‖ SHA384(x)).
//   PCR0 = measure(kernel ‖ cmdline ‖ ramdisk0 ‖ ramdisk1 ‖ ...)
//   PCR1 = measure(kernel ‖ cmdline ‖ ramdisk0)
//   PCR2 = measure(ramdisk1 ‖ ramdisk2 ‖ ...)
//   PCR8 = measure(DER of the signing certificate), zeros when unsigned
// Section data only: no headers, no metadata, no signature.
#pragma once

#include <qtbox/crypto/hash.hpp>
#include <qtbox/eif/format.hpp>

#include <memory>
#include <optional>

namespace qtbox::eif {

using Pcr = crypto::Sha384Digest;

// One extend of SHA384(data) into a zeroed register.
Pcr measure(ByteView data);
Pcr measure_digest(crypto::Sha384Digest const& digest);

struct Measurements {
    Pcr pcr0 {};
    Pcr pcr1 {};
    Pcr pcr2 {};
    std::optional<Pcr> pcr8; // only for signed images
};

// Streams section data, in file order, into what an EIF's data is checked
// with: the PCR0/1/2 hashes and the CRC-32 of each section's data. PCR1's
// stream is a prefix of PCR0's (kernel, cmdline, ramdisk0), so its digest is
// taken from PCR0's hash when ramdisk0 ends instead of hashing it twice.
// The application ramdisk is still hashed twice (PCR0 and PCR2 see it at
// different offsets of their streams), which is where building or checking
// an EIF spends its time. With `parallel`, two helper threads do all of it,
// one PCR0, the other PCR2 and the CRC, while the caller only reads and
// writes: on two CPUs the second hash then costs no wall time. update()
// copies the bytes into a ring of a few chunks that both helpers read, so
// callers may reuse their buffer at once and memory stays flat.
class SectionHasher {
public:
    explicit SectionHasher(bool parallel = false);
    ~SectionHasher();
    SectionHasher(SectionHasher const&) = delete;
    SectionHasher& operator=(SectionHasher const&) = delete;

    // Starts a section: its CRC restarts; metadata and signature data are
    // not measured (their CRC still counts).
    void begin_section(SectionType type);
    void update(ByteView bytes);
    // The CRC-32 of the current section's data so far.
    std::uint32_t section_crc();
    // PCR8 is left empty; the caller adds it from the certificate.
    Measurements finish();

private:
    struct Workers;
    // What a chunk of the current section goes into.
    struct Route {
        bool pcr0 { false };
        bool pcr2 { false };
    };
    Route route() const;
    static void hash_into_pcr0(crypto::Sha384& pcr0, ByteView bytes, Route route);
    static std::uint32_t hash_into_pcr2(crypto::Sha384& pcr2, std::uint32_t crc, ByteView bytes, Route route);

    crypto::Sha384 m_pcr0;
    crypto::Sha384 m_pcr2;
    std::optional<Pcr> m_pcr1;
    std::uint32_t m_crc { 0 };
    std::unique_ptr<Workers> m_workers;
    SectionType m_section { SectionType::Invalid };
    std::size_t m_ramdisks { 0 };
};

} // namespace qtbox::eif
