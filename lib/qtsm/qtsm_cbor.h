/*
 * A minimal CBOR (RFC 8949) writer and reader for libqtsm's own messages:
 * definite lengths only, integers up to 64 bits, byte and text strings,
 * arrays, maps, tags, false/true/null. Internal to libqtsm (the qtsm_cbor_
 * prefix keeps it out of the application's way in a static link).
 */
#ifndef QTSM_CBOR_H
#define QTSM_CBOR_H

#include <stddef.h>
#include <stdint.h>

enum qtsm_cbor_major {
    QTSM_CBOR_UNSIGNED = 0,
    QTSM_CBOR_NEGATIVE = 1,
    QTSM_CBOR_BYTES = 2,
    QTSM_CBOR_TEXT = 3,
    QTSM_CBOR_ARRAY = 4,
    QTSM_CBOR_MAP = 5,
    QTSM_CBOR_TAG = 6,
    QTSM_CBOR_SIMPLE = 7,
};

#define QTSM_CBOR_FALSE 20
#define QTSM_CBOR_TRUE 21
#define QTSM_CBOR_NULL 22

/* Writer into a fixed buffer; `failed` is set (and stays set) when the
 * buffer is too small. */
struct qtsm_cbor_writer {
    uint8_t *data;
    size_t capacity;
    size_t size;
    int failed;
};

void qtsm_cbor_head(struct qtsm_cbor_writer *w, unsigned major, uint64_t argument);
void qtsm_cbor_text(struct qtsm_cbor_writer *w, const char *text);
void qtsm_cbor_bytes(struct qtsm_cbor_writer *w, const uint8_t *data, size_t size);
void qtsm_cbor_simple(struct qtsm_cbor_writer *w, unsigned value);

/* Reader over a buffer. */
struct qtsm_cbor_reader {
    const uint8_t *p;
    const uint8_t *end;
};

/* One item's head. For strings, `data` points at the content (already
 * checked to lie within the input) and the reader has moved past it. */
struct qtsm_cbor_item {
    unsigned major;
    unsigned info;     /* additional information: 0..27 */
    uint64_t argument; /* value, length, count, tag number or simple value */
    const uint8_t *data;
};

enum qtsm_cbor_status {
    QTSM_CBOR_OK = 0,
    QTSM_CBOR_TRUNCATED,     /* input ends inside an item */
    QTSM_CBOR_INDEFINITE,    /* an indefinite length (not supported) */
    QTSM_CBOR_MALFORMED,     /* reserved additional information, bad simple */
    QTSM_CBOR_TOO_DEEP,      /* skip: nesting over the limit */
};

int qtsm_cbor_next(struct qtsm_cbor_reader *r, struct qtsm_cbor_item *item);
/* Skips one whole item (nested up to 16 levels). */
int qtsm_cbor_skip(struct qtsm_cbor_reader *r);
/* The item is the text string `text`. */
int qtsm_cbor_is_text(const struct qtsm_cbor_item *item, const char *text);

#endif
