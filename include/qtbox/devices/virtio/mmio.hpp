// The virtio-mmio transport, version 2 (virtio 1.2 §4.2.2), and the
// interface a virtio device implements behind it.
//
// The transport is a BusDevice on the MMIO bus: vCPU threads read and write
// its registers (every access under one mutex). It owns feature
// negotiation (VIRTIO_F_VERSION_1 is required: a driver that does not
// accept it cannot set FEATURES_OK), the queue registers, InterruptStatus/
// InterruptACK, Status and ConfigGeneration, and hands the device its
// checked queues when the driver sets DRIVER_OK.
//
// Notifications: each queue has an eventfd. The builder registers it as a
// KVM ioeventfd on QueueNotify with the queue index as datamatch, so a
// guest notification never leaves the kernel; a QueueNotify write that does
// reach the transport (no ioeventfd support) signals the same eventfd. The
// device's event-loop thread waits on these fds (notify_fd).
//
// Registers are 32-bit (§4.2.2.2: the driver uses 32-bit aligned accesses
// only): any other access to the register area reads 0 and a write is
// ignored. The device configuration space (from CONFIG) goes to the Device
// with the width the driver used.
//
// Status bits only accumulate (§2.1.1: the driver never clears one) until
// the driver writes 0, which resets the device, every register and every
// queue (ConfigGeneration excepted: it keeps counting, so a driver never
// mistakes a new configuration for one it read before the reset).
// FEATURES_OK stays clear unless the driver accepted VERSION_1 and only
// bits the device offered (§2.2.2, §6.2); DriverFeatures is fixed from then
// on. Queue registers take writes only while the selected queue is not
// ready (§4.2.2.2) and read back what was written; the queues are handed to
// the device once, at DRIVER_OK, and later QueueReady writes change only
// what the register reads back.
//
// Interrupts: the device calls raise(UsedBuffer) from its thread; the
// transport sets InterruptStatus and signals the irqfd, which KVM turns into
// an edge on the device's GSI (the DSDT declares it edge-triggered). A
// driver reads InterruptStatus, then writes InterruptACK.
//
// Reset (Status = 0) and activation (DRIVER_OK) run on the vCPU thread that
// wrote Status; the device locks its own state against its event-loop
// thread, so neither sees a half-reset device.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/devices/bus.hpp>
#include <qtbox/devices/virtio/queue.hpp>
#include <qtbox/kvm/memory.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace qtbox::devices::virtio {

// Register offsets (§4.2.2).
namespace mmio {
constexpr std::uint64_t MAGIC_VALUE = 0x000;
constexpr std::uint64_t VERSION = 0x004;
constexpr std::uint64_t DEVICE_ID = 0x008;
constexpr std::uint64_t VENDOR_ID = 0x00C;
constexpr std::uint64_t DEVICE_FEATURES = 0x010;
constexpr std::uint64_t DEVICE_FEATURES_SEL = 0x014;
constexpr std::uint64_t DRIVER_FEATURES = 0x020;
constexpr std::uint64_t DRIVER_FEATURES_SEL = 0x024;
constexpr std::uint64_t QUEUE_SEL = 0x030;
constexpr std::uint64_t QUEUE_NUM_MAX = 0x034;
constexpr std::uint64_t QUEUE_NUM = 0x038;
constexpr std::uint64_t QUEUE_READY = 0x044;
constexpr std::uint64_t QUEUE_NOTIFY = 0x050;
constexpr std::uint64_t INTERRUPT_STATUS = 0x060;
constexpr std::uint64_t INTERRUPT_ACK = 0x064;
constexpr std::uint64_t STATUS = 0x070;
constexpr std::uint64_t QUEUE_DESC_LOW = 0x080;
constexpr std::uint64_t QUEUE_DESC_HIGH = 0x084;
constexpr std::uint64_t QUEUE_DRIVER_LOW = 0x090;
constexpr std::uint64_t QUEUE_DRIVER_HIGH = 0x094;
constexpr std::uint64_t QUEUE_DEVICE_LOW = 0x0A0;
constexpr std::uint64_t QUEUE_DEVICE_HIGH = 0x0A4;
// Shared memory regions (§4.2.2): this transport has none, so SHMLen reads
// as -1 ("no such region") for every SHMSel.
constexpr std::uint64_t SHM_SEL = 0x0AC;
constexpr std::uint64_t SHM_LEN_LOW = 0x0B0;
constexpr std::uint64_t SHM_LEN_HIGH = 0x0B4;
constexpr std::uint64_t SHM_BASE_LOW = 0x0B8;
constexpr std::uint64_t SHM_BASE_HIGH = 0x0BC;
constexpr std::uint64_t CONFIG_GENERATION = 0x0FC;
constexpr std::uint64_t CONFIG = 0x100;
constexpr std::uint64_t WINDOW_SIZE = 0x1000;

constexpr std::uint32_t MAGIC = 0x74726976; // "virt"
constexpr std::uint32_t TRANSPORT_VERSION = 2;
constexpr std::uint32_t VENDOR = 0x5154424F; // "QTBO", any value is allowed
} // namespace mmio

// Device status bits (§2.1).
namespace status {
constexpr std::uint32_t ACKNOWLEDGE = 1;
constexpr std::uint32_t DRIVER = 2;
constexpr std::uint32_t DRIVER_OK = 4;
constexpr std::uint32_t FEATURES_OK = 8;
constexpr std::uint32_t DEVICE_NEEDS_RESET = 64;
constexpr std::uint32_t FAILED = 128;
} // namespace status

// Feature bits the transport itself deals with (§6).
constexpr std::uint64_t VIRTIO_F_EVENT_IDX = 1ull << 29;
constexpr std::uint64_t VIRTIO_F_VERSION_1 = 1ull << 32;

// InterruptStatus bits (§4.2.2).
enum class Interrupt : std::uint32_t {
    UsedBuffer = 1,
    ConfigChange = 2,
};

// What the transport hands a device at DRIVER_OK: the negotiated features
// (transport bits included) and one Queue per queue_count(), activated where
// the driver made it ready (is_ready() false otherwise). The device owns
// them until reset().
struct Activation {
    std::uint64_t features { 0 };
    std::vector<Queue> queues;
};

class Device {
public:
    virtual ~Device() = default;

    virtual std::uint32_t device_id() const = 0;
    // Device-specific feature bits; the transport adds VERSION_1 and
    // EVENT_IDX.
    virtual std::uint64_t device_features() const = 0;
    virtual std::size_t queue_count() const = 0;
    // Device-specific configuration space (§4.2.2 Config): reads past its
    // end return zeros; the default config is read-only.
    virtual void read_config(std::uint64_t offset, std::span<std::uint8_t> data) const = 0;
    virtual void write_config(std::uint64_t, ByteView) { }

    // DRIVER_OK with every queue the driver made ready checked. An error
    // makes the transport set DEVICE_NEEDS_RESET.
    virtual ErrorOr<void> activate(Activation activation) = 0;
    // The driver wrote 0 to Status (or the VM is stopping): drop every
    // queue and all device state that depended on the driver.
    virtual void reset() = 0;
};

class MmioTransport final : public BusDevice {
public:
    // `irq_fd`: the irqfd of the device's GSI (not owned; -1 for none).
    // Creates one notification eventfd per queue. `notice` hears why an
    // activation failed (a warning, from the vCPU thread that wrote Status,
    // under the transport's lock: it must not call back into the transport).
    static ErrorOr<std::unique_ptr<MmioTransport>> create(Device& device, kvm::GuestMemory const& memory, int irq_fd,
        NoticeSink notice = {});

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, ByteView data) override;

    // The eventfd a notification of `queue` signals (for KVM_IOEVENTFD and
    // for the device's event loop).
    int notify_fd(std::size_t queue) const { return m_notify[queue].get(); }
    std::size_t queue_count() const { return m_notify.size(); }

    // From the device's thread: sets the bit and signals the irqfd. Takes
    // no lock (the device may hold its own, which a vCPU thread in reset()
    // waits for while holding the transport's).
    void raise(Interrupt reason);
    // Marks the device broken (DEVICE_NEEDS_RESET) and tells the driver
    // with a configuration-change interrupt (§2.1.2). Lock-free as raise().
    void needs_reset();
    // The device changed its configuration space: bumps ConfigGeneration
    // (§4.2.2) and raises ConfigChange. Lock-free as raise().
    void config_changed();

private:
    MmioTransport(Device& device, kvm::GuestMemory const& memory, int irq_fd, std::vector<UniqueFd> notify, NoticeSink notice);

    struct QueueRegisters {
        QueueLayout layout;
        bool ready { false };
    };

    std::uint32_t read_register(std::uint64_t offset);
    void write_register(std::uint64_t offset, std::uint32_t value);
    void write_status(std::uint32_t value);
    bool features_acceptable() const;
    void activate_locked();
    void reset_locked();

    Device& m_device;
    kvm::GuestMemory const& m_memory;
    int m_irq_fd;
    std::vector<UniqueFd> m_notify;
    NoticeSink m_notice;

    mutable std::mutex m_mutex;
    std::uint32_t m_status { 0 };
    std::uint32_t m_device_features_select { 0 };
    std::uint32_t m_driver_features_select { 0 };
    std::uint64_t m_driver_features { 0 };
    std::uint32_t m_queue_select { 0 };
    std::vector<QueueRegisters> m_queue_registers;
    // Written from the device's thread without m_mutex (see raise()).
    std::atomic<std::uint32_t> m_config_generation { 0 };
    std::atomic<std::uint32_t> m_interrupt_status { 0 };
    std::atomic<bool> m_needs_reset { false };
};

} // namespace qtbox::devices::virtio
