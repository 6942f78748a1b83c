// The virtio-mmio transport (virtio 1.2 §4.2.2, §4.2.3; docs/PLATFORMS.md
// §V3) with a fake device, driven through its BusDevice interface by the
// simulator of tests/support/virtio_driver.hpp.
#include "../support/must.hpp"
#include "../support/virtio_driver.hpp"

#include <qtbox/base/sys.hpp>
#include <qtbox/devices/virtio/mmio.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <variant>
#include <vector>

using namespace qtbox;
using namespace qtbox::devices::virtio;
using qtbox::test::MmioDriver;
using qtbox::test::must;
using qtbox::test::VirtqueueDriver;

namespace {

constexpr std::uint64_t DEVICE_BIT_LOW = 1ull << 0;
constexpr std::uint64_t DEVICE_BIT_HIGH = 1ull << 40;
constexpr std::uint64_t ALL_OFFERED = DEVICE_BIT_LOW | DEVICE_BIT_HIGH | VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX;

struct FakeDevice final : Device {
    std::uint32_t device_id() const override { return 19; }
    std::uint64_t device_features() const override { return DEVICE_BIT_LOW | DEVICE_BIT_HIGH; }
    std::size_t queue_count() const override { return 3; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const override
    {
        for (std::size_t i = 0; i < data.size(); ++i)
            data[i] = offset + i < config.size() ? config[offset + i] : 0;
    }
    void write_config(std::uint64_t offset, ByteView data) override
    {
        config_writes.push_back({ offset, Bytes(data.begin(), data.end()) });
    }
    ErrorOr<void> activate(Activation given) override
    {
        ++activations;
        if (on_activate)
            on_activate();
        if (refuse)
            return Error::from_string("the fake device refuses");
        activation = std::move(given);
        return {};
    }
    void reset() override
    {
        ++resets;
        if (on_reset)
            on_reset();
        activation.reset();
    }

    Bytes config { 0x2A, 0, 0, 0, 0, 0, 0, 0 }; // le64 guest_cid 42, as vsock's
    std::vector<std::pair<std::uint64_t, Bytes>> config_writes;
    std::optional<Activation> activation;
    int activations { 0 };
    int resets { 0 };
    bool refuse { false };
    std::function<void()> on_activate;
    std::function<void()> on_reset;
};

// The counter of a non-blocking eventfd, read back to 0 (0 when nothing was
// pending).
std::uint64_t drain(int fd)
{
    std::uint64_t count = 0;
    if (::read(fd, &count, sizeof(count)) != sizeof(count))
        return 0;
    return count;
}

struct Fixture {
    Fixture()
        : memory(test::make_guest_memory(4 << 20))
        , irq(must(sys::eventfd()))
        , transport(must(MmioTransport::create(
              device, memory, irq.get(), [this](Notice const& notice) { notices.push_back(notice.text); })))
        , driver(*transport)
    {
    }

    // Three queues laid out apart in guest memory.
    VirtqueueDriver make_queue(std::uint16_t index, std::uint16_t size = 16)
    {
        return VirtqueueDriver(memory,
            { .size = size,
                .ring_address = 0x10000 + 0x10000ull * index,
                .buffer_address = 0x100000 + 0x100000ull * index,
                .slot_size = 4096 });
    }

    kvm::GuestMemory memory;
    FakeDevice device;
    UniqueFd irq;
    std::vector<std::string> notices;
    std::unique_ptr<MmioTransport> transport;
    MmioDriver driver;
};

std::uint32_t read_width(MmioTransport& transport, std::uint64_t offset, std::size_t width)
{
    std::uint8_t bytes[8];
    std::memset(bytes, 0xEE, sizeof(bytes));
    transport.read(offset, { bytes, width });
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < std::min<std::size_t>(width, 4); ++i)
        value |= std::uint32_t(bytes[i]) << (8 * i);
    return value;
}

} // namespace

TEST_CASE("virtio-mmio: magic, version 2, device and vendor ids")
{
    Fixture f;
    CHECK(f.driver.read(mmio::MAGIC_VALUE) == 0x74726976);
    CHECK(f.driver.read(mmio::VERSION) == 2);
    CHECK(f.driver.read(mmio::DEVICE_ID) == 19);
    CHECK(f.driver.read(mmio::VENDOR_ID) == mmio::VENDOR);
    CHECK(f.driver.status() == 0);
    CHECK(f.driver.interrupt_status() == 0);
    CHECK(f.driver.read(0x0F0) == 0); // reserved
    CHECK(f.transport->queue_count() == 3);
}

TEST_CASE("virtio-mmio: register accesses other than aligned 32-bit read 0 and are ignored")
{
    Fixture f;
    CHECK(read_width(*f.transport, mmio::MAGIC_VALUE, 1) == 0);
    CHECK(read_width(*f.transport, mmio::MAGIC_VALUE, 2) == 0);
    CHECK(read_width(*f.transport, mmio::MAGIC_VALUE, 8) == 0);
    CHECK(read_width(*f.transport, mmio::MAGIC_VALUE + 1, 4) == 0);

    std::uint8_t one = status::ACKNOWLEDGE;
    f.transport->write(mmio::STATUS, { &one, 1 });
    std::uint8_t eight[8] = { status::ACKNOWLEDGE };
    f.transport->write(mmio::STATUS, eight);
    std::uint8_t four[4] = { status::ACKNOWLEDGE };
    f.transport->write(mmio::STATUS + 2, four);
    CHECK(f.driver.status() == 0);
    f.transport->write(mmio::STATUS, four);
    CHECK(f.driver.status() == status::ACKNOWLEDGE);
}

TEST_CASE("virtio-mmio: device features are the device's bits plus VERSION_1 and EVENT_IDX, by select")
{
    Fixture f;
    CHECK(f.driver.device_features() == ALL_OFFERED);
    f.driver.write(mmio::DEVICE_FEATURES_SEL, 0);
    CHECK(f.driver.read(mmio::DEVICE_FEATURES) == static_cast<std::uint32_t>(DEVICE_BIT_LOW | VIRTIO_F_EVENT_IDX));
    f.driver.write(mmio::DEVICE_FEATURES_SEL, 1);
    CHECK(f.driver.read(mmio::DEVICE_FEATURES)
        == static_cast<std::uint32_t>((DEVICE_BIT_HIGH | VIRTIO_F_VERSION_1) >> 32));
    f.driver.write(mmio::DEVICE_FEATURES_SEL, 2);
    CHECK(f.driver.read(mmio::DEVICE_FEATURES) == 0);
}

TEST_CASE("virtio-mmio: FEATURES_OK is kept only with VERSION_1 and offered bits")
{
    Fixture f;
    CHECK(f.driver.negotiate(VIRTIO_F_VERSION_1));
    CHECK(f.driver.negotiate(ALL_OFFERED));
    CHECK(f.driver.status() == (status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK));

    SUBCASE("without VERSION_1 (a legacy driver)")
    {
        CHECK_FALSE(f.driver.negotiate(VIRTIO_F_EVENT_IDX | DEVICE_BIT_LOW));
    }
    SUBCASE("with a bit the device did not offer")
    {
        CHECK_FALSE(f.driver.negotiate(VIRTIO_F_VERSION_1 | (1ull << 28)));
    }
    SUBCASE("with a high bit the device did not offer")
    {
        CHECK_FALSE(f.driver.negotiate(VIRTIO_F_VERSION_1 | (1ull << 63)));
    }
    CHECK(f.driver.status() == (status::ACKNOWLEDGE | status::DRIVER));

    // DRIVER_OK without FEATURES_OK activates nothing and asks for a reset.
    f.driver.driver_ok();
    CHECK(f.device.activations == 0);
    CHECK((f.driver.status() & status::DEVICE_NEEDS_RESET) != 0);
    CHECK(f.driver.interrupt_status() == static_cast<std::uint32_t>(Interrupt::ConfigChange));
    REQUIRE(f.notices.size() == 1);
    CHECK(f.notices[0] == "virtio-mmio device 19: DRIVER_OK without FEATURES_OK");
}

TEST_CASE("virtio-mmio: driver features are fixed once FEATURES_OK is set")
{
    Fixture f;
    REQUIRE(f.driver.negotiate(VIRTIO_F_VERSION_1 | DEVICE_BIT_LOW));
    f.driver.write_driver_features(ALL_OFFERED);
    auto queue = f.make_queue(0);
    REQUIRE(f.driver.setup_queue(0, queue.layout()));
    f.driver.driver_ok();
    REQUIRE(f.device.activation);
    CHECK(f.device.activation->features == (VIRTIO_F_VERSION_1 | DEVICE_BIT_LOW));
}

TEST_CASE("virtio-mmio: queue registers: QueueNumMax, size and areas, ready")
{
    Fixture f;
    for (std::uint32_t index = 0; index < 3; ++index) {
        f.driver.write(mmio::QUEUE_SEL, index);
        CHECK(f.driver.read(mmio::QUEUE_NUM_MAX) == MAX_QUEUE_SIZE);
        CHECK(f.driver.read(mmio::QUEUE_READY) == 0);
    }
    f.driver.write(mmio::QUEUE_SEL, 3);
    CHECK(f.driver.read(mmio::QUEUE_NUM_MAX) == 0); // no such queue
    f.driver.write(mmio::QUEUE_READY, 1);
    CHECK(f.driver.read(mmio::QUEUE_READY) == 0);

    QueueLayout layout { 64, 0x1'2345'6000, 0x2'0000'1000, 0x3'0000'2000 };
    CHECK(f.driver.setup_queue(1, layout));
    f.driver.write(mmio::QUEUE_SEL, 1);
    CHECK(f.driver.read(mmio::QUEUE_NUM) == 64);
    CHECK(f.driver.read(mmio::QUEUE_DESC_LOW) == 0x2345'6000);
    CHECK(f.driver.read(mmio::QUEUE_DESC_HIGH) == 1);
    CHECK(f.driver.read(mmio::QUEUE_DRIVER_LOW) == 0x1000);
    CHECK(f.driver.read(mmio::QUEUE_DRIVER_HIGH) == 2);
    CHECK(f.driver.read(mmio::QUEUE_DEVICE_LOW) == 0x2000);
    CHECK(f.driver.read(mmio::QUEUE_DEVICE_HIGH) == 3);
    CHECK(f.driver.read(mmio::QUEUE_READY) == 1);
    // The other queues are untouched.
    f.driver.write(mmio::QUEUE_SEL, 0);
    CHECK(f.driver.read(mmio::QUEUE_NUM) == 0);
    CHECK(f.driver.read(mmio::QUEUE_READY) == 0);
    // Already ready: the simulator refuses to set it up again.
    CHECK_FALSE(f.driver.setup_queue(1, layout));
}

TEST_CASE("virtio-mmio: writes to a ready queue's configuration are ignored")
{
    Fixture f;
    QueueLayout layout { 16, 0x10000, 0x10100, 0x10200 };
    REQUIRE(f.driver.setup_queue(0, layout));
    f.driver.write(mmio::QUEUE_NUM, 32);
    f.driver.write(mmio::QUEUE_DESC_LOW, 0x5000);
    f.driver.write(mmio::QUEUE_DESC_HIGH, 5);
    f.driver.write(mmio::QUEUE_DRIVER_LOW, 0x6000);
    f.driver.write(mmio::QUEUE_DRIVER_HIGH, 6);
    f.driver.write(mmio::QUEUE_DEVICE_LOW, 0x7000);
    f.driver.write(mmio::QUEUE_DEVICE_HIGH, 7);
    CHECK(f.driver.read(mmio::QUEUE_NUM) == 16);
    CHECK(f.driver.read(mmio::QUEUE_DESC_LOW) == 0x10000);
    CHECK(f.driver.read(mmio::QUEUE_DESC_HIGH) == 0);
    CHECK(f.driver.read(mmio::QUEUE_DRIVER_LOW) == 0x10100);
    CHECK(f.driver.read(mmio::QUEUE_DRIVER_HIGH) == 0);
    CHECK(f.driver.read(mmio::QUEUE_DEVICE_LOW) == 0x10200);
    CHECK(f.driver.read(mmio::QUEUE_DEVICE_HIGH) == 0);

    // Not ready again (§4.2.2.2: the driver writes 0 to stop using it): writable.
    f.driver.write(mmio::QUEUE_READY, 0);
    CHECK(f.driver.read(mmio::QUEUE_READY) == 0);
    f.driver.write(mmio::QUEUE_NUM, 32);
    CHECK(f.driver.read(mmio::QUEUE_NUM) == 32);
}

TEST_CASE("virtio-mmio: DRIVER_OK activates the device with the negotiated features and the ready queues")
{
    Fixture f;
    auto rx = f.make_queue(0, 16);
    auto tx = f.make_queue(1, 64);
    REQUIRE(f.driver.initialize(VIRTIO_F_EVENT_IDX, { { 0, rx.layout() }, { 1, tx.layout() } }));
    CHECK(f.driver.status() == (status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK));
    CHECK(f.device.activations == 1);
    REQUIRE(f.device.activation);
    auto& activation = *f.device.activation;
    CHECK(activation.features == (VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX));
    REQUIRE(activation.queues.size() == 3);
    CHECK(activation.queues[0].is_ready());
    CHECK(activation.queues[0].size() == 16);
    CHECK(activation.queues[1].is_ready());
    CHECK(activation.queues[1].size() == 64);
    CHECK_FALSE(activation.queues[2].is_ready()); // the driver did not set it up
    CHECK(f.notices.empty());

    // The queues are the driver's: a chain sent on TX pops out of queue 1,
    // and EVENT_IDX is in force (avail_event is written).
    auto head = tx.send({ as_bytes("ping") }, {});
    auto popped = activation.queues[1].pop();
    REQUIRE(std::holds_alternative<Chain>(popped));
    CHECK(std::get<Chain>(popped).head == head);
    CHECK_FALSE(activation.queues[1].enable_notifications());
    CHECK(tx.avail_event() == 1);

    // Status bits only accumulate: DRIVER_OK again activates nothing more.
    f.driver.write(mmio::STATUS, status::ACKNOWLEDGE);
    f.driver.driver_ok();
    CHECK(f.device.activations == 1);
    CHECK(f.driver.status() == (status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK));
}

TEST_CASE("virtio-mmio: without EVENT_IDX the queues are activated without it")
{
    Fixture f;
    auto rx = f.make_queue(0);
    REQUIRE(f.driver.initialize(0, { { 0, rx.layout() } }));
    REQUIRE(f.device.activation);
    CHECK(f.device.activation->features == VIRTIO_F_VERSION_1);
    auto& queue = f.device.activation->queues[0];
    queue.disable_notifications();
    CHECK(rx.used_flags() == VIRTQ_USED_F_NO_NOTIFY);
}

TEST_CASE("virtio-mmio: a queue the device cannot use fails DRIVER_OK with DEVICE_NEEDS_RESET")
{
    Fixture f;
    QueueLayout layout;
    std::string expected;
    SUBCASE("outside guest RAM")
    {
        layout = { 16, 0x4000'0000, 0x4000'1000, 0x4000'2000 };
        expected = "virtio-mmio device 19: queue 0: virtqueue: the areas of a queue of 16";
    }
    SUBCASE("a size above QueueNumMax")
    {
        layout = { 16, 0x10000, 0x10100, 0x10200 };
        expected = "virtio-mmio device 19: queue 0: virtqueue: size 0 is not a power of two";
    }
    REQUIRE(f.driver.negotiate(VIRTIO_F_VERSION_1));
    REQUIRE(f.driver.setup_queue(0, layout));
    if (expected.find("size 0") != std::string::npos) {
        f.driver.write(mmio::QUEUE_READY, 0);
        f.driver.write(mmio::QUEUE_NUM, MAX_QUEUE_SIZE * 2);
        f.driver.write(mmio::QUEUE_READY, 1);
    }
    drain(f.irq.get());
    f.driver.driver_ok();
    CHECK(f.device.activations == 0);
    CHECK((f.driver.status() & status::DEVICE_NEEDS_RESET) != 0);
    CHECK(f.driver.interrupt_status() == static_cast<std::uint32_t>(Interrupt::ConfigChange));
    CHECK(drain(f.irq.get()) == 1);
    REQUIRE(f.notices.size() == 1);
    CHECK(f.notices[0].rfind(expected, 0) == 0);
}

TEST_CASE("virtio-mmio: a device that refuses activation gets DEVICE_NEEDS_RESET")
{
    Fixture f;
    f.device.refuse = true;
    auto rx = f.make_queue(0);
    CHECK_FALSE(f.driver.initialize(0, { { 0, rx.layout() } }));
    CHECK(f.device.activations == 1);
    CHECK((f.driver.status() & status::DEVICE_NEEDS_RESET) != 0);
    CHECK((f.driver.status() & status::DRIVER_OK) != 0);
    REQUIRE(f.notices.size() == 1);
    CHECK(f.notices[0] == "virtio-mmio device 19: the fake device refuses");
    // The driver cannot clear it; a reset does.
    f.driver.write(mmio::STATUS, status::DEVICE_NEEDS_RESET | status::ACKNOWLEDGE);
    CHECK((f.driver.status() & status::DEVICE_NEEDS_RESET) != 0);
    f.driver.reset();
    CHECK(f.driver.status() == 0);
}

TEST_CASE("virtio-mmio: writing 0 to Status resets the device and every register")
{
    Fixture f;
    auto rx = f.make_queue(0);
    auto tx = f.make_queue(1);
    REQUIRE(f.driver.initialize(VIRTIO_F_EVENT_IDX, { { 0, rx.layout() }, { 1, tx.layout() } }));
    f.transport->raise(Interrupt::UsedBuffer);
    f.transport->needs_reset();
    f.driver.notify(1);
    f.driver.write(mmio::DEVICE_FEATURES_SEL, 1);
    f.driver.write(mmio::QUEUE_SEL, 1);
    REQUIRE(f.device.activation);

    int const resets = f.device.resets;
    f.driver.reset();
    CHECK(f.device.resets == resets + 1);
    CHECK_FALSE(f.device.activation); // the device dropped its queues
    CHECK(f.driver.status() == 0);
    CHECK(f.driver.interrupt_status() == 0);
    CHECK(drain(f.transport->notify_fd(1)) == 0); // stale notifications dropped
    // DeviceFeaturesSel is back to 0.
    CHECK(f.driver.read(mmio::DEVICE_FEATURES) == static_cast<std::uint32_t>(ALL_OFFERED));
    for (std::uint32_t index = 0; index < 3; ++index) {
        f.driver.write(mmio::QUEUE_SEL, index);
        CHECK(f.driver.read(mmio::QUEUE_READY) == 0);
        CHECK(f.driver.read(mmio::QUEUE_NUM) == 0);
        CHECK(f.driver.read(mmio::QUEUE_DESC_LOW) == 0);
        CHECK(f.driver.read(mmio::QUEUE_DRIVER_LOW) == 0);
        CHECK(f.driver.read(mmio::QUEUE_DEVICE_LOW) == 0);
    }
    // Driver features are gone: FEATURES_OK needs a new negotiation.
    f.driver.add_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    CHECK((f.driver.status() & status::FEATURES_OK) == 0);

    // And the device can be brought up again.
    auto again = f.make_queue(2);
    REQUIRE(f.driver.initialize(0, { { 2, again.layout() } }));
    CHECK(f.device.activations == 2);
    REQUIRE(f.device.activation);
    CHECK_FALSE(f.device.activation->queues[0].is_ready());
    CHECK(f.device.activation->queues[2].is_ready());
}

TEST_CASE("virtio-mmio: QueueNotify signals that queue's eventfd")
{
    Fixture f;
    for (std::size_t queue = 0; queue < 3; ++queue)
        CHECK(f.transport->notify_fd(queue) >= 0);
    CHECK(f.transport->notify_fd(0) != f.transport->notify_fd(1));

    f.driver.notify(1);
    f.driver.notify(1);
    CHECK(drain(f.transport->notify_fd(0)) == 0);
    CHECK(drain(f.transport->notify_fd(1)) == 2);
    CHECK(drain(f.transport->notify_fd(2)) == 0);
    f.driver.notify(2);
    CHECK(drain(f.transport->notify_fd(2)) == 1);

    f.driver.notify(3); // no such queue
    std::uint8_t two[2] = { 1, 0 };
    f.transport->write(mmio::QUEUE_NOTIFY, two); // not a 32-bit access
    for (std::size_t queue = 0; queue < 3; ++queue)
        CHECK(drain(f.transport->notify_fd(queue)) == 0);
}

TEST_CASE("virtio-mmio: raise sets InterruptStatus and signals the irqfd; InterruptACK clears the acknowledged bits")
{
    Fixture f;
    f.transport->raise(Interrupt::UsedBuffer);
    CHECK(f.driver.interrupt_status() == 1);
    CHECK(drain(f.irq.get()) == 1);
    f.transport->raise(Interrupt::ConfigChange);
    CHECK(f.driver.interrupt_status() == 3);
    CHECK(drain(f.irq.get()) == 1);

    f.driver.acknowledge(1);
    CHECK(f.driver.interrupt_status() == 2);
    f.driver.acknowledge(0xFFFF'FFFC); // bits that are not set change nothing
    CHECK(f.driver.interrupt_status() == 2);
    f.driver.acknowledge(2);
    CHECK(f.driver.interrupt_status() == 0);
    CHECK(drain(f.irq.get()) == 0);
}

TEST_CASE("virtio-mmio: a transport without an irqfd still sets InterruptStatus")
{
    auto memory = test::make_guest_memory();
    FakeDevice device;
    auto transport = must(MmioTransport::create(device, memory, -1));
    transport->raise(Interrupt::UsedBuffer);
    MmioDriver driver(*transport);
    CHECK(driver.interrupt_status() == 1);
}

TEST_CASE("virtio-mmio: the device may raise from activate() and reset(), which run under the transport's lock")
{
    Fixture f;
    f.device.on_activate = [&] { f.transport->raise(Interrupt::UsedBuffer); };
    f.device.on_reset = [&] { f.transport->needs_reset(); };
    auto rx = f.make_queue(0);
    REQUIRE(f.driver.initialize(0, { { 0, rx.layout() } }));
    CHECK(f.driver.interrupt_status() == 1);
    f.driver.reset(); // reset() raised first; the transport cleared after
    CHECK(f.driver.status() == 0);
    CHECK(f.driver.interrupt_status() == 0);
}

TEST_CASE("virtio-mmio: device configuration space at 0x100 with any width")
{
    Fixture f;
    std::uint8_t eight[8] = {};
    f.driver.read_config(0, eight);
    CHECK(eight[0] == 0x2A);
    CHECK(std::all_of(eight + 1, eight + 8, [](std::uint8_t byte) { return byte == 0; }));
    CHECK(read_width(*f.transport, mmio::CONFIG, 1) == 0x2A);
    CHECK(read_width(*f.transport, mmio::CONFIG, 2) == 0x2A);
    CHECK(read_width(*f.transport, mmio::CONFIG, 4) == 0x2A);
    CHECK(read_width(*f.transport, mmio::CONFIG + 1, 1) == 0);
    CHECK(read_width(*f.transport, mmio::CONFIG + 0x100, 4) == 0); // past the device's config
    f.device.config = { 1, 2, 3, 4, 5, 6, 7, 8 };
    CHECK(read_width(*f.transport, mmio::CONFIG + 3, 4) == 0x07060504);

    std::uint8_t byte = 0x55;
    f.transport->write(mmio::CONFIG + 5, { &byte, 1 });
    REQUIRE(f.device.config_writes.size() == 1);
    CHECK(f.device.config_writes[0].first == 5);
    CHECK(f.device.config_writes[0].second == Bytes { 0x55 });
}

TEST_CASE("virtio-mmio: ConfigGeneration changes with the configuration, and not on reset")
{
    Fixture f;
    CHECK(f.driver.config_generation() == 0);
    f.transport->config_changed();
    CHECK(f.driver.config_generation() == 1);
    CHECK(f.driver.interrupt_status() == static_cast<std::uint32_t>(Interrupt::ConfigChange));
    CHECK(drain(f.irq.get()) == 1);
    f.driver.reset();
    CHECK(f.driver.config_generation() == 1);
    f.driver.write(mmio::CONFIG_GENERATION, 0); // read-only
    CHECK(f.driver.config_generation() == 1);
}

TEST_CASE("virtio-mmio: read-only registers ignore writes and there are no shared memory regions")
{
    Fixture f;
    f.driver.write(mmio::MAGIC_VALUE, 0);
    f.driver.write(mmio::DEVICE_ID, 0);
    f.driver.write(mmio::INTERRUPT_STATUS, 0xFF);
    CHECK(f.driver.read(mmio::MAGIC_VALUE) == mmio::MAGIC);
    CHECK(f.driver.read(mmio::DEVICE_ID) == 19);
    CHECK(f.driver.interrupt_status() == 0);
    f.driver.write(mmio::SHM_SEL, 0);
    CHECK(f.driver.read(mmio::SHM_LEN_LOW) == 0xFFFF'FFFF);
    CHECK(f.driver.read(mmio::SHM_LEN_HIGH) == 0xFFFF'FFFF);
}

TEST_CASE("virtio-mmio: raise() from the device's thread needs no lock while a vCPU acknowledges; the driver sees each "
          "kind raised")
{
    Fixture f;
    constexpr int ROUNDS = 20000;
    std::atomic<bool> done { false };
    std::thread device_thread([&] {
        for (int i = 0; i < ROUNDS; ++i)
            f.transport->raise(i % 2 ? Interrupt::UsedBuffer : Interrupt::ConfigChange);
        done = true;
    });
    // The guest's handler: read, acknowledge what it read (Linux's vm_interrupt).
    std::uint32_t seen = 0;
    while (!done.load()) {
        std::uint32_t status = f.driver.interrupt_status();
        seen |= status;
        f.driver.acknowledge(status);
    }
    device_thread.join();
    seen |= f.driver.interrupt_status();
    CHECK(seen == 3);
    CHECK(drain(f.irq.get()) >= 1);
}
