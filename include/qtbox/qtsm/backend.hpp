// The QTSM backend: what the VMM serves on vsock port 9001 (docs/FORMATS.md §5), and
// what the test-only backend in tests/qtsm serves on a Unix socket.
//
// Overview
// - A Backend owns the PCR bank (pcr_bank.hpp) and a leaf issuer
//   (pki/leaf.hpp: P-384 key in memory, 3 h certificates, a new one every
//   hour). It is transport-agnostic: handle() maps one request item to one
//   response item and never fails (failures become {"Error": NAME}), and
//   serve() runs the framing loop over one connected descriptor.
// - Documents (docs/FORMATS.md §4) are assembled by assemble_document(): the payload in
//   the QingTian order through attest::encode_qingtian_payload, signed as an
//   untagged COSE_Sign1 with the protected header a1 01 38 22 by the current
//   leaf, in the configured signature byte order.
// - Prepared nonces: a thread that runs only on otherwise idle CPU (the
//   VMM's, SCHED_IDLE) loops on wait_for_nonce_room() and prepare_nonce();
//   an Attestation then signs with a prepared nonce (crypto::EcdsaNonce: no
//   scalar multiplication while the guest waits) and the RFC 6979 way when
//   none is left. Preparation computes on a key of its own, so it never
//   holds the lock of the leaf key that signs; it starts with the first
//   Attestation request, so a guest that never asks for one costs no CPU.
// - Thread safety: handle(), execute() and the nonce functions may run on
//   many threads at once (the bank, the issuer and the nonce pool lock
//   internally, signing locks per key).
//
// Wiring it into the VMM (docs/FORMATS.md §5, §6):
//     qtsm::BackendConfig config;
//     config.system_pcrs = pcrs;        // PCR0-15 as docs/FORMATS.md §2 says (zeros in debug mode)
//     config.module_id = TRY(qtsm::make_module_id(instance_id));
//     config.signature_order = order;   // vmm --signature-order
//     auto backend = TRY(qtsm::Backend::create(config, TRY(pki::load(pki::pki_directory()))));
//     // for the first (only) connection on port 9001:
//     TRY(backend->serve(connection_fd));
// or, from an event loop, feed a FrameReader and answer each frame with
// make_frame(backend->handle(item)).
#pragma once

#include <qtbox/base/bytes.hpp>
#include <qtbox/base/error.hpp>
#include <qtbox/base/time.hpp>
#include <qtbox/cose/sign1.hpp>
#include <qtbox/pki/leaf.hpp>
#include <qtbox/pki/pki.hpp>
#include <qtbox/qtsm/pcr_bank.hpp>
#include <qtbox/qtsm/protocol.hpp>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qtbox::qtsm {

// The instance-id part of a module id: what PCR4 measures, a lowercase
// dashed UUID on QingTian (docs/PLATFORMS.md §Q6). qtbox accepts 1..43
// characters of [A-Za-z0-9-], so that "<id>.enc-<16 hex>" fits the leaf's
// commonName (pki::MAX_MODULE_ID_SIZE = 64).
constexpr std::size_t MAX_INSTANCE_ID_SIZE = 43;

// docs/FORMATS.md §4: "<instance-id>.enc-<16 hex>", the 16 hex digits random.
ErrorOr<std::string> make_module_id(std::string_view instance_id);

struct BackendConfig {
    SystemPcrs system_pcrs {};
    std::string module_id;
    cose::SignatureOrder signature_order { cose::SignatureOrder::Rfc9052 };
    // The document timestamp and the leaf rotation use this clock (tests
    // inject one to step over hours).
    pki::Clock clock { now_millis };
};

// The docs/FORMATS.md §4 document for `request`, signed by `leaf` at `timestamp`
// (with `nonce` when it is given and usable, which it consumes; RFC 6979
// otherwise). `pcrs` are the registers to include (PcrBank::document_pcrs).
// Fails with QtsmError::InternalError when the result would exceed
// MAX_DOCUMENT_SIZE.
ErrorOr<Bytes> assemble_document(std::string const& module_id, UnixMillis timestamp,
    std::vector<PcrEntry> const& pcrs, pki::Leaf const& leaf, AttestationRequest const& request,
    cose::SignatureOrder order, crypto::EcdsaNonce* nonce = nullptr);

class Backend {
public:
    // `authority` (pki::load) issues the leaves; its parent key stays in
    // this process's memory.
    static ErrorOr<std::unique_ptr<Backend>> create(BackendConfig config, pki::Authority authority);

    // One request item (a frame's content) to one response item. When
    // `diagnostic` is given, it receives why a request failed (empty when
    // it succeeded), for the caller's log; the peer only gets the NAME.
    Bytes handle(ByteView request, std::string* diagnostic = nullptr);
    // The same on a decoded request.
    Response execute(Request const& request, std::string* diagnostic = nullptr);

    // Serves one connected stream: reads frames (≤ MAX_REQUEST_SIZE) and
    // writes one response frame for each, in order, until the peer closes.
    // A frame whose length prefix is over the limit is answered
    // InputTooLarge and ends the connection (the stream can no longer be
    // trusted to be in step); every other bad request is answered and the
    // connection goes on. Returns the I/O error that ended it, if any.
    ErrorOr<void> serve(int fd);

    // Prepares one nonce for the leaves' curve when fewer than
    // NONCE_POOL_SIZE wait; false when the pool was full (nothing done).
    static constexpr std::size_t NONCE_POOL_SIZE = 8;
    ErrorOr<bool> prepare_nonce();
    std::size_t prepared_nonces() const;
    // Blocks until the pool has room and an Attestation request has been
    // seen (true), or stop_preparing() was called (false).
    bool wait_for_nonce_room();
    void stop_preparing();

    PcrBank& pcrs() { return m_pcrs; }
    std::string const& module_id() const { return m_module_id; }
    cose::SignatureOrder signature_order() const { return m_signature_order; }

private:
    Backend(BackendConfig const& config, std::unique_ptr<pki::LeafIssuer> issuer)
        : m_pcrs(config.system_pcrs), m_module_id(config.module_id), m_signature_order(config.signature_order),
          m_clock(config.clock), m_issuer(std::move(issuer)) { }
    std::optional<crypto::EcdsaNonce> take_nonce();

    ErrorOr<Response> attest(AttestationRequest const& request);

    PcrBank m_pcrs;
    std::string m_module_id;
    cose::SignatureOrder m_signature_order;
    pki::Clock m_clock;
    std::unique_ptr<pki::LeafIssuer> m_issuer;
    // Made by the first prepare_nonce(), then kept. Only its curve and its
    // group (with mbedTLS's table of multiples of the base point) are used:
    // it never signs.
    std::mutex m_nonce_key_mutex;
    std::optional<crypto::PrivateKey> m_nonce_key;
    mutable std::mutex m_nonces_mutex;
    std::condition_variable m_nonce_room;
    std::vector<crypto::EcdsaNonce> m_nonces;
    bool m_nonces_wanted { false };
    bool m_stop_preparing { false };
};

} // namespace qtbox::qtsm
