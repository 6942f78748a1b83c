// From `vmm` command-line options to a MachineConfig (docs/FORMATS.md §11): read and
// check every input before anything touches KVM or guest memory: the
// kernel's boot header, the command line, the docs/FORMATS.md §3 memory rule, the
// console destination, and for an EIF its CRC, signature and PCRs.
//
// An EIF is read twice, and every byte the VMM boots comes from the pass
// that measured it. The first pass (before any guest memory exists)
// checks the structure and the CRC-32, computes PCR0/1/2/8, and keeps the
// kernel, the cmdline and the signature section exactly as it measured them
// (eif::EifReader::verify's visitor and result): the signature is checked
// against that PCR0, and the cmdline and kernel given to the machine are
// those copies, never a second read of the file. The second pass, during
// Machine::create, streams the ramdisks straight into their place in guest
// memory and computes everything again; if the CRC or any of PCR0/1/2/8
// differs from the first pass (the file changed in between), or the file no
// longer reads as the same EIF, the launch fails with
// LaunchError::ImageChanged. What was measured is what boots.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/eif/reader.hpp>
#include <qtbox/vmm/machine.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qtbox::vmm {

enum class LaunchError {
    Usage = 1,      // options that contradict each other or docs/FORMATS.md §11
    BadImage,       // kernel, initrd or EIF unusable
    MemoryTooSmall, // below the docs/FORMATS.md §3 rule
    ImageChanged,   // the EIF differed between the two passes (CRC, PCR0/1/2/8, layout)
};

struct LaunchOptions {
    std::string eif;
    // Opens `eif`; empty means eif::EifReader::open. Tests hand in a reader
    // over a ByteSource of their own.
    std::function<ErrorOr<eif::EifReader>(std::string const& path)> open_eif;
    std::string kernel;
    std::vector<std::string> initrds;
    std::string cmdline;
    std::uint32_t cpus { 2 };
    std::uint64_t memory_mib { 1024 };
    // The `qt env` pool (docs/FORMATS.md §11): guest memory in hugepages of
    // this many MiB, 2 or 1024, with memory_mib a multiple of it (0: ordinary
    // pages); the host CPUs the vCPU threads are pinned to, round robin
    // (empty: not pinned).
    std::uint32_t hugepage_size_mib { 0 };
    std::vector<unsigned> cpu_list;
    std::string console; // empty: the mode's default
    // --console-socket (vmm/console_server.hpp): debug or raw mode only.
    std::string console_socket;
    bool debug_mode { false };
    // vsock (docs/FORMATS.md §6, §11). The applet fills the paths: their
    // defaults come from the state-directory layout, which the VMM does not
    // know (docs/ARCHITECTURE.md "Module dependencies").
    std::uint32_t cid { 4 };
    std::string vsock_socket; // the enclave's vsock.sock
    std::string listener_dir; // <run>/vsock
    int ready_fd { -1 };      // "ready\n" when the heartbeat arrives
    NoticeSink notice;        // what the devices report while the VM runs
    // Called once every input is open (the EIF, or the kernel read and the
    // initrds open, and the console) and before the first byte of them is
    // parsed: the applet drops its privileges and enters the setup filter
    // here (vmm/seccomp.hpp). Its error ends the launch.
    std::function<ErrorOr<void>()> before_parsing;
};

// docs/FORMATS.md §3's memory rule, applied to the EIF file or, in raw mode,
// to kernel + initrds + cmdline.
using eif::minimum_memory_mib;

struct Launch {
    Bytes kernel;
    std::vector<UniqueFd> initrd_files; // raw mode, in order
    std::optional<eif::EifReader> eif;  // EIF mode
    eif::Verification verification;     // EIF mode: the first pass
    std::vector<std::string> notes;     // measurements and warnings to log
    UniqueFd console;
    MachineConfig machine;
    std::uint64_t image_bytes { 0 };

    // Frees the kernel copy and closes the inputs once the guest is loaded.
    void release_inputs();
};

// The result refers to itself (the machine config reads its kernel and
// initrd files), hence the pointer.
ErrorOr<std::unique_ptr<Launch>> prepare_launch(LaunchOptions const& options);

} // namespace qtbox::vmm
