/*
 * The structures of qtsm_lib_comm.h must have QingTian's x86-64 sizes
 * (docs/PLATFORMS.md §Q4): applications and secGear pass sizeof() of them
 * as buffer capacities. Compiling this file is the test; running it prints
 * the sizes.
 */
#include "qtsm_lib.h"

#include <stddef.h>
#include <stdio.h>

#if defined(__x86_64__)
_Static_assert(sizeof(struct pcr_raw) == 66, "pcr_raw is 66 bytes");
_Static_assert(sizeof(struct pcr_raws) == 2116, "pcr_raws is 2116 bytes");
_Static_assert(sizeof(struct cabundle_raw) == 4100, "cabundle_raw is 4100 bytes");
_Static_assert(sizeof(struct cabundles_raws) == 16404, "cabundles_raws is 16404 bytes");
_Static_assert(sizeof(struct attestation_doc) == 24824, "attestation_doc is 24824 bytes");
_Static_assert(sizeof(struct attestation_document) == 24952, "attestation_document is 24952 bytes");
_Static_assert(sizeof(struct describe_qtsm) == 216, "describe_qtsm is 216 bytes");
_Static_assert(offsetof(struct attestation_doc, timestamp) == 128, "timestamp follows module_id[128]");
_Static_assert(offsetof(struct describe_qtsm, module_id) == 12, "module_id after the u32 length");
#endif
_Static_assert(NO_ERROR == 0 && INVALID_INDEX == 1 && INVALID_RESPONSE == 2 && INVALID_ARGUMENT == 3
        && READ_ONLY_INDEX == 4 && INVALID_OPERATION == 5 && BUFFER_TOO_SMALL == 6 && INPUT_TOO_LARGE == 7
        && INTERNAL_ERROR == 8 && INVALID_QTSM_CERT == 9,
    "error_code values are QingTian's");
_Static_assert(CBOR_INVALID_PARAM == 20 && COBR_TIMESTAMP_ERROR == 22 && CBOR_DATA_INDEFINITE == 27
        && CBOR_SIG_ERROR == 32,
    "cbor_errcode values are QingTian's");
_Static_assert(ECDSA384 == -35 && CBOR_COSE_SIGN1_TAG == 18 && SHA384_LEN == 48 && QTSM_SHA384 == 1,
    "COSE and digest constants");

int main(void)
{
    printf("pcr_raw %zu pcr_raws %zu cabundle_raw %zu cabundles_raws %zu attestation_doc %zu "
           "attestation_document %zu describe_qtsm %zu\n",
        sizeof(struct pcr_raw), sizeof(struct pcr_raws), sizeof(struct cabundle_raw), sizeof(struct cabundles_raws),
        sizeof(struct attestation_doc), sizeof(struct attestation_document), sizeof(struct describe_qtsm));
    return 0;
}
