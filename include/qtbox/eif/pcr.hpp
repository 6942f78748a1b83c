// EIF measurements (SPEC §2): measure(x) = SHA384(0^48 ‖ SHA384(x)).
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

// Streams section data into the PCR0/1/2 hashes as the sections go by, in
// file order. With `parallel`, PCR2's hash runs on a helper thread at the
// same time as PCR0's (the application ramdisk is hashed twice, and this is
// where an EIF build spends its time): update() queues a copy of the bytes
// for it (a few chunks at most), so callers may reuse their buffer at once;
// finish() waits for the helper.
class PcrHasher {
public:
    explicit PcrHasher(bool parallel = false);
    ~PcrHasher();
    PcrHasher(PcrHasher const&) = delete;
    PcrHasher& operator=(PcrHasher const&) = delete;

    // Sections that are not measured (metadata, signature) are ignored.
    void begin_section(SectionType type);
    void update(ByteView bytes);
    // PCR8 is left empty; the caller adds it from the certificate.
    Measurements finish();

private:
    struct Worker;
    crypto::Sha384 m_pcr0;
    crypto::Sha384 m_pcr1;
    crypto::Sha384 m_pcr2;
    std::unique_ptr<Worker> m_worker;
    SectionType m_section { SectionType::Invalid };
    std::size_t m_ramdisks { 0 };
};

} // namespace qtbox::eif
