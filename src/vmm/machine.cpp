// The run-loop half of Machine (machine_state.hpp): the vCPU threads and
// their exits, the event loop, stopping and joining. The VM it runs is
// made by Machine::create in builder.cpp.
#include <qtbox/base/sys.hpp>
#include <qtbox/vmm/machine.hpp>
#include <qtbox/vmm/seccomp.hpp>
#include <qtbox/net/event_loop.hpp>

#include "machine_state.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/signalfd.h>
#include <unistd.h>

namespace qtbox::vmm {

namespace {

// The signal that kicks a vCPU thread out of KVM_RUN (Firecracker uses the
// same): its handler kicks that thread's Vcpu (immediate_exit in its
// kvm_run page), so a kick that lands just before KVM_RUN is not lost.
int kick_signal() { return SIGRTMIN; }
thread_local kvm::Vcpu* t_kick_target = nullptr;

void on_kick(int)
{
    if (kvm::Vcpu* vcpu = t_kick_target)
        vcpu->kick();
}

// How often the event loop wakes to flush a partial console line and to
// check the panic deadline.
constexpr int TICK_MS = 50;
// How often a stopping VM re-kicks the vCPU threads that are not out yet.
constexpr int KICK_INTERVAL_MS = 20;
// How long the stopped VM waits for a slow console reader to take the last
// partial line before dropping it.
constexpr int FINAL_FLUSH_MS = 500;

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

ErrorOr<void> install_kick_handler()
{
    struct sigaction kick {};
    kick.sa_handler = on_kick;
    sigemptyset(&kick.sa_mask);
    if (::sigaction(kick_signal(), &kick, nullptr) < 0)
        return Error::from_errno("sigaction");
    return {};
}

// SIGTERM, SIGINT and SIGHUP, blocked before the threads start, so that
// every thread inherits the mask and the signals queue for the signalfd.
ErrorOr<UniqueFd> termination_signals()
{
    sigset_t termination;
    sigemptyset(&termination);
    sigaddset(&termination, SIGTERM);
    sigaddset(&termination, SIGINT);
    sigaddset(&termination, SIGHUP);
    if (int rc = ::pthread_sigmask(SIG_BLOCK, &termination, nullptr); rc != 0)
        return Error::from_errno("pthread_sigmask", rc);
    return sys::signalfd(termination);
}

// An fd of the event loop with a callback (net::EventHandler).
class Watch final : public net::EventHandler {
public:
    explicit Watch(std::function<void(std::uint32_t)> on_ready) : m_on_ready(std::move(on_ready)) { }
    void on_event(std::uint32_t events) override { m_on_ready(events); }

private:
    std::function<void(std::uint32_t)> m_on_ready;
};

// Until the VM stops: termination signals, the devices' fds (the vsock
// device's, registered by the device itself, and the PollSources), the
// console's partial lines and the panic deadline. Nothing here waits for a
// vCPU thread or for the console's reader.
ErrorOr<void> event_loop(Machine::State& s, int signal_fd)
{
    Watch signals([&](std::uint32_t) {
        signalfd_siginfo info {};
        if (::read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
            int number = static_cast<int>(info.ssi_signo);
            char const* name = sigabbrev_np(number);
            s.request_stop({ Stop::Signal, number, fmt::format("stopped by SIG{}", name ? name : "?") });
        }
    });
    // The stop event only wakes the loop; `stopping` says why.
    Watch stop([&](std::uint32_t) { sys::clear_event(s.stop_event.get()); });
    TRY(s.loop.add(signal_fd, EPOLLIN, &signals));
    TRY(s.loop.add(s.stop_event.get(), EPOLLIN, &stop));

    std::vector<std::unique_ptr<Watch>> sources;
    std::vector<bool> watched(s.poll_sources.size(), true);
    // Regular files (an input redirected from a file, /dev/null) cannot be
    // in an epoll set (EPERM); they are always ready, as poll() reports
    // them, and are read every round while wanted.
    std::vector<bool> always_ready(s.poll_sources.size(), false);
    for (std::size_t i = 0; i < s.poll_sources.size(); ++i) {
        auto& source = s.poll_sources[i];
        sources.push_back(std::make_unique<Watch>([&source](std::uint32_t events) { source.ready(events); }));
        if (auto added = s.loop.add(source.fd, source.events, sources.back().get()); added.is_error()) {
            if (!added.error().is_errno(EPERM))
                return added.release_error();
            always_ready[i] = true;
        }
    }

    std::optional<std::chrono::steady_clock::time_point> panic_deadline;
    while (!s.stopping.load()) {
        bool busy = false;
        for (std::size_t i = 0; i < s.poll_sources.size(); ++i) {
            auto const& source = s.poll_sources[i];
            bool wanted = !source.wanted || source.wanted();
            if (always_ready[i]) {
                if (wanted) {
                    source.ready(source.events);
                    busy = true;
                }
                continue;
            }
            if (wanted != watched[i]) {
                TRY(s.loop.modify(source.fd, wanted ? source.events : 0, sources[i].get()));
                watched[i] = wanted;
            }
        }
        auto waited = s.loop.wait(busy ? 0 : TICK_MS);
        if (waited.is_error()) {
            s.request_stop({ Stop::Failure, 0, waited.error().message() });
            break;
        }
        s.console.try_flush();
        if (s.console_server)
            s.console_server->settle();
        if (!panic_deadline && s.console.panic_line())
            panic_deadline = std::chrono::steady_clock::now() + PANIC_GRACE;
        if (panic_deadline && std::chrono::steady_clock::now() >= *panic_deadline)
            s.request_stop({ Stop::GuestPanic, 0, {} });
    }
    s.loop.remove(signal_fd);
    s.loop.remove(s.stop_event.get());
    for (std::size_t i = 0; i < s.poll_sources.size(); ++i) {
        if (!always_ready[i])
            s.loop.remove(s.poll_sources[i].fd);
    }
    return {};
}

// Gets every vCPU thread out and joined. A vCPU thread may be blocked
// writing the console to a stalled reader; the kick interrupts that write
// too, and abandon() makes it give up. Kicks repeat until every thread is
// out: one sent just before a thread entered a blocking write would
// otherwise be lost.
void stop_vcpus(Machine::State& s)
{
    s.console.abandon();
    while (s.exited.load() < s.threads.size()) {
        for (auto& thread : s.threads)
            ::pthread_kill(thread.native_handle(), kick_signal());
        ::poll(nullptr, 0, KICK_INTERVAL_MS);
    }
    for (auto& thread : s.threads)
        thread.join();
    s.threads.clear();
}

} // namespace

void Machine::State::request_stop(Outcome outcome)
{
    {
        std::lock_guard lock(outcome_mutex);
        if (!result)
            result = std::move(outcome);
    }
    stopping.store(true);
    sys::signal_event(stop_event.get());
}

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
    t_kick_target = &vcpu;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    // Pinned (`vmm --cpu-list`, the `qt env` pool's CPUs) before the filter,
    // which has no sched_setaffinity in its list.
    if (!cpu_affinity.empty()) {
        unsigned cpu = cpu_affinity[vcpu.id() % cpu_affinity.size()];
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (::sched_setaffinity(0, sizeof(set), &set) < 0) {
            int code = errno;
            request_stop({ Stop::Failure, 0, Error::from_errno(fmt::format("pin vCPU {} to CPU {}: sched_setaffinity", vcpu.id(), cpu), code).message() });
            return;
        }
    }
    if (seccomp) {
        if (auto installed = install_vcpu_filter(write_fds, read_fds); installed.is_error()) {
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
            vcpu.clear_kick();
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

std::string const& Machine::memory_unlocked_reason() const
{
    return m_state->memory.unlocked_reason();
}

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

ErrorOr<Outcome> Machine::run()
{
    State& s = *m_state;
    TRY(install_kick_handler());
    UniqueFd signals = TRY(termination_signals());

    for (auto& vcpu : s.vcpus)
        s.threads.emplace_back([&s, &vcpu] { s.vcpu_main(vcpu); });

    if (s.seccomp) {
        if (auto installed = install_event_loop_filter(s.write_fds); installed.is_error())
            s.request_stop({ Stop::Failure, 0, installed.error().message() });
    }

    if (auto looped = event_loop(s, signals.get()); looped.is_error())
        s.request_stop({ Stop::Failure, 0, looped.error().message() });
    stop_vcpus(s);
    // The guest is gone: its connections with it (the parent's peers see
    // them end), and the parent-side socket file.
    s.vsock_transport.reset();
    s.vsock.reset();
    s.console.flush(FINAL_FLUSH_MS);
    // The console is complete: its reader gets the rest, then end of file.
    if (s.console_server)
        s.console_server->finish(FINAL_FLUSH_MS);

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
