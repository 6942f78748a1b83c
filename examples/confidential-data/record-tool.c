/*
 * record-tool: AES-256-GCM for the confidential-data example's records.
 *
 *   record-tool encrypt KEYFILE <plain >sealed   (the data owner, on any machine)
 *   record-tool decrypt KEYFILE <sealed >plain   (the app, inside the enclave)
 *
 * KEYFILE holds the 32-byte data key, raw. A sealed record is
 *
 *   iv (12 bytes, random) || ciphertext || tag (16 bytes)
 *
 * with the additional authenticated data "qtbox confidential-data record v1",
 * so a record sealed for another purpose under the same key does not open.
 * Records are at most 1 MiB. decrypt writes nothing unless the tag checks.
 *
 * Exit status: 0 done; 1 the record does not open (wrong key or altered
 * bytes); 2 usage or I/O error. One line on stderr for every failure.
 *
 * Built statically against Debian's mbedTLS:
 *   gcc -static -O2 -o record-tool record-tool.c -lmbedcrypto
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/gcm.h>

#define KEY_BYTES 32
#define IV_BYTES 12
#define TAG_BYTES 16
#define MAX_RECORD (1024 * 1024)

static char const AAD[] = "qtbox confidential-data record v1";

static int fail(int status, char const* what)
{
    fprintf(stderr, "record-tool: %s\n", what);
    return status;
}

/* Reads all of `stream` into `buffer` (at most `capacity` bytes); -1 when
 * there is more, or on a read error. */
static long read_all(FILE* stream, unsigned char* buffer, size_t capacity)
{
    size_t total = 0;
    for (;;) {
        size_t got = fread(buffer + total, 1, capacity - total, stream);
        total += got;
        if (got == 0)
            break;
        if (total == capacity) {
            /* Full: one more byte means the input is too long. */
            unsigned char extra;
            if (fread(&extra, 1, 1, stream) == 1)
                return -1;
            break;
        }
    }
    return ferror(stream) ? -1 : (long)total;
}

static int read_key(char const* path, unsigned char key[KEY_BYTES])
{
    FILE* file = fopen(path, "rb");
    if (!file)
        return -1;
    unsigned char buffer[KEY_BYTES + 1];
    long got = read_all(file, buffer, sizeof buffer);
    fclose(file);
    if (got != KEY_BYTES)
        return -1;
    memcpy(key, buffer, KEY_BYTES);
    memset(buffer, 0, sizeof buffer);
    return 0;
}

static int random_bytes(unsigned char* out, size_t size)
{
    FILE* file = fopen("/dev/urandom", "rb");
    if (!file)
        return -1;
    size_t got = fread(out, 1, size, file);
    fclose(file);
    return got == size ? 0 : -1;
}

static int write_all(unsigned char const* data, size_t size)
{
    return fwrite(data, 1, size, stdout) == size && fflush(stdout) == 0 ? 0 : -1;
}

int main(int argc, char** argv)
{
    if (argc != 3 || (strcmp(argv[1], "encrypt") != 0 && strcmp(argv[1], "decrypt") != 0))
        return fail(2, "usage: record-tool encrypt|decrypt KEYFILE <in >out");
    int encrypt = strcmp(argv[1], "encrypt") == 0;

    unsigned char key[KEY_BYTES];
    if (read_key(argv[2], key) != 0)
        return fail(2, "cannot read the data key: the key file must hold exactly 32 bytes");

    size_t capacity = MAX_RECORD + IV_BYTES + TAG_BYTES;
    unsigned char* input = malloc(capacity);
    unsigned char* output = malloc(capacity);
    if (!input || !output)
        return fail(2, "out of memory");
    long size = read_all(stdin, input, encrypt ? MAX_RECORD : capacity);
    if (size < 0)
        return fail(2, "cannot read standard input, or it is longer than 1 MiB");

    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int status = 0;
    if (mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, KEY_BYTES * 8) != 0) {
        status = fail(2, "mbedTLS refused the key");
    } else if (encrypt) {
        unsigned char* iv = output;
        unsigned char* body = output + IV_BYTES;
        if (random_bytes(iv, IV_BYTES) != 0)
            status = fail(2, "cannot read /dev/urandom");
        else if (mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, (size_t)size, iv, IV_BYTES,
                                           (unsigned char const*)AAD, sizeof AAD - 1, input, body, TAG_BYTES,
                                           body + size) != 0)
            status = fail(2, "encryption failed");
        else if (write_all(output, IV_BYTES + (size_t)size + TAG_BYTES) != 0)
            status = fail(2, "cannot write standard output");
    } else if (size < IV_BYTES + TAG_BYTES) {
        status = fail(1, "the record is too short to be sealed");
    } else {
        size_t body = (size_t)size - IV_BYTES - TAG_BYTES;
        if (mbedtls_gcm_auth_decrypt(&gcm, body, input, IV_BYTES, (unsigned char const*)AAD, sizeof AAD - 1,
                                     input + IV_BYTES + body, TAG_BYTES, input + IV_BYTES, output) != 0)
            status = fail(1, "the record does not open: wrong data key, or its bytes were altered");
        else if (write_all(output, body) != 0)
            status = fail(2, "cannot write standard output");
    }
    mbedtls_gcm_free(&gcm);
    memset(key, 0, sizeof key);
    memset(output, 0, capacity);
    free(input);
    free(output);
    return status;
}
