#include <qtbox/enclave/paths.hpp>

#include <fmt/format.h>

#include <cstdlib>

namespace qtbox::enclave {

namespace {

// The parent's CID (vsock::PARENT_CID), the "3" of "3_<port>": this module
// builds on base alone, so the number is spelled here.
constexpr std::uint32_t PARENT_CID = 3;

} // namespace

std::string run_dir()
{
    char const* value = std::getenv(RUN_DIR_VARIABLE);
    if (value == nullptr || *value == '\0')
        return std::string(DEFAULT_RUN_DIR);
    return value;
}

std::string listener_dir(std::string_view run)
{
    return fmt::format("{}/vsock", run);
}

std::string listener_path(std::string_view vsock_dir, std::uint32_t port)
{
    return fmt::format("{}/{}_{}", vsock_dir, PARENT_CID, port);
}

std::string enclave_socket_path(std::string_view run, std::uint64_t enclave_id)
{
    return fmt::format("{}/enclaves/{}/vsock.sock", run, enclave_id);
}

std::string enclave_socket_path_for_cid(std::string_view run, std::uint32_t cid)
{
    return fmt::format("{}/enclaves/cid-{}/vsock.sock", run, cid);
}

} // namespace qtbox::enclave
