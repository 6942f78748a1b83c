#include <qtbox/base/sys.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/eif/signature.hpp>
#include <qtbox/boot/bzimage.hpp>
#include <qtbox/boot/layout.hpp>
#include <qtbox/boot/zero_page.hpp>
#include <qtbox/vmm/launch.hpp>
#include <qtbox/vsock/address.hpp>

#include <fmt/format.h>

#include <cstring>
#include <algorithm>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qtbox::vmm {

namespace {

// A console file is created private to the user running the VMM.
constexpr mode_t CONSOLE_FILE_MODE = 0600;

ErrorOr<UniqueFd> open_console(std::string const& console)
{
    if (console == "none")
        return UniqueFd();
    if (console == "-") {
        int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
            return Error::from_errno("--console -: stdout");
        return UniqueFd(fd);
    }
    // O_NOFOLLOW: a console file in a shared directory cannot be redirected
    // through a planted symbolic link. O_NONBLOCK: a planted FIFO cannot
    // hold the open (and the start) until someone reads it; the file must
    // then turn out to be a regular file, nothing else (docs/FORMATS.md §11).
    auto fd = sys::open(console, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, CONSOLE_FILE_MODE);
    if (fd.is_error() && fd.error().is_errno(ENXIO))
        return Error::from_string(fmt::format("--console: {} is a FIFO or socket, not a regular file", console));
    if (fd.is_error())
        return fd.release_error().context("--console");
    auto st = TRY(sys::fstat(fd.value().get()));
    if (!S_ISREG(st.st_mode)) {
        auto kind = S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device" : S_ISBLK(st.st_mode) ? "a block device" : "not a file";
        return Error::from_string(fmt::format("--console: {} is {}, not a regular file", console, kind));
    }
    int flags = ::fcntl(fd.value().get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.value().get(), F_SETFL, flags & ~O_NONBLOCK) < 0)
        return Error::from_errno(fmt::format("--console: {}", console));
    return fd.release_value();
}

ErrorOr<void> check_memory(LaunchOptions const& options, std::uint64_t image_bytes, std::string_view what)
{
    std::uint64_t minimum = minimum_memory_mib(image_bytes);
    if (options.memory_mib < minimum)
        return Error::from_code(LaunchError::MemoryTooSmall,
            fmt::format("--mem {} MiB is too small: {} ({:.1f} MiB) need{} at least {} MiB "
                        "(128 MiB and 4 times the image, docs/FORMATS.md §3)",
                options.memory_mib, what, static_cast<double>(image_bytes) / (1 << 20),
                what.ends_with("s") ? "" : "s", minimum));
    return {};
}

// Everything is open: the caller's last step before the first byte of an
// input is parsed (vmm/seccomp.hpp's setup filter).
ErrorOr<void> enter_parsing(LaunchOptions const& options)
{
    if (options.before_parsing)
        TRY(options.before_parsing());
    return {};
}

Error bad_eif(std::string const& path, Error const& error)
{
    return Error::from_code(LaunchError::BadImage, fmt::format("EIF {}: {}", path, error.message()));
}

ErrorOr<void> prepare_raw(LaunchOptions const& options, Launch& launch)
{
    auto kernel_stat = sys::stat(options.kernel);
    if (kernel_stat.is_error())
        return Error::from_code(LaunchError::BadImage, fmt::format("kernel {}: {}", options.kernel, std::strerror(kernel_stat.error().errno_code())));
    if (!S_ISREG(kernel_stat.value().st_mode))
        return Error::from_code(LaunchError::BadImage, fmt::format("kernel {}: not a regular file", options.kernel));
    if (static_cast<std::uint64_t>(kernel_stat.value().st_size) > boot::MAX_KERNEL_SIZE)
        return Error::from_code(LaunchError::BadImage,
            fmt::format("kernel {}: larger than the {} MiB limit", options.kernel, boot::MAX_KERNEL_SIZE >> 20));
    std::uint64_t total = static_cast<std::uint64_t>(kernel_stat.value().st_size) + options.cmdline.size();
    std::vector<std::uint64_t> sizes;
    for (auto const& path : options.initrds) {
        auto opened = sys::open(path, O_RDONLY);
        if (opened.is_error())
            return Error::from_code(LaunchError::BadImage, fmt::format("initrd {}: {}", path, std::strerror(opened.error().errno_code())));
        auto fd = opened.release_value();
        auto st = TRY(sys::fstat(fd.get()));
        if (!S_ISREG(st.st_mode))
            return Error::from_code(LaunchError::BadImage, fmt::format("initrd {}: not a regular file", path));
        sizes.push_back(static_cast<std::uint64_t>(st.st_size));
        total += static_cast<std::uint64_t>(st.st_size);
        launch.initrd_files.push_back(std::move(fd));
    }
    launch.image_bytes = total;
    TRY(check_memory(options, total, "this kernel and initrds"));

    auto kernel = sys::read_file(options.kernel, boot::MAX_KERNEL_SIZE);
    if (kernel.is_error())
        return Error::from_code(LaunchError::BadImage, fmt::format("kernel {}: {}", options.kernel, kernel.error().message()));
    launch.kernel = kernel.release_value();
    TRY(enter_parsing(options));
    // Parse now for a clear error before KVM: the machine parses again.
    auto image = boot::parse_bzimage(launch.kernel);
    if (image.is_error())
        return Error::from_code(LaunchError::BadImage, fmt::format("kernel {}: {}", options.kernel, image.error().message()));
    if (auto line = boot::command_line_bytes(image.value(), options.cmdline); line.is_error())
        return Error::from_code(LaunchError::BadImage, fmt::format("--cmdline: {}", line.error().message()));

    launch.machine.kernel = launch.kernel;
    launch.machine.cmdline = options.cmdline;
    launch.machine.initrd_sizes = sizes;
    launch.machine.fill_initrds = [&launch, paths = options.initrds](std::span<std::span<std::uint8_t> const> slots) -> ErrorOr<void> {
        for (std::size_t i = 0; i < slots.size() && i < launch.initrd_files.size(); ++i) {
            if (auto read = sys::pread_exact(launch.initrd_files[i].get(), slots[i].data(), slots[i].size(), 0); read.is_error())
                return read.release_error().context(fmt::format("initrd {}", paths[i]));
        }
        return {};
    };
    return {};
}

// Every register the launch depends on; docs/FORMATS.md §2.
bool same_measurements(eif::Measurements const& a, eif::Measurements const& b)
{
    return a.pcr0 == b.pcr0 && a.pcr1 == b.pcr1 && a.pcr2 == b.pcr2 && a.pcr8 == b.pcr8;
}

ErrorOr<void> prepare_eif(LaunchOptions const& options, Launch& launch)
{
    UniqueFd file;
    if (!options.open_eif) {
        auto fd = sys::open(options.eif, O_RDONLY | O_CLOEXEC);
        if (fd.is_error())
            return bad_eif(options.eif, fd.error());
        file = fd.release_value();
    }
    TRY(enter_parsing(options));
    auto opened = options.open_eif ? options.open_eif(options.eif) : eif::EifReader::from_fd(std::move(file), options.eif);
    if (opened.is_error())
        return bad_eif(options.eif, opened.error());
    launch.eif.emplace(opened.release_value());
    eif::EifReader const& reader = *launch.eif;
    launch.image_bytes = reader.file_size();
    TRY(check_memory(options, reader.file_size(), "this EIF"));
    if (reader.header().flags & eif::FLAG_ARCH_AARCH64)
        return Error::from_code(LaunchError::BadImage, fmt::format("EIF {}: built for aarch64; this VMM runs x86_64 guests", options.eif));

    // First pass: CRC and PCRs. The kernel, the cmdline and the signature
    // section are kept as they were measured; none of them is read again.
    eif::Section const& kernel_section = reader.kernel();
    eif::Section const& cmdline_section = reader.cmdline();
    if (kernel_section.size > boot::MAX_KERNEL_SIZE)
        return Error::from_code(LaunchError::BadImage, fmt::format("EIF {}: kernel section larger than {} MiB", options.eif, boot::MAX_KERNEL_SIZE >> 20));
    if (cmdline_section.size > eif::MAX_CMDLINE_SIZE)
        return Error::from_code(LaunchError::BadImage,
            fmt::format("EIF {}: cmdline section larger than {} bytes", options.eif, eif::MAX_CMDLINE_SIZE));
    if (auto const* signature = reader.signature(); signature && signature->size > eif::MAX_SIGNATURE_SIZE)
        return Error::from_code(LaunchError::BadImage,
            fmt::format("EIF {}: signature section larger than {} bytes", options.eif, eif::MAX_SIGNATURE_SIZE));
    launch.kernel.resize(static_cast<std::size_t>(kernel_section.size));
    Bytes cmdline_bytes(static_cast<std::size_t>(cmdline_section.size));
    auto verified = reader.verify([&](eif::Section const& section, std::uint64_t offset, ByteView chunk) -> ErrorOr<void> {
        // verify() keeps every chunk inside its section, whose size sized these copies.
        if (section.index == kernel_section.index)
            std::copy(chunk.begin(), chunk.end(), launch.kernel.begin() + static_cast<long>(offset));
        else if (section.index == cmdline_section.index)
            std::copy(chunk.begin(), chunk.end(), cmdline_bytes.begin() + static_cast<long>(offset));
        return {};
    });
    if (verified.is_error())
        return bad_eif(options.eif, verified.error());
    launch.verification = verified.release_value();
    if (!launch.verification.crc_ok)
        return Error::from_code(LaunchError::BadImage,
            fmt::format("EIF {}: CRC mismatch (header says {:08x}, contents give {:08x}): the file is corrupt",
                options.eif, launch.verification.stored_crc, launch.verification.computed_crc));

    if (reader.signature()) {
        UnixMillis now = now_millis();
        auto check = eif::check_signature(launch.verification.signature, launch.verification.measurements.pcr0, now);
        if (check.is_error())
            return bad_eif(options.eif, check.error());
        auto valid = eif::require_valid(check.value(), now);
        if (valid.is_error()) {
            // An expired signing certificate still identifies the signer
            // (PCR8 measures it), as Nitro's launch path treats it; a bad
            // signature or a PCR0 mismatch never boots.
            if (!valid.error().is(eif::EifError::CertificateTime))
                return bad_eif(options.eif, valid.error());
            launch.notes.push_back(fmt::format("warning: EIF {}: {}", options.eif, valid.error().message()));
        }
    }
    auto const& pcrs = launch.verification.measurements;
    launch.notes.push_back(fmt::format("PCR0 {}", hex_encode(pcrs.pcr0)));
    launch.notes.push_back(fmt::format("PCR1 {}", hex_encode(pcrs.pcr1)));
    launch.notes.push_back(fmt::format("PCR2 {}", hex_encode(pcrs.pcr2)));
    if (pcrs.pcr8)
        launch.notes.push_back(fmt::format("PCR8 {}", hex_encode(*pcrs.pcr8)));

    auto cmdline = eif::cmdline_text(cmdline_bytes);
    if (cmdline.is_error())
        return bad_eif(options.eif, cmdline.error());
    auto image = boot::parse_bzimage(launch.kernel);
    if (image.is_error())
        return Error::from_code(LaunchError::BadImage, fmt::format("EIF {}: kernel section: {}", options.eif, image.error().message()));
    if (auto line = boot::command_line_bytes(image.value(), cmdline.value()); line.is_error())
        return Error::from_code(LaunchError::BadImage, fmt::format("EIF {}: cmdline section: {}", options.eif, line.error().message()));

    launch.machine.kernel = launch.kernel;
    launch.machine.cmdline = cmdline.release_value();
    auto ramdisks = reader.ramdisks();
    for (auto const* ramdisk : ramdisks)
        launch.machine.initrd_sizes.push_back(ramdisk->size);
    launch.machine.fill_initrds = [&launch, ramdisks, path = options.eif](std::span<std::span<std::uint8_t> const> slots) -> ErrorOr<void> {
        // Second pass: the ramdisks go straight to guest memory while the
        // CRC and PCRs are computed again.
        auto second = launch.eif->verify([&](eif::Section const& section, std::uint64_t offset, ByteView chunk) -> ErrorOr<void> {
            for (std::size_t i = 0; i < ramdisks.size() && i < slots.size(); ++i) {
                if (ramdisks[i]->index != section.index)
                    continue;
                if (offset > slots[i].size() || chunk.size() > slots[i].size() - offset)
                    return Error::from_code(LaunchError::ImageChanged, "a ramdisk grew while it was loaded");
                std::copy(chunk.begin(), chunk.end(), slots[i].begin() + static_cast<long>(offset));
            }
            return {};
        });
        if (second.is_error()) {
            // The first pass read the same file as a valid EIF: a format
            // error now means that it changed.
            if (second.error().code_as<eif::EifError>() || second.error().is(LaunchError::ImageChanged))
                return Error::from_code(LaunchError::ImageChanged,
                    fmt::format("EIF {}: {}", path, second.error().message()));
            return bad_eif(path, second.error());
        }
        auto const& first = launch.verification;
        auto const& again = second.value();
        if (!again.crc_ok || again.computed_crc != first.computed_crc
            || !same_measurements(again.measurements, first.measurements))
            return Error::from_code(LaunchError::ImageChanged, fmt::format("EIF {}: the file changed while it was being loaded", path));
        return {};
    };
    return {};
}

} // namespace

void Launch::release_inputs()
{
    Bytes().swap(kernel);
    machine.kernel = {};
    machine.fill_initrds = {};
    initrd_files.clear();
    eif.reset();
}

ErrorOr<std::unique_ptr<Launch>> prepare_launch(LaunchOptions const& options)
{
    auto launch = std::make_unique<Launch>();
    if (options.cpus == 0 || options.cpus > MAX_VCPUS)
        return Error::from_code(LaunchError::Usage, fmt::format("--cpus {}: between 1 and {}", options.cpus, MAX_VCPUS));
    if (options.memory_mib > boot::MAX_MEMORY >> 20)
        return Error::from_code(LaunchError::Usage, fmt::format("--mem {} MiB: at most {} MiB", options.memory_mib, boot::MAX_MEMORY >> 20));
    if (options.hugepage_size_mib != 0 && options.hugepage_size_mib != 2 && options.hugepage_size_mib != 1024)
        return Error::from_code(LaunchError::Usage, fmt::format("--hugepages {}: 2 or 1024 (MiB)", options.hugepage_size_mib));
    if (options.hugepage_size_mib != 0 && options.memory_mib % options.hugepage_size_mib != 0)
        return Error::from_code(LaunchError::Usage,
            fmt::format("--mem {} MiB is not a multiple of the {} MiB hugepages", options.memory_mib, options.hugepage_size_mib));
    // docs/FORMATS.md §6: 0-2 are reserved, 3 is the parent; the last
    // value is VMADDR_CID_ANY.
    if (options.cid < vsock::FIRST_ENCLAVE_CID || options.cid > vsock::LAST_ENCLAVE_CID)
        return Error::from_code(LaunchError::Usage,
            fmt::format("--cid {}: an enclave's CID is between {} and {}", options.cid, vsock::FIRST_ENCLAVE_CID, vsock::LAST_ENCLAVE_CID));
    if (options.vsock_socket.empty() || options.listener_dir.empty())
        return Error::from_code(LaunchError::Usage, "the vsock socket and listener directory are not set");
    if (options.ready_fd >= 0) {
        int flags = ::fcntl(options.ready_fd, F_GETFL);
        if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY)
            return Error::from_code(LaunchError::Usage, fmt::format("--ready-fd {}: not an open file descriptor this process may write", options.ready_fd));
    }
    bool production = !options.eif.empty() && !options.debug_mode;
    std::string console = options.console.empty() ? (production ? "none" : "-") : options.console;
    // docs/FORMATS.md §11: a production enclave's console is never exposed.
    if (production && console != "none")
        return Error::from_code(LaunchError::Usage,
            "--console: a production enclave's console is never exposed; add --debug-mode to see it");
    if (production && !options.console_socket.empty())
        return Error::from_code(LaunchError::Usage,
            "--console-socket: a production enclave's console is never exposed; add --debug-mode to see it");
    // Opened first: the inputs are parsed after before_parsing, which may
    // take away the right to open a file for writing.
    launch->console = TRY(open_console(console));
    if (!options.eif.empty())
        TRY(prepare_eif(options, *launch));
    else
        TRY(prepare_raw(options, *launch));

    launch->machine.console_fd = launch->console.get();
    launch->machine.input_fd = console == "-" ? STDIN_FILENO : -1;
    launch->machine.console_socket = options.console_socket;
    launch->machine.cpus = options.cpus;
    launch->machine.memory_bytes = options.memory_mib << 20;
    launch->machine.hugepage_size_mib = options.hugepage_size_mib;
    launch->machine.cpu_affinity = options.cpu_list;
    launch->machine.vsock = MachineConfig::Vsock {
        .guest_cid = options.cid, .listener_dir = options.listener_dir, .host_socket_path = options.vsock_socket,
        .host_listener = nullptr, .ready_fd = options.ready_fd, .qtsm = nullptr };
    launch->machine.notice = options.notice;
    return launch;
}

} // namespace qtbox::vmm
