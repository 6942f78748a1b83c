// The guest kernel's modules that the bootstrap ramdisk carries (docs/FORMATS.md §3):
// virtio_mmio and vsock are modules in Debian's cloud kernel, and init loads
// them from the paths listed in /etc/qtbox/modules, in this order (each
// after the modules it depends on).
//
// Finding them: the modules directory (an extracted lib/modules/<release>)
// is searched recursively, without following symbolic links, for
// NAME.ko, NAME.ko.xz, NAME.ko.zst or NAME.ko.gz ('-' and '_' are the same
// in module names, as modprobe treats them); files are kept as found. A
// module that is not there but is listed in the tree's modules.builtin is
// built into the kernel: it is skipped and not listed. Anything else
// missing, or found twice, is an error.
//
// The release (the <release> of /lib/modules/<release>) comes from every
// place that names it, which must all agree: `kernel_release` (the
// bzImage's version string, bzimage_release), the directory's own name when
// it reads as a release (an extracted lib/modules/6.12.95+deb12-cloud-amd64),
// `release_hint` (the blobs directory's kernel.release), and the `vermagic=`
// in each uncompressed module's .modinfo (first word). Compressed modules
// (Debian 6.12 ships .ko.xz only) are not opened; any one of the others is
// enough for them.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/eif/format.hpp>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::eif {

constexpr std::array<std::string_view, 6> GUEST_MODULES {
    "virtio_ring", "virtio", "virtio_mmio", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
};

struct ModuleFile {
    std::string name;          // "virtio_mmio"
    std::string host_path;     // where it was found
    std::string relative_path; // below the modules directory: "kernel/drivers/virtio/virtio_mmio.ko"
};

struct GuestModules {
    std::string release;                // empty when every module is built in
    std::vector<ModuleFile> files;      // load order
    std::vector<std::string> builtin;   // names found in modules.builtin instead
};

ErrorOr<GuestModules> find_guest_modules(std::string const& directory, std::optional<std::string> const& release_hint,
    std::optional<std::string> const& kernel_release = std::nullopt);

// The first word of `vermagic=` in an ELF module's .modinfo section.
ErrorOr<std::string> module_release(std::string const& path);
// The release in an x86 bzImage's kernel_version string (boot protocol
// header at 0x1f1, "HdrS" at 0x202), or nullopt when `path` is not one.
ErrorOr<std::optional<std::string>> bzimage_release(std::string const& path);

// A release is a single path component of printable ASCII.
ErrorOr<void> check_release(std::string_view release);

} // namespace qtbox::eif
