/* See qtsm_cbor.h. RFC 8949 §3 (heads), §3.2 (indefinite lengths, refused). */
#include "qtsm_cbor.h"

#include <string.h>

#define MAX_SKIP_DEPTH 16

static void put(struct qtsm_cbor_writer *w, const uint8_t *data, size_t size)
{
    if (w->failed || size > w->capacity - w->size) {
        w->failed = 1;
        return;
    }
    memcpy(w->data + w->size, data, size);
    w->size += size;
}

/* Preferred serialisation (RFC 8949 §4.1): the shortest argument. */
void qtsm_cbor_head(struct qtsm_cbor_writer *w, unsigned major, uint64_t argument)
{
    uint8_t head[9];
    size_t size;
    uint8_t top = (uint8_t)(major << 5);
    if (argument < 24) {
        head[0] = (uint8_t)(top | argument);
        size = 1;
    } else if (argument <= 0xFF) {
        head[0] = top | 24;
        head[1] = (uint8_t)argument;
        size = 2;
    } else if (argument <= 0xFFFF) {
        head[0] = top | 25;
        head[1] = (uint8_t)(argument >> 8);
        head[2] = (uint8_t)argument;
        size = 3;
    } else if (argument <= 0xFFFFFFFFu) {
        head[0] = top | 26;
        for (int i = 0; i < 4; ++i)
            head[1 + i] = (uint8_t)(argument >> (24 - 8 * i));
        size = 5;
    } else {
        head[0] = top | 27;
        for (int i = 0; i < 8; ++i)
            head[1 + i] = (uint8_t)(argument >> (56 - 8 * i));
        size = 9;
    }
    put(w, head, size);
}

void qtsm_cbor_text(struct qtsm_cbor_writer *w, const char *text)
{
    size_t size = strlen(text);
    qtsm_cbor_head(w, QTSM_CBOR_TEXT, size);
    put(w, (const uint8_t *)text, size);
}

void qtsm_cbor_bytes(struct qtsm_cbor_writer *w, const uint8_t *data, size_t size)
{
    qtsm_cbor_head(w, QTSM_CBOR_BYTES, size);
    if (size > 0)
        put(w, data, size);
}

void qtsm_cbor_simple(struct qtsm_cbor_writer *w, unsigned value)
{
    qtsm_cbor_head(w, QTSM_CBOR_SIMPLE, value);
}

int qtsm_cbor_next(struct qtsm_cbor_reader *r, struct qtsm_cbor_item *item)
{
    if (r->p >= r->end)
        return QTSM_CBOR_TRUNCATED;
    uint8_t initial = *r->p++;
    item->major = initial >> 5;
    item->info = initial & 0x1F;
    item->data = NULL;
    if (item->info < 24) {
        item->argument = item->info;
    } else if (item->info <= 27) {
        size_t size = (size_t)1 << (item->info - 24);
        if ((size_t)(r->end - r->p) < size)
            return QTSM_CBOR_TRUNCATED;
        item->argument = 0;
        for (size_t i = 0; i < size; ++i)
            item->argument = (item->argument << 8) | r->p[i];
        r->p += size;
    } else if (item->info == 31) {
        return QTSM_CBOR_INDEFINITE;
    } else {
        return QTSM_CBOR_MALFORMED;
    }
    if (item->major == QTSM_CBOR_SIMPLE && item->info == 24 && item->argument < 32)
        return QTSM_CBOR_MALFORMED;
    if (item->major == QTSM_CBOR_BYTES || item->major == QTSM_CBOR_TEXT) {
        if (item->argument > (uint64_t)(r->end - r->p))
            return QTSM_CBOR_TRUNCATED;
        item->data = r->p;
        r->p += item->argument;
    }
    return QTSM_CBOR_OK;
}

static int skip(struct qtsm_cbor_reader *r, int depth)
{
    struct qtsm_cbor_item item;
    int status = qtsm_cbor_next(r, &item);
    if (status != QTSM_CBOR_OK)
        return status;
    uint64_t children = 0;
    if (item.major == QTSM_CBOR_ARRAY || item.major == QTSM_CBOR_MAP || item.major == QTSM_CBOR_TAG) {
        if (depth >= MAX_SKIP_DEPTH)
            return QTSM_CBOR_TOO_DEEP;
        if (item.major == QTSM_CBOR_TAG)
            children = 1;
        else
            children = item.major == QTSM_CBOR_MAP ? item.argument * 2 : item.argument;
        /* Every item takes at least one byte: refuse counts the input cannot hold. */
        if (item.argument > (uint64_t)(r->end - r->p))
            return QTSM_CBOR_TRUNCATED;
    }
    for (uint64_t i = 0; i < children; ++i) {
        status = skip(r, depth + 1);
        if (status != QTSM_CBOR_OK)
            return status;
    }
    return QTSM_CBOR_OK;
}

int qtsm_cbor_skip(struct qtsm_cbor_reader *r) { return skip(r, 0); }

int qtsm_cbor_is_text(const struct qtsm_cbor_item *item, const char *text)
{
    size_t size = strlen(text);
    return item->major == QTSM_CBOR_TEXT && item->argument == size && memcmp(item->data, text, size) == 0;
}
