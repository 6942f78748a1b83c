#include <qtbox/enclave/errors.hpp>

#include <array>

namespace qtbox::enclave {

namespace {

// Index = code (docs/PLATFORMS.md §Q1, ECS-DOC 1420), final periods dropped.
constexpr std::array<std::string_view, 44> MESSAGES { "",
    "Missing necessary argument", "Invalid argument provided", "File operation failure",
    "Ioctl get sandbox capacity failure", "Ioctl define sandbox failure",
    "Invalid parameters provided in configuration file", "Missing necessary parameters in configuration file",
    "Mmap memory failure", "Ioctl add memory failure", "Load image failure because provided memory is too small",
    "Ioctl add cpu failure", "Lock acquire failure", "Socket initialization failure", "Socket binding failure",
    "Socket listen failure", "Socket accept failure", "Write heartbeat to the enclave failure",
    "Read heartbeat from the enclave failure", "Ioctl start an enclave failure", "Wait heartbeat timeout",
    "Get json print object failure", "Write enclave's configuration file failure", "Socket connection failure",
    "Write cmd to the enclave server failure", "Read message from the enclave server failure",
    "Create cjson object failure", "Create cjson array failure", "The required enclave is not running",
    "Invalid enclave pid", "Add number into cjson object failure", "Add string into cjson object failure",
    "The required enclave is not running in the debug mode", "Enclave console read failure",
    "Write img header failure", "Write cmdline failure", "Write kernel failure", "Write initrd failure",
    "Write certificate failure", "Get pcr failure", "Add signature failure",
    "The required enclave is in maintenance state", "The required enclave is in maintenance state",
    "The cid has already been used" };

} // namespace

std::string_view qt_error_message(QtError error)
{
    auto code = static_cast<int>(error);
    if (code < 1 || code >= static_cast<int>(MESSAGES.size()))
        return MESSAGES[static_cast<std::size_t>(QtError::InvalidArgument)];
    return MESSAGES[static_cast<std::size_t>(code)];
}

} // namespace qtbox::enclave
