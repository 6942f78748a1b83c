/*
 * libqtsm: the QingTian QTSM C API over qtsm-server's Unix socket.
 * Messages: docs/FORMATS.md §5 (CBOR, u32 big-endian length prefix); statuses:
 * QingTian's error_code enum. See qtsm_lib.h for the contract.
 */
#include "qtsm_lib.h"

#include "qtsm_cbor.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define QTSM_DEFAULT_SOCKET "/run/qtsm.sock"
#define QTSM_SOCKET_VARIABLE "QTSM_SOCKET"
#define QTSM_REQUEST_MAX_SIZE 0x1000   /* docs/FORMATS.md §5 */
#define QTSM_RESPONSE_MAX_SIZE 0x8000  /* docs/FORMATS.md §5 */
#define QTSM_CALL_TIMEOUT_SECONDS 30
#define QTSM_PCR_SIZE SHA384_LEN

/* One round trip at a time per descriptor, so that two threads sharing a
 * descriptor never interleave their frames, while calls on different
 * descriptors (a connection per thread) run at the same time: qtsm-server
 * pipelines them to the QTSM. The locks live in pages of LOCKS_PER_PAGE,
 * made when a descriptor in their range is first used and never freed (a
 * lock must outlive every call that may still hold it), so finding a
 * descriptor's lock takes no lock. */
#define LOCKS_PER_PAGE 1024
#define LOCK_PAGES 1024 /* descriptors below 1,048,576 (the kernel's default nr_open) */

struct lock_page {
    pthread_mutex_t locks[LOCKS_PER_PAGE];
};

static struct lock_page *lock_pages[LOCK_PAGES];

/* The lock of descriptor `fd` (>= 0), or NULL when it is out of range or
 * no memory is left. */
static pthread_mutex_t *descriptor_lock(int fd)
{
    size_t page_index = (size_t)fd / LOCKS_PER_PAGE;
    if (page_index >= LOCK_PAGES)
        return NULL;
    struct lock_page *page = __atomic_load_n(&lock_pages[page_index], __ATOMIC_ACQUIRE);
    if (page == NULL) {
        struct lock_page *made = malloc(sizeof(*made));
        if (made == NULL)
            return NULL;
        for (size_t i = 0; i < LOCKS_PER_PAGE; ++i)
            pthread_mutex_init(&made->locks[i], NULL);
        struct lock_page *expected = NULL;
        if (__atomic_compare_exchange_n(&lock_pages[page_index], &expected, made, false, __ATOMIC_ACQ_REL,
                __ATOMIC_ACQUIRE)) {
            page = made;
        } else {
            /* Another thread made it first. */
            free(made);
            page = expected;
        }
    }
    return &page->locks[(size_t)fd % LOCKS_PER_PAGE];
}

static const struct {
    const char *name;
    int code;
} error_names[] = {
    { "InvalidIndex", INVALID_INDEX },
    { "InvalidResponse", INVALID_RESPONSE },
    { "InvalidArgument", INVALID_ARGUMENT },
    { "ReadOnlyIndex", READ_ONLY_INDEX },
    { "InvalidOperation", INVALID_OPERATION },
    { "BufferTooSmall", BUFFER_TOO_SMALL },
    { "InputTooLarge", INPUT_TOO_LARGE },
    { "InternalError", INTERNAL_ERROR },
};

static int send_all(int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

static int receive_all(int fd, uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = recv(fd, data, size, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return -1;
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

struct response {
    uint8_t *data;
    size_t size;
};

/* Sends the request in `w` and receives one response frame into a new
 * buffer (freed by the caller, also on failure). */
static int round_trip(int fd, struct qtsm_cbor_writer *w, struct response *out)
{
    out->data = NULL;
    out->size = 0;
    if (fd < 0)
        return INVALID_ARGUMENT;
    if (w->failed)
        return INPUT_TOO_LARGE;
    uint8_t header[4];
    size_t size = w->size - 4;
    w->data[0] = (uint8_t)(size >> 24);
    w->data[1] = (uint8_t)(size >> 16);
    w->data[2] = (uint8_t)(size >> 8);
    w->data[3] = (uint8_t)size;
    int status = NO_ERROR;
    pthread_mutex_t *lock = descriptor_lock(fd);
    if (lock == NULL)
        return INTERNAL_ERROR;
    pthread_mutex_lock(lock);
    if (send_all(fd, w->data, w->size) < 0 || receive_all(fd, header, sizeof(header)) < 0) {
        status = INTERNAL_ERROR;
    } else {
        uint32_t length = ((uint32_t)header[0] << 24) | ((uint32_t)header[1] << 16) | ((uint32_t)header[2] << 8) | header[3];
        if (length == 0 || length > QTSM_RESPONSE_MAX_SIZE) {
            /* The stream can no longer be trusted to be in step. */
            status = INVALID_RESPONSE;
        } else if ((out->data = malloc(length)) == NULL) {
            status = INTERNAL_ERROR;
        } else if (receive_all(fd, out->data, length) < 0) {
            status = INTERNAL_ERROR;
        } else {
            out->size = length;
        }
    }
    pthread_mutex_unlock(lock);
    return status;
}

/* Checks the response's shape: `name` as text (fieldless answers), or
 * {name: body} with `body` left positioned at the body, or {"Error": NAME}
 * (its code is returned). */
static int open_response(const struct response *response, const char *name, struct qtsm_cbor_reader *body)
{
    struct qtsm_cbor_reader r = { response->data, response->data + response->size };
    struct qtsm_cbor_item item, key;
    if (qtsm_cbor_next(&r, &item) != QTSM_CBOR_OK)
        return INVALID_RESPONSE;
    if (item.major == QTSM_CBOR_TEXT)
        return body == NULL && qtsm_cbor_is_text(&item, name) && r.p == r.end ? NO_ERROR : INVALID_RESPONSE;
    if (item.major != QTSM_CBOR_MAP || item.argument != 1 || qtsm_cbor_next(&r, &key) != QTSM_CBOR_OK)
        return INVALID_RESPONSE;
    if (qtsm_cbor_is_text(&key, "Error")) {
        struct qtsm_cbor_item code;
        if (qtsm_cbor_next(&r, &code) != QTSM_CBOR_OK || code.major != QTSM_CBOR_TEXT || r.p != r.end)
            return INVALID_RESPONSE;
        for (size_t i = 0; i < sizeof(error_names) / sizeof(error_names[0]); ++i) {
            if (qtsm_cbor_is_text(&code, error_names[i].name))
                return error_names[i].code;
        }
        return INVALID_RESPONSE;
    }
    if (body == NULL || !qtsm_cbor_is_text(&key, name))
        return INVALID_RESPONSE;
    *body = r;
    return NO_ERROR;
}

/* Reads the body's map head: `*entries` entries follow. */
static int open_body(struct qtsm_cbor_reader *body, uint64_t *entries)
{
    struct qtsm_cbor_item item;
    if (qtsm_cbor_next(body, &item) != QTSM_CBOR_OK || item.major != QTSM_CBOR_MAP || item.argument > 16)
        return INVALID_RESPONSE;
    *entries = item.argument;
    return NO_ERROR;
}

/* One call: the request buffer (its first 4 bytes are for the frame
 * length) and the response. */
struct call {
    uint8_t buffer[QTSM_REQUEST_MAX_SIZE + 4];
    struct qtsm_cbor_writer w;
    struct response response;
};

static struct qtsm_cbor_writer *begin_call(struct call *c)
{
    c->w.data = c->buffer;
    c->w.capacity = sizeof(c->buffer);
    c->w.size = 4;
    c->w.failed = 0;
    c->response.data = NULL;
    c->response.size = 0;
    return &c->w;
}

/* {name: {` fields ` entries...}} */
static void begin_fields(struct qtsm_cbor_writer *w, const char *name, uint64_t fields)
{
    qtsm_cbor_head(w, QTSM_CBOR_MAP, 1);
    qtsm_cbor_text(w, name);
    qtsm_cbor_head(w, QTSM_CBOR_MAP, fields);
}

/* Sends the request and checks the answer's shape: with `body` NULL a
 * fieldless answer (`name` as text); otherwise {name: {...}} with `body` at
 * its first key and *entries its entry count. */
static int finish_call(int fd, struct call *c, const char *name, struct qtsm_cbor_reader *body, uint64_t *entries)
{
    int status = round_trip(fd, &c->w, &c->response);
    if (status == NO_ERROR)
        status = open_response(&c->response, name, body);
    if (status == NO_ERROR && body != NULL)
        status = open_body(body, entries);
    return status;
}

static void end_call(struct call *c)
{
    free(c->response.data);
    c->response.data = NULL;
}

/* The body has exactly one entry, `key`; its value is read next. */
static int single_field(struct qtsm_cbor_reader *body, uint64_t entries, const char *key)
{
    struct qtsm_cbor_item item;
    if (entries != 1 || qtsm_cbor_next(body, &item) != QTSM_CBOR_OK || !qtsm_cbor_is_text(&item, key))
        return INVALID_RESPONSE;
    return NO_ERROR;
}

static int read_u16(struct qtsm_cbor_reader *r, uint16_t *value)
{
    struct qtsm_cbor_item item;
    if (qtsm_cbor_next(r, &item) != QTSM_CBOR_OK || item.major != QTSM_CBOR_UNSIGNED || item.argument > 0xFFFF)
        return INVALID_RESPONSE;
    *value = (uint16_t)item.argument;
    return NO_ERROR;
}

/* Copies a byte string into out/out_len (in: capacity, out: size). */
static int read_bytes_into(struct qtsm_cbor_reader *r, uint8_t *out, uint32_t *out_len)
{
    struct qtsm_cbor_item item;
    if (qtsm_cbor_next(r, &item) != QTSM_CBOR_OK || item.major != QTSM_CBOR_BYTES)
        return INVALID_RESPONSE;
    if (item.argument > *out_len) {
        *out_len = (uint32_t)item.argument;
        return BUFFER_TOO_SMALL;
    }
    if (item.argument > 0)
        memcpy(out, item.data, (size_t)item.argument);
    *out_len = (uint32_t)item.argument;
    return NO_ERROR;
}

/* {name: {"index": index}} */
static void index_request(struct qtsm_cbor_writer *w, const char *name, uint16_t index)
{
    begin_fields(w, name, 1);
    qtsm_cbor_text(w, "index");
    qtsm_cbor_head(w, QTSM_CBOR_UNSIGNED, index);
}

int qtsm_lib_init(void)
{
    const char *path = getenv(QTSM_SOCKET_VARIABLE);
    if (path == NULL || *path == '\0')
        path = QTSM_DEFAULT_SOCKET;
    struct sockaddr_un address;
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(address.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(address.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&address, sizeof(address));
    } while (rc < 0 && errno == EINTR);
    struct timeval timeout = { QTSM_CALL_TIMEOUT_SECONDS, 0 };
    if (rc < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) < 0
        || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    /* QingTian promises a positive descriptor. */
    if (fd == 0) {
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
        fd = moved;
    }
    return fd;
}

void qtsm_lib_exit(int qtsm_dev_fd)
{
    if (qtsm_dev_fd >= 0)
        close(qtsm_dev_fd);
}

/* DescribePCR and ExtendPCR answer the same way: {name: {"lock"?, "data"}}. */
static int pcr_response(struct qtsm_cbor_reader body, uint64_t entries, bool *locked, uint8_t *data, uint32_t *data_len)
{
    int status = NO_ERROR;
    int have_data = 0, have_lock = 0;
    uint32_t capacity = *data_len;
    for (uint64_t i = 0; i < entries && status == NO_ERROR; ++i) {
        struct qtsm_cbor_item key, value;
        if (qtsm_cbor_next(&body, &key) != QTSM_CBOR_OK)
            return INVALID_RESPONSE;
        if (qtsm_cbor_is_text(&key, "data") && !have_data) {
            have_data = 1;
            *data_len = capacity;
            status = read_bytes_into(&body, data, data_len);
        } else if (qtsm_cbor_is_text(&key, "lock") && locked != NULL && !have_lock) {
            have_lock = 1;
            if (qtsm_cbor_next(&body, &value) != QTSM_CBOR_OK || value.major != QTSM_CBOR_SIMPLE
                || (value.argument != QTSM_CBOR_TRUE && value.argument != QTSM_CBOR_FALSE))
                return INVALID_RESPONSE;
            *locked = value.argument == QTSM_CBOR_TRUE;
        } else {
            return INVALID_RESPONSE;
        }
    }
    if (status != NO_ERROR)
        return status;
    if (!have_data || (locked != NULL && !have_lock) || body.p != body.end)
        return INVALID_RESPONSE;
    return NO_ERROR;
}

int qtsm_describe_pcr(const int fd, const uint16_t index, bool *locked, uint8_t *data, uint32_t *data_len)
{
    if (locked == NULL || data == NULL || data_len == NULL)
        return INVALID_ARGUMENT;
    struct call c;
    struct qtsm_cbor_reader body;
    uint64_t entries = 0;
    index_request(begin_call(&c), "DescribePCR", index);
    int status = finish_call(fd, &c, "DescribePCR", &body, &entries);
    if (status == NO_ERROR)
        status = pcr_response(body, entries, locked, data, data_len);
    end_call(&c);
    return status;
}

int qtsm_extend_pcr(const int fd, const uint16_t index, const uint8_t *req_data, const uint32_t req_data_len,
    uint8_t *pcr_data, uint32_t *pcr_data_len)
{
    if ((req_data == NULL && req_data_len > 0) || pcr_data == NULL || pcr_data_len == NULL)
        return INVALID_ARGUMENT;
    if (req_data_len > QTSM_REQUEST_MAX_SIZE)
        return INPUT_TOO_LARGE;
    struct call c;
    struct qtsm_cbor_reader body;
    uint64_t entries = 0;
    struct qtsm_cbor_writer *w = begin_call(&c);
    begin_fields(w, "ExtendPCR", 2);
    qtsm_cbor_text(w, "index");
    qtsm_cbor_head(w, QTSM_CBOR_UNSIGNED, index);
    qtsm_cbor_text(w, "data");
    qtsm_cbor_bytes(w, req_data, req_data_len);
    int status = finish_call(fd, &c, "ExtendPCR", &body, &entries);
    if (status == NO_ERROR)
        status = pcr_response(body, entries, NULL, pcr_data, pcr_data_len);
    end_call(&c);
    return status;
}

int qtsm_lock_pcr(const int fd, const uint16_t index, bool *locked)
{
    if (locked == NULL)
        return INVALID_ARGUMENT;
    struct call c;
    index_request(begin_call(&c), "LockPCR", index);
    int status = finish_call(fd, &c, "LockPCR", NULL, NULL);
    end_call(&c);
    *locked = status == NO_ERROR;
    return status;
}

int qtsm_lock_pcrs(const int fd, const uint32_t count, const uint16_t *range, bool *locked)
{
    if (locked == NULL || (range == NULL && count > 0))
        return INVALID_ARGUMENT;
    struct call c;
    struct qtsm_cbor_writer *w = begin_call(&c);
    begin_fields(w, "LockPCRs", 1);
    qtsm_cbor_text(w, "range");
    qtsm_cbor_head(w, QTSM_CBOR_ARRAY, count);
    for (uint32_t i = 0; i < count && !w->failed; ++i)
        qtsm_cbor_head(w, QTSM_CBOR_UNSIGNED, range[i]);
    int status = finish_call(fd, &c, "LockPCRs", NULL, NULL);
    end_call(&c);
    *locked = status == NO_ERROR;
    return status;
}

static int describe_field(struct qtsm_cbor_reader *body, const struct qtsm_cbor_item *key, describe_qtsm *out,
    unsigned *seen)
{
    struct qtsm_cbor_item value;
    if (qtsm_cbor_is_text(key, "version_major")) {
        *seen |= 1;
        return read_u16(body, &out->version_major);
    }
    if (qtsm_cbor_is_text(key, "version_minor")) {
        *seen |= 2;
        return read_u16(body, &out->version_minor);
    }
    if (qtsm_cbor_is_text(key, "version_patch")) {
        *seen |= 4;
        return read_u16(body, &out->version_patch);
    }
    if (qtsm_cbor_is_text(key, "max_pcrs")) {
        *seen |= 8;
        return read_u16(body, &out->max_pcrs);
    }
    if (qtsm_cbor_is_text(key, "module_id")) {
        *seen |= 16;
        if (qtsm_cbor_next(body, &value) != QTSM_CBOR_OK || value.major != QTSM_CBOR_TEXT
            || value.argument >= QTSM_MODULE_ID_MAX_SIZE)
            return INVALID_RESPONSE;
        memcpy(out->module_id, value.data, (size_t)value.argument);
        out->module_id[value.argument] = '\0';
        out->module_id_len = (uint32_t)value.argument;
        return NO_ERROR;
    }
    if (qtsm_cbor_is_text(key, "locked_pcrs")) {
        *seen |= 32;
        if (qtsm_cbor_next(body, &value) != QTSM_CBOR_OK || value.major != QTSM_CBOR_ARRAY
            || value.argument > QTSM_MAX_PCR_COUNT)
            return INVALID_RESPONSE;
        out->locked_pcrs_num = (uint32_t)value.argument;
        for (uint64_t i = 0; i < value.argument; ++i) {
            if (read_u16(body, &out->locked_pcrs[i]) != NO_ERROR)
                return INVALID_RESPONSE;
        }
        return NO_ERROR;
    }
    if (qtsm_cbor_is_text(key, "digest")) {
        *seen |= 64;
        if (qtsm_cbor_next(body, &value) != QTSM_CBOR_OK)
            return INVALID_RESPONSE;
        if (qtsm_cbor_is_text(&value, "SHA256"))
            out->digest = QTSM_SHA256;
        else if (qtsm_cbor_is_text(&value, "SHA384"))
            out->digest = QTSM_SHA384;
        else if (qtsm_cbor_is_text(&value, "SHA512"))
            out->digest = QTSM_SHA512;
        else
            return INVALID_RESPONSE;
        return NO_ERROR;
    }
    return INVALID_RESPONSE;
}

int qtsm_get_describe(const int fd, describe_qtsm *qtsm_description)
{
    if (qtsm_description == NULL)
        return INVALID_ARGUMENT;
    struct call c;
    struct qtsm_cbor_reader body;
    uint64_t entries = 0;
    qtsm_cbor_text(begin_call(&c), "DescribeQTSM");
    int status = finish_call(fd, &c, "DescribeQTSM", &body, &entries);
    describe_qtsm result;
    memset(&result, 0, sizeof(result));
    unsigned seen = 0;
    for (uint64_t i = 0; i < entries && status == NO_ERROR; ++i) {
        struct qtsm_cbor_item key;
        if (qtsm_cbor_next(&body, &key) != QTSM_CBOR_OK)
            status = INVALID_RESPONSE;
        else
            status = describe_field(&body, &key, &result, &seen);
    }
    if (status == NO_ERROR && (seen != 127 || entries != 7 || body.p != body.end))
        status = INVALID_RESPONSE;
    if (status == NO_ERROR)
        *qtsm_description = result;
    end_call(&c);
    return status;
}

static void optional_bytes(struct qtsm_cbor_writer *w, const char *key, const uint8_t *data, uint32_t size)
{
    qtsm_cbor_text(w, key);
    if (data == NULL || size == 0)
        qtsm_cbor_simple(w, QTSM_CBOR_NULL);
    else
        qtsm_cbor_bytes(w, data, size);
}

int qtsm_get_attestation(const int fd, const uint8_t *user_data, const uint32_t user_data_len, const uint8_t *nonce_data,
    const uint32_t nonce_data_len, const uint8_t *pubkey_data, const uint32_t pubkey_len, uint8_t *att_doc_data,
    uint32_t *att_doc_data_len)
{
    if ((user_data == NULL && user_data_len > 0) || (nonce_data == NULL && nonce_data_len > 0)
        || (pubkey_data == NULL && pubkey_len > 0) || att_doc_data == NULL || att_doc_data_len == NULL)
        return INVALID_ARGUMENT;
    if (user_data_len > QTSM_REQUEST_MAX_SIZE || nonce_data_len > QTSM_REQUEST_MAX_SIZE
        || pubkey_len > QTSM_REQUEST_MAX_SIZE)
        return INPUT_TOO_LARGE;
    struct call c;
    struct qtsm_cbor_reader body;
    uint64_t entries = 0;
    struct qtsm_cbor_writer *w = begin_call(&c);
    begin_fields(w, "Attestation", 3);
    optional_bytes(w, "user_data", user_data, user_data_len);
    optional_bytes(w, "nonce", nonce_data, nonce_data_len);
    optional_bytes(w, "public_key", pubkey_data, pubkey_len);
    int status = finish_call(fd, &c, "Attestation", &body, &entries);
    if (status == NO_ERROR)
        status = single_field(&body, entries, "document");
    if (status == NO_ERROR)
        status = read_bytes_into(&body, att_doc_data, att_doc_data_len);
    if (status == NO_ERROR && body.p != body.end)
        status = INVALID_RESPONSE;
    end_call(&c);
    return status;
}

int qtsm_get_random(int fd, uint8_t *rnd_data, uint32_t rnd_data_len)
{
    if (rnd_data == NULL && rnd_data_len > 0)
        return INVALID_ARGUMENT;
    uint32_t filled = 0;
    while (filled < rnd_data_len) {
        struct call c;
        struct qtsm_cbor_reader body;
        uint64_t entries = 0;
        struct qtsm_cbor_item value;
        qtsm_cbor_text(begin_call(&c), "GetRandom");
        int status = finish_call(fd, &c, "GetRandom", &body, &entries);
        if (status == NO_ERROR)
            status = single_field(&body, entries, "random");
        if (status == NO_ERROR
            && (qtsm_cbor_next(&body, &value) != QTSM_CBOR_OK || value.major != QTSM_CBOR_BYTES || value.argument == 0
                || body.p != body.end))
            status = INVALID_RESPONSE;
        if (status == NO_ERROR) {
            uint32_t take = rnd_data_len - filled;
            if (value.argument < take)
                take = (uint32_t)value.argument;
            memcpy(rnd_data + filled, value.data, take);
            filled += take;
            /* The copy in the response buffer is as secret as the output. */
            explicit_bzero(c.response.data, c.response.size);
        }
        end_call(&c);
        if (status != NO_ERROR)
            return status;
    }
    return NO_ERROR;
}

struct attestation_document *qtsm_new_doc(void)
{
    return calloc(1, sizeof(struct attestation_document));
}

void qtsm_free_doc(struct attestation_document **doc)
{
    if (doc == NULL)
        return;
    free(*doc);
    *doc = NULL;
}
