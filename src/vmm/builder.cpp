// The builder half of Machine (machine_state.hpp): Machine::create turns a
// MachineConfig into a VM ready to run. The run loop is in machine.cpp.
#include <qtbox/base/sys.hpp>
#include <qtbox/base/program.hpp>
#include <qtbox/boot/cpu.hpp>
#include <qtbox/boot/cpuid.hpp>
#include <qtbox/boot/layout.hpp>
#include <qtbox/devices/i8042.hpp>
#include <qtbox/devices/serial_8250.hpp>
#include <qtbox/devices/virtio/mmio.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/vsock/address.hpp>
#include <qtbox/vmm/console_server.hpp>
#include <qtbox/vmm/loader.hpp>
#include <qtbox/vmm/machine.hpp>

#include "machine_state.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <sched.h>
#include <string_view>
#include <unistd.h>

namespace qtbox::vmm {

namespace {

struct Capability {
    long id;
    char const* name;
};

constexpr Capability REQUIRED_CAPABILITIES[] = {
    { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
    { KVM_CAP_PIT2, "KVM_CAP_PIT2" },
    { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
    { KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR" },
    { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    { KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
    { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
};

// What the host's KVM must offer, and how many vCPUs it allows.
ErrorOr<void> check_host(kvm::System const& system, std::uint32_t cpus)
{
    if (cpus == 0 || cpus > MAX_VCPUS)
        return Error::from_string(fmt::format("{} vCPUs: between 1 and {} are supported", cpus, MAX_VCPUS));
    for (auto const& capability : REQUIRED_CAPABILITIES)
        TRY(system.require_extension(capability.id, capability.name));
    int max_vcpus = system.check_extension(KVM_CAP_MAX_VCPUS);
    if (max_vcpus <= 0)
        max_vcpus = system.check_extension(KVM_CAP_NR_VCPUS);
    if (max_vcpus > 0 && cpus > static_cast<std::uint32_t>(max_vcpus))
        return Error::from_string(fmt::format("{} vCPUs requested; this KVM allows {}", cpus, max_vcpus));
    return {};
}

// Every CPU the vCPU threads are to be pinned to must be one this process
// may run on (online, and in its cpuset and affinity mask), or
// sched_setaffinity in the vCPU thread would fail after the VM is built.
ErrorOr<void> check_affinity(std::vector<unsigned> const& cpus)
{
    if (cpus.empty())
        return {};
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
        return Error::from_errno("sched_getaffinity");
    for (unsigned cpu : cpus) {
        if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
            // The allowed CPUs as ranges, "0-3,8".
            std::string mine;
            for (unsigned i = 0; i < CPU_SETSIZE; ++i) {
                if (!CPU_ISSET(i, &allowed))
                    continue;
                unsigned last = i;
                while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &allowed))
                    ++last;
                mine += fmt::format("{}{}", mine.empty() ? "" : ",", last == i ? fmt::format("{}", i) : fmt::format("{}-{}", i, last));
                i = last;
            }
            return Error::from_string(fmt::format("--cpu-list: CPU {} is not one this process may run on (it may use {})", cpu, mine));
        }
    }
    return {};
}

// Before any vCPU (api.rst): the TSS and identity-map pages, then the
// in-kernel PIC/IOAPIC/LAPIC and the PIT (its speaker port handled in the
// kernel too, so port 0x61 never exits); then guest memory.
ErrorOr<void> set_up_vm(Machine::State& s)
{
    using namespace boot;
    TRY(s.vm.set_tss_address(KVM_TSS_ADDRESS));
    if (s.vm.check_extension(KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0)
        TRY(s.vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS));
    TRY(s.vm.create_irqchip());
    TRY(s.vm.create_pit2(KVM_PIT_SPEAKER_DUMMY));
    TRY(s.memory.register_with(s.vm));
    return {};
}

// Host bytes for COM1's receive side: read on the event-loop thread while
// the UART's FIFO has room, until the input ends or fails.
PollSource serial_input(devices::Serial8250& serial, int input_fd)
{
    auto open = std::make_shared<bool>(true);
    PollSource source;
    source.fd = input_fd;
    source.events = EPOLLIN;
    source.wanted = [&serial, open] { return *open && serial.input_space() > 0; };
    source.ready = [&serial, input_fd, open](std::uint32_t) {
        std::uint8_t buffer[devices::Serial8250::FIFO_SIZE];
        std::size_t space = serial.input_space();
        ssize_t n = ::read(input_fd, buffer, std::min(space, sizeof(buffer)));
        if (n > 0)
            serial.enqueue_input(ByteView(buffer, static_cast<std::size_t>(n)));
        else if (n == 0 || (errno != EINTR && errno != EAGAIN))
            *open = false;
    };
    return source;
}

// COM1 (an 8250 on the in-kernel irqchip through an irqfd, writing to the
// console, reading `input_fd` when there is one).
ErrorOr<void> add_serial(Machine::State& s, int input_fd)
{
    using namespace boot;
    auto irq = TRY(sys::eventfd());
    int irq_fd = irq.get();
    s.device_fds.push_back(std::move(irq));
    TRY(s.vm.add_irqfd(irq_fd, COM1_GSI));
    auto serial = std::make_unique<devices::Serial8250>(
        [&console = s.console](std::uint8_t byte) { console.write_byte(byte); },
        [irq_fd] { sys::signal_event(irq_fd); });
    TRY(s.pio.insert(COM1_PORT, devices::Serial8250::PORT_COUNT, *serial));
    if (input_fd >= 0)
        s.poll_sources.push_back(serial_input(*serial, input_fd));
    s.devices.push_back(std::move(serial));
    return {};
}

// The i8042's reset line: 0xFE on port 0x64 is how the guest reboots.
ErrorOr<void> add_i8042(Machine::State& s)
{
    auto i8042 = std::make_unique<devices::I8042>(
        [&s] { s.request_stop({ Stop::GuestReset, 0, "the guest rebooted" }); });
    TRY(s.pio.insert(boot::I8042_DATA_PORT, devices::I8042::PORT_COUNT, *i8042));
    s.devices.push_back(std::move(i8042));
    return {};
}

// The parent's wall clock for the heartbeat's answer, which sets the
// enclave's clock.
std::uint64_t wall_clock_ns()
{
    timespec now {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(now.tv_nsec);
}

// "ready\n" on the ready fd, once (docs/FORMATS.md §11, --ready-fd).
void announce_ready(int fd)
{
    if (fd < 0)
        return;
    static constexpr std::string_view READY = "ready\n";
    // One short write to a pipe or socket the starter reads; if the
    // starter has gone away the line is simply lost.
    [[maybe_unused]] auto written = ::write(fd, READY.data(), READY.size());
}

// The virtio-vsock device behind a virtio-mmio transport in the first
// virtio slot: its window on the MMIO bus, its GSI through an irqfd, one
// ioeventfd per queue on QueueNotify, and the services served inside the
// VMM (the heartbeat and the QTSM, docs/FORMATS.md §6). Returns the DSDT entry.
ErrorOr<boot::VirtioMmioDevice> add_vsock(Machine::State& s, kvm::System const& system, MachineConfig::Vsock const& config)
{
    using namespace devices::virtio;
    VsockConfig device_config;
    device_config.guest_cid = config.guest_cid;
    device_config.listener_dir = config.listener_dir;
    device_config.host_socket_path = config.host_socket_path;
    device_config.host_listener = config.host_listener;
    device_config.notice = s.notice;
    int ready_fd = config.ready_fd;
    device_config.services[vsock::HEARTBEAT_PORT] = std::make_shared<HeartbeatService>(
        wall_clock_ns, [ready_fd] { announce_ready(ready_fd); });
    if (config.qtsm)
        device_config.services[vsock::QTSM_PORT] = config.qtsm;
    s.vsock = TRY(VsockDevice::create(std::move(device_config), s.loop));

    auto irq = TRY(sys::eventfd());
    int irq_fd = irq.get();
    s.device_fds.push_back(std::move(irq));
    TRY(s.vm.add_irqfd(irq_fd, boot::VIRTIO_FIRST_GSI));
    s.vsock_transport = TRY(MmioTransport::create(*s.vsock, s.memory, irq_fd));
    TRY(s.vsock->attach(*s.vsock_transport));
    TRY(s.mmio.insert(boot::VIRTIO_MMIO_BASE, boot::VIRTIO_MMIO_SIZE, *s.vsock_transport));
    // A notification then never leaves the kernel (the transport signals
    // the same eventfd itself where KVM has no ioeventfd).
    if (system.check_extension(KVM_CAP_IOEVENTFD) > 0) {
        for (std::size_t queue = 0; queue < s.vsock_transport->queue_count(); ++queue)
            TRY(s.vm.add_ioeventfd(s.vsock_transport->notify_fd(queue), boot::VIRTIO_MMIO_BASE + mmio::QUEUE_NOTIFY, 4, queue));
    }
    // A QueueNotify that reaches the transport (no ioeventfd) is written
    // to the queue's eventfd by the vCPU thread; the device writes its own
    // eventfds (seccomp allow-lists, vmm/seccomp.hpp).
    for (std::size_t queue = 0; queue < s.vsock_transport->queue_count(); ++queue) {
        s.write_fds.push_back(s.vsock_transport->notify_fd(queue));
        s.read_fds.push_back(s.vsock_transport->notify_fd(queue));
    }
    for (int fd : s.vsock->event_fds())
        s.write_fds.push_back(fd);
    return boot::VirtioMmioDevice { boot::VIRTIO_MMIO_BASE, static_cast<std::uint32_t>(boot::VIRTIO_MMIO_SIZE), boot::VIRTIO_FIRST_GSI };
}

// The kernel, command line and tables in guest memory, the initrds filled
// in place; returns the entry point.
ErrorOr<std::uint64_t> load_guest(Machine::State& s, boot::BzImage const& image, MachineConfig const& config,
    std::vector<boot::VirtioMmioDevice> const& virtio_devices)
{
    boot::AcpiConfig acpi;
    acpi.vcpu_count = config.cpus;
    acpi.virtio_devices = virtio_devices;
    LoadedGuest guest = TRY(load_linux(s.memory, image, config.initrd_sizes, config.cmdline, acpi));
    std::vector<std::span<std::uint8_t>> slots;
    for (auto const& slot : guest.initrds)
        slots.push_back(TRY(s.memory.slice(slot.address, slot.size)));
    if (!slots.empty()) {
        if (!config.fill_initrds)
            return Error::from_string("no source for the initrds");
        TRY(config.fill_initrds(slots));
    }
    return guest.entry;
}

// Every vCPU with its CPUID, MSRs and registers for the 64-bit entry at
// `entry`, its LAPIC's LINT pins wired.
ErrorOr<void> create_vcpus(Machine::State& s, kvm::System const& system, std::uint32_t cpus, std::uint64_t entry)
{
    using namespace boot;
    auto cpuid = TRY(system.supported_cpuid());
    bool tsc_deadline = system.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    std::size_t run_size = TRY(system.vcpu_mmap_size());
    auto msrs = boot_msrs();
    s.vcpus.reserve(cpus);
    for (std::uint32_t index = 0; index < cpus; ++index) {
        auto vcpu = TRY(s.vm.create_vcpu(index, run_size));
        auto entries = cpuid;
        normalize_cpuid(entries, { index, cpus, tsc_deadline });
        TRY(vcpu.set_cpuid(entries));
        TRY(vcpu.set_msrs(msrs));
        TRY(vcpu.set_regs(boot_regs(entry)));
        TRY(vcpu.set_fpu(boot_fpu()));
        auto sregs = TRY(vcpu.get_sregs());
        TRY(vcpu.set_sregs(long_mode_sregs(sregs)));
        auto lapic = TRY(vcpu.get_lapic());
        TRY(vcpu.set_lapic(wire_lapic_lints(lapic)));
        s.vcpus.push_back(std::move(vcpu));
    }
    return {};
}

} // namespace

ErrorOr<std::unique_ptr<Machine>> Machine::create(kvm::System const& system, MachineConfig const& config)
{
    TRY(check_host(system, config.cpus));
    boot::BzImage image = TRY(boot::parse_bzimage(config.kernel));
    TRY(check_affinity(config.cpu_affinity));
    auto memory = TRY(kvm::GuestMemory::create(boot::ram_regions(config.memory_bytes), config.hugepage_size_mib, config.memory_lock));
    auto vm = TRY(system.create_vm());

    auto loop = TRY(net::EventLoop::create());
    auto state = std::make_unique<State>(std::move(vm), std::move(memory), config.console_fd, std::move(loop));
    State& s = *state;
    s.seccomp = config.seccomp;
    s.cpu_affinity = config.cpu_affinity;
    s.notice = config.notice;
    s.stop_event = TRY(sys::eventfd());
    TRY(set_up_vm(s));
    TRY(add_serial(s, config.input_fd));
    if (!config.console_socket.empty()) {
        s.console_server = TRY(ConsoleServer::create(config.console_socket, s.console.ring(), s.loop, config.console_listener));
        // The ring wakes the server from the vCPU threads.
        s.write_fds.push_back(s.console_server->wake_fd());
    }
    TRY(add_i8042(s));
    std::vector<boot::VirtioMmioDevice> virtio_devices;
    if (config.vsock) {
        virtio_devices.push_back(TRY(add_vsock(s, system, *config.vsock)));
        if (config.vsock->ready_fd >= 0)
            s.write_fds.push_back(config.vsock->ready_fd);
    }

    // The only fds the threads may write once their filters are on.
    s.write_fds.push_back(config.console_fd);
    s.write_fds.push_back(s.stop_event.get());
    for (auto const& fd : s.device_fds)
        s.write_fds.push_back(fd.get());
    // Where the applet's lines go (program.hpp; stderr under the dispatcher).
    if (report_fd() >= 0)
        s.write_fds.push_back(report_fd());

    std::uint64_t entry = TRY(load_guest(s, image, config, virtio_devices));
    TRY(create_vcpus(s, system, config.cpus, entry));
    return std::unique_ptr<Machine>(new Machine(std::move(state)));
}

} // namespace qtbox::vmm
