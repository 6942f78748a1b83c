// Per-thread seccomp allow-lists for the VMM once the VM is built (docs/ARCHITECTURE.md
// "The trust picture"; docs/PLATFORMS.md §V7, after Firecracker's per-thread filters).
// vCPU threads run guest code from their first KVM_RUN, so they get the
// smallest list: KVM_RUN (and KVM_GET_REGS, to name the RIP of a crash)
// and nothing else from the KVM API, writes only to
// the fds they need, memory management without PROT_EXEC, futexes, and
// thread exit. The event-loop thread additionally waits on its epoll set,
// reads its input fds, kicks vCPU threads, serves the vsock device's Unix
// sockets (created with socket(AF_UNIX) only: no network, no AF_VSOCK), and
// closes fds while tearing down.
//
// The QTSM's thread (vmm/qtsm.hpp) reads, writes and shuts down its end of
// the channel and nothing else, asks for random bytes, and otherwise has the
// common part (memory, futexes, clocks, exit). Its nonce thread (SCHED_IDLE,
// preparing ECDSA nonces) has only random bytes and the common part.
//
// Before any of that, the whole process enters the setup filter
// (install_setup_filter), before it parses a byte of its inputs: the EIF
// (CRC, sections, CBOR, the signing certificate's PEM and X.509), the
// bzImage header and the command line. By then the applet has opened
// everything by path that it needs (the KVM device, the inputs, the
// console file), bound its listening sockets, read the PKI, and switched
// to its service user (vmm(1) --user). The setup filter allows what the
// rest of the set-up and the run need, and no exec, no ptrace, no opening
// for writing or creating, no socket but AF_UNIX, no new process (clone
// only with CLONE_THREAD), no ioctl outside the KVM API (and TCGETS), no
// signal to another process. Filters add up: the threads' lists later
// narrow it further, and it must hold everything they allow.
//
// A call outside the list raises SIGSYS; the handler writes one line naming
// the system call to stderr and exits with EXIT_SECCOMP, so a violation is
// never silent and never continues.
#pragma once

#include <qtbox/base/error.hpp>

#include <span>

namespace qtbox::vmm {

constexpr int EXIT_SECCOMP = 159; // 128 + SIGSYS

// `write_fds`: the only fds the thread may write (console, event fds,
// stderr). `read_fds`: the only fds a vCPU thread may read: the virtio
// notification eventfds, which the transport drains on a device reset.
ErrorOr<void> install_vcpu_filter(std::span<int const> write_fds, std::span<int const> read_fds);
// The event loop also serves the vsock device: host sockets (Unix only),
// its epoll set and timers (devices/virtio/vsock.hpp lists the calls).
ErrorOr<void> install_event_loop_filter(std::span<int const> write_fds);
// The QTSM's thread: `channel_fd` is its end of the channel.
ErrorOr<void> install_qtsm_filter(int channel_fd);
ErrorOr<void> install_nonce_filter();
// The process-wide filter entered before parsing (above); sets no_new_privs.
// Call before the process starts any thread.
ErrorOr<void> install_setup_filter();

} // namespace qtbox::vmm
