// Private to src/vmm: the Machine's state, shared by its two halves.
//
//   builder.cpp   Machine::create: config → VM, guest memory, irqchip and
//                 PIT, the devices on their buses, the loaded guest and the
//                 vCPUs set up for the 64-bit entry
//   machine.cpp   Machine::run: the vCPU threads and their exits, the event
//                 loop (signals, console, panic deadline, the devices'
//                 fds), stopping and joining
//
// The run loop never names a device. A device is added in the builder
// alone: it goes on a bus and into `devices`, the fds behind its
// interrupts into `device_fds`, and every fd it needs serviced on the
// event-loop thread is registered with `loop` (queue notifications and
// sockets, by the virtio devices themselves) or becomes a PollSource (an
// fd whose interest depends on device state, such as COM1's input).
#pragma once

#include <qtbox/base/fd.hpp>
#include <qtbox/devices/bus.hpp>
#include <qtbox/devices/virtio/mmio.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/kvm/memory.hpp>
#include <qtbox/kvm/vcpu.hpp>
#include <qtbox/kvm/vm.hpp>
#include <qtbox/net/event_loop.hpp>
#include <qtbox/vmm/console.hpp>
#include <qtbox/vmm/console_server.hpp>
#include <qtbox/vmm/machine.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace qtbox::vmm {

// An fd the event loop watches on a device's behalf while the device wants
// it; both callbacks run on the event-loop thread.
struct PollSource {
    int fd { -1 };
    std::uint32_t events { EPOLLIN };
    // Asked before every wait; false takes the fd out of the loop's
    // interest (a receive FIFO with no room, an input that has ended).
    // Empty: always.
    std::function<bool()> wanted;
    // The fd is ready (`events`, EPOLLHUP or EPOLLERR); gets the events.
    std::function<void(std::uint32_t events)> ready;
};

struct Machine::State {
    State(kvm::Vm vm_, kvm::GuestMemory memory_, int console_fd, net::EventLoop loop_)
        : vm(std::move(vm_)), memory(std::move(memory_)), console(console_fd), loop(std::move(loop_)) { }

    // Any thread: records the first outcome and wakes the event loop.
    void request_stop(Outcome outcome);

    // The run loop (machine.cpp).
    void vcpu_main(kvm::Vcpu& vcpu);
    void handle_io(kvm::IoAccess const& io);
    void handle_mmio(kvm::MmioAccess const& mmio);

    // Made by the builder; fixed once run() starts.
    kvm::Vm vm;
    kvm::GuestMemory memory;
    Console console;
    std::vector<kvm::Vcpu> vcpus;
    devices::Bus pio;
    devices::Bus mmio;
    std::vector<std::unique_ptr<devices::BusDevice>> devices;
    std::vector<UniqueFd> device_fds; // eventfds behind the devices' interrupts
    std::vector<PollSource> poll_sources;
    // The event-loop thread's epoll set; the vsock device registers its
    // queue notifications and sockets here. Declared before the device,
    // which must go first.
    net::EventLoop loop;
    std::unique_ptr<devices::virtio::VsockDevice> vsock;
    std::unique_ptr<devices::virtio::MmioTransport> vsock_transport; // refers to *vsock
    // --console-socket: serves the console's ring on `loop` (declared after both).
    std::unique_ptr<ConsoleServer> console_server;
    NoticeSink notice;
    UniqueFd stop_event;
    bool seccomp { true };
    std::vector<unsigned> cpu_affinity; // MachineConfig::cpu_affinity
    std::vector<int> write_fds; // console, event fds, stderr
    std::vector<int> read_fds;  // what a vCPU thread reads: virtio notification eventfds

    // The run.
    std::atomic<bool> stopping { false };
    std::atomic<std::size_t> exited { 0 }; // vCPU threads that have returned
    std::mutex outcome_mutex;
    std::optional<Outcome> result;
    std::vector<std::thread> threads;
};

} // namespace qtbox::vmm
