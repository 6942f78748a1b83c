// The QTSM inside the VMM (docs/FORMATS.md §2, §4, §5, §6): the enclave's
// security module on CID 3 port 9001, served by the vsock device's event
// loop, never forwarded to the parent.
//
// - The platform registers are fixed here, before the first guest
//   instruction: PCR0/1/2/8 from the EIF's measurements (the launch's
//   measured pass), PCR3 = measure(--agency) or zeros, PCR4 =
//   measure(instance id), the rest zeros; all sixteen are zeros in debug
//   mode and in raw mode (no EIF: nothing was measured), so such an
//   enclave can never pass a production policy.
// - The instance id is --instance-id, else /etc/machine-id written as a
//   lowercase dashed UUID (QingTian's parent instance ids are UUIDs); a
//   debug or raw-mode enclave on a host without one gets a random UUID.
// - The leaf key is generated in this process's memory and certified by
//   the local PKI's parent CA (QTBOX_PKI_DIR, `qt pki init`); the guest
//   never sees a key. A production enclave without a PKI is refused
//   (QtsmSetupError::NoPki, with the hint). A debug or raw-mode enclave
//   without one gets a throwaway root and parent made in memory for this
//   run: its documents are well formed but chain to nothing anyone trusts.
// - One connection per boot: the first (init's, which hands it to
//   qtsm-server) is served; every later one is reset. Requests are
//   answered in order (qtsm::Backend::handle) on the QTSM's own thread,
//   never on the event loop: the vsock device gets one end of a Unix
//   socketpair made inside the VMM (VsockService::open_socket) and moves
//   the guest's bytes through it as through any host socket, so while a
//   document is being signed the loop keeps serving the guest (the answers
//   before it, vsock credit, the heartbeat, the console). qtsm-server
//   pipelines its clients' requests, so the thread signs one document
//   after another while the answers stream out. A framing error (a zero
//   or over-long length prefix) closes the channel, since qtsm-server, the
//   only legitimate peer, never sends one.
// - The thread (named "qtsm") starts with the service, before the VM runs,
//   with every asynchronous signal blocked (the process's signals are the
//   event loop's); with QtsmOptions::sandbox it enters its own seccomp
//   allow-list (vmm/seccomp.hpp install_qtsm_filter) before it reads a
//   byte, and create_qtsm fails if it cannot.
#pragma once

#include <qtbox/base/error.hpp>
#include <qtbox/base/event.hpp>
#include <qtbox/base/fd.hpp>
#include <qtbox/cose/sign1.hpp>
#include <qtbox/devices/virtio/vsock.hpp>
#include <qtbox/eif/pcr.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/backend.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::vmm {

enum class QtsmSetupError {
    NoPki = 1,     // production mode and no local PKI
    InstanceId,    // no usable instance id (bad --instance-id, no /etc/machine-id)
    Agency,        // an unusable --agency
};

constexpr char const* MACHINE_ID_PATH = "/etc/machine-id";
// --agency: the string PCR3 measures (QingTian's agency/role), at most this long.
constexpr std::size_t MAX_AGENCY_SIZE = 256;

struct QtsmOptions {
    // An EIF launched without --debug-mode.
    bool production { false };
    // The launch's measured pass (EIF mode); absent in raw mode.
    std::optional<eif::Measurements> measurements;
    // Empty: read machine_id_path.
    std::string instance_id;
    std::string machine_id_path { MACHINE_ID_PATH };
    std::optional<std::string> agency;
    std::string pki_directory;
    // pki::load(pki_directory) as the applet ran it before it dropped its
    // privileges (vmm(1) --user: the keys are root's); create_qtsm takes it
    // from here, once, instead of reading the directory. Empty: read it.
    std::shared_ptr<ErrorOr<pki::Authority>> preloaded_pki;
    cose::SignatureOrder signature_order { cose::SignatureOrder::Rfc9052 };
    // Reports a second connection to the QTSM port (refused).
    NoticeSink notice;
    // The QTSM's thread enters its seccomp allow-list (vmm runs with it
    // unless --no-seccomp).
    bool sandbox { false };
};

// /etc/machine-id's 32 hex digits (and its newline) as a lowercase dashed
// UUID, "0123abcd-...". Anything else is QtsmSetupError::InstanceId.
ErrorOr<std::string> instance_id_from_machine_id(std::string_view contents);

// docs/FORMATS.md §2: the sixteen platform registers for these options and
// this instance id.
qtsm::SystemPcrs platform_pcrs(QtsmOptions const& options, std::string const& instance_id);

// One QTSM channel per boot, answered by `backend` on the service's own
// thread (above).
class QtsmService final : public devices::virtio::VsockService {
public:
    // Makes the socketpair and starts the thread. `first_connection_note`,
    // when not empty, is reported (Info) when the guest first connects.
    static ErrorOr<std::shared_ptr<QtsmService>> create(std::shared_ptr<qtsm::Backend> backend, NoticeSink notice,
        std::string first_connection_note = {}, bool sandbox = false);
    // Closes the channel (the thread's end) and joins the thread.
    ~QtsmService() override;
    QtsmService(QtsmService const&) = delete;
    QtsmService& operator=(QtsmService const&) = delete;

    bool answers_on_socket() const override { return true; }
    // The first call gets the device's end (non-blocking); later ones an
    // invalid fd (refused, with a notice).
    UniqueFd open_socket() override;
    qtsm::Backend& backend() { return *m_backend; }

    struct Thread;

private:
    QtsmService(std::shared_ptr<qtsm::Backend> backend, NoticeSink notice, std::string first_connection_note);
    std::shared_ptr<qtsm::Backend> m_backend;
    NoticeSink m_notice;
    std::string m_first_connection_note;
    UniqueFd m_device_end;
    bool m_opened { false };
    std::unique_ptr<Thread> m_thread;
};

struct QtsmSetup {
    std::shared_ptr<QtsmService> service;
    // What vmm logs at start for a production enclave: PCR3/PCR4, the PKI
    // used, the module id. A debug or raw-mode guest's are one notice when
    // it first connects.
    std::vector<std::string> notes;
};

// Everything before KVM: the instance id, the registers, the PKI, the
// first leaf.
ErrorOr<QtsmSetup> create_qtsm(QtsmOptions const& options);

} // namespace qtbox::vmm
