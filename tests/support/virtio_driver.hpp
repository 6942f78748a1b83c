// A driver-side simulator of virtio (virtio 1.2 §2.7, §3.1.1, §4.2.3), for
// the tests and fuzz targets of devices/virtio: it plays the part Linux's
// virtio_ring.c and virtio_mmio.c play in a guest, on a kvm::GuestMemory
// made with GuestMemory::create (no /dev/kvm needed). Header-only, and no
// doctest: a misuse of the simulator itself (a layout that does not fit in
// guest memory, a buffer larger than its slot) prints one line on stderr and
// aborts.
//
// VirtqueueDriver lays out one split virtqueue in guest memory:
//
//   ring_address                    descriptor table, 16 · size bytes
//   + 16 · size                     available ring (flags, idx, ring[size], used_event)
//   next multiple of 4              used ring (flags, idx, {id, len}[size], avail_event)
//   buffer_address + d · slot_size  the buffer of descriptor d (one slot each)
//
// and offers what a driver does: add(readable, writable lengths) takes free
// descriptors and fills their buffers (§2.7.13.1), make_available() puts a
// head on the available ring and publish() stores avail idx with release
// ordering (§2.7.13.2, §2.7.13.3); take_used() reads the next used entry,
// copies out what the device wrote and frees the chain's descriptors
// (§2.7.14). For hostile tests there is raw access to every field: write
// any descriptor, any ring entry, any index, used_event, the flags; and the
// device's side can be read back (used idx and entries, used flags,
// avail_event).
//
//     auto memory = qtbox::test::make_guest_memory();
//     qtbox::test::VirtqueueDriver driver(memory, { .size = 16 });
//     auto queue = Queue::activate(memory, driver.layout(), false).release_value();
//     driver.send({ as_bytes("request") }, { 64 });   // add + make_available + publish
//     auto chain = std::get<Chain>(queue.pop());
//     ... queue.push_used(chain.head, n);
//     auto done = driver.take_used();                 // done->written holds the n bytes
//
// MmioDriver drives a virtio-mmio transport through its BusDevice read()
// and write(), 32-bit register by register, as Linux's virtio_mmio does:
// initialize() runs the whole §3.1.1 sequence (reset, ACKNOWLEDGE, DRIVER,
// feature negotiation, FEATURES_OK and its read-back, queue setup per
// §4.2.3.2, DRIVER_OK); its steps are public for tests that stop halfway or
// misbehave.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/devices/bus.hpp>
#include <qtbox/devices/virtio/mmio.hpp>
#include <qtbox/devices/virtio/queue.hpp>
#include <qtbox/kvm/memory.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace qtbox::test {

static_assert(
    std::endian::native == std::endian::little, "the simulator writes virtio's little-endian fields as host integers");

namespace virtio_driver_detail {

[[noreturn]] inline void fail(char const* what)
{
    std::fprintf(stderr, "virtio driver simulator: %s\n", what);
    std::abort();
}

inline void check(bool condition, char const* what)
{
    if (!condition)
        fail(what);
}

} // namespace virtio_driver_detail

// Guest RAM for a test: one region of `size` bytes at `base` (both page
// aligned).
inline kvm::GuestMemory make_guest_memory(std::uint64_t size = 1 << 20, std::uint64_t base = 0)
{
    auto memory = kvm::GuestMemory::create({ kvm::MemoryRegion { base, size } });
    virtio_driver_detail::check(!memory.is_error(), "cannot create guest memory");
    return memory.release_value();
}

class VirtqueueDriver {
public:
    struct Options {
        std::uint16_t size { 16 }; // a power of two, at most MAX_QUEUE_SIZE
        std::uint64_t ring_address { 0x1000 }; // 16-byte aligned
        std::uint64_t buffer_address { 0x10000 }; // where descriptor 0's buffer slot starts
        std::uint32_t slot_size { 4096 }; // bytes of buffer per descriptor
    };

    struct Descriptor {
        std::uint64_t address { 0 };
        std::uint32_t length { 0 };
        std::uint16_t flags { 0 };
        std::uint16_t next { 0 };
    };

    struct UsedEntry {
        std::uint32_t id { 0 };
        std::uint32_t length { 0 };
    };

    // A used chain as the driver sees it: the head, the length the device
    // reported, and the bytes of the writable buffers, in order, up to that
    // length (never past the buffers the driver offered).
    struct Completion {
        std::uint16_t head { 0 };
        std::uint32_t length { 0 };
        Bytes written;
    };

    VirtqueueDriver(kvm::GuestMemory const& memory, Options options)
        : m_memory(memory)
        , m_options(options)
    {
        using virtio_driver_detail::check;
        check(options.size >= 1 && options.size <= devices::virtio::MAX_QUEUE_SIZE && std::has_single_bit(options.size),
            "queue size must be a power of two in 1..MAX_QUEUE_SIZE");
        check(options.ring_address % 16 == 0, "the descriptor table must be 16-byte aligned");
        m_layout.size = options.size;
        m_layout.descriptor_table = options.ring_address;
        m_layout.available_ring = options.ring_address + 16ull * options.size;
        m_layout.used_ring = (m_layout.available_ring + 6 + 2ull * options.size + 3) & ~3ull;
        m_descriptors
            = slice(m_layout.descriptor_table, 16ull * options.size, "the descriptor table is outside guest memory");
        m_available
            = slice(m_layout.available_ring, 6 + 2ull * options.size, "the available ring is outside guest memory");
        m_used = slice(m_layout.used_ring, 6 + 8ull * options.size, "the used ring is outside guest memory");
        slice(options.buffer_address, std::uint64_t(options.slot_size) * options.size,
            "the buffer slots are outside guest memory");
        std::memset(m_descriptors.data(), 0, m_descriptors.size());
        std::memset(m_available.data(), 0, m_available.size());
        std::memset(m_used.data(), 0, m_used.size());
        for (std::uint16_t index = 0; index < options.size; ++index)
            m_free.push_back(static_cast<std::uint16_t>(options.size - 1 - index));
        m_chains.resize(options.size);
    }

    // Where the queue is: what a driver writes to QueueNum, QueueDesc*,
    // QueueDriver* and QueueDevice*.
    devices::virtio::QueueLayout layout() const { return m_layout; }
    kvm::GuestMemory const& memory() const { return m_memory; }
    std::uint16_t size() const { return m_options.size; }
    std::size_t free_descriptors() const { return m_free.size(); }
    // The guest address of descriptor `index`'s buffer slot.
    std::uint64_t slot_address(std::uint16_t index) const
    {
        return m_options.buffer_address + std::uint64_t(m_options.slot_size) * index;
    }

    // §2.7.13.1: one descriptor per buffer, device-readable ones (filled
    // with the given bytes) first, then device-writable ones of the given
    // lengths (zeroed). Returns the head, or nothing when too few
    // descriptors are free. The chain is not yet available.
    std::optional<std::uint16_t> add(std::vector<ByteView> const& readable, std::vector<std::uint32_t> const& writable)
    {
        std::size_t count = readable.size() + writable.size();
        virtio_driver_detail::check(count > 0, "a chain needs at least one buffer");
        if (count > m_free.size())
            return std::nullopt;
        std::vector<std::uint16_t> indices;
        for (std::size_t i = 0; i < count; ++i) {
            indices.push_back(m_free.back());
            m_free.pop_back();
        }
        for (std::size_t i = 0; i < count; ++i) {
            std::uint16_t index = indices[i];
            bool is_writable = i >= readable.size();
            std::uint32_t length
                = is_writable ? writable[i - readable.size()] : static_cast<std::uint32_t>(readable[i].size());
            virtio_driver_detail::check(length <= m_options.slot_size, "a buffer is larger than its slot");
            auto buffer = slice(slot_address(index), length, "a buffer slot is outside guest memory");
            if (is_writable)
                std::memset(buffer.data(), 0, length);
            else if (length > 0)
                std::memcpy(buffer.data(), readable[i].data(), length);
            Descriptor descriptor;
            descriptor.address = slot_address(index);
            descriptor.length = length;
            descriptor.flags = static_cast<std::uint16_t>((is_writable ? devices::virtio::VIRTQ_DESC_F_WRITE : 0)
                | (i + 1 < count ? devices::virtio::VIRTQ_DESC_F_NEXT : 0));
            descriptor.next = i + 1 < count ? indices[i + 1] : 0;
            write_descriptor(index, descriptor);
        }
        std::uint16_t head = indices[0];
        m_chains[head] = std::move(indices);
        return head;
    }

    // §2.7.13.2: puts `head` in the next available ring slot; the device
    // sees it after publish().
    void make_available(std::uint16_t head)
    {
        set_available_entry(m_shadow_available, head);
        ++m_shadow_available;
    }

    // §2.7.13.3: stores avail idx with release ordering, after the entries
    // and descriptors it publishes.
    void publish() { store16(m_available, 2, m_shadow_available, std::memory_order_release); }

    // add + make_available + publish; aborts when the queue is full.
    std::uint16_t send(std::vector<ByteView> const& readable, std::vector<std::uint32_t> const& writable)
    {
        auto head = add(readable, writable);
        virtio_driver_detail::check(head.has_value(), "the queue has too few free descriptors");
        make_available(*head);
        publish();
        return *head;
    }

    // §2.7.14: the next used entry, if the device published one: copies out
    // what the device wrote and frees the chain's descriptors. An id that is
    // no chain this driver has outstanding aborts (the device is wrong).
    std::optional<Completion> take_used()
    {
        if (used_index() == m_last_used)
            return std::nullopt;
        auto entry = used_entry(m_last_used);
        ++m_last_used;
        virtio_driver_detail::check(entry.id < m_options.size && !m_chains[entry.id].empty(),
            "the device used a chain the driver does not have outstanding");
        Completion completion;
        completion.head = static_cast<std::uint16_t>(entry.id);
        completion.length = entry.length;
        std::uint64_t left = entry.length;
        for (auto index : m_chains[entry.id]) {
            auto descriptor = read_descriptor(index);
            if (left == 0 || !(descriptor.flags & devices::virtio::VIRTQ_DESC_F_WRITE))
                continue;
            std::uint64_t take = std::min<std::uint64_t>(left, descriptor.length);
            auto buffer = slice(descriptor.address, take, "a used buffer is outside guest memory");
            completion.written.insert(completion.written.end(), buffer.begin(), buffer.end());
            left -= take;
        }
        for (auto index : m_chains[entry.id])
            m_free.push_back(index);
        m_chains[entry.id].clear();
        return completion;
    }

    // Raw access to the driver's side, for hostile tests. None of these
    // touch the simulator's own bookkeeping except set_available_index.
    void write_descriptor(std::uint16_t index, Descriptor const& descriptor)
    {
        virtio_driver_detail::check(index < m_options.size, "descriptor index out of range");
        auto entry = m_descriptors.subspan(16ull * index, 16);
        std::memcpy(entry.data(), &descriptor.address, 8);
        std::memcpy(entry.data() + 8, &descriptor.length, 4);
        std::memcpy(entry.data() + 12, &descriptor.flags, 2);
        std::memcpy(entry.data() + 14, &descriptor.next, 2);
    }
    Descriptor read_descriptor(std::uint16_t index) const
    {
        virtio_driver_detail::check(index < m_options.size, "descriptor index out of range");
        auto entry = m_descriptors.subspan(16ull * index, 16);
        Descriptor descriptor;
        std::memcpy(&descriptor.address, entry.data(), 8);
        std::memcpy(&descriptor.length, entry.data() + 8, 4);
        std::memcpy(&descriptor.flags, entry.data() + 12, 2);
        std::memcpy(&descriptor.next, entry.data() + 14, 2);
        return descriptor;
    }
    // Ring slots are taken modulo the queue size, as indices are.
    void set_available_entry(std::uint16_t ring_index, std::uint16_t head)
    {
        store16(m_available, 4 + 2 * (ring_index & (m_options.size - 1)), head);
    }
    // Stores avail idx (release) and makes it the next slot make_available uses.
    void set_available_index(std::uint16_t index)
    {
        m_shadow_available = index;
        publish();
    }
    std::uint16_t available_index() const { return load16(m_available, 2); }
    void set_available_flags(std::uint16_t flags) { store16(m_available, 0, flags); }
    std::uint16_t available_flags() const { return load16(m_available, 0); }
    // §2.7.7: interrupt me when the used index passes this.
    void set_used_event(std::uint16_t event) { store16(m_available, 4 + 2ull * m_options.size, event); }
    std::uint16_t used_event() const { return load16(m_available, 4 + 2ull * m_options.size); }

    // The device's side.
    std::uint16_t used_index() const { return load16(m_used, 2, std::memory_order_acquire); }
    std::uint16_t used_flags() const { return load16(m_used, 0); }
    // §2.7.10: the device wants a notification when avail idx passes this.
    std::uint16_t avail_event() const { return load16(m_used, 4 + 8ull * m_options.size); }
    UsedEntry used_entry(std::uint16_t ring_index) const
    {
        auto entry = m_used.subspan(4 + 8ull * (ring_index & (m_options.size - 1)), 8);
        UsedEntry used;
        std::memcpy(&used.id, entry.data(), 4);
        std::memcpy(&used.length, entry.data() + 4, 4);
        return used;
    }
    // How many used entries take_used() has consumed (the driver's
    // last_used_idx).
    std::uint16_t last_used() const { return m_last_used; }

private:
    std::span<std::uint8_t> slice(std::uint64_t address, std::uint64_t length, char const* what) const
    {
        auto bytes = m_memory.slice(address, length);
        virtio_driver_detail::check(!bytes.is_error(), what);
        return bytes.value();
    }

    static std::uint16_t load16(
        std::span<std::uint8_t> area, std::size_t offset, std::memory_order order = std::memory_order_relaxed)
    {
        auto& field = *static_cast<std::uint16_t*>(static_cast<void*>(area.data() + offset));
        return std::atomic_ref<std::uint16_t>(field).load(order);
    }
    static void store16(std::span<std::uint8_t> area, std::size_t offset, std::uint16_t value,
        std::memory_order order = std::memory_order_relaxed)
    {
        auto& field = *static_cast<std::uint16_t*>(static_cast<void*>(area.data() + offset));
        std::atomic_ref<std::uint16_t>(field).store(value, order);
    }

    kvm::GuestMemory const& m_memory;
    Options m_options;
    devices::virtio::QueueLayout m_layout;
    std::span<std::uint8_t> m_descriptors;
    std::span<std::uint8_t> m_available;
    std::span<std::uint8_t> m_used;
    std::vector<std::uint16_t> m_free; // free descriptor indices, the next at the back
    std::vector<std::vector<std::uint16_t>> m_chains; // by head: the chain's descriptors, in order
    std::uint16_t m_shadow_available { 0 };
    std::uint16_t m_last_used { 0 };
};

class MmioDriver {
public:
    explicit MmioDriver(devices::BusDevice& device)
        : m_device(device)
    {
    }

    // One 32-bit register access, little-endian (§4.2.2).
    std::uint32_t read(std::uint64_t offset)
    {
        std::uint8_t bytes[4] = {};
        m_device.read(offset, bytes);
        return std::uint32_t(bytes[0]) | std::uint32_t(bytes[1]) << 8 | std::uint32_t(bytes[2]) << 16
            | std::uint32_t(bytes[3]) << 24;
    }
    void write(std::uint64_t offset, std::uint32_t value)
    {
        std::uint8_t bytes[4] = { static_cast<std::uint8_t>(value), static_cast<std::uint8_t>(value >> 8),
            static_cast<std::uint8_t>(value >> 16), static_cast<std::uint8_t>(value >> 24) };
        m_device.write(offset, bytes);
    }

    std::uint32_t status() { return read(devices::virtio::mmio::STATUS); }
    // Sets more status bits, keeping those already set (§3.1.1).
    void add_status(std::uint32_t bits) { write(devices::virtio::mmio::STATUS, status() | bits); }
    void reset() { write(devices::virtio::mmio::STATUS, 0); }

    std::uint64_t device_features()
    {
        write(devices::virtio::mmio::DEVICE_FEATURES_SEL, 1);
        std::uint64_t high = read(devices::virtio::mmio::DEVICE_FEATURES);
        write(devices::virtio::mmio::DEVICE_FEATURES_SEL, 0);
        return high << 32 | read(devices::virtio::mmio::DEVICE_FEATURES);
    }
    void write_driver_features(std::uint64_t features)
    {
        write(devices::virtio::mmio::DRIVER_FEATURES_SEL, 1);
        write(devices::virtio::mmio::DRIVER_FEATURES, static_cast<std::uint32_t>(features >> 32));
        write(devices::virtio::mmio::DRIVER_FEATURES_SEL, 0);
        write(devices::virtio::mmio::DRIVER_FEATURES, static_cast<std::uint32_t>(features));
    }

    // §3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, accept `accepted`
    // (written as given: a test may offer bits the device lacks), set
    // FEATURES_OK and read it back. Returns whether the device kept it.
    bool negotiate(std::uint64_t accepted)
    {
        reset();
        add_status(devices::virtio::status::ACKNOWLEDGE);
        add_status(devices::virtio::status::DRIVER);
        write_driver_features(accepted);
        add_status(devices::virtio::status::FEATURES_OK);
        return (status() & devices::virtio::status::FEATURES_OK) != 0;
    }
    // What Linux accepts: every offered bit in `wanted` (VERSION_1 always).
    bool negotiate_offered(std::uint64_t wanted)
    {
        reset();
        std::uint64_t offered = device_features();
        return negotiate(offered & (wanted | devices::virtio::VIRTIO_F_VERSION_1));
    }

    // §4.2.3.2: select the queue, check it is not in use and large enough,
    // write its size and areas, set QueueReady. Returns false when the
    // device refuses (QueueNumMax 0 or too small, or already ready).
    bool setup_queue(std::uint32_t index, devices::virtio::QueueLayout const& layout)
    {
        using namespace devices::virtio;
        write(mmio::QUEUE_SEL, index);
        if (read(mmio::QUEUE_READY) != 0)
            return false;
        std::uint32_t maximum = read(mmio::QUEUE_NUM_MAX);
        if (maximum == 0 || maximum < layout.size)
            return false;
        write(mmio::QUEUE_NUM, layout.size);
        write(mmio::QUEUE_DESC_LOW, static_cast<std::uint32_t>(layout.descriptor_table));
        write(mmio::QUEUE_DESC_HIGH, static_cast<std::uint32_t>(layout.descriptor_table >> 32));
        write(mmio::QUEUE_DRIVER_LOW, static_cast<std::uint32_t>(layout.available_ring));
        write(mmio::QUEUE_DRIVER_HIGH, static_cast<std::uint32_t>(layout.available_ring >> 32));
        write(mmio::QUEUE_DEVICE_LOW, static_cast<std::uint32_t>(layout.used_ring));
        write(mmio::QUEUE_DEVICE_HIGH, static_cast<std::uint32_t>(layout.used_ring >> 32));
        write(mmio::QUEUE_READY, 1);
        return read(mmio::QUEUE_READY) == 1;
    }

    void driver_ok() { add_status(devices::virtio::status::DRIVER_OK); }

    // The whole §3.1.1 sequence: negotiate_offered(wanted), each queue, then
    // DRIVER_OK. Returns whether the device ends up live (DRIVER_OK set,
    // DEVICE_NEEDS_RESET clear).
    bool initialize(
        std::uint64_t wanted, std::vector<std::pair<std::uint32_t, devices::virtio::QueueLayout>> const& queues)
    {
        using namespace devices::virtio;
        if (!negotiate_offered(wanted))
            return false;
        for (auto const& [index, layout] : queues) {
            if (!setup_queue(index, layout)) {
                add_status(status::FAILED);
                return false;
            }
        }
        driver_ok();
        std::uint32_t now = status();
        return (now & status::DRIVER_OK) && !(now & status::DEVICE_NEEDS_RESET);
    }

    void notify(std::uint32_t queue) { write(devices::virtio::mmio::QUEUE_NOTIFY, queue); }
    std::uint32_t interrupt_status() { return read(devices::virtio::mmio::INTERRUPT_STATUS); }
    void acknowledge(std::uint32_t bits) { write(devices::virtio::mmio::INTERRUPT_ACK, bits); }
    std::uint32_t config_generation() { return read(devices::virtio::mmio::CONFIG_GENERATION); }
    // Device configuration space, any width (§4.2.2 Config).
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data)
    {
        m_device.read(devices::virtio::mmio::CONFIG + offset, data);
    }

private:
    devices::BusDevice& m_device;
};

} // namespace qtbox::test
