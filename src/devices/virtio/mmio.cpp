// The virtio-mmio transport, version 2 (virtio 1.2 §4.2.2; docs/PLATFORMS.md
// §V3); the overview is in include/qtbox/devices/virtio/mmio.hpp.
//
// Lock order: the transport's m_mutex, then the device's own lock (reset()
// and activate() run under m_mutex and take the device's). The device's
// thread therefore never takes m_mutex: raise(), needs_reset() and
// config_changed() touch only atomics and the irqfd.
#include <qtbox/base/sys.hpp>
#include <qtbox/devices/virtio/mmio.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace qtbox::devices::virtio {

namespace {

constexpr std::size_t REGISTER_WIDTH = 4;

// The 64-bit registers are two 32-bit halves (§4.2.2: "...Low", "...High").
void set_low(std::uint64_t& value, std::uint32_t low)
{
    value = (value & 0xFFFF'FFFF'0000'0000ull) | low;
}

void set_high(std::uint64_t& value, std::uint32_t high)
{
    value = (value & 0xFFFF'FFFFull) | (static_cast<std::uint64_t>(high) << 32);
}

// A 32-bit half of a 64-bit feature word, chosen by a *FeaturesSel register.
std::uint32_t feature_word(std::uint64_t features, std::uint32_t select)
{
    if (select == 0)
        return static_cast<std::uint32_t>(features);
    if (select == 1)
        return static_cast<std::uint32_t>(features >> 32);
    return 0;
}

} // namespace

ErrorOr<std::unique_ptr<MmioTransport>> MmioTransport::create(
    Device& device, kvm::GuestMemory const& memory, int irq_fd, NoticeSink notice)
{
    std::vector<UniqueFd> notify;
    for (std::size_t queue = 0; queue < device.queue_count(); ++queue)
        notify.push_back(TRY(sys::eventfd()));
    return std::unique_ptr<MmioTransport>(
        new MmioTransport(device, memory, irq_fd, std::move(notify), std::move(notice)));
}

MmioTransport::MmioTransport(
    Device& device, kvm::GuestMemory const& memory, int irq_fd, std::vector<UniqueFd> notify, NoticeSink notice)
    : m_device(device)
    , m_memory(memory)
    , m_irq_fd(irq_fd)
    , m_notify(std::move(notify))
    , m_notice(std::move(notice))
    , m_queue_registers(m_notify.size())
{
}

void MmioTransport::read(std::uint64_t offset, std::span<std::uint8_t> data)
{
    std::fill(data.begin(), data.end(), 0);
    std::lock_guard lock(m_mutex);
    if (offset >= mmio::CONFIG) {
        // §4.2.2: the configuration space may be accessed with any width.
        m_device.read_config(offset - mmio::CONFIG, data);
        return;
    }
    if (data.size() != REGISTER_WIDTH || offset % REGISTER_WIDTH != 0)
        return;
    std::uint32_t value = read_register(offset);
    for (std::size_t i = 0; i < REGISTER_WIDTH; ++i)
        data[i] = static_cast<std::uint8_t>(value >> (8 * i));
}

void MmioTransport::write(std::uint64_t offset, ByteView data)
{
    if (offset >= mmio::CONFIG) {
        std::lock_guard lock(m_mutex);
        m_device.write_config(offset - mmio::CONFIG, data);
        return;
    }
    if (data.size() != REGISTER_WIDTH || offset % REGISTER_WIDTH != 0)
        return;
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < REGISTER_WIDTH; ++i)
        value |= static_cast<std::uint32_t>(data[i]) << (8 * i);
    // A notification needs no lock: the eventfds never change.
    if (offset == mmio::QUEUE_NOTIFY) {
        // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index
        // (§4.2.2); an unknown index is ignored.
        if (value < m_notify.size())
            sys::signal_event(m_notify[value].get());
        return;
    }
    std::lock_guard lock(m_mutex);
    write_register(offset, value);
}

std::uint32_t MmioTransport::read_register(std::uint64_t offset)
{
    QueueRegisters const* queue
        = m_queue_select < m_queue_registers.size() ? &m_queue_registers[m_queue_select] : nullptr;
    switch (offset) {
    case mmio::MAGIC_VALUE:
        return mmio::MAGIC;
    case mmio::VERSION:
        return mmio::TRANSPORT_VERSION;
    case mmio::DEVICE_ID:
        return m_device.device_id();
    case mmio::VENDOR_ID:
        return mmio::VENDOR;
    case mmio::DEVICE_FEATURES:
        return feature_word(
            m_device.device_features() | VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX, m_device_features_select);
    case mmio::QUEUE_NUM_MAX:
        // 0: no such queue (§4.2.3.2).
        return queue ? MAX_QUEUE_SIZE : 0;
    case mmio::QUEUE_NUM:
        return queue ? queue->layout.size : 0;
    case mmio::QUEUE_READY:
        return queue && queue->ready ? 1 : 0;
    case mmio::QUEUE_DESC_LOW:
        return queue ? static_cast<std::uint32_t>(queue->layout.descriptor_table) : 0;
    case mmio::QUEUE_DESC_HIGH:
        return queue ? static_cast<std::uint32_t>(queue->layout.descriptor_table >> 32) : 0;
    case mmio::QUEUE_DRIVER_LOW:
        return queue ? static_cast<std::uint32_t>(queue->layout.available_ring) : 0;
    case mmio::QUEUE_DRIVER_HIGH:
        return queue ? static_cast<std::uint32_t>(queue->layout.available_ring >> 32) : 0;
    case mmio::QUEUE_DEVICE_LOW:
        return queue ? static_cast<std::uint32_t>(queue->layout.used_ring) : 0;
    case mmio::QUEUE_DEVICE_HIGH:
        return queue ? static_cast<std::uint32_t>(queue->layout.used_ring >> 32) : 0;
    case mmio::INTERRUPT_STATUS:
        return m_interrupt_status.load(std::memory_order_acquire);
    case mmio::STATUS:
        return m_status | (m_needs_reset.load(std::memory_order_acquire) ? status::DEVICE_NEEDS_RESET : 0);
    case mmio::SHM_LEN_LOW:
    case mmio::SHM_LEN_HIGH:
        // §4.2.2: a region that does not exist has length -1.
        return 0xFFFF'FFFF;
    case mmio::CONFIG_GENERATION:
        return m_config_generation.load(std::memory_order_acquire);
    default:
        return 0;
    }
}

void MmioTransport::write_register(std::uint64_t offset, std::uint32_t value)
{
    QueueRegisters* queue = m_queue_select < m_queue_registers.size() ? &m_queue_registers[m_queue_select] : nullptr;
    // §4.2.2.2: while QueueReady is set the driver must not touch the
    // queue's configuration; the device ignores it if it does.
    QueueRegisters* configurable = queue && !queue->ready ? queue : nullptr;
    switch (offset) {
    case mmio::DEVICE_FEATURES_SEL:
        m_device_features_select = value;
        return;
    case mmio::DRIVER_FEATURES:
        // The features are fixed once FEATURES_OK is set (§3.1.1 step 5).
        if (m_status & status::FEATURES_OK)
            return;
        if (m_driver_features_select == 0)
            set_low(m_driver_features, value);
        else if (m_driver_features_select == 1)
            set_high(m_driver_features, value);
        return;
    case mmio::DRIVER_FEATURES_SEL:
        m_driver_features_select = value;
        return;
    case mmio::QUEUE_SEL:
        m_queue_select = value;
        return;
    case mmio::QUEUE_NUM:
        // A size above QueueNumMax is stored as 0, which activation refuses,
        // rather than truncated into a valid-looking one.
        if (configurable)
            configurable->layout.size = value <= MAX_QUEUE_SIZE ? static_cast<std::uint16_t>(value) : 0;
        return;
    case mmio::QUEUE_READY:
        // The queues went to the device at DRIVER_OK; afterwards the
        // register only reads back what was written (§4.2.2 QueueReady).
        if (queue)
            queue->ready = value != 0;
        return;
    case mmio::QUEUE_DESC_LOW:
        if (configurable)
            set_low(configurable->layout.descriptor_table, value);
        return;
    case mmio::QUEUE_DESC_HIGH:
        if (configurable)
            set_high(configurable->layout.descriptor_table, value);
        return;
    case mmio::QUEUE_DRIVER_LOW:
        if (configurable)
            set_low(configurable->layout.available_ring, value);
        return;
    case mmio::QUEUE_DRIVER_HIGH:
        if (configurable)
            set_high(configurable->layout.available_ring, value);
        return;
    case mmio::QUEUE_DEVICE_LOW:
        if (configurable)
            set_low(configurable->layout.used_ring, value);
        return;
    case mmio::QUEUE_DEVICE_HIGH:
        if (configurable)
            set_high(configurable->layout.used_ring, value);
        return;
    case mmio::INTERRUPT_ACK:
        m_interrupt_status.fetch_and(~value, std::memory_order_acq_rel);
        return;
    case mmio::STATUS:
        write_status(value);
        return;
    default:
        // Read-only registers, SHMSel (no regions) and unknown offsets.
        return;
    }
}

bool MmioTransport::features_acceptable() const
{
    std::uint64_t offered = m_device.device_features() | VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX;
    // §6.2: a device may refuse a driver that does not accept VERSION_1 (it
    // would speak the legacy layout); §2.2.2: and any bit it did not offer.
    return (m_driver_features & VIRTIO_F_VERSION_1) != 0 && (m_driver_features & ~offered) == 0;
}

void MmioTransport::write_status(std::uint32_t value)
{
    // §2.4, §4.2.2: writing 0 resets the device.
    if (value == 0) {
        reset_locked();
        return;
    }
    // DEVICE_NEEDS_RESET is the device's to set (§2.1); the driver's bits
    // only accumulate (§2.1.1), so DRIVER_OK can be reached once per reset.
    std::uint32_t added = value & ~m_status & ~status::DEVICE_NEEDS_RESET;
    if ((added & status::FEATURES_OK) && !features_acceptable())
        added &= ~status::FEATURES_OK; // §2.2.2: the driver reads it back clear
    bool const activate = (added & status::DRIVER_OK) != 0;
    m_status |= added;
    if (activate)
        activate_locked();
}

void MmioTransport::activate_locked()
{
    auto fail = [this](std::string why) {
        if (m_notice)
            m_notice(Notice { Severity::Warning, fmt::format("virtio-mmio device {}: {}", m_device.device_id(), why) });
        needs_reset();
    };
    // §3.1.1: DRIVER_OK comes after the features were accepted.
    if (!(m_status & status::FEATURES_OK))
        return fail("DRIVER_OK without FEATURES_OK");

    Activation activation;
    activation.features = m_driver_features;
    bool const event_index = (m_driver_features & VIRTIO_F_EVENT_IDX) != 0;
    activation.queues.resize(m_queue_registers.size());
    for (std::size_t index = 0; index < m_queue_registers.size(); ++index) {
        auto const& registers = m_queue_registers[index];
        if (!registers.ready)
            continue;
        auto queue = Queue::activate(m_memory, registers.layout, event_index);
        if (queue.is_error())
            return fail(fmt::format("queue {}: {}", index, queue.error().message()));
        activation.queues[index] = queue.release_value();
    }
    auto activated = m_device.activate(std::move(activation));
    if (activated.is_error())
        return fail(activated.error().message());
}

void MmioTransport::reset_locked()
{
    // The device first: once reset() returns, its thread no longer uses the
    // queues or raises interrupts for the old driver, so what is cleared
    // below stays clear.
    m_device.reset();
    m_status = 0;
    m_device_features_select = 0;
    m_driver_features_select = 0;
    m_driver_features = 0;
    m_queue_select = 0;
    std::fill(m_queue_registers.begin(), m_queue_registers.end(), QueueRegisters {});
    m_interrupt_status.store(0, std::memory_order_release);
    m_needs_reset.store(false, std::memory_order_release);
    // Notifications for the old queues mean nothing to the new driver.
    for (auto const& fd : m_notify)
        sys::clear_event(fd.get());
}

void MmioTransport::raise(Interrupt reason)
{
    m_interrupt_status.fetch_or(static_cast<std::uint32_t>(reason), std::memory_order_acq_rel);
    if (m_irq_fd >= 0)
        sys::signal_event(m_irq_fd);
}

void MmioTransport::needs_reset()
{
    m_needs_reset.store(true, std::memory_order_release);
    // §2.1.2: after DEVICE_NEEDS_RESET, a configuration change notification.
    raise(Interrupt::ConfigChange);
}

void MmioTransport::config_changed()
{
    m_config_generation.fetch_add(1, std::memory_order_acq_rel);
    raise(Interrupt::ConfigChange);
}

} // namespace qtbox::devices::virtio
