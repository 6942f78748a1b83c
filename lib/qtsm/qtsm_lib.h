/*
 * qtsm_lib.h: the QingTian Security Module C API (docs/FORMATS.md §5), implemented by
 * qtbox's libqtsm.a on top of qtsm-server's Unix socket.
 *
 * The function names and signatures are QingTian's (docs/PLATFORMS.md
 * §Q4), so existing QingTian applications build unchanged. Differences from
 * QingTian's library, by design:
 *   - the "device" is qtsm-server's socket: /run/qtsm.sock, or the path in
 *     the environment variable QTSM_SOCKET when it is set and not empty;
 *     qtsm_lib_init() returns a connected socket descriptor;
 *   - requests and responses are the CBOR messages of docs/FORMATS.md §5, framed with a
 *     u32 big-endian length; a call waits at most 30 s for its answer
 *     (INTERNAL_ERROR after that);
 *   - calls on one descriptor may come from several threads: each call's
 *     round trip holds that descriptor's lock; calls on different
 *     descriptors (a qtsm_lib_init() per thread) run concurrently.
 *
 * Return values: NO_ERROR (0) or an enum error_code value. A status from the
 * QTSM ({"Error": NAME}) is returned as is; an answer that is not a valid
 * response to the request gives INVALID_RESPONSE; a failed send or receive,
 * or no answer in time, gives INTERNAL_ERROR; a NULL pointer where one is
 * required gives INVALID_ARGUMENT; an output buffer too small for the answer
 * gives BUFFER_TOO_SMALL (its *len then holds the size needed).
 *
 * Linking: libqtsm.a uses mbedTLS for verify_parse_cboren_doc:
 *     cc app.c -I<dir of this header> libqtsm.a -lmbedx509 -lmbedcrypto
 */
#ifndef QTSM_LIB_H
#define QTSM_LIB_H

#include <stdbool.h>
#include <stdint.h>

#include "qtsm_lib_comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Connects to qtsm-server. Returns the descriptor (> 0), or -1 with errno
 * set when the socket cannot be reached. */
int qtsm_lib_init(void);

/* Closes a descriptor from qtsm_lib_init(). */
void qtsm_lib_exit(int qtsm_dev_fd);

/* DescribePCR: the lock state and value of PCR `index` (0..31).
 * *data_len: capacity of `data` in, bytes written (48) out. */
int qtsm_describe_pcr(const int fd, const uint16_t index, bool *locked,
    uint8_t *data, uint32_t *data_len);

/* ExtendPCR: PCR[index] = SHA384(PCR[index] || req_data) for a user PCR
 * (16..31); the new value is written to pcr_data.
 * *pcr_data_len: capacity in, bytes written (48) out. */
int qtsm_extend_pcr(const int fd, const uint16_t index, const uint8_t *req_data,
    const uint32_t req_data_len, uint8_t *pcr_data, uint32_t *pcr_data_len);

/* LockPCR: makes a user PCR read-only until the enclave stops; *locked is
 * true on success. */
int qtsm_lock_pcr(const int fd, const uint16_t index, bool *locked);

/* LockPCRs: locks the `count` PCRs listed in `range` (all or none). */
int qtsm_lock_pcrs(const int fd, const uint32_t count, const uint16_t *range,
    bool *locked);

/* DescribeQTSM: version, module id, PCR count, locked PCRs, digest. */
int qtsm_get_describe(const int fd, describe_qtsm *qtsm_description);

/* Attestation: an attestation document (COSE_Sign1, docs/FORMATS.md §4) carrying the
 * given user data (<= 512 bytes), nonce (<= 512) and public key (<= 1024);
 * each may be NULL with length 0. *att_doc_data_len: capacity in, document
 * size out (at most 0x6000). */
int qtsm_get_attestation(const int fd,
    const uint8_t *user_data, const uint32_t user_data_len,
    const uint8_t *nonce_data, const uint32_t nonce_data_len,
    const uint8_t *pubkey_data, const uint32_t pubkey_len,
    uint8_t *att_doc_data, uint32_t *att_doc_data_len);

/* GetRandom: fills rnd_data with rnd_data_len random bytes from the QTSM's
 * DRBG (as many requests as it takes). */
int qtsm_get_random(int fd, uint8_t *rnd_data, uint32_t rnd_data_len);

/* A zeroed attestation_document on the heap (NULL when out of memory);
 * release it with qtsm_free_doc(), which also sets *doc to NULL. */
struct attestation_document *qtsm_new_doc(void);
void qtsm_free_doc(struct attestation_document **doc);

/* Parses and verifies a QingTian-profile document (docs/FORMATS.md §4) into *cur_doc.
 *
 * Verified:
 *   - the COSE_Sign1 structure: a 4-item array, untagged or tag 18, with a
 *     protected header {1: -35} (ES384), an empty unprotected map, and a
 *     96-byte signature; definite lengths only (CBOR_DATA_INDEFINITE);
 *   - the payload: a map of exactly the 9 keys in the docs/FORMATS.md §4 order, each of
 *     its type and within the QingTian size limits, the timestamp in the
 *     8-byte encoding, 48-byte PCRs with indices 0..31;
 *   - the certificate chain, with mbedTLS: the leaf, then cabundle from its
 *     last entry to cabundle[0], which must be a self-signed CA; signatures,
 *     CA flags, path lengths, key usage and validity at the current time
 *     (CBOR_CERT_VRY_ERROR);
 *   - the COSE signature over Sig_structure with the leaf's P-384 key, with
 *     r and s big-endian (RFC 9052) or each byte-reversed (as QingTian's
 *     hypervisor writes them) (CBOR_SIG_ERROR).
 * !!! WARNING: NOT verified: that cabundle[0] is a root you trust. The
 * !!! document names its own root, so ANYONE can make a document that
 * !!! passes this function: a self-made root, parent CA and leaf will do.
 * !!! Use verify_parse_cboren_doc_pinned (below) with the root you trust,
 * !!! or compare cur_doc->doc.ca_bundles.cabundles[0] with it yourself, or
 * !!! use attest-verify --root. Nonce, freshness and PCR policy are yours to
 * !!! check either way.
 *
 * At most QTSM_CERTIFICATE_MAX_DEPTH (4) cabundle entries fit the structure;
 * longer bundles give CBOR_CABUNDLES_ERROR. The signature is stored as it
 * appears in the document. Returns NO_ERROR or an enum cbor_errcode value;
 * *cur_doc is only meaningful on NO_ERROR. */
int verify_parse_cboren_doc(const uint8_t *doc_cose, const uint32_t doc_len,
    struct attestation_document *cur_doc);

/* verify_parse_cboren_doc anchored at a root the caller trusts (a qtbox
 * addition, not in QingTian's library): the same checks, and cabundle[0]
 * must be exactly `root_der` (the DER of your pinned root certificate, for
 * qtbox the PKI's root.pem, 1..QTSM_CERTIFICATE_MAX_SIZE bytes); any other
 * root is CBOR_CERT_VRY_ERROR. A NULL or empty root is CBOR_INVALID_PARAM.
 * This is the call to use. */
int verify_parse_cboren_doc_pinned(const uint8_t *doc_cose, const uint32_t doc_len,
    const uint8_t *root_der, const uint32_t root_der_len, struct attestation_document *cur_doc);

#ifdef __cplusplus
}
#endif

#endif
