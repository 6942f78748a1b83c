// The parent's state-directory layout (docs/FORMATS.md §1): the run
// directory, the parent-side hybrid vsock listeners and the per-enclave
// directories.
//
//   <run>                        QTBOX_RUN_DIR, default /run/qtbox
//   <run>/vsock/3_<port>         where a guest connection to CID 3 port
//                                <port> arrives (qt-proxy listens there)
//   <run>/enclaves/<id>/vsock.sock       an enclave started by `qt`
//   <run>/enclaves/cid-<cid>/vsock.sock  a `vmm` started on its own
//
// The enclave's vsock.sock speaks the CONNECT/OK handshake of
// vsock/address.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace qtbox::enclave {

// docs/FORMATS.md §1.
constexpr std::string_view DEFAULT_RUN_DIR = "/run/qtbox";
constexpr char const* RUN_DIR_VARIABLE = "QTBOX_RUN_DIR";

// QTBOX_RUN_DIR when set and not empty, else /run/qtbox.
std::string run_dir();
// <run>/vsock: where the parent-side 3_<port> listeners live.
std::string listener_dir(std::string_view run);
// <vsock-dir>/3_<port>.
std::string listener_path(std::string_view vsock_dir, std::uint32_t port);
// <run>/enclaves/<id>/vsock.sock: an enclave started by `qt` (docs/FORMATS.md §1, §7:
// enclave ids are the non-negative integers `qt` prints as EnclaveID).
std::string enclave_socket_path(std::string_view run, std::uint64_t enclave_id);
// <run>/enclaves/cid-<cid>/vsock.sock: a `vmm` started on its own (docs/FORMATS.md §11).
std::string enclave_socket_path_for_cid(std::string_view run, std::uint32_t cid);

} // namespace qtbox::enclave
