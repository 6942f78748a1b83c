// From `vmm` command-line options to a MachineConfig (docs/FORMATS.md §11): read and
// check every input before anything touches KVM or guest memory: the
// kernel's boot header, the command line, the docs/FORMATS.md §3 memory rule, the
// console destination, and for an EIF its CRC, signature and PCRs.
//
// An EIF is read twice. The first pass (before any guest memory exists)
// checks the structure, the CRC-32, the signature against PCR0, computes
// PCR0/1/2/8 and keeps the kernel section. The second pass, during
// Machine::create, streams the ramdisks straight into their place in guest
// memory and computes everything again; if the file changed in between
// (a different CRC or PCR), the launch fails. What was measured is what
// boots.
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/eif/reader.hpp>
#include <qtbox/vmm/machine.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qtbox::vmm {

enum class LaunchError {
    Usage = 1,      // options that contradict each other or docs/FORMATS.md §11
    BadImage,       // kernel, initrd or EIF unusable
    MemoryTooSmall, // below the docs/FORMATS.md §3 rule
    ImageChanged,   // the EIF differed between the two passes
};

struct LaunchOptions {
    std::string eif;
    std::string kernel;
    std::vector<std::string> initrds;
    std::string cmdline;
    std::uint32_t cpus { 2 };
    std::uint64_t memory_mib { 1024 };
    std::string console; // empty: the mode's default
    bool debug_mode { false };
    // vsock (docs/FORMATS.md §6, §11). The applet fills the paths: their
    // defaults come from the state-directory layout, which the VMM does not
    // know (docs/ARCHITECTURE.md "Module dependencies").
    std::uint32_t cid { 4 };
    std::string vsock_socket; // the enclave's vsock.sock
    std::string listener_dir; // <run>/vsock
    int ready_fd { -1 };      // "ready\n" when the heartbeat arrives
    NoticeSink notice;        // what the devices report while the VM runs
};

// docs/FORMATS.md §3: at least 128 MiB and at least 4 times the image (the EIF file,
// or kernel + initrds + cmdline in raw mode), in whole MiB.
std::uint64_t minimum_memory_mib(std::uint64_t image_bytes);

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
