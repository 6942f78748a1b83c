// The split virtqueue, device side (virtio 1.2 §2.7), driven by the
// driver-side simulator of tests/support/virtio_driver.hpp.
#include "../support/must.hpp"
#include "../support/virtio_driver.hpp"

#include <qtbox/devices/virtio/queue.hpp>
#include <qtbox/kvm/memory.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <variant>

using namespace qtbox;
using namespace qtbox::devices::virtio;
using qtbox::test::must;
using qtbox::test::VirtqueueDriver;

namespace {

Queue activate(kvm::GuestMemory const& memory, VirtqueueDriver const& driver, bool event_index = false)
{
    return must(Queue::activate(memory, driver.layout(), event_index));
}

Chain expect_chain(Queue& queue)
{
    auto popped = queue.pop();
    if (auto* bad = std::get_if<BadChain>(&popped))
        FAIL_CHECK(bad->error.message());
    REQUIRE(std::holds_alternative<Chain>(popped));
    return std::get<Chain>(std::move(popped));
}

BadChain expect_bad(Queue& queue, QueueError code)
{
    auto popped = queue.pop();
    REQUIRE(std::holds_alternative<BadChain>(popped));
    auto bad = std::get<BadChain>(std::move(popped));
    CHECK_MESSAGE(bad.error.is(code), bad.error.message());
    return bad;
}

bool nothing(Queue& queue)
{
    return std::holds_alternative<std::monostate>(queue.pop());
}

std::string text(std::span<std::uint8_t> bytes)
{
    return std::string(bytes.begin(), bytes.end());
}

} // namespace

TEST_CASE("virtqueue: activate checks the size, the alignment and that the areas lie in guest RAM")
{
    auto memory = test::make_guest_memory(64 * 1024);
    QueueLayout good { 16, 0x1000, 0x1100, 0x1200 };
    CHECK(must(Queue::activate(memory, good, false)).is_ready());

    auto refused
        = [&](QueueLayout layout) { test::require_error(Queue::activate(memory, layout, false), QueueError::BadRing); };
    refused({ 0, 0x1000, 0x1100, 0x1200 });
    refused({ 12, 0x1000, 0x1100, 0x1200 }); // not a power of two
    refused({ MAX_QUEUE_SIZE * 2, 0x1000, 0x3000, 0x4000 }); // above QueueNumMax
    refused({ 16, 0x1008, 0x1100, 0x1200 }); // descriptor table not 16-byte aligned
    refused({ 16, 0x1000, 0x1101, 0x1200 }); // available ring not 2-byte aligned
    refused({ 16, 0x1000, 0x1100, 0x1202 }); // used ring not 4-byte aligned
    refused({ 16, 0x10000, 0x1100, 0x1200 }); // descriptor table past the end of RAM
    refused({ 16, 0x1000, 0xFFE0, 0x1200 }); // available ring (with used_event) straddles the end
    refused({ 16, 0x1000, 0x1100, 0xFF80 }); // used ring (with avail_event) straddles the end
    refused({ 16, 0x1000, 0x1100, 0xFFFF'FFFF'FFFF'FF00 });
    // Areas that end at the end of RAM (the used ring as close as its
    // alignment allows) are fine: 16 · 16, 6 + 2 · 16 and 6 + 8 · 16 bytes.
    CHECK(must(Queue::activate(memory, { 16, 0x10000 - 256, 0x10000 - 38, 0x10000 - 136 - 4 }, true)).size() == 16);
}

TEST_CASE("virtqueue: an unactivated queue pops NotReady and a reset queue is not ready")
{
    auto memory = test::make_guest_memory();
    Queue queue;
    CHECK_FALSE(queue.is_ready());
    auto bad = expect_bad(queue, QueueError::NotReady);
    CHECK_FALSE(bad.head.has_value());
    CHECK_FALSE(queue.needs_interrupt());
    CHECK_FALSE(queue.enable_notifications());

    VirtqueueDriver driver(memory, {});
    queue = activate(memory, driver);
    CHECK(queue.is_ready());
    queue.reset();
    CHECK_FALSE(queue.is_ready());
    expect_bad(queue, QueueError::NotReady);
}

TEST_CASE("virtqueue: nothing to pop until the driver publishes avail idx")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    CHECK(nothing(queue));
    auto head = driver.add({ as_bytes("x") }, {});
    REQUIRE(head);
    driver.make_available(*head);
    CHECK(nothing(queue)); // written, not yet published
    driver.publish();
    CHECK(expect_chain(queue).head == *head);
    CHECK(nothing(queue));
}

TEST_CASE("virtqueue: a single readable descriptor")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    auto head = driver.send({ as_bytes("hello") }, {});

    auto chain = expect_chain(queue);
    CHECK(chain.head == head);
    REQUIRE(chain.readable.size() == 1);
    CHECK(chain.writable.empty());
    CHECK(text(chain.readable[0]) == "hello");
    CHECK(chain.readable_length == 5);
    CHECK(chain.writable_length == 0);
    // The span is the guest's buffer itself, not a copy.
    CHECK(chain.readable[0].data() == must(memory.slice(driver.slot_address(head), 5)).data());
}

TEST_CASE("virtqueue: a chain of readable then writable descriptors, in order, and its used entry")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    auto head = driver.send({ as_bytes("head"), as_bytes("er") }, { 8, 4 });

    auto chain = expect_chain(queue);
    CHECK(chain.head == head);
    REQUIRE(chain.readable.size() == 2);
    REQUIRE(chain.writable.size() == 2);
    CHECK(text(chain.readable[0]) == "head");
    CHECK(text(chain.readable[1]) == "er");
    CHECK(chain.readable_length == 6);
    CHECK(chain.writable[0].size() == 8);
    CHECK(chain.writable[1].size() == 4);
    CHECK(chain.writable_length == 12);

    std::memcpy(chain.writable[0].data(), "01234567", 8);
    std::memcpy(chain.writable[1].data(), "89", 2);
    CHECK(driver.used_index() == 0);
    queue.push_used(chain.head, 10);
    CHECK(driver.used_index() == 1);
    CHECK(driver.used_entry(0).id == head);
    CHECK(driver.used_entry(0).length == 10);

    auto done = driver.take_used();
    REQUIRE(done);
    CHECK(done->head == head);
    CHECK(done->length == 10);
    CHECK(std::string(done->written.begin(), done->written.end()) == "0123456789");
    CHECK(driver.free_descriptors() == 16);
}

TEST_CASE("virtqueue: a zero-length descriptor inside RAM is an empty buffer")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    driver.send({ ByteView {} }, { 0 });
    auto chain = expect_chain(queue);
    REQUIRE(chain.readable.size() == 1);
    REQUIRE(chain.writable.size() == 1);
    CHECK(chain.readable[0].empty());
    CHECK(chain.readable_length + chain.writable_length == 0);
}

TEST_CASE("virtqueue: an indirect descriptor is refused and its head given back with length 0")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    driver.write_descriptor(3, { 0x20000, 16, VIRTQ_DESC_F_INDIRECT, 0 });
    driver.make_available(3);
    driver.publish();

    auto bad = expect_bad(queue, QueueError::Indirect);
    REQUIRE(bad.head == 3);
    CHECK_FALSE(queue.is_broken());
    queue.consume_bad_chain(bad);
    CHECK(driver.used_index() == 1);
    CHECK(driver.used_entry(0).id == 3);
    CHECK(driver.used_entry(0).length == 0);
    // The queue goes on.
    auto head = driver.send({ as_bytes("next") }, {});
    CHECK(expect_chain(queue).head == head);
}

TEST_CASE("virtqueue: a device-readable descriptor after a device-writable one is BadOrder")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    driver.write_descriptor(0, { 0x20000, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1 });
    driver.write_descriptor(1, { 0x21000, 16, 0, 0 });
    driver.make_available(0);
    driver.publish();
    auto bad = expect_bad(queue, QueueError::BadOrder);
    CHECK(bad.head == 0);
}

TEST_CASE("virtqueue: buffers outside guest RAM are OutsideMemory")
{
    auto memory = test::make_guest_memory(1 << 20);
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    auto check_refused = [&](std::uint64_t address, std::uint32_t length) {
        CAPTURE(address);
        CAPTURE(length);
        driver.write_descriptor(5, { address, length, 0, 0 });
        driver.make_available(5);
        driver.publish();
        auto bad = expect_bad(queue, QueueError::OutsideMemory);
        CHECK(bad.head == 5);
        queue.consume_bad_chain(bad);
    };
    check_refused(1 << 20, 1); // just past the end
    check_refused((1 << 20) - 16, 17); // straddles the end of RAM
    check_refused(0xFFFF'FFFF'FFFF'FFF0, 0x20); // wraps the 64-bit address space
    check_refused(0x4000'0000, 0); // even empty, far outside
    check_refused(0, 0xFFFF'FFFF); // larger than RAM

    // The last byte of RAM is fine.
    driver.write_descriptor(5, { (1 << 20) - 1, 1, 0, 0 });
    driver.make_available(5);
    driver.publish();
    CHECK(expect_chain(queue).readable_length == 1);
}

TEST_CASE("virtqueue: a descriptor across the gap between two RAM regions is OutsideMemory")
{
    // Host memory is contiguous across the two regions; guest memory is not.
    auto memory = must(kvm::GuestMemory::create({ { 0, 0x10000 }, { 0x100000, 0x10000 } }));
    VirtqueueDriver driver(
        memory, { .size = 8, .ring_address = 0x1000, .buffer_address = 0x100000, .slot_size = 1024 });
    auto queue = activate(memory, driver);
    driver.write_descriptor(0, { 0xFF00, 0x200, 0, 0 });
    driver.make_available(0);
    driver.publish();
    expect_bad(queue, QueueError::OutsideMemory);
    driver.write_descriptor(1, { 0x10FF00, 0x100, 0, 0 });
    driver.make_available(1);
    driver.publish();
    CHECK(expect_chain(queue).readable_length == 0x100);
}

TEST_CASE("virtqueue: a guest-made cycle ends as ChainTooLong, at once")
{
    auto memory = test::make_guest_memory(4 << 20);
    VirtqueueDriver driver(memory, { .size = MAX_QUEUE_SIZE });
    auto queue = activate(memory, driver);

    SUBCASE("a descriptor that links to itself")
    {
        driver.write_descriptor(7, { 0x20000, 4, VIRTQ_DESC_F_NEXT, 7 });
        driver.make_available(7);
    }
    SUBCASE("a two-descriptor loop")
    {
        driver.write_descriptor(0, { 0x20000, 4, VIRTQ_DESC_F_NEXT, 1 });
        driver.write_descriptor(1, { 0x20000, 4, VIRTQ_DESC_F_NEXT, 0 });
        driver.make_available(0);
    }
    SUBCASE("every descriptor in one big loop")
    {
        for (std::uint16_t index = 0; index < MAX_QUEUE_SIZE; ++index)
            driver.write_descriptor(
                index, { 0x20000, 4, VIRTQ_DESC_F_NEXT, static_cast<std::uint16_t>((index + 1) % MAX_QUEUE_SIZE) });
        driver.make_available(0);
    }
    driver.publish();
    auto start = std::chrono::steady_clock::now();
    auto bad = expect_bad(queue, QueueError::ChainTooLong);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
    REQUIRE(bad.head.has_value());
    CHECK_FALSE(queue.is_broken());
}

TEST_CASE("virtqueue: a chain of exactly queue-size descriptors is accepted")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, { .size = 8 });
    auto queue = activate(memory, driver);
    std::vector<ByteView> parts(8, as_bytes("ab"));
    driver.send(parts, {});
    auto chain = expect_chain(queue);
    CHECK(chain.readable.size() == 8);
    CHECK(chain.readable_length == 16);
}

TEST_CASE("virtqueue: a next index past the queue size is BadHead with the head known")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    driver.write_descriptor(2, { 0x20000, 4, VIRTQ_DESC_F_NEXT, 16 });
    driver.make_available(2);
    driver.publish();
    auto bad = expect_bad(queue, QueueError::BadHead);
    CHECK(bad.head == 2);
    CHECK_FALSE(queue.is_broken());
}

TEST_CASE("virtqueue: a head past the queue size in the available ring breaks the queue")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    driver.make_available(16);
    driver.publish();
    auto bad = expect_bad(queue, QueueError::BadHead);
    CHECK_FALSE(bad.head.has_value());
    CHECK(queue.is_broken());
    // A broken queue offers nothing more, even valid chains.
    driver.send({ as_bytes("x") }, {});
    CHECK(nothing(queue));
    CHECK_FALSE(queue.enable_notifications());
}

TEST_CASE("virtqueue: a chain over 2^32 - 1 bytes is TooLarge")
{
    // 256 descriptors of 16 MiB, all over the same guest bytes (aliasing is
    // allowed): 2^32 bytes in total, one more than a chain may describe.
    constexpr std::uint32_t PART = 16 << 20;
    auto memory = test::make_guest_memory(32 << 20);
    VirtqueueDriver driver(memory,
        { .size = MAX_QUEUE_SIZE, .ring_address = PART + 0x1000, .buffer_address = PART + 0x10000, .slot_size = 16 });
    auto queue = activate(memory, driver);
    for (std::uint16_t index = 0; index < MAX_QUEUE_SIZE; ++index) {
        bool last = index == MAX_QUEUE_SIZE - 1;
        driver.write_descriptor(index,
            { 0, PART, static_cast<std::uint16_t>(last ? 0 : VIRTQ_DESC_F_NEXT),
                static_cast<std::uint16_t>(index + 1) });
    }
    driver.make_available(0);
    driver.publish();
    auto bad = expect_bad(queue, QueueError::TooLarge);
    CHECK(bad.head == 0);
    queue.consume_bad_chain(bad);

    // One byte less is the largest chain there is.
    driver.write_descriptor(MAX_QUEUE_SIZE - 1, { 0, PART - 1, VIRTQ_DESC_F_WRITE, 0 });
    driver.make_available(0);
    driver.publish();
    auto chain = expect_chain(queue);
    CHECK(chain.readable_length == 255u * PART);
    CHECK(chain.writable_length == PART - 1);
    CHECK(std::uint64_t(chain.readable_length) + chain.writable_length == MAX_CHAIN_BYTES);
}

TEST_CASE("virtqueue: an available index more than queue-size ahead breaks the queue")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, { .size = 8 });
    auto queue = activate(memory, driver);

    SUBCASE("far ahead")
    {
        driver.set_available_index(9);
    }
    SUBCASE("a huge index")
    {
        driver.set_available_index(0xFFFF);
    }
    auto bad = expect_bad(queue, QueueError::IndexOverrun);
    CHECK_FALSE(bad.head.has_value());
    CHECK(queue.is_broken());
    CHECK(nothing(queue));
}

TEST_CASE("virtqueue: more chains outstanding than descriptors is an overrun; used ones make room")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, { .size = 4 });
    auto queue = activate(memory, driver);
    for (int i = 0; i < 4; ++i)
        driver.send({ as_bytes("x") }, {});
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < 4; ++i)
        heads.push_back(expect_chain(queue).head);
    CHECK(nothing(queue));

    // Exactly `size` outstanding is fine; after one is used, one more may come.
    queue.push_used(heads[0], 0);
    REQUIRE(driver.take_used());
    driver.send({ as_bytes("y") }, {});
    auto more = expect_chain(queue);

    // A guest that re-publishes a head it has not got back pushes the device
    // past `size` outstanding chains.
    driver.make_available(more.head);
    driver.publish();
    expect_bad(queue, QueueError::IndexOverrun);
    CHECK(queue.is_broken());
}

TEST_CASE("virtqueue: an available index that goes backwards breaks the queue")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, { .size = 4 });
    auto queue = activate(memory, driver);
    driver.send({ as_bytes("a") }, {});
    driver.send({ as_bytes("b") }, {});
    expect_chain(queue);
    expect_chain(queue);
    driver.set_available_index(1);
    expect_bad(queue, QueueError::IndexOverrun);
}

TEST_CASE("virtqueue: indices run free through 2^16 and the used ring wraps")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, { .size = 4 });
    auto queue = activate(memory, driver, true);
    for (std::uint32_t round = 0; round < 70000; ++round) {
        driver.send({ as_bytes("r") }, { 4 });
        auto chain = expect_chain(queue);
        chain.writable[0][0] = static_cast<std::uint8_t>(round);
        queue.push_used(chain.head, 1);
        auto done = driver.take_used();
        REQUIRE(done);
        REQUIRE(done->written.size() == 1);
        REQUIRE(done->written[0] == static_cast<std::uint8_t>(round));
    }
    CHECK(driver.used_index() == static_cast<std::uint16_t>(70000));
    CHECK(driver.available_index() == static_cast<std::uint16_t>(70000));
}

TEST_CASE("virtqueue: EVENT_IDX interrupts only when the used index passes used_event")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, { .size = 16 });
    auto queue = activate(memory, driver, true);
    auto complete = [&](int count) {
        for (int i = 0; i < count; ++i) {
            driver.send({ as_bytes("x") }, {});
            queue.push_used(expect_chain(queue).head, 0);
            REQUIRE(driver.take_used());
        }
    };
    // The flag means nothing with EVENT_IDX (§2.7.7.2).
    driver.set_available_flags(VIRTQ_AVAIL_F_NO_INTERRUPT);

    // The first decision has nothing to compare with: it interrupts.
    driver.set_used_event(100);
    complete(1); // used 0 → 1
    CHECK(queue.needs_interrupt());

    driver.set_used_event(1);
    complete(1); // 1 → 2 passes used_event 1: vring_need_event(1, 2, 1)
    CHECK(queue.needs_interrupt());
    complete(1); // 2 → 3 does not pass 1 again
    CHECK_FALSE(queue.needs_interrupt());

    driver.set_used_event(5);
    complete(2); // 3 → 5: used_event 5 not yet passed
    CHECK_FALSE(queue.needs_interrupt());
    complete(1); // 5 → 6 passes 5
    CHECK(queue.needs_interrupt());

    driver.set_used_event(7);
    complete(3); // a batch 6 → 9 that passes 7 in the middle
    CHECK(queue.needs_interrupt());
    CHECK_FALSE(queue.needs_interrupt()); // nothing new since

    driver.set_used_event(8);
    complete(2); // 9 → 11: 8 lies behind the last decision
    CHECK_FALSE(queue.needs_interrupt());
}

TEST_CASE("virtqueue: EVENT_IDX decisions across the 16-bit wrap")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, { .size = 16 });
    auto queue = activate(memory, driver, true);
    auto complete = [&](int count) {
        for (int i = 0; i < count; ++i) {
            driver.send({ as_bytes("x") }, {});
            queue.push_used(expect_chain(queue).head, 0);
            REQUIRE(driver.take_used());
        }
    };
    driver.set_used_event(0xFFF0);
    for (int i = 0; i < 0xFFF0; ++i)
        complete(1);
    queue.needs_interrupt(); // the decision point is now used idx 0xFFF0
    driver.set_used_event(0xFFFE);
    complete(0xE); // 0xFFF0 → 0xFFFE
    CHECK_FALSE(queue.needs_interrupt());
    driver.set_used_event(0x0001);
    complete(4); // 0xFFFE → 0x0002, passes 0xFFFF, 0x0000 and 0x0001
    CHECK(queue.needs_interrupt());
    CHECK(driver.used_index() == 2);
}

TEST_CASE("virtqueue: EVENT_IDX with 2^16 entries since the last decision interrupts")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, { .size = 16 });
    auto queue = activate(memory, driver, true);
    auto complete = [&](int count) {
        for (int i = 0; i < count; ++i) {
            driver.send({ as_bytes("x") }, {});
            queue.push_used(expect_chain(queue).head, 0);
            REQUIRE(driver.take_used());
        }
    };
    complete(1);
    queue.needs_interrupt(); // decided at 1
    driver.set_used_event(0);
    complete(0x10000); // back to 1: the index alone cannot tell what happened
    CHECK(queue.needs_interrupt());
}

TEST_CASE("virtqueue: without EVENT_IDX the driver's NO_INTERRUPT flag decides")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver, false);
    driver.set_used_event(0); // ignored without EVENT_IDX
    driver.send({ as_bytes("a") }, {});
    queue.push_used(expect_chain(queue).head, 0);
    CHECK(queue.needs_interrupt());
    CHECK_FALSE(queue.needs_interrupt()); // nothing new

    driver.set_available_flags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    driver.send({ as_bytes("b") }, {});
    queue.push_used(expect_chain(queue).head, 0);
    CHECK_FALSE(queue.needs_interrupt());

    driver.set_available_flags(0);
    driver.send({ as_bytes("c") }, {});
    queue.push_used(expect_chain(queue).head, 0);
    CHECK(queue.needs_interrupt());
}

TEST_CASE("virtqueue: EVENT_IDX enable_notifications writes avail_event and reports buffers that arrived in between")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver, true);
    driver.send({ as_bytes("a") }, {});
    driver.send({ as_bytes("b") }, {});
    queue.disable_notifications();
    CHECK(driver.used_flags() == 0); // the flag is not used with EVENT_IDX
    expect_chain(queue);
    expect_chain(queue);
    CHECK(nothing(queue));

    // Nothing new: the device may sleep; it asks to hear of entry 2.
    CHECK_FALSE(queue.enable_notifications());
    CHECK(driver.avail_event() == 2);

    // The driver published before it could see the request (the §2.7.10
    // race): the device must not sleep.
    driver.send({ as_bytes("c") }, {});
    CHECK(queue.enable_notifications());
    CHECK(driver.avail_event() == 2);
    expect_chain(queue);
    CHECK_FALSE(queue.enable_notifications());
    CHECK(driver.avail_event() == 3);
}

TEST_CASE("virtqueue: without EVENT_IDX notifications are switched with the used ring's NO_NOTIFY flag")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver, false);
    queue.disable_notifications();
    CHECK(driver.used_flags() == VIRTQ_USED_F_NO_NOTIFY);
    CHECK_FALSE(queue.enable_notifications());
    CHECK(driver.used_flags() == 0);
    CHECK(driver.avail_event() == 0);

    queue.disable_notifications();
    driver.send({ as_bytes("a") }, {});
    CHECK(queue.enable_notifications());
    CHECK(driver.used_flags() == 0);
}

TEST_CASE("virtqueue: a chain's fields are read once: changing the ring after pop changes nothing popped")
{
    auto memory = test::make_guest_memory();
    VirtqueueDriver driver(memory, {});
    auto queue = activate(memory, driver);
    auto head = driver.send({ as_bytes("abcd") }, {});
    auto chain = expect_chain(queue);
    driver.write_descriptor(head, { 0xFFFF'0000, 0xFFFF, VIRTQ_DESC_F_INDIRECT, 99 });
    CHECK(chain.readable_length == 4);
    CHECK(text(chain.readable[0]) == "abcd");
    queue.push_used(chain.head, 0);
    CHECK(driver.used_entry(0).id == head);
}
