// The split virtqueue, device side (virtio 1.2 §2.7); the overview is in
// include/qtbox/devices/virtio/queue.hpp.
//
// Every ring and descriptor field lives in guest memory, which vCPUs write
// while this code runs. Each field is read exactly once, with an atomic load
// into a local (no double fetch: a value that was checked is the value that
// is used), and converted from little-endian (§1.4: le16, le32 and le64
// fields). Areas are checked for the alignment §2.7 asks of the
// driver, so that every field is naturally aligned for those atomics.
#include <qtbox/devices/virtio/queue.hpp>

#include <fmt/format.h>

#include <atomic>
#include <bit>

namespace qtbox::devices::virtio {

namespace {

// Sizes and alignments of the three areas (§2.7, "Alignment" and "Size"
// table). The event-index words (used_event, avail_event) are always
// included, so the areas are the same whether EVENT_IDX was negotiated.
constexpr std::uint64_t DESCRIPTOR_SIZE = 16;
constexpr std::uint64_t DESCRIPTOR_TABLE_ALIGNMENT = 16;
constexpr std::uint64_t AVAILABLE_RING_ALIGNMENT = 2;
constexpr std::uint64_t USED_RING_ALIGNMENT = 4;
constexpr std::uint64_t RING_HEADER_SIZE = 4; // le16 flags, le16 idx
constexpr std::uint64_t AVAILABLE_ENTRY_SIZE = 2;
constexpr std::uint64_t USED_ENTRY_SIZE = 8; // le32 id, le32 len
constexpr std::uint64_t EVENT_WORD_SIZE = 2;

// Offsets inside the areas (§2.7.5, §2.7.6, §2.7.8).
constexpr std::size_t DESCRIPTOR_ADDRESS = 0;
constexpr std::size_t DESCRIPTOR_LENGTH = 8;
constexpr std::size_t DESCRIPTOR_FLAGS = 12;
constexpr std::size_t DESCRIPTOR_NEXT = 14;
constexpr std::size_t RING_FLAGS = 0;
constexpr std::size_t RING_INDEX = 2;
constexpr std::size_t RING_ENTRIES = 4;

template<typename T>
T from_little_endian(T value)
{
    if constexpr (std::endian::native == std::endian::little)
        return value;
    else if constexpr (sizeof(T) == 2)
        return __builtin_bswap16(value);
    else if constexpr (sizeof(T) == 4)
        return __builtin_bswap32(value);
    else
        return __builtin_bswap64(value);
}

// One field of guest memory, read or written once. `area` was checked at
// activate() to lie in guest RAM and to be aligned, and `offset` is inside
// it and a multiple of sizeof(T), so the atomic is naturally aligned.
template<typename T>
T load(std::span<std::uint8_t> area, std::size_t offset, std::memory_order order = std::memory_order_relaxed)
{
    VERIFY(offset + sizeof(T) <= area.size());
    auto& field = *static_cast<T*>(static_cast<void*>(area.data() + offset));
    return from_little_endian(std::atomic_ref<T>(field).load(order));
}

template<typename T>
void store(
    std::span<std::uint8_t> area, std::size_t offset, T value, std::memory_order order = std::memory_order_relaxed)
{
    VERIFY(offset + sizeof(T) <= area.size());
    auto& field = *static_cast<T*>(static_cast<void*>(area.data() + offset));
    std::atomic_ref<T>(field).store(from_little_endian(value), order);
}

// §2.7.7.2 / §2.7.10: the driver (or device) wants a notification when the
// index moves from `old_index` to `new_index` past `event_index`, i.e. when
// event_index lies in [old_index, new_index), in wrapping u16 arithmetic.
bool need_event(std::uint16_t event_index, std::uint16_t new_index, std::uint16_t old_index)
{
    return static_cast<std::uint16_t>(new_index - event_index - 1) < static_cast<std::uint16_t>(new_index - old_index);
}

BadChain bad(QueueError code, std::optional<std::uint16_t> head, std::string message)
{
    return BadChain { Error::from_code(code, "virtqueue: " + std::move(message)), head };
}

} // namespace

ErrorOr<Queue> Queue::activate(kvm::GuestMemory const& memory, QueueLayout const& layout, bool event_index)
{
    std::uint64_t size = layout.size;
    // §2.7: "Queue Size value is always a power of 2"; QueueNumMax bounds it.
    if (size == 0 || size > MAX_QUEUE_SIZE || !std::has_single_bit(size))
        return Error::from_code(QueueError::BadRing,
            fmt::format("virtqueue: size {} is not a power of two in 1..{}", size, MAX_QUEUE_SIZE));
    if (layout.descriptor_table % DESCRIPTOR_TABLE_ALIGNMENT != 0
        || layout.available_ring % AVAILABLE_RING_ALIGNMENT != 0 || layout.used_ring % USED_RING_ALIGNMENT != 0)
        return Error::from_code(QueueError::BadRing,
            fmt::format(
                "virtqueue: misaligned areas (descriptors {:#x}, driver {:#x}, device {:#x}; §2.7 asks 16, 2 and 4)",
                layout.descriptor_table, layout.available_ring, layout.used_ring));

    auto descriptors = memory.slice(layout.descriptor_table, DESCRIPTOR_SIZE * size);
    auto available
        = memory.slice(layout.available_ring, RING_HEADER_SIZE + AVAILABLE_ENTRY_SIZE * size + EVENT_WORD_SIZE);
    auto used = memory.slice(layout.used_ring, RING_HEADER_SIZE + USED_ENTRY_SIZE * size + EVENT_WORD_SIZE);
    if (descriptors.is_error() || available.is_error() || used.is_error())
        return Error::from_code(QueueError::BadRing,
            fmt::format("virtqueue: the areas of a queue of {} (descriptors {:#x}, driver {:#x}, device {:#x}) are not "
                        "inside guest RAM",
                size, layout.descriptor_table, layout.available_ring, layout.used_ring));

    Queue queue;
    queue.m_memory = &memory;
    queue.m_layout = layout;
    queue.m_event_index = event_index;
    queue.m_descriptors = descriptors.value();
    queue.m_available = available.value();
    queue.m_used = used.value();
    return queue;
}

std::variant<std::monostate, Chain, BadChain> Queue::pop()
{
    if (!is_ready())
        return bad(QueueError::NotReady, std::nullopt, "the queue is not ready");
    if (m_broken)
        return std::monostate {};

    std::uint16_t const size = m_layout.size;
    // Acquire: the ring entries and descriptors the driver wrote before it
    // published this index are visible below (§2.7.13.3.1).
    auto const available_index = load<std::uint16_t>(m_available, RING_INDEX, std::memory_order_acquire);
    auto const pending = static_cast<std::uint16_t>(available_index - m_next_available);
    if (pending == 0)
        return std::monostate {};
    // The driver cannot have more chains outstanding than descriptors, so
    // avail idx is at most `size` ahead of the used index; one that is
    // further ahead, or behind what the device took, is garbage.
    auto const outstanding = static_cast<std::uint16_t>(available_index - m_next_used);
    if (outstanding > size || pending > outstanding) {
        m_broken = true;
        return bad(QueueError::IndexOverrun, std::nullopt,
            fmt::format("available index {} is out of range (device took {}, used {}, queue size {})", available_index,
                m_next_available, m_next_used, size));
    }

    std::size_t const slot = m_next_available & (size - 1);
    auto const head = load<std::uint16_t>(m_available, RING_ENTRIES + AVAILABLE_ENTRY_SIZE * slot);
    if (head >= size) {
        m_broken = true;
        return bad(
            QueueError::BadHead, std::nullopt, fmt::format("head {} is not below the queue size {}", head, size));
    }
    // Taken off the ring whatever the chain turns out to be: a bad chain
    // goes back to the driver through consume_bad_chain.
    ++m_next_available;

    Chain chain;
    chain.head = head;
    std::uint64_t total = 0;
    std::uint16_t index = head;
    // §2.7.5.2: a chain holds at most `size` descriptors; counting them ends
    // a cycle the guest made.
    for (std::uint32_t count = 1;; ++count) {
        if (count > size)
            return bad(QueueError::ChainTooLong, head,
                fmt::format("the chain at {} is longer than the queue size {}", head, size));
        std::size_t const base = DESCRIPTOR_SIZE * index;
        auto const address = load<std::uint64_t>(m_descriptors, base + DESCRIPTOR_ADDRESS);
        auto const length = load<std::uint32_t>(m_descriptors, base + DESCRIPTOR_LENGTH);
        auto const flags = load<std::uint16_t>(m_descriptors, base + DESCRIPTOR_FLAGS);
        auto const next = load<std::uint16_t>(m_descriptors, base + DESCRIPTOR_NEXT);

        // §2.7.5.3: VIRTIO_F_INDIRECT_DESC is never offered.
        if (flags & VIRTQ_DESC_F_INDIRECT)
            return bad(
                QueueError::Indirect, head, fmt::format("descriptor {} is indirect, which was not negotiated", index));
        bool const writable = (flags & VIRTQ_DESC_F_WRITE) != 0;
        // §2.7.4.2: device-writable descriptors come after device-readable ones.
        if (!writable && !chain.writable.empty())
            return bad(QueueError::BadOrder, head,
                fmt::format("descriptor {} is device-readable after a device-writable one", index));
        auto buffer = m_memory->slice(address, length);
        if (buffer.is_error())
            return bad(QueueError::OutsideMemory, head,
                fmt::format("descriptor {} ({:#x}+{:#x}) is not inside guest RAM", index, address, length));
        total += length;
        if (total > MAX_CHAIN_BYTES)
            return bad(QueueError::TooLarge, head,
                fmt::format("the chain at {} describes more than {} bytes", head, MAX_CHAIN_BYTES));
        if (writable) {
            chain.writable.push_back(buffer.value());
            chain.writable_length += length;
        } else {
            chain.readable.push_back(buffer.value());
            chain.readable_length += length;
        }

        if (!(flags & VIRTQ_DESC_F_NEXT))
            return chain;
        if (next >= size)
            return bad(QueueError::BadHead, head,
                fmt::format("descriptor {} links to {}, not below the queue size {}", index, next, size));
        index = next;
    }
}

void Queue::push_used(std::uint16_t head, std::uint32_t written)
{
    VERIFY(is_ready());
    VERIFY(head < m_layout.size);
    // Only chains that pop() handed out come back, each once: at most
    // `size` are ever outstanding (pop() breaks the queue otherwise).
    VERIFY(static_cast<std::uint16_t>(m_next_available - m_next_used) != 0);

    std::size_t const entry = RING_ENTRIES + USED_ENTRY_SIZE * (m_next_used & (m_layout.size - 1));
    store<std::uint32_t>(m_used, entry, head);
    store<std::uint32_t>(m_used, entry + 4, written);
    ++m_next_used;
    // Release: the entry (and the bytes the device wrote into the buffers)
    // are visible before the index that publishes them (§2.7.8).
    store<std::uint16_t>(m_used, RING_INDEX, m_next_used, std::memory_order_release);
    // 2^16 entries since the last interrupt decision: the old index can no
    // longer be compared with, so the next decision interrupts.
    if (m_next_used == m_signalled_used)
        m_signalled_valid = false;
}

void Queue::consume_bad_chain(BadChain const& bad_chain)
{
    if (bad_chain.head)
        push_used(*bad_chain.head, 0);
}

bool Queue::needs_interrupt()
{
    if (!is_ready())
        return false;
    // The used index was published (push_used) before the driver's wishes
    // are read: a full barrier, or the device could read a stale used_event
    // or flags while the driver reads a stale used idx, and both would wait
    // (§2.7.7, the driver's side of the same race is in §2.7.14).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::uint16_t const old_index = m_signalled_used;
    bool const valid = m_signalled_valid;
    m_signalled_used = m_next_used;
    m_signalled_valid = true;

    if (m_event_index) {
        // §2.7.7.2: used_event follows the available ring's entries.
        auto const used_event = load<std::uint16_t>(m_available, RING_ENTRIES + AVAILABLE_ENTRY_SIZE * m_layout.size);
        if (!valid)
            return true;
        return need_event(used_event, m_next_used, old_index);
    }
    // §2.7.7.2 without EVENT_IDX: the NO_INTERRUPT flag, for new entries only.
    auto const flags = load<std::uint16_t>(m_available, RING_FLAGS);
    if (valid && old_index == m_next_used)
        return false;
    return (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) == 0;
}

bool Queue::enable_notifications()
{
    if (!is_ready() || m_broken)
        return false;
    if (m_event_index) {
        // §2.7.10: notify me once the driver makes the entry after the ones
        // the device has taken available.
        store<std::uint16_t>(m_used, RING_ENTRIES + USED_ENTRY_SIZE * m_layout.size, m_next_available);
    } else {
        store<std::uint16_t>(m_used, RING_FLAGS, 0);
    }
    // The request is visible before avail idx is read again: a driver that
    // published buffers before it saw the request did not notify, so the
    // device must see those buffers now (§2.7.10).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    auto const available_index = load<std::uint16_t>(m_available, RING_INDEX, std::memory_order_acquire);
    return available_index != m_next_available;
}

void Queue::disable_notifications()
{
    if (!is_ready())
        return;
    // With EVENT_IDX the driver ignores the flag (§2.7.10); avail_event then
    // simply stays behind, and the driver notifies at most once more.
    if (!m_event_index)
        store<std::uint16_t>(m_used, RING_FLAGS, VIRTQ_USED_F_NO_NOTIFY);
}

} // namespace qtbox::devices::virtio
