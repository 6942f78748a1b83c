/*
 * A QingTian-style application of libqtsm (acceptance 4): gets a document
 * with qtsm_get_attestation and parses/verifies it with
 * verify_parse_cboren_doc, describes PCR16 and extends it. Prints what it
 * saw as "key value" lines for capi.test to compare with python3 hashlib
 * and attest-verify; exits non-zero on the first unexpected status.
 */
#include "qtsm_lib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const char *key, const uint8_t *data, uint32_t size)
{
    printf("%s ", key);
    for (uint32_t i = 0; i < size; ++i)
        printf("%02x", data[i]);
    printf("\n");
}

#define EXPECT(call, want)                                                                      \
    do {                                                                                        \
        int status_ = (call);                                                                   \
        if (status_ != (want)) {                                                                \
            fprintf(stderr, "capi: %s returned %d, expected %d\n", #call, status_, (int)(want)); \
            return 1;                                                                           \
        }                                                                                       \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: capi DOC-OUT [ROOT.der OTHER-ROOT.der]\n");
        return 2;
    }
    int fd = qtsm_lib_init();
    if (fd <= 0) {
        perror("capi: qtsm_lib_init");
        return 1;
    }

    static const uint8_t nonce[] = { 0xde, 0xad, 0xbe, 0xef };
    static const uint8_t user_data[] = "from C";
    uint8_t document[0x6000];
    uint32_t document_len = sizeof(document);
    EXPECT(qtsm_get_attestation(fd, user_data, 6, nonce, sizeof(nonce), NULL, 0, document, &document_len), NO_ERROR);
    FILE *out = fopen(argv[1], "wb");
    if (out == NULL || fwrite(document, 1, document_len, out) != document_len || fclose(out) != 0) {
        perror("capi: write the document");
        return 1;
    }
    uint32_t small = 16;
    EXPECT(qtsm_get_attestation(fd, NULL, 0, NULL, 0, NULL, 0, document, &small), BUFFER_TOO_SMALL);

    struct attestation_document *parsed = qtsm_new_doc();
    if (parsed == NULL)
        return 1;
    EXPECT(verify_parse_cboren_doc(document, document_len, parsed), NO_ERROR);
    printf("module_id %s\n", parsed->doc.module_id);
    printf("pcrs_num %u\n", parsed->doc.pcrs.pcrs_num);
    printf("cabundle %u\n", parsed->doc.ca_bundles.ca_bundle_num);
    printf("digest %d\n", (int)parsed->doc.digest);
    printf("timestamp %llu\n", (unsigned long long)parsed->doc.timestamp);
    hex("nonce", parsed->doc.nonce, parsed->doc.nonce_len);
    hex("user_data", parsed->doc.user_data, parsed->doc.user_data_len);
    hex("pcr4", parsed->doc.pcrs.pcrs[4].data, SHA384_LEN);
    hex("root", parsed->doc.ca_bundles.cabundles[0].data, parsed->doc.ca_bundles.cabundles[0].data_len);
    /* Malformed input gets the cbor_errcode that names the problem. */
    static uint8_t wrapped[0x6000 + 2];
    printf("empty %d\n", verify_parse_cboren_doc(document, 0, parsed));
    printf("truncated %d\n", verify_parse_cboren_doc(document, document_len - 1, parsed));
    wrapped[0] = 0xd1; /* tag 17 instead of 18 */
    memcpy(wrapped + 1, document, document_len);
    printf("wrong_tag %d\n", verify_parse_cboren_doc(wrapped, document_len + 1, parsed));
    wrapped[0] = 0xd2; /* tag 18 is accepted */
    printf("tag18 %d\n", verify_parse_cboren_doc(wrapped, document_len + 1, parsed));
    wrapped[0] = 0x9f; /* an indefinite array */
    printf("indefinite %d\n", verify_parse_cboren_doc(wrapped, document_len + 1, parsed));
    /* Pinned: the document's root, another root, and no root at all. The
     * unpinned call accepts a document whatever root it names. */
    if (argc == 4) {
        static uint8_t roots[2][QTSM_CERTIFICATE_MAX_SIZE];
        uint32_t root_len[2];
        for (int i = 0; i < 2; ++i) {
            FILE *file = fopen(argv[2 + i], "rb");
            if (file == NULL)
                return 1;
            root_len[i] = (uint32_t)fread(roots[i], 1, sizeof(roots[i]), file);
            fclose(file);
        }
        printf("pinned %d\n", verify_parse_cboren_doc_pinned(document, document_len, roots[0], root_len[0], parsed));
        printf("pinned_other %d\n", verify_parse_cboren_doc_pinned(document, document_len, roots[1], root_len[1], parsed));
        printf("pinned_none %d\n", verify_parse_cboren_doc_pinned(document, document_len, NULL, 0, parsed));
        roots[0][root_len[0] - 1] ^= 0x01;
        printf("pinned_altered %d\n", verify_parse_cboren_doc_pinned(document, document_len, roots[0], root_len[0], parsed));
    }
    /* A flipped bit in the signature's last byte: CBOR_SIG_ERROR. */
    document[document_len - 1] ^= 0x01;
    int tampered = verify_parse_cboren_doc(document, document_len, parsed);
    printf("tampered %d\n", tampered);
    document[document_len - 1] ^= 0x01;
    qtsm_free_doc(&parsed);
    if (parsed != NULL)
        return 1;

    bool locked = true;
    uint8_t pcr[QTSM_PCR_MAX_LENGTH];
    uint32_t pcr_len = sizeof(pcr);
    EXPECT(qtsm_describe_pcr(fd, 16, &locked, pcr, &pcr_len), NO_ERROR);
    printf("pcr16_locked %d\n", locked);
    hex("pcr16_before", pcr, pcr_len);
    static const uint8_t data[] = { 'a', 'b', 'c' };
    pcr_len = sizeof(pcr);
    EXPECT(qtsm_extend_pcr(fd, 16, data, sizeof(data), pcr, &pcr_len), NO_ERROR);
    hex("pcr16_extended", pcr, pcr_len);
    pcr_len = sizeof(pcr);
    EXPECT(qtsm_describe_pcr(fd, 16, &locked, pcr, &pcr_len), NO_ERROR);
    hex("pcr16_after", pcr, pcr_len);
    EXPECT(qtsm_lock_pcr(fd, 16, &locked), NO_ERROR);
    printf("pcr16_lock %d\n", locked);
    pcr_len = sizeof(pcr);
    EXPECT(qtsm_extend_pcr(fd, 16, data, sizeof(data), pcr, &pcr_len), READ_ONLY_INDEX);
    EXPECT(qtsm_extend_pcr(fd, 3, data, sizeof(data), pcr, &pcr_len), READ_ONLY_INDEX);
    pcr_len = sizeof(pcr);
    EXPECT(qtsm_describe_pcr(fd, 32, &locked, pcr, &pcr_len), INVALID_INDEX);
    pcr_len = 8;
    EXPECT(qtsm_describe_pcr(fd, 16, &locked, pcr, &pcr_len), BUFFER_TOO_SMALL);
    const uint16_t range[] = { 20, 21 };
    EXPECT(qtsm_lock_pcrs(fd, 2, range, &locked), NO_ERROR);
    uint8_t big[513] = { 0 };
    document_len = sizeof(document);
    EXPECT(qtsm_get_attestation(fd, big, sizeof(big), NULL, 0, NULL, 0, document, &document_len), INPUT_TOO_LARGE);

    describe_qtsm description;
    EXPECT(qtsm_get_describe(fd, &description), NO_ERROR);
    printf("max_pcrs %u\n", description.max_pcrs);
    printf("locked_pcrs_num %u\n", description.locked_pcrs_num);
    printf("describe_module_id %s\n", description.module_id);
    printf("module_id_len %u\n", description.module_id_len);
    printf("describe_digest %d\n", (int)description.digest);

    uint8_t random_a[100], random_b[100];
    EXPECT(qtsm_get_random(fd, random_a, sizeof(random_a)), NO_ERROR);
    EXPECT(qtsm_get_random(fd, random_b, sizeof(random_b)), NO_ERROR);
    printf("random_differs %d\n", memcmp(random_a, random_b, sizeof(random_a)) != 0);
    qtsm_lib_exit(fd);
    return 0;
}
