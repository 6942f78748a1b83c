// The QTSM's platform configuration registers (docs/FORMATS.md §2): 32 SHA-384
// registers with a lock bit each.
//
// - Registers 0..15 belong to the platform. The VMM fills them before the
//   first guest instruction (PCR0/1/2/8 from the EIF, PCR3 the agency string,
//   PCR4 the parent instance id; all zeros in debug mode) and they are locked
//   from creation on: the enclave can read them, never change them.
// - Registers 16..31 belong to the enclave: they start at 48 zero bytes,
//   ExtendPCR folds data in (extend(R, d) = SHA384(R ‖ d)), and LockPCR makes
//   one read-only until the enclave stops.
// Every operation takes the bank's lock, so one bank can serve concurrent
// requests (the VMM's QTSM thread, tests with many clients).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/crypto/hash.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

namespace qtbox::qtsm {

constexpr std::size_t PCR_COUNT = 32;        // docs/FORMATS.md §2
constexpr std::size_t SYSTEM_PCR_COUNT = 16; // 0..15: set at creation, locked
constexpr std::size_t PCR_SIZE = 48;         // SHA-384

using PcrValue = crypto::Sha384Digest;
using SystemPcrs = std::array<PcrValue, SYSTEM_PCR_COUNT>;

// docs/FORMATS.md §2 "measure(x)": SHA384(0^48 ‖ SHA384(x)), one extend of a fresh
// register with the digest of x.
PcrValue measure(ByteView data);
// docs/FORMATS.md §2 extend(R, d) = SHA384(R ‖ d).
PcrValue extend(PcrValue const& current, ByteView data);

// The error kinds of the bank; the protocol maps them to QingTian's
// error_code names (protocol.hpp).
enum class PcrError {
    InvalidIndex = 1, // index ≥ PCR_COUNT
    ReadOnlyIndex,    // a platform register, or a locked user register
    InvalidArgument,  // an empty extend or an empty lock list
};

struct PcrState {
    PcrValue value {};
    bool locked { false };
};

struct PcrEntry {
    unsigned index { 0 };
    PcrValue value {};
    bool locked { false };
};

class PcrBank {
public:
    // Registers 0..15 take `system` and are locked; 16..31 are zero.
    explicit PcrBank(SystemPcrs const& system);
    PcrBank(PcrBank const&) = delete;
    PcrBank& operator=(PcrBank const&) = delete;

    ErrorOr<PcrState> describe(std::size_t index) const;
    // Returns the new value. ReadOnlyIndex for 0..15 and for a locked user
    // register; InvalidArgument for empty data (it would be a silent no-op
    // in intent while still changing the value).
    ErrorOr<PcrValue> extend(std::size_t index, ByteView data);
    // Locks one user register; locking one that is already locked succeeds
    // (idempotent). ReadOnlyIndex for 0..15: they are the platform's.
    ErrorOr<void> lock(std::size_t index);
    // Locks every listed register, or none: the whole list is checked
    // (indices, platform registers) before anything changes. Duplicates are
    // harmless. InvalidArgument for an empty list.
    ErrorOr<void> lock(std::span<std::uint16_t const> indices);

    // Indices of the locked registers, ascending (DescribeQTSM).
    std::vector<std::uint16_t> locked_indices() const;
    // One consistent copy of every register (for a document).
    std::array<PcrState, PCR_COUNT> snapshot() const;

    // docs/FORMATS.md §4: the PCRs a document carries: 0..15 always, plus every user
    // register that is locked or not all zeros, ascending.
    static std::vector<PcrEntry> document_pcrs(std::array<PcrState, PCR_COUNT> const& snapshot);

private:
    ErrorOr<void> check_user_index(std::size_t index) const;

    mutable std::mutex m_mutex;
    std::array<PcrState, PCR_COUNT> m_registers {};
};

} // namespace qtbox::qtsm
