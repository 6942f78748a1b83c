// libFuzzer target: the bzImage boot header (the Linux boot protocol,
// Documentation/arch/x86/boot.rst) on arbitrary bytes, with the command line
// the VMM would pass: the input's last byte says how many of its final bytes
// are the command line (the rest is the image).
// Properties checked beyond "no crash, no hang, no leak": the views the
// parser returns lie inside the image, the setup header starts at 0x1F1,
// the reserved end covers the loaded kernel, and an accepted command line
// fits the kernel's cmdline_size and ends with one NUL.
#include "support.hpp"

#include <qtbox/boot/bzimage.hpp>
#include <qtbox/boot/zero_page.hpp>

#include <cstdint>
#include <string_view>

using qtbox::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    using namespace qtbox;
    if (size == 0)
        return 0;
    std::size_t cmdline_size = std::min<std::size_t>(data[size - 1], size - 1);
    ByteView image(data, size - 1 - cmdline_size);
    std::string_view cmdline(reinterpret_cast<char const*>(data + image.size()), cmdline_size);

    auto parsed = boot::parse_bzimage(image);
    if (parsed.is_error())
        return 0;
    auto const& bz = parsed.value();
    auto inside = [&](ByteView view) {
        return view.empty() || (view.data() >= image.data() && view.data() + view.size() <= image.data() + image.size());
    };
    require(inside(bz.setup_header) && inside(bz.kernel));
    require(bz.setup_header.data() == image.data() + 0x1F1);
    std::uint64_t end = boot::kernel_reserved_end(bz, boot::KERNEL_LOAD_ADDRESS);
    require(end >= boot::KERNEL_LOAD_ADDRESS + bz.kernel.size());

    auto line = boot::command_line_bytes(bz, cmdline);
    if (line.is_error())
        return 0;
    require(!line.value().empty() && line.value().back() == 0);
    require(line.value().size() - 1 <= bz.cmdline_size);
    return 0;
}
