#include <qtbox/base/seccomp.hpp>
#include <qtbox/vmm/seccomp.hpp>

#include <cerrno>
#include <fcntl.h>
#include <initializer_list>
#include <linux/kvm.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qtbox::vmm {

namespace {

ErrorOr<void> allow_all(seccomp::Filter& filter, std::initializer_list<int> numbers)
{
    for (int number : numbers)
        TRY(filter.allow(number));
    return {};
}

// What both thread kinds need: memory management without ever making
// memory executable, futexes, signal return, clocks and thread exit.
ErrorOr<seccomp::Filter> common(std::span<int const> write_fds)
{
    TRY(seccomp::install_sigsys_reporter(EXIT_SECCOMP));
    auto filter = TRY(seccomp::Filter::create(seccomp::Action::Trap));
    TRY(allow_all(filter,
        { SCMP_SYS(futex), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(sched_yield),
            SCMP_SYS(clock_gettime), SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(exit), SCMP_SYS(exit_group),
            SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(mremap) }));
    TRY(filter.allow_memory_without_exec());
    for (int fd : write_fds) {
        if (fd < 0)
            continue;
        TRY(filter.allow_if(SCMP_SYS(write), SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(fd), 0)));
    }
    return filter;
}

// tgkill(own pid, any thread, signal): pthread_kill and abort() in this
// process, never a signal to another one.
ErrorOr<void> allow_own_tgkill(seccomp::Filter& filter)
{
    return filter.allow_if(SCMP_SYS(tgkill), SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid()), 0));
}

} // namespace

ErrorOr<void> install_vcpu_filter(std::span<int const> write_fds, std::span<int const> read_fds)
{
    auto filter = TRY(common(write_fds));
    for (int fd : read_fds) {
        if (fd >= 0)
            TRY(filter.allow_if(SCMP_SYS(read), SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(fd), 0)));
    }
    // KVM_RUN, and KVM_GET_REGS for the RIP in crash reports (read-only).
    for (unsigned long request : { static_cast<unsigned long>(KVM_RUN), static_cast<unsigned long>(KVM_GET_REGS) })
        TRY(filter.allow_if(SCMP_SYS(ioctl), SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(request), 0)));
    return filter.load();
}

ErrorOr<void> install_event_loop_filter(std::span<int const> write_fds)
{
    auto filter = TRY(common(write_fds));
    TRY(allow_all(filter,
        { SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(read), SCMP_SYS(close),
            SCMP_SYS(newfstatat), SCMP_SYS(fstat), SCMP_SYS(clock_nanosleep),
            SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
            // The vsock device (devices/virtio/vsock.hpp): host sockets,
            // its deadline timer, and its parent-side socket file, removed
            // when the device goes. The console socket
            // (vmm/console_server.hpp) needs no more: accept4, sendmsg,
            // read, epoll_ctl, poll, close, lstat and unlink.
            SCMP_SYS(accept4), SCMP_SYS(connect), SCMP_SYS(readv), SCMP_SYS(sendmsg), SCMP_SYS(shutdown),
            SCMP_SYS(timerfd_settime), SCMP_SYS(lstat), SCMP_SYS(unlink), SCMP_SYS(unlinkat) }));
    // Unix stream sockets only: the VMM never opens a network socket.
    TRY(filter.allow_if(SCMP_SYS(socket), SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0)));
    // Kicking the vCPU threads (pthread_kill): threads of this process only.
    TRY(allow_own_tgkill(filter));
    return filter.load();
}

ErrorOr<void> install_qtsm_filter(int channel_fd)
{
    // Its channel, and stderr for the SIGSYS report.
    int const write_fds[] = { channel_fd, STDERR_FILENO };
    auto filter = TRY(common(write_fds));
    TRY(filter.allow_if(SCMP_SYS(read), SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(channel_fd), 0)));
    TRY(filter.allow_if(SCMP_SYS(shutdown), SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(channel_fd), 0)));
    // GetRandom, and the randomness of signing and of the hourly leaf key.
    TRY(filter.allow(SCMP_SYS(getrandom)));
    return filter.load();
}

ErrorOr<void> install_nonce_filter()
{
    // stderr for the SIGSYS report; the DRBG's seed and reseeds.
    int const write_fds[] = { STDERR_FILENO };
    auto filter = TRY(common(write_fds));
    TRY(filter.allow(SCMP_SYS(getrandom)));
    return filter.load();
}

ErrorOr<void> install_setup_filter()
{
    TRY(seccomp::install_sigsys_reporter(EXIT_SECCOMP));
    TRY(seccomp::set_no_new_privs());
    auto filter = TRY(seccomp::Filter::create(seccomp::Action::Trap));
    TRY(allow_all(filter,
        { // Threads, signals, time, memory (mmap and mprotect below).
            SCMP_SYS(futex), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigaction),
            SCMP_SYS(sigaltstack), SCMP_SYS(sched_yield), SCMP_SYS(sched_getaffinity), SCMP_SYS(sched_setaffinity),
            SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep),
            SCMP_SYS(nanosleep), SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(getuid), SCMP_SYS(geteuid),
            SCMP_SYS(getgid), SCMP_SYS(getegid), SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(brk),
            SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(mremap), SCMP_SYS(mlock), SCMP_SYS(mlock2),
            SCMP_SYS(munlock), SCMP_SYS(getrandom),
            // Reading the inputs opened before (the EIF, kernel, initrds),
            // writing the fds already open (console, log, ready pipe).
            SCMP_SYS(read), SCMP_SYS(pread64), SCMP_SYS(readv), SCMP_SYS(write), SCMP_SYS(writev),
            SCMP_SYS(lseek), SCMP_SYS(close), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(lstat),
            SCMP_SYS(statx), SCMP_SYS(fcntl), SCMP_SYS(readlink),
            // The VM's event fds, epoll set and timers.
            SCMP_SYS(eventfd2), SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait),
            SCMP_SYS(epoll_pwait), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(timerfd_create),
            SCMP_SYS(timerfd_settime), SCMP_SYS(signalfd4),
            // The run's Unix sockets (the event-loop list, vmm/seccomp.hpp),
            // removed when the VM ends.
            SCMP_SYS(accept4), SCMP_SYS(connect), SCMP_SYS(sendmsg), SCMP_SYS(shutdown), SCMP_SYS(unlink),
            SCMP_SYS(unlinkat),
            // Each thread's own, narrower filter (filters only add up).
            SCMP_SYS(seccomp) }));
    TRY(filter.allow_memory_without_exec());
    // Read-only opens: the PKI and /etc/machine-id when not read before,
    // sysfs for a hugepage hint. Nothing is created, truncated or written.
    constexpr scmp_datum_t WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | (O_TMPFILE & ~O_DIRECTORY);
    TRY(filter.allow_if(SCMP_SYS(openat), SCMP_A2(SCMP_CMP_MASKED_EQ, WRITE_FLAGS, 0)));
    // The KVM API (ioctl type KVMIO) and a terminal check of the console.
    TRY(filter.allow_if(SCMP_SYS(ioctl), SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFF00, static_cast<scmp_datum_t>(KVMIO) << 8)));
    TRY(filter.allow_if(SCMP_SYS(ioctl), SCMP_A1(SCMP_CMP_EQ, TCGETS, 0)));
    TRY(filter.allow_if(SCMP_SYS(socket), SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0)));
    // The QTSM's channel inside the VMM (vmm/qtsm.hpp).
    TRY(filter.allow_if(SCMP_SYS(socketpair), SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0)));
    // no_new_privs for the threads' filters, a thread's own name (the
    // QTSM's); nothing else of prctl.
    TRY(filter.allow_if(SCMP_SYS(prctl), SCMP_A0(SCMP_CMP_EQ, PR_SET_NO_NEW_PRIVS, 0)));
    TRY(filter.allow_if(SCMP_SYS(prctl), SCMP_A0(SCMP_CMP_EQ, PR_GET_DUMPABLE, 0)));
    TRY(filter.allow_if(SCMP_SYS(prctl), SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME, 0)));
    // The QTSM's nonce thread lowers itself to SCHED_IDLE (vmm/qtsm.cpp):
    // the calling thread, that policy only.
    TRY(filter.allow_if(SCMP_SYS(sched_setscheduler), SCMP_A0(SCMP_CMP_EQ, 0, 0), SCMP_A1(SCMP_CMP_EQ, SCHED_IDLE, 0)));
    // Threads only: clone() with CLONE_THREAD; clone3's flags are out of a
    // filter's reach, so it fails as absent and glibc falls back to clone().
    TRY(filter.allow_if(SCMP_SYS(clone), SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)));
    TRY(filter.fail_with(SCMP_SYS(clone3), ENOSYS));
    TRY(allow_own_tgkill(filter));
    return filter.load();
}

} // namespace qtbox::vmm
