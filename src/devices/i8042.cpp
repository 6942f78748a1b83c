#include <qtbox/devices/i8042.hpp>

#include <algorithm>

namespace qtbox::devices {

void I8042::read(std::uint64_t offset, std::span<std::uint8_t> data)
{
    std::fill(data.begin(), data.end(), 0);
    if (offset == COMMAND_OFFSET && !data.empty())
        data[0] = STATUS_OUTPUT_FULL;
}

void I8042::write(std::uint64_t offset, ByteView data)
{
    if (offset == COMMAND_OFFSET && !data.empty() && data[0] == COMMAND_RESET)
        m_reset();
}

} // namespace qtbox::devices
