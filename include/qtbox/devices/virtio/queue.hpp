// The split virtqueue (virtio 1.2 §2.7), device side, over guest memory.
//
// Everything in the rings is written by the guest and untrusted: every
// descriptor is checked against guest RAM (kvm::GuestMemory::slice), a chain
// may hold at most queue-size descriptors (so a guest-made cycle ends as
// "too long", never as a hang), device-readable descriptors must come before
// device-writable ones (§2.7.4.2), and indirect descriptors are refused (the
// transport never offers VIRTIO_F_INDIRECT_DESC). An available index that
// runs more than queue-size entries ahead of what the device has taken
// breaks the queue: the device stops using it until the driver resets it.
// So does an available index more than queue-size entries ahead of what the
// device has put on the used ring: a driver cannot have more chains
// outstanding than it has descriptors (§2.7.13), so a guest can never make
// the device hold more than `size` chains at once.
//
// Notification suppression (§2.7.7, §2.7.10): with VIRTIO_F_EVENT_IDX the
// device reads used_event (after the available ring) to decide whether to
// interrupt, and writes avail_event (after the used ring) to say when it
// wants the next notification; without it, the driver's
// VRING_AVAIL_F_NO_INTERRUPT flag is honoured.
//
// A Queue is used by one thread at a time (the device's), and the guest
// runs concurrently: ring indices are read with acquire and written with
// release ordering, and the memory barriers §2.7.7 asks for are in place.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/kvm/memory.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

namespace qtbox::devices::virtio {

// The largest queue this device model offers (QueueNumMax). Queue sizes are
// powers of two, 1..MAX_QUEUE_SIZE (§2.7: "Queue Size value is always a power
// of 2"; the driver may pick a smaller one).
constexpr std::uint16_t MAX_QUEUE_SIZE = 256;

// The most bytes one chain may describe, readable and writable together
// (§2.7.5.2: "Drivers MUST NOT add a descriptor chain longer than 2^32
// bytes in total"), so that every length fits the used ring's le32.
constexpr std::uint64_t MAX_CHAIN_BYTES = 0xFFFF'FFFF;

// Descriptor flags (§2.7.5).
constexpr std::uint16_t VIRTQ_DESC_F_NEXT = 1;
constexpr std::uint16_t VIRTQ_DESC_F_WRITE = 2;
constexpr std::uint16_t VIRTQ_DESC_F_INDIRECT = 4;
// Ring flags (§2.7.6, §2.7.8).
constexpr std::uint16_t VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
constexpr std::uint16_t VIRTQ_USED_F_NO_NOTIFY = 1;

enum class QueueError {
    NotReady = 1,  // pop on a queue the driver has not made ready
    BadRing,       // the rings do not lie in guest RAM, or the size is invalid
    IndexOverrun,  // avail idx more than `size` entries ahead: the queue is broken
    BadHead,       // a head or next index >= size
    OutsideMemory, // a descriptor's buffer is not inside guest RAM
    ChainTooLong,  // more than `size` descriptors (a cycle, or an absurd chain)
    BadOrder,      // a device-readable descriptor after a device-writable one
    Indirect,      // VIRTQ_DESC_F_INDIRECT, never negotiated
    TooLarge,      // a chain's total length is over MAX_CHAIN_BYTES
};

// Where the driver put the three parts of a queue (the QueueDesc*,
// QueueDriver* and QueueDevice* registers) and its size (QueueNum).
struct QueueLayout {
    std::uint16_t size { 0 };
    std::uint64_t descriptor_table { 0 };
    std::uint64_t available_ring { 0 };
    std::uint64_t used_ring { 0 };
};

// One descriptor chain, checked: host views of its buffers in guest memory.
struct Chain {
    std::uint16_t head { 0 };
    std::vector<std::span<std::uint8_t>> readable; // driver → device, in order
    std::vector<std::span<std::uint8_t>> writable; // device → driver, in order
    std::uint32_t readable_length { 0 };
    std::uint32_t writable_length { 0 };
};

// A chain that failed its checks, with its QueueError code (Error::is). `head`
// is known (and is given back to the driver as used with length 0 by
// consume_bad_chain) unless the error is NotReady, or IndexOverrun or
// BadHead on the head itself, in which case the queue is broken (is_broken()).
struct BadChain {
    Error error;
    std::optional<std::uint16_t> head;
};

class Queue {
public:
    // An unconfigured queue; pop() returns NotReady until activate().
    Queue() = default;

    // Checks that the three areas lie in guest RAM (sizes per §2.7: 16·size,
    // 6 + 2·size and 6 + 8·size bytes, with the event-index words) and that
    // size is a power of two in 1..MAX_QUEUE_SIZE. `event_index` is whether
    // VIRTIO_F_EVENT_IDX was negotiated.
    static ErrorOr<Queue> activate(kvm::GuestMemory const& memory, QueueLayout const& layout, bool event_index);

    bool is_ready() const { return m_memory != nullptr; }
    bool is_broken() const { return m_broken; }
    std::uint16_t size() const { return m_layout.size; }

    // The next available chain, checked; monostate when the driver has made
    // none available, and always once the queue is broken. A BadChain with a
    // head has been taken off the ring: hand it to consume_bad_chain. The
    // spans point into guest memory, which the guest may change at any
    // time: copy what you parse (a header) before you check it.
    std::variant<std::monostate, Chain, BadChain> pop();
    // Puts `head` (a chain pop() returned and nobody pushed yet) on the used
    // ring with the number of bytes the device wrote into the chain's
    // writable buffers, and publishes the used index.
    void push_used(std::uint16_t head, std::uint32_t written);
    // Gives a bad chain's head back to the driver as used with length 0
    // (nothing when the head is unknown).
    void consume_bad_chain(BadChain const& bad);
    // After one or more push_used: whether the driver wants an interrupt
    // now (§2.7.7.2 with event_index, else the NO_INTERRUPT flag).
    bool needs_interrupt();

    // Device → driver: ask for a notification when new buffers arrive
    // (avail_event with event_index, else clear NO_NOTIFY), then look again:
    // returns true if buffers are already available, in which case the
    // caller must keep going instead of sleeping (the §2.7.10 race).
    bool enable_notifications();
    // Suppress notifications while the device is busy polling the ring.
    void disable_notifications();

    // Stops using the queue (device reset).
    void reset() { *this = Queue(); }

private:
    kvm::GuestMemory const* m_memory { nullptr };
    QueueLayout m_layout;
    bool m_event_index { false };
    bool m_broken { false };
    // Host views of the three areas, checked once at activate().
    std::span<std::uint8_t> m_descriptors;
    std::span<std::uint8_t> m_available;
    std::span<std::uint8_t> m_used;
    std::uint16_t m_next_available { 0 }; // the driver's entries the device has taken
    std::uint16_t m_next_used { 0 };      // what the device has published
    std::uint16_t m_signalled_used { 0 }; // used idx at the last interrupt decision
    bool m_signalled_valid { false };
};

} // namespace qtbox::devices::virtio
