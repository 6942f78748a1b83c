/*
 * verify_parse_cboren_doc and verify_parse_cboren_doc_pinned: parse and
 * verify a QingTian-profile attestation document (docs/FORMATS.md §4) into
 * struct attestation_document, anchored at its own cabundle[0] or at a root
 * the caller pins. What is and is not
 * verified is stated in qtsm_lib.h. COSE: RFC 9052 §4.2 (COSE_Sign1), §4.4
 * (Sig_structure); ES384: RFC 9053 §2.1.
 */
#include "qtsm_lib.h"

#include "qtsm_cbor.h"

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha512.h>
#include <mbedtls/x509_crt.h>

#include <string.h>

#define QTSM_DOCUMENT_MAX_SIZE 0x6000 /* docs/FORMATS.md §4 */
#define QTSM_SIGNATURE_SIZE 96        /* ES384: r || s, 48 bytes each */
#define QTSM_PCR_SIZE SHA384_LEN

struct span {
    const uint8_t *data;
    size_t size;
};

struct envelope {
    struct span protected_header;
    struct span payload;
    struct span signature;
};

static int load_status(int cbor_status)
{
    return cbor_status == QTSM_CBOR_INDEFINITE ? CBOR_DATA_INDEFINITE : CBOR_LOAD_ERROR;
}

/* The next item, which must be of `major` type. */
static int next_of(struct qtsm_cbor_reader *r, unsigned major, struct qtsm_cbor_item *item)
{
    int status = qtsm_cbor_next(r, item);
    if (status != QTSM_CBOR_OK)
        return load_status(status);
    return item->major == major ? NO_ERROR : CBOR_TYPE_ERROR;
}

/* The protected header must be {1: -35} (any integer widths: QingTian's
 * own documents use 4-byte ones). */
static int check_protected(struct span header)
{
    struct qtsm_cbor_reader r = { header.data, header.data + header.size };
    struct qtsm_cbor_item map, label, algorithm;
    if (qtsm_cbor_next(&r, &map) != QTSM_CBOR_OK || map.major != QTSM_CBOR_MAP || map.argument != CBOR_PROTECTED_MAP_NUM)
        return CBOR_SIG_ALG_ERROR;
    if (qtsm_cbor_next(&r, &label) != QTSM_CBOR_OK || label.major != QTSM_CBOR_UNSIGNED
        || label.argument != CBOR_LABEL_ALG)
        return CBOR_SIG_ALG_ERROR;
    /* -35 is major type 1 with argument 34. */
    if (qtsm_cbor_next(&r, &algorithm) != QTSM_CBOR_OK || algorithm.major != QTSM_CBOR_NEGATIVE
        || algorithm.argument != (uint64_t)(-1 - ECDSA384) || r.p != r.end)
        return CBOR_SIG_ALG_ERROR;
    return NO_ERROR;
}

static int parse_envelope(const uint8_t *data, size_t size, struct envelope *out)
{
    struct qtsm_cbor_reader r = { data, data + size };
    struct qtsm_cbor_item item;
    int status = qtsm_cbor_next(&r, &item);
    if (status != QTSM_CBOR_OK)
        return load_status(status);
    if (item.major == QTSM_CBOR_TAG) {
        if (item.argument != CBOR_COSE_SIGN1_TAG)
            return CBOR_TAG_ERROR;
        if ((status = qtsm_cbor_next(&r, &item)) != QTSM_CBOR_OK)
            return load_status(status);
    }
    if (item.major != QTSM_CBOR_ARRAY)
        return CBOR_TYPE_ERROR;
    if (item.argument != CBOR_DOC_ITEM_NUM)
        return CBOR_CONTENT_ERROR;
    struct span *bstrs[] = { &out->protected_header, NULL, &out->payload, &out->signature };
    for (int i = 0; i < CBOR_DOC_ITEM_NUM; ++i) {
        if ((status = qtsm_cbor_next(&r, &item)) != QTSM_CBOR_OK)
            return load_status(status);
        if (i == 1) {
            /* The unprotected header: an empty map. */
            if (item.major != QTSM_CBOR_MAP)
                return CBOR_TYPE_ERROR;
            if (item.argument != 0)
                return CBOR_CONTENT_ERROR;
            continue;
        }
        if (item.major != QTSM_CBOR_BYTES)
            return CBOR_TYPE_ERROR;
        bstrs[i]->data = item.data;
        bstrs[i]->size = (size_t)item.argument;
    }
    if (r.p != r.end)
        return CBOR_LOAD_ERROR;
    if (out->signature.size != QTSM_SIGNATURE_SIZE)
        return CBOR_SIG_ERROR;
    return check_protected(out->protected_header);
}

/* Reads the next key and checks it is `name` (docs/FORMATS.md §4 fixes the order). */
static int expect_key(struct qtsm_cbor_reader *r, const char *name)
{
    struct qtsm_cbor_item key;
    int status = next_of(r, QTSM_CBOR_TEXT, &key);
    if (status != NO_ERROR)
        return status;
    return qtsm_cbor_is_text(&key, name) ? NO_ERROR : CBOR_CONTENT_ERROR;
}

/* A byte string of min..max bytes copied into out (out_len = its size). */
static int read_bstr(struct qtsm_cbor_reader *r, uint8_t *out, uint32_t *out_len, size_t min, size_t max, int size_error)
{
    struct qtsm_cbor_item item;
    int status = next_of(r, QTSM_CBOR_BYTES, &item);
    if (status != NO_ERROR)
        return status;
    if (item.argument < min || item.argument > max)
        return size_error;
    if (item.argument > 0)
        memcpy(out, item.data, (size_t)item.argument);
    *out_len = (uint32_t)item.argument;
    return NO_ERROR;
}

static int parse_pcrs(struct qtsm_cbor_reader *r, struct pcr_raws *pcrs)
{
    struct qtsm_cbor_item map;
    int status = next_of(r, QTSM_CBOR_MAP, &map);
    if (status != NO_ERROR)
        return status;
    if (map.argument == 0 || map.argument > QTSM_MAX_PCR_COUNT)
        return CBOR_CONTENT_ERROR;
    int previous = -1;
    for (uint64_t i = 0; i < map.argument; ++i) {
        struct qtsm_cbor_item index;
        if ((status = next_of(r, QTSM_CBOR_UNSIGNED, &index)) != NO_ERROR)
            return status;
        /* Indices 0..31, ascending and so without duplicates. */
        if (index.argument >= QTSM_MAX_PCR_COUNT || (int)index.argument <= previous)
            return CBOR_CONTENT_ERROR;
        previous = (int)index.argument;
        struct pcr_raw *pcr = &pcrs->pcrs[i];
        pcr->index = (uint16_t)index.argument;
        uint32_t size = 0;
        if ((status = read_bstr(r, pcr->data, &size, QTSM_PCR_SIZE, QTSM_PCR_SIZE, CBOR_CONTENT_ERROR)) != NO_ERROR)
            return status;
    }
    pcrs->pcrs_num = (uint32_t)map.argument;
    return NO_ERROR;
}

static int parse_payload(struct span payload, struct attestation_doc *doc)
{
    struct qtsm_cbor_reader r = { payload.data, payload.data + payload.size };
    struct qtsm_cbor_item item;
    int status = next_of(&r, QTSM_CBOR_MAP, &item);
    if (status != NO_ERROR)
        return status;
    if (item.argument != CBOR_PAYLOAD_MAP_NUM)
        return CBOR_CONTENT_ERROR;

    if ((status = expect_key(&r, "module_id")) != NO_ERROR)
        return status;
    if ((status = next_of(&r, QTSM_CBOR_TEXT, &item)) != NO_ERROR)
        return status;
    if (item.argument == 0 || item.argument >= QTSM_MODULE_ID_MAX_SIZE || memchr(item.data, 0, (size_t)item.argument))
        return CBOR_CONTENT_ERROR;
    memcpy(doc->module_id, item.data, (size_t)item.argument);
    doc->module_id[item.argument] = '\0';

    if ((status = expect_key(&r, "timestamp")) != NO_ERROR)
        return status;
    if ((status = qtsm_cbor_next(&r, &item)) != QTSM_CBOR_OK)
        return load_status(status);
    /* docs/FORMATS.md §4: an unsigned integer in the 8-byte encoding (info 27). */
    if (item.major != QTSM_CBOR_UNSIGNED || item.info != 27 || item.argument == 0)
        return COBR_TIMESTAMP_ERROR;
    doc->timestamp = item.argument;

    if ((status = expect_key(&r, "digest")) != NO_ERROR)
        return status;
    if ((status = next_of(&r, QTSM_CBOR_TEXT, &item)) != NO_ERROR)
        return status;
    if (!qtsm_cbor_is_text(&item, "SHA384"))
        return CBOR_CONTENT_ERROR;
    doc->digest = QTSM_SHA384;

    if ((status = expect_key(&r, "pcrs")) != NO_ERROR || (status = parse_pcrs(&r, &doc->pcrs)) != NO_ERROR)
        return status;

    if ((status = expect_key(&r, "certificate")) != NO_ERROR
        || (status = read_bstr(&r, doc->certificate, &doc->cert_len, 1, QTSM_CERTIFICATE_MAX_SIZE, CBOR_CERT_ERROR))
            != NO_ERROR)
        return status;

    if ((status = expect_key(&r, "cabundle")) != NO_ERROR)
        return status;
    if ((status = next_of(&r, QTSM_CBOR_ARRAY, &item)) != NO_ERROR)
        return status;
    if (item.argument == 0 || item.argument > QTSM_CERTIFICATE_MAX_DEPTH)
        return CBOR_CABUNDLES_ERROR;
    doc->ca_bundles.ca_bundle_num = (uint32_t)item.argument;
    for (uint64_t i = 0; i < item.argument; ++i) {
        struct cabundle_raw *entry = &doc->ca_bundles.cabundles[i];
        if ((status = read_bstr(&r, entry->data, &entry->data_len, 1, QTSM_CERTIFICATE_MAX_SIZE, CBOR_CABUNDLES_ERROR))
            != NO_ERROR)
            return status;
    }

    if ((status = expect_key(&r, "user_data")) != NO_ERROR
        || (status = read_bstr(&r, doc->user_data, &doc->user_data_len, 0, QTSM_USER_DATA_MAX_SIZE, CBOR_CONTENT_ERROR))
            != NO_ERROR)
        return status;
    if ((status = expect_key(&r, "nonce")) != NO_ERROR
        || (status = read_bstr(&r, doc->nonce, &doc->nonce_len, 0, QTSM_NONCE_MAX_SIZE, CBOR_CONTENT_ERROR)) != NO_ERROR)
        return status;
    if ((status = expect_key(&r, "public_key")) != NO_ERROR
        || (status = read_bstr(&r, doc->pubkey, &doc->pubkey_len, 0, QTSM_PUBLIC_KEY_MAX_SIZE, CBOR_CONTENT_ERROR))
            != NO_ERROR)
        return status;
    return r.p == r.end ? NO_ERROR : CBOR_LOAD_ERROR;
}

/* The leaf, then cabundle[n-1] .. cabundle[1] as intermediates, anchored
 * at cabundle[0]; mbedTLS checks signatures, CA flags, path lengths, key
 * usage and validity now. With a pinned root, cabundle[0] must be exactly
 * that certificate (the same DER bytes), or the chain is refused. */
static int verify_chain(const struct attestation_doc *doc, mbedtls_x509_crt *chain, const uint8_t *pinned_root,
    uint32_t pinned_root_len)
{
    mbedtls_x509_crt anchor;
    mbedtls_x509_crt_init(&anchor);
    int status = NO_ERROR;
    const struct cabundle_raw *root = &doc->ca_bundles.cabundles[0];
    if (pinned_root != NULL
        && (root->data_len != pinned_root_len || memcmp(root->data, pinned_root, pinned_root_len) != 0)) {
        status = CBOR_CERT_VRY_ERROR;
    } else if (mbedtls_x509_crt_parse_der(chain, doc->certificate, doc->cert_len) != 0) {
        status = CBOR_CERT_ERROR;
    } else if (mbedtls_x509_crt_parse_der(&anchor, root->data, root->data_len) != 0) {
        status = CBOR_CABUNDLES_ERROR;
    } else {
        for (uint32_t i = doc->ca_bundles.ca_bundle_num; i-- > 1 && status == NO_ERROR;) {
            const struct cabundle_raw *entry = &doc->ca_bundles.cabundles[i];
            if (mbedtls_x509_crt_parse_der(chain, entry->data, entry->data_len) != 0)
                status = CBOR_CABUNDLES_ERROR;
        }
    }
    uint32_t flags = 0;
    if (status == NO_ERROR && mbedtls_x509_crt_verify(chain, &anchor, NULL, NULL, &flags, NULL, NULL) != 0)
        status = CBOR_CERT_VRY_ERROR;
    mbedtls_x509_crt_free(&anchor);
    return status;
}

static void hash_head(mbedtls_sha512_context *sha, unsigned major, uint64_t argument)
{
    uint8_t buffer[9];
    struct qtsm_cbor_writer w = { buffer, sizeof(buffer), 0, 0 };
    qtsm_cbor_head(&w, major, argument);
    mbedtls_sha512_update_ret(sha, buffer, w.size);
}

/* SHA-384 of Sig_structure = ["Signature1", protected, h'', payload],
 * streamed so the payload is never copied. */
static void sig_structure_digest(const struct envelope *envelope, uint8_t digest[64])
{
    static const char context[] = "Signature1";
    mbedtls_sha512_context sha;
    mbedtls_sha512_init(&sha);
    mbedtls_sha512_starts_ret(&sha, 1);
    hash_head(&sha, QTSM_CBOR_ARRAY, 4);
    hash_head(&sha, QTSM_CBOR_TEXT, sizeof(context) - 1);
    mbedtls_sha512_update_ret(&sha, (const uint8_t *)context, sizeof(context) - 1);
    hash_head(&sha, QTSM_CBOR_BYTES, envelope->protected_header.size);
    mbedtls_sha512_update_ret(&sha, envelope->protected_header.data, envelope->protected_header.size);
    hash_head(&sha, QTSM_CBOR_BYTES, 0);
    hash_head(&sha, QTSM_CBOR_BYTES, envelope->payload.size);
    mbedtls_sha512_update_ret(&sha, envelope->payload.data, envelope->payload.size);
    mbedtls_sha512_finish_ret(&sha, digest);
    mbedtls_sha512_free(&sha);
}

static int ecdsa_verify(mbedtls_ecp_keypair *key, const uint8_t *digest, const uint8_t *r_bytes, const uint8_t *s_bytes)
{
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    int ok = mbedtls_mpi_read_binary(&r, r_bytes, QTSM_SIGNATURE_SIZE / 2) == 0
        && mbedtls_mpi_read_binary(&s, s_bytes, QTSM_SIGNATURE_SIZE / 2) == 0
        && mbedtls_ecdsa_verify(&key->grp, digest, SHA384_LEN, &key->Q, &r, &s) == 0;
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return ok;
}

static int verify_signature(const struct envelope *envelope, mbedtls_x509_crt *leaf)
{
    if (mbedtls_pk_get_type(&leaf->pk) != MBEDTLS_PK_ECKEY)
        return CBOR_CERT_PUBKEY_ERROR;
    mbedtls_ecp_keypair *key = mbedtls_pk_ec(leaf->pk);
    if (key == NULL || key->grp.id != MBEDTLS_ECP_DP_SECP384R1)
        return CBOR_CERT_PUBKEY_ERROR;
    uint8_t digest[64];
    sig_structure_digest(envelope, digest);
    const uint8_t *signature = envelope->signature.data;
    size_t half = QTSM_SIGNATURE_SIZE / 2;
    if (ecdsa_verify(key, digest, signature, signature + half))
        return NO_ERROR;
    /* QingTian's hypervisor writes each half byte-reversed (docs/PLATFORMS.md §Q5). */
    uint8_t r[QTSM_SIGNATURE_SIZE / 2], s[QTSM_SIGNATURE_SIZE / 2];
    for (size_t i = 0; i < half; ++i) {
        r[i] = signature[half - 1 - i];
        s[i] = signature[2 * half - 1 - i];
    }
    return ecdsa_verify(key, digest, r, s) ? NO_ERROR : CBOR_SIG_ERROR;
}

static int verify_parse(const uint8_t *doc_cose, uint32_t doc_len, const uint8_t *pinned_root, uint32_t pinned_root_len,
    struct attestation_document *cur_doc)
{
    memset(cur_doc, 0, sizeof(*cur_doc));
    struct envelope envelope;
    int status = parse_envelope(doc_cose, doc_len, &envelope);
    if (status == NO_ERROR)
        status = parse_payload(envelope.payload, &cur_doc->doc);
    if (status == NO_ERROR) {
        mbedtls_x509_crt chain;
        mbedtls_x509_crt_init(&chain);
        status = verify_chain(&cur_doc->doc, &chain, pinned_root, pinned_root_len);
        if (status == NO_ERROR)
            status = verify_signature(&envelope, &chain);
        mbedtls_x509_crt_free(&chain);
    }
    if (status == NO_ERROR)
        memcpy(cur_doc->signature, envelope.signature.data, QTSM_SIGNATURE_SIZE);
    else
        memset(cur_doc, 0, sizeof(*cur_doc));
    return status;
}

int verify_parse_cboren_doc(const uint8_t *doc_cose, const uint32_t doc_len, struct attestation_document *cur_doc)
{
    if (doc_cose == NULL || cur_doc == NULL || doc_len == 0 || doc_len > QTSM_DOCUMENT_MAX_SIZE)
        return CBOR_INVALID_PARAM;
    return verify_parse(doc_cose, doc_len, NULL, 0, cur_doc);
}

int verify_parse_cboren_doc_pinned(const uint8_t *doc_cose, const uint32_t doc_len, const uint8_t *root_der,
    const uint32_t root_der_len, struct attestation_document *cur_doc)
{
    if (doc_cose == NULL || cur_doc == NULL || doc_len == 0 || doc_len > QTSM_DOCUMENT_MAX_SIZE || root_der == NULL
        || root_der_len == 0 || root_der_len > QTSM_CERTIFICATE_MAX_SIZE)
        return CBOR_INVALID_PARAM;
    return verify_parse(doc_cose, doc_len, root_der, root_der_len, cur_doc);
}
