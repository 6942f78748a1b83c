#include <qtbox/base/seccomp.hpp>
#include <qtbox/vmm/seccomp.hpp>

#include <initializer_list>
#include <linux/kvm.h>
#include <sys/socket.h>

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
        { SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(read), SCMP_SYS(close), SCMP_SYS(tgkill),
            SCMP_SYS(newfstatat), SCMP_SYS(fstat), SCMP_SYS(clock_nanosleep),
            SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
            // The vsock device (devices/virtio/vsock.hpp): host sockets,
            // its deadline timer, and its parent-side socket file, removed
            // when the device goes. The console socket
            // (vmm/console_server.hpp) needs no more: accept4, sendmsg,
            // read, epoll_ctl, poll, close, lstat and unlink.
            SCMP_SYS(accept4), SCMP_SYS(connect), SCMP_SYS(readv), SCMP_SYS(sendmsg), SCMP_SYS(shutdown),
            SCMP_SYS(timerfd_settime), SCMP_SYS(lstat), SCMP_SYS(unlink), SCMP_SYS(unlinkat),
            // The QTSM (vmm/qtsm.hpp): GetRandom, and the randomness of
            // signing and of the hourly leaf key.
            SCMP_SYS(getrandom) }));
    // Unix stream sockets only: the VMM never opens a network socket.
    TRY(filter.allow_if(SCMP_SYS(socket), SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0)));
    return filter.load();
}

} // namespace qtbox::vmm
