#include <qtbox/base/log.hpp>
#include <qtbox/boot/cpu.hpp>
#include <qtbox/boot/cpuid.hpp>
#include <qtbox/boot/layout.hpp>
#include <qtbox/devices/bus.hpp>
#include <qtbox/devices/i8042.hpp>
#include <qtbox/devices/serial_8250.hpp>
#include <qtbox/kvm/memory.hpp>
#include <qtbox/kvm/vm.hpp>
#include <qtbox/vmm/console.hpp>
#include <qtbox/vmm/loader.hpp>
#include <qtbox/vmm/machine.hpp>
#include <qtbox/vmm/seccomp.hpp>

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <optional>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <thread>
#include <unistd.h>

namespace qtbox::vmm {

namespace {

// The signal that kicks a vCPU thread out of KVM_RUN (Firecracker uses the
// same): its handler sets immediate_exit in that thread's kvm_run page, so a
// kick that lands just before KVM_RUN is not lost.
int kick_signal() { return SIGRTMIN; }
thread_local kvm_run* t_kick_target = nullptr;

void on_kick(int)
{
    if (kvm_run* run = t_kick_target)
        run->immediate_exit = 1;
}

// How often the event loop wakes to flush a partial console line and to
// check the panic deadline.
constexpr int TICK_MS = 50;
// How often a stopping VM re-kicks the vCPU threads that are not out yet.
constexpr int KICK_INTERVAL_MS = 20;
// How long the stopped VM waits for a slow console reader to take the last
// partial line before dropping it.
constexpr int FINAL_FLUSH_MS = 500;

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

// KVM_INTERNAL_ERROR_* (linux/kvm.h).
std::string internal_error_name(std::uint32_t suberror)
{
    switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION:
        return "instruction emulation failed";
    case KVM_INTERNAL_ERROR_SIMUL_EX:
        return "exception while delivering an exception";
    case KVM_INTERNAL_ERROR_DELIVERY_EV:
        return "exit while delivering an event";
    case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
        return "unexpected exit reason";
    default:
        return fmt::format("suberror {}", suberror);
    }
}

// " at RIP 0x..." for crash reports (empty if the registers are unreadable).
std::string where(kvm::Vcpu const& vcpu)
{
    auto regs = vcpu.get_regs();
    return regs.is_error() ? std::string() : fmt::format(" at RIP {:#x}", regs.value().rip);
}

void signal_event(int fd)
{
    std::uint64_t one = 1;
    // An eventfd write only fails when the counter would overflow, which
    // means the event is pending anyway.
    [[maybe_unused]] auto written = ::write(fd, &one, sizeof(one));
}

ErrorOr<UniqueFd> make_eventfd()
{
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return Error::from_errno("eventfd");
    return UniqueFd(fd);
}

} // namespace

struct Machine::State {
    State(kvm::Vm vm_, kvm::GuestMemory memory_, int console_fd)
        : vm(std::move(vm_)), memory(std::move(memory_)), console(console_fd) { }

    void request_stop(Outcome outcome)
    {
        {
            std::lock_guard lock(outcome_mutex);
            if (!result)
                result = std::move(outcome);
        }
        stopping.store(true);
        signal_event(stop_event.get());
    }

    void vcpu_main(kvm::Vcpu& vcpu);
    void handle_io(kvm::IoAccess const& io);
    void handle_mmio(kvm::MmioAccess const& mmio);

    kvm::Vm vm;
    kvm::GuestMemory memory;
    Console console;
    std::vector<kvm::Vcpu> vcpus;
    devices::Bus pio;
    devices::Bus mmio;
    std::unique_ptr<devices::Serial8250> serial;
    std::unique_ptr<devices::I8042> i8042;
    UniqueFd serial_irq;
    UniqueFd stop_event;
    int input_fd { -1 };
    bool seccomp { true };
    std::vector<int> write_fds; // console, event fds, stderr

    std::atomic<bool> stopping { false };
    std::atomic<std::size_t> exited { 0 }; // vCPU threads that have returned
    std::mutex outcome_mutex;
    std::optional<Outcome> result;
    std::vector<std::thread> threads;
};

void Machine::State::handle_io(kvm::IoAccess const& io)
{
    // rep ins/outs: `count` accesses of `size` bytes each.
    for (std::uint32_t i = 0; i < io.count; ++i) {
        auto chunk = io.data.subspan(static_cast<std::size_t>(i) * io.size, io.size);
        if (io.is_write)
            pio.write(io.port, chunk);
        else
            pio.read(io.port, chunk);
    }
}

void Machine::State::handle_mmio(kvm::MmioAccess const& access)
{
    if (access.is_write)
        mmio.write(access.address, access.data);
    else
        mmio.read(access.address, access.data);
}

void Machine::State::vcpu_main(kvm::Vcpu& vcpu)
{
    struct Exited {
        std::atomic<std::size_t>& count;
        ~Exited() { count.fetch_add(1); }
    } exited_guard { exited };
    t_kick_target = vcpu.run_page();
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (seccomp) {
        if (auto installed = install_vcpu_filter(write_fds); installed.is_error()) {
            request_stop({ Stop::Failure, 0, installed.error().message() });
            return;
        }
    }
    while (!stopping.load()) {
        auto result_or_error = vcpu.run();
        if (result_or_error.is_error()) {
            request_stop({ Stop::Failure, 0, result_or_error.error().message() });
            break;
        }
        auto const& exit = result_or_error.value();
        switch (exit.reason) {
        case kvm::ExitReason::Io:
            handle_io(exit.io);
            break;
        case kvm::ExitReason::Mmio:
            handle_mmio(exit.mmio);
            break;
        case kvm::ExitReason::Interrupted:
            vcpu.run_page()->immediate_exit = 0;
            break;
        case kvm::ExitReason::Shutdown:
            request_stop({ Stop::TripleFault, 0, fmt::format("triple fault on vCPU {}{}", vcpu.id(), where(vcpu)) });
            break;
        case kvm::ExitReason::SystemEvent:
            if (exit.system_event == KVM_SYSTEM_EVENT_CRASH)
                request_stop({ Stop::GuestPanic, 0, fmt::format("guest reported a crash on vCPU {}", vcpu.id()) });
            else
                request_stop({ Stop::GuestReset, 0, fmt::format("guest system event {} on vCPU {}", exit.system_event, vcpu.id()) });
            break;
        case kvm::ExitReason::FailEntry:
            request_stop({ Stop::Failure, 0,
                fmt::format("VM entry failed on vCPU {} (hardware reason {:#x})", vcpu.id(), exit.hardware_reason) });
            break;
        case kvm::ExitReason::InternalError:
            request_stop({ Stop::Failure, 0,
                fmt::format("KVM internal error on vCPU {}{} ({})", vcpu.id(), where(vcpu), internal_error_name(exit.internal_suberror)) });
            break;
        case kvm::ExitReason::Halt:
            request_stop({ Stop::Failure, 0, fmt::format("vCPU {} halted outside the in-kernel LAPIC", vcpu.id()) });
            break;
        case kvm::ExitReason::Other:
            request_stop({ Stop::Failure, 0, fmt::format("unhandled KVM exit {} on vCPU {}", exit.raw_reason, vcpu.id()) });
            break;
        }
    }
}

Machine::Machine(std::unique_ptr<State> state) : m_state(std::move(state)) { }

Machine::~Machine()
{
    if (!m_state)
        return;
    // run() joins its threads; this covers a run() that failed half-way.
    m_state->stopping.store(true);
    for (auto& thread : m_state->threads) {
        if (thread.joinable()) {
            ::pthread_kill(thread.native_handle(), kick_signal());
            thread.join();
        }
    }
}

ErrorOr<std::unique_ptr<Machine>> Machine::create(kvm::System const& system, MachineConfig const& config)
{
    using namespace boot;
    if (config.cpus == 0 || config.cpus > MAX_VCPUS)
        return Error::from_string(fmt::format("{} vCPUs: between 1 and {} are supported", config.cpus, MAX_VCPUS));
    for (auto const& capability : REQUIRED_CAPABILITIES)
        TRY(system.require_extension(capability.id, capability.name));
    int max_vcpus = system.check_extension(KVM_CAP_MAX_VCPUS);
    if (max_vcpus <= 0)
        max_vcpus = system.check_extension(KVM_CAP_NR_VCPUS);
    if (max_vcpus > 0 && config.cpus > static_cast<std::uint32_t>(max_vcpus))
        return Error::from_string(fmt::format("{} vCPUs requested; this KVM allows {}", config.cpus, max_vcpus));

    BzImage image = TRY(parse_bzimage(config.kernel));
    auto memory = TRY(kvm::GuestMemory::create(ram_regions(config.memory_bytes)));
    auto vm = TRY(system.create_vm());

    auto state = std::make_unique<State>(std::move(vm), std::move(memory), config.console_fd);
    State& s = *state;
    s.input_fd = config.input_fd;
    s.seccomp = config.seccomp;
    s.stop_event = TRY(make_eventfd());
    s.serial_irq = TRY(make_eventfd());
    s.write_fds = { config.console_fd, s.stop_event.get(), s.serial_irq.get(), STDERR_FILENO };

    // Before any vCPU (api.rst): the TSS and identity-map pages, then the
    // in-kernel PIC/IOAPIC/LAPIC and the PIT (its speaker port handled in
    // the kernel too, so port 0x61 never exits).
    TRY(s.vm.set_tss_address(KVM_TSS_ADDRESS));
    if (s.vm.check_extension(KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0)
        TRY(s.vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS));
    TRY(s.vm.create_irqchip());
    TRY(s.vm.create_pit2(KVM_PIT_SPEAKER_DUMMY));
    TRY(s.memory.register_with(s.vm));

    int irq_fd = s.serial_irq.get();
    TRY(s.vm.add_irqfd(irq_fd, COM1_GSI));
    s.serial = std::make_unique<devices::Serial8250>(
        [&console = s.console](std::uint8_t byte) { console.write_byte(byte); },
        [irq_fd] { signal_event(irq_fd); });
    s.i8042 = std::make_unique<devices::I8042>(
        [&s] { s.request_stop({ Stop::GuestReset, 0, "the guest rebooted" }); });
    TRY(s.pio.insert(COM1_PORT, devices::Serial8250::PORT_COUNT, *s.serial));
    TRY(s.pio.insert(I8042_DATA_PORT, devices::I8042::PORT_COUNT, *s.i8042));

    AcpiConfig acpi;
    acpi.vcpu_count = config.cpus;
    LoadedGuest guest = TRY(load_linux(s.memory, image, config.initrd_sizes, config.cmdline, acpi));
    std::vector<std::span<std::uint8_t>> slots;
    for (auto const& slot : guest.initrds)
        slots.push_back(TRY(s.memory.slice(slot.address, slot.size)));
    if (!slots.empty()) {
        if (!config.fill_initrds)
            return Error::from_string("no source for the initrds");
        TRY(config.fill_initrds(slots));
    }

    auto cpuid = TRY(system.supported_cpuid());
    bool tsc_deadline = system.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    std::size_t run_size = TRY(system.vcpu_mmap_size());
    auto msrs = boot_msrs();
    s.vcpus.reserve(config.cpus);
    for (std::uint32_t index = 0; index < config.cpus; ++index) {
        auto vcpu = TRY(s.vm.create_vcpu(index, run_size));
        auto entries = cpuid;
        normalize_cpuid(entries, { index, config.cpus, tsc_deadline });
        TRY(vcpu.set_cpuid(entries));
        TRY(vcpu.set_msrs(msrs));
        TRY(vcpu.set_regs(boot_regs(guest.entry)));
        TRY(vcpu.set_fpu(boot_fpu()));
        auto sregs = TRY(vcpu.get_sregs());
        TRY(vcpu.set_sregs(long_mode_sregs(sregs)));
        auto lapic = TRY(vcpu.get_lapic());
        TRY(vcpu.set_lapic(wire_lapic_lints(lapic)));
        s.vcpus.push_back(std::move(vcpu));
    }
    return std::unique_ptr<Machine>(new Machine(std::move(state)));
}

ErrorOr<Outcome> Machine::run()
{
    State& s = *m_state;

    struct sigaction kick {};
    kick.sa_handler = on_kick;
    sigemptyset(&kick.sa_mask);
    if (::sigaction(kick_signal(), &kick, nullptr) < 0)
        return Error::from_errno("sigaction");

    sigset_t termination;
    sigemptyset(&termination);
    sigaddset(&termination, SIGTERM);
    sigaddset(&termination, SIGINT);
    sigaddset(&termination, SIGHUP);
    // Blocked before the threads start, so every thread inherits the mask
    // and the signals queue for the signalfd instead.
    if (int rc = ::pthread_sigmask(SIG_BLOCK, &termination, nullptr); rc != 0)
        return Error::from_errno("pthread_sigmask", rc);
    int signal_fd = ::signalfd(-1, &termination, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0)
        return Error::from_errno("signalfd");
    UniqueFd signals(signal_fd);

    for (auto& vcpu : s.vcpus)
        s.threads.emplace_back([&s, &vcpu] { s.vcpu_main(vcpu); });

    if (s.seccomp) {
        if (auto installed = install_event_loop_filter(s.write_fds); installed.is_error())
            s.request_stop({ Stop::Failure, 0, installed.error().message() });
    }

    bool input_open = s.input_fd >= 0;
    std::optional<std::chrono::steady_clock::time_point> panic_deadline;
    while (!s.stopping.load()) {
        pollfd fds[3] = {
            { signals.get(), POLLIN, 0 },
            { s.stop_event.get(), POLLIN, 0 },
            { -1, POLLIN, 0 },
        };
        bool want_input = input_open && s.serial->input_space() > 0;
        if (want_input)
            fds[2].fd = s.input_fd;
        int ready = ::poll(fds, 3, TICK_MS);
        if (ready < 0 && errno != EINTR) {
            s.request_stop({ Stop::Failure, 0, fmt::format("poll: {}", std::strerror(errno)) });
            break;
        }
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo info {};
            if (::read(signals.get(), &info, sizeof(info)) == sizeof(info)) {
                int number = static_cast<int>(info.ssi_signo);
                char const* name = sigabbrev_np(number);
                s.request_stop({ Stop::Signal, number, fmt::format("stopped by SIG{}", name ? name : "?") });
            }
        }
        if (want_input && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) {
            std::uint8_t buffer[devices::Serial8250::FIFO_SIZE];
            std::size_t space = s.serial->input_space();
            ssize_t n = ::read(s.input_fd, buffer, std::min(space, sizeof(buffer)));
            if (n > 0)
                s.serial->enqueue_input(ByteView(buffer, static_cast<std::size_t>(n)));
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                input_open = false;
        }
        s.console.try_flush();
        if (!panic_deadline && s.console.panic_line())
            panic_deadline = std::chrono::steady_clock::now() + PANIC_GRACE;
        if (panic_deadline && std::chrono::steady_clock::now() >= *panic_deadline)
            s.request_stop({ Stop::GuestPanic, 0, {} });
    }

    // A vCPU thread may be blocked writing the console to a stalled reader;
    // the kick interrupts that write too, and abandon() makes it give up.
    // Kicks repeat until every thread is out: one sent just before a thread
    // entered a blocking write would otherwise be lost.
    s.console.abandon();
    while (s.exited.load() < s.threads.size()) {
        for (auto& thread : s.threads)
            ::pthread_kill(thread.native_handle(), kick_signal());
        ::poll(nullptr, 0, KICK_INTERVAL_MS);
    }
    for (auto& thread : s.threads)
        thread.join();
    s.threads.clear();
    s.console.flush(FINAL_FLUSH_MS);

    Outcome outcome;
    {
        std::lock_guard lock(s.outcome_mutex);
        outcome = s.result.value_or(Outcome { Stop::Failure, 0, "stopped for no recorded reason" });
    }
    // A reboot after the panic banner is the kernel's panic=N recovery,
    // not a clean end.
    if (auto panic = s.console.panic_line(); panic && (outcome.stop == Stop::GuestReset || outcome.stop == Stop::GuestPanic)) {
        outcome.stop = Stop::GuestPanic;
        outcome.detail = *panic;
    }
    return outcome;
}

} // namespace qtbox::vmm
