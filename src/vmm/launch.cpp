#include <qtbox/base/sys.hpp>
#include <qtbox/boot/bzimage.hpp>
#include <qtbox/boot/layout.hpp>
#include <qtbox/boot/zero_page.hpp>
#include <qtbox/vmm/launch.hpp>

#include <fmt/format.h>

#include <fcntl.h>
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
    // through a planted symbolic link.
    auto fd = sys::open(console, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NOCTTY, CONSOLE_FILE_MODE);
    if (fd.is_error())
        return fd.release_error().context("--console");
    return fd.release_value();
}

ErrorOr<void> prepare_raw(LaunchOptions const& options, Launch& launch)
{
    auto kernel_stat = TRY(sys::stat(options.kernel));
    std::uint64_t total = static_cast<std::uint64_t>(kernel_stat.st_size) + options.cmdline.size();
    std::vector<std::uint64_t> sizes;
    for (auto const& path : options.initrds) {
        auto fd = TRY(sys::open(path, O_RDONLY));
        auto st = TRY(sys::fstat(fd.get()));
        if (!S_ISREG(st.st_mode))
            return Error::from_code(LaunchFailure::BadImage, fmt::format("initrd {}: not a regular file", path));
        sizes.push_back(static_cast<std::uint64_t>(st.st_size));
        total += static_cast<std::uint64_t>(st.st_size);
        launch.initrd_files.push_back(std::move(fd));
    }
    launch.image_bytes = total;
    std::uint64_t minimum = minimum_memory_mib(total);
    if (options.memory_mib < minimum)
        return Error::from_code(LaunchFailure::MemoryTooSmall,
            fmt::format("--mem {} MiB is too small: this kernel and initrds ({:.1f} MiB) need at least {} MiB "
                        "(128 MiB and 4 times the image, SPEC §3)",
                options.memory_mib, static_cast<double>(total) / (1 << 20), minimum));

    auto kernel = sys::read_file(options.kernel, boot::MAX_KERNEL_SIZE);
    if (kernel.is_error())
        return kernel.release_error().context(fmt::format("kernel {}", options.kernel));
    launch.kernel = kernel.release_value();
    // Parse now for a clear error before KVM: the machine parses again.
    auto image = boot::parse_bzimage(launch.kernel);
    if (image.is_error())
        return Error::from_code(LaunchFailure::BadImage, fmt::format("kernel {}: {}", options.kernel, image.error().message()));
    if (auto line = boot::command_line_bytes(image.value(), options.cmdline); line.is_error())
        return Error::from_code(LaunchFailure::BadImage, fmt::format("--cmdline: {}", line.error().message()));

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

} // namespace

std::uint64_t minimum_memory_mib(std::uint64_t image_bytes)
{
    constexpr std::uint64_t MIB = 1 << 20;
    std::uint64_t four_times = (image_bytes / MIB) * 4 + ((image_bytes % MIB) * 4 + MIB - 1) / MIB;
    return std::max<std::uint64_t>(boot::MIN_MEMORY / MIB, four_times);
}

void Launch::release_inputs()
{
    Bytes().swap(kernel);
    machine.kernel = {};
    machine.fill_initrds = {};
    initrd_files.clear();
}

ErrorOr<std::unique_ptr<Launch>> prepare_launch(LaunchOptions const& options)
{
    auto launch = std::make_unique<Launch>();
    if (options.cpus == 0 || options.cpus > MAX_VCPUS)
        return Error::from_code(LaunchFailure::Usage, fmt::format("--cpus {}: between 1 and {}", options.cpus, MAX_VCPUS));
    if (options.memory_mib > boot::MAX_MEMORY >> 20)
        return Error::from_code(LaunchFailure::Usage, fmt::format("--mem {} MiB: at most {} MiB", options.memory_mib, boot::MAX_MEMORY >> 20));
    if (!options.eif.empty())
        return Error::from_code(LaunchFailure::Usage, "--eif: booting an EIF is not available in this build yet");

    std::string console = options.console.empty() ? "-" : options.console;
    TRY(prepare_raw(options, *launch));

    launch->console = TRY(open_console(console));
    launch->machine.console_fd = launch->console.get();
    launch->machine.input_fd = console == "-" ? STDIN_FILENO : -1;
    launch->machine.cpus = options.cpus;
    launch->machine.memory_bytes = options.memory_mib << 20;
    return launch;
}

} // namespace qtbox::vmm
