// libFuzzer target: the split virtqueue, device side (devices/virtio Queue;
// virtio 1.2 §2.7), against a hostile driver. The input (format in
// virtqueue_input.hpp) lays out a queue in guest RAM, fills its descriptor
// table and available ring with arbitrary bytes (garbage descriptors,
// loops, addresses outside RAM or across its regions, absurd lengths, any
// available index), then runs a sequence of device operations (pop,
// push_used, needs_interrupt, enable/disable_notifications, reset) mixed
// with driver writes between them, as a guest on another vCPU would make.
//
// Properties checked beyond "no crash, no hang, no leak":
//   - pop() terminates (the fuzzer's timeout catches a hang) and a chain has
//     1..size descriptors, a head below size, each buffer's host span inside
//     one guest RAM region (a device write to its first and last byte stays
//     in the mapping), lengths that add up to readable_length and
//     writable_length, and a total of at most MAX_CHAIN_BYTES;
//   - a bad chain carries a QueueError; without a head it is IndexOverrun or
//     BadHead and the queue is broken; IndexOverrun comes exactly when the
//     available index is more than size ahead of the used index or behind
//     what the device took; a broken queue pops nothing more;
//   - pop() returns nothing on a healthy queue only when avail idx equals
//     what the device took; never more than `size` chains are outstanding;
//   - push_used publishes the used index (and, in the default layout, the
//     entry itself);
//   - needs_interrupt() follows a model of §2.7.7.2 (vring_need_event with
//     EVENT_IDX, the NO_INTERRUPT flag without);
//   - enable_notifications() reports exactly whether avail idx moved past
//     what the device took, after writing avail_event (or clearing
//     NO_NOTIFY); disable_notifications() sets NO_NOTIFY without EVENT_IDX.
#include "support.hpp"
#include "virtqueue_input.hpp"

#include <qtbox/devices/virtio/queue.hpp>
#include <qtbox/kvm/memory.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <span>
#include <variant>

namespace {

using namespace qtbox;
using namespace qtbox::devices::virtio;
using namespace qtbox::fuzz::virtqueue;
using fuzz::require;

// Enough operations for long index sequences, few enough that one input
// stays fast.
constexpr std::size_t MAX_OPS = 20000;

class Reader {
public:
    Reader(std::uint8_t const* data, std::size_t size)
        : m_data(data)
        , m_size(size)
    {
    }
    bool empty() const { return m_offset >= m_size; }
    std::uint8_t u8() { return m_offset < m_size ? m_data[m_offset++] : 0; }
    // Each half read in its own statement: the operands of | are unsequenced.
    std::uint16_t u16()
    {
        std::uint16_t low = u8();
        return static_cast<std::uint16_t>(low | u8() << 8);
    }
    std::uint32_t u32()
    {
        std::uint32_t low = u16();
        return low | std::uint32_t(u16()) << 16;
    }
    std::uint64_t u64()
    {
        std::uint64_t low = u32();
        return low | std::uint64_t(u32()) << 32;
    }

private:
    std::uint8_t const* m_data;
    std::size_t m_size;
    std::size_t m_offset { 0 };
};

struct Guest {
    kvm::GuestMemory memory;
    std::vector<std::span<std::uint8_t>> regions; // host views, in GUEST_REGIONS order
};

Guest& guest()
{
    static Guest* instance = [] {
        auto memory = kvm::GuestMemory::create(GUEST_REGIONS);
        require(!memory.is_error());
        auto* created = new Guest { memory.release_value(), {} };
        for (auto const& region : GUEST_REGIONS) {
            auto view = created->memory.slice(region.guest_address, region.size);
            require(!view.is_error());
            created->regions.push_back(view.value());
        }
        return created;
    }();
    return *instance;
}

// Whether [data, data + size) lies inside one region's host view.
bool inside_one_region(std::span<std::uint8_t> span)
{
    for (auto const& region : guest().regions) {
        auto begin = reinterpret_cast<std::uintptr_t>(region.data());
        auto start = reinterpret_cast<std::uintptr_t>(span.data());
        if (start >= begin && start - begin <= region.size() && span.size() <= region.size() - (start - begin))
            return true;
    }
    return false;
}

// CONFIG_REMAP: fold an address (and a length) into a region.
std::uint64_t remap_address(std::uint64_t raw)
{
    auto const& region = GUEST_REGIONS[raw >> 62];
    return region.guest_address + (raw & ((1ull << 62) - 1)) % (region.size + REMAP_SLACK);
}

std::uint32_t remap_length(std::uint64_t address, std::uint32_t raw)
{
    for (auto const& region : GUEST_REGIONS) {
        if (address >= region.guest_address && address - region.guest_address < region.size + REMAP_SLACK)
            return static_cast<std::uint32_t>(raw % (region.size + REMAP_SLACK));
    }
    return raw;
}

std::uint16_t load16(std::span<std::uint8_t> area, std::size_t offset)
{
    std::uint16_t value;
    std::memcpy(&value, area.data() + offset, 2);
    return value;
}

void store16(std::span<std::uint8_t> area, std::size_t offset, std::uint16_t value)
{
    std::memcpy(area.data() + offset, &value, 2);
}

bool need_event(std::uint16_t event, std::uint16_t new_index, std::uint16_t old_index)
{
    return static_cast<std::uint16_t>(new_index - event - 1) < static_cast<std::uint16_t>(new_index - old_index);
}

class Run {
public:
    Run(Reader& input, QueueLayout layout, bool event_index, bool remap)
        : m_input(input)
        , m_layout(layout)
        , m_event_index(event_index)
        , m_remap(remap)
    {
    }

    // False when the layout is refused (after checking how).
    bool activate()
    {
        auto queue = Queue::activate(guest().memory, m_layout, m_event_index);
        if (queue.is_error()) {
            require(queue.error().is(QueueError::BadRing));
            Queue unready;
            auto popped = unready.pop();
            require(std::holds_alternative<BadChain>(popped));
            require(std::get<BadChain>(popped).error.is(QueueError::NotReady));
            return false;
        }
        m_queue = queue.release_value();
        require(m_queue.is_ready() && !m_queue.is_broken() && m_queue.size() == m_layout.size);
        m_descriptors = guest().memory.slice(m_layout.descriptor_table, 16ull * m_layout.size).value();
        m_available = guest().memory.slice(m_layout.available_ring, 6 + 2ull * m_layout.size).value();
        m_used = guest().memory.slice(m_layout.used_ring, 6 + 8ull * m_layout.size).value();
        m_taken = m_published = 0;
        m_in_flight.clear();
        m_signalled = 0;
        m_signalled_valid = false;
        return true;
    }

    void load_image(std::uint16_t length)
    {
        for (std::size_t i = 0; i < length; ++i) {
            std::uint8_t byte = m_input.u8();
            if (i < m_descriptors.size())
                m_descriptors[i] = byte;
            else if (i - m_descriptors.size() < m_available.size())
                m_available[i - m_descriptors.size()] = byte;
        }
        if (m_remap) {
            for (std::uint16_t index = 0; index < m_layout.size; ++index) {
                auto entry = m_descriptors.subspan(16ull * index, 16);
                std::uint64_t address;
                std::uint32_t length32;
                std::memcpy(&address, entry.data(), 8);
                std::memcpy(&length32, entry.data() + 8, 4);
                address = remap_address(address);
                length32 = remap_length(address, length32);
                std::memcpy(entry.data(), &address, 8);
                std::memcpy(entry.data() + 8, &length32, 4);
            }
        }
    }

    void run_ops()
    {
        for (std::size_t count = 0; count < MAX_OPS && !m_input.empty(); ++count) {
            switch (static_cast<Op>(m_input.u8() % OP_COUNT)) {
            case Pop:
                pop();
                break;
            case PushUsed:
                push(m_input.u32());
                break;
            case NeedsInterrupt:
                needs_interrupt();
                break;
            case Enable:
                enable();
                break;
            case Disable:
                m_queue.disable_notifications();
                if (!m_event_index)
                    require(load16(m_used, 0) == VIRTQ_USED_F_NO_NOTIFY);
                break;
            case Poke: {
                auto& first = guest().regions[0];
                std::size_t offset = (m_input.u16() & ~1u) % first.size();
                store16(first, offset, m_input.u16());
                break;
            }
            case SetAvailIndex:
                store16(m_available, 2, m_input.u16());
                break;
            case SetUsedEvent:
                store16(m_available, 4 + 2ull * m_layout.size, m_input.u16());
                break;
            case SetAvailFlags:
                store16(m_available, 0, m_input.u16());
                break;
            case Publish: {
                std::uint16_t head = m_input.u16();
                std::uint16_t index = load16(m_available, 2);
                store16(m_available, 4 + 2ull * (index & (m_layout.size - 1)), head);
                store16(m_available, 2, static_cast<std::uint16_t>(index + 1));
                break;
            }
            case Reset:
                m_queue.reset();
                require(!m_queue.is_ready());
                require(activate());
                break;
            case WriteDescriptor: {
                std::uint16_t index = m_input.u8() % m_layout.size;
                std::uint64_t address = m_input.u64();
                std::uint32_t length = m_input.u32();
                std::uint16_t flags = m_input.u16();
                std::uint16_t next = m_input.u16();
                if (m_remap) {
                    address = remap_address(address);
                    length = remap_length(address, length);
                }
                auto entry = m_descriptors.subspan(16ull * index, 16);
                std::memcpy(entry.data(), &address, 8);
                std::memcpy(entry.data() + 8, &length, 4);
                std::memcpy(entry.data() + 12, &flags, 2);
                std::memcpy(entry.data() + 14, &next, 2);
                break;
            }
            case OP_COUNT:
                break;
            }
            require(m_in_flight.size() <= m_layout.size);
        }
    }

private:
    void check_chain(Chain& chain)
    {
        require(chain.head < m_layout.size);
        std::size_t count = chain.readable.size() + chain.writable.size();
        require(count >= 1 && count <= m_layout.size);
        std::uint64_t readable = 0;
        std::uint64_t writable = 0;
        for (auto span : chain.readable) {
            require(inside_one_region(span));
            readable += span.size();
            if (!span.empty()) {
                volatile std::uint8_t first = span.front();
                volatile std::uint8_t last = span.back();
                (void)first;
                (void)last;
            }
        }
        for (auto span : chain.writable) {
            require(inside_one_region(span));
            writable += span.size();
            // The device writes into the buffer (which may alias the rings).
            if (!span.empty()) {
                span.front() = 0xA5;
                span.back() = 0x5A;
            }
        }
        require(readable == chain.readable_length && writable == chain.writable_length);
        require(readable + writable <= MAX_CHAIN_BYTES);
    }

    void pop()
    {
        bool const was_broken = m_queue.is_broken();
        std::uint16_t const available = load16(m_available, 2);
        auto const pending = static_cast<std::uint16_t>(available - m_taken);
        auto const outstanding = static_cast<std::uint16_t>(available - m_published);
        bool const overrun = pending != 0 && (outstanding > m_layout.size || pending > outstanding);

        auto popped = m_queue.pop();
        if (was_broken) {
            require(std::holds_alternative<std::monostate>(popped));
            return;
        }
        if (std::holds_alternative<std::monostate>(popped)) {
            require(pending == 0 && !m_queue.is_broken());
            return;
        }
        if (auto* chain = std::get_if<Chain>(&popped)) {
            require(!overrun && !m_queue.is_broken());
            check_chain(*chain);
            ++m_taken;
            m_in_flight.push_back(chain->head);
            return;
        }
        auto& bad = std::get<BadChain>(popped);
        auto code = bad.error.code_as<QueueError>();
        require(code.has_value());
        require((*code == QueueError::IndexOverrun) == overrun);
        if (!bad.head) {
            require(*code == QueueError::IndexOverrun || *code == QueueError::BadHead);
            require(m_queue.is_broken());
            return;
        }
        require(*code != QueueError::NotReady && *code != QueueError::IndexOverrun && *code != QueueError::BadRing);
        require(*bad.head < m_layout.size && !m_queue.is_broken());
        ++m_taken;
        // Half the bad chains go back at once, the others later with the rest.
        if (m_taken % 2) {
            m_queue.consume_bad_chain(bad);
            after_push(*bad.head, 0);
        } else {
            m_in_flight.push_back(*bad.head);
        }
    }

    void push(std::uint32_t written)
    {
        if (m_in_flight.empty())
            return;
        std::uint16_t head = m_in_flight.front();
        m_in_flight.pop_front();
        m_queue.push_used(head, written);
        after_push(head, written);
    }

    void after_push(std::uint16_t head, std::uint32_t written)
    {
        ++m_published;
        require(load16(m_used, 2) == m_published);
        bool const default_layout = m_layout.descriptor_table == DEFAULT_DESCRIPTOR_TABLE
            && m_layout.available_ring == DEFAULT_AVAILABLE_RING && m_layout.used_ring == DEFAULT_USED_RING;
        if (default_layout) {
            std::size_t entry = 4 + 8ull * (static_cast<std::uint16_t>(m_published - 1) & (m_layout.size - 1));
            std::uint32_t id;
            std::uint32_t length;
            std::memcpy(&id, m_used.data() + entry, 4);
            std::memcpy(&length, m_used.data() + entry + 4, 4);
            require(id == head && length == written);
        }
        if (m_published == m_signalled)
            m_signalled_valid = false;
    }

    void needs_interrupt()
    {
        bool expected;
        std::uint16_t const old_index = m_signalled;
        bool const valid = m_signalled_valid;
        if (m_event_index) {
            std::uint16_t used_event = load16(m_available, 4 + 2ull * m_layout.size);
            expected = !valid || need_event(used_event, m_published, old_index);
        } else {
            std::uint16_t flags = load16(m_available, 0);
            expected = (valid && old_index == m_published) ? false : !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
        }
        m_signalled = m_published;
        m_signalled_valid = true;
        require(m_queue.needs_interrupt() == expected);
    }

    void enable()
    {
        bool const broken = m_queue.is_broken();
        bool more = m_queue.enable_notifications();
        if (broken) {
            require(!more);
            return;
        }
        require(more == (load16(m_available, 2) != m_taken));
        if (m_event_index)
            require(load16(m_used, 4 + 8ull * m_layout.size) == m_taken);
        else
            require(load16(m_used, 0) == 0);
    }

    Reader& m_input;
    QueueLayout m_layout;
    bool m_event_index;
    bool m_remap;
    Queue m_queue;
    std::span<std::uint8_t> m_descriptors;
    std::span<std::uint8_t> m_available;
    std::span<std::uint8_t> m_used;
    // The model: entries the device took, entries it published, chains it
    // holds, and the last interrupt decision.
    std::uint16_t m_taken { 0 };
    std::uint16_t m_published { 0 };
    std::deque<std::uint16_t> m_in_flight;
    std::uint16_t m_signalled { 0 };
    bool m_signalled_valid { false };
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    // Every input starts from zeroed rings; the 32 MiB region is only ever
    // written through chain buffers, whose contents nothing reads.
    for (std::size_t i = 0; i < guest().regions.size(); ++i) {
        if (GUEST_REGIONS[i].size <= 0x10000)
            std::memset(guest().regions[i].data(), 0, guest().regions[i].size());
    }

    Reader input(data, size);
    std::uint8_t config = input.u8();
    QueueLayout layout;
    layout.size = static_cast<std::uint16_t>(1u << ((config & CONFIG_SIZE_MASK) % 9));
    if (config & CONFIG_RAW_SIZE)
        layout.size = input.u16();
    bool const event_index = (config & CONFIG_EVENT_INDEX) != 0;
    bool const remap = (config & CONFIG_REMAP) != 0;
    if (config & CONFIG_CUSTOM_LAYOUT) {
        layout.descriptor_table = input.u64();
        layout.available_ring = input.u64();
        layout.used_ring = input.u64();
        if (remap) {
            layout.descriptor_table = remap_address(layout.descriptor_table);
            layout.available_ring = remap_address(layout.available_ring);
            layout.used_ring = remap_address(layout.used_ring);
        }
    } else {
        layout.descriptor_table = DEFAULT_DESCRIPTOR_TABLE;
        layout.available_ring = DEFAULT_AVAILABLE_RING;
        layout.used_ring = DEFAULT_USED_RING;
    }

    Run run(input, layout, event_index, remap);
    if (!run.activate())
        return 0;
    run.load_image(input.u16());
    run.run_ops();
    return 0;
}
