/* Writing safetensors: named float32 tensors and string metadata, as
 * PyTorch's and Hugging Face's tools write them (F32, little-endian,
 * "format": "pt", the header padded with spaces so the data starts at a
 * multiple of 8), plus one CRC32C per tensor in the metadata, through the
 * crash-safe writer of file.c.
 *
 * The header is built in two passes over the same code: one that only
 * counts bytes, then one that writes into a buffer of exactly that size. */
#include "io.h"

#include <stdio.h>
#include <string.h>

typedef struct text {
    char *buf; /* NULL while counting */
    size_t len;
} text;

static void put(text *t, const char *s, size_t n) {
    if (t->buf) memcpy(t->buf + t->len, s, n);
    t->len += n;
}

static void put_str(text *t, const char *s) { put(t, s, strlen(s)); }

static void put_u64(text *t, uint64_t v) {
    char b[24];
    int n = snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    put(t, b, (size_t)n);
}

/* A JSON string: prefix then s, quoted, with '"', '\' and control characters
 * escaped (the rest is UTF-8, checked before). */
static void put_json(text *t, const char *prefix, const char *s) {
    put_str(t, "\"");
    for (int part = 0; part < 2; part++)
        for (const unsigned char *p = (const unsigned char *)(part ? s : prefix); *p; p++) {
            char esc[8];
            if (*p == '"' || *p == '\\') {
                esc[0] = '\\', esc[1] = (char)*p;
                put(t, esc, 2);
            } else if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                put(t, esc, 6);
            } else {
                put(t, (const char *)p, 1);
            }
        }
    put_str(t, "\"");
}

static void put_pair(text *t, const char *kprefix, const char *key, const char *value, int *first) {
    if (!*first) put_str(t, ",");
    *first = 0;
    put_json(t, kprefix, key);
    put_str(t, ":");
    put_json(t, "", value);
}

static void put_meta(text *t, const vikt__st_entry *e, int64_t n, const uint32_t *crc,
                     const char *const *meta, int64_t nmeta) {
    int first = 1;
    put_str(t, "\"__metadata__\":{");
    put_pair(t, "", "format", "pt", &first);
    for (int64_t i = 0; i < nmeta; i++) put_pair(t, "", meta[2 * i], meta[2 * i + 1], &first);
    for (int64_t i = 0; i < n; i++) {
        char hex[9];
        snprintf(hex, sizeof hex, "%08x", (unsigned)crc[i]);
        put_pair(t, "vikt.crc32c.", e[i].name, hex, &first);
        if (e[i].kind) put_pair(t, "vikt.kind.", e[i].name, e[i].kind, &first);
    }
    put_str(t, "}");
}

static void put_header(text *t, const vikt__st_entry *e, int64_t n, const uint32_t *crc,
                       const char *const *meta, int64_t nmeta) {
    uint64_t offset = 0;
    put_str(t, "{");
    put_meta(t, e, n, crc, meta, nmeta);
    for (int64_t i = 0; i < n; i++) {
        put_str(t, ",");
        put_json(t, "", e[i].name);
        put_str(t, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < e[i].rank; d++) {
            if (d) put_str(t, ",");
            put_u64(t, (uint64_t)e[i].shape[d]);
        }
        put_str(t, "],\"data_offsets\":[");
        put_u64(t, offset);
        put_str(t, ",");
        offset += (uint64_t)e[i].numel * 4;
        put_u64(t, offset);
        put_str(t, "]}");
    }
    put_str(t, "}");
}

/* ----------------------------------------------------------- the data */

static int host_is_le(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Floats as little-endian bytes: a copy on little-endian hosts, swapped
 * otherwise. */
static void to_le(const float *x, size_t n, unsigned char *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        for (int b = 0; b < 4; b++) out[4 * i + (size_t)b] = (unsigned char)(bits >> (8 * b));
    }
}

#define SWAP_CHUNK 1024 /* floats per step on big-endian hosts */

static uint32_t data_crc(const vikt__st_entry *e) {
    size_t n = (size_t)e->numel;
    if (host_is_le()) return vikt__crc32c(0, e->data, n * 4);
    unsigned char buf[SWAP_CHUNK * 4];
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i += SWAP_CHUNK) {
        size_t k = n - i < SWAP_CHUNK ? n - i : SWAP_CHUNK;
        to_le(e->data + i, k, buf);
        crc = vikt__crc32c(crc, buf, k * 4);
    }
    return crc;
}

static int write_data(vikt__writer *w, const vikt__st_entry *e) {
    size_t n = (size_t)e->numel;
    if (host_is_le()) return vikt__writer_write(w, e->data, n * 4);
    unsigned char buf[SWAP_CHUNK * 4];
    for (size_t i = 0; i < n; i += SWAP_CHUNK) {
        size_t k = n - i < SWAP_CHUNK ? n - i : SWAP_CHUNK;
        to_le(e->data + i, k, buf);
        int rc = vikt__writer_write(w, buf, k * 4);
        if (rc) return rc;
    }
    return VIKT_OK;
}

/* -------------------------------------------------------------- checks */

/* JSON text must be UTF-8, so every name, key and value must be. */
static int check_text(vikt_model *m, const char *op, const char *path, const char *what,
                      const char *s) {
    if (!s) return vikt__io_fail(m, VIKT_ERR_NULL, op, path, "%s is NULL", what);
    if (!vikt__utf8_valid((const unsigned char *)s, strlen(s)))
        return vikt__io_fail(m, VIKT_ERR_ARG, op, path, "%s '%s%s' is not valid UTF-8", what,
                             vikt__clip_prefix(s, 64), vikt__clip_tail(s, 64));
    return VIKT_OK;
}

static int check_entries(vikt_model *m, const char *op, const char *path,
                         const vikt__st_entry *e, int64_t n, const char *const *meta,
                         int64_t nmeta) {
    for (int64_t i = 0; i < n; i++) {
        int rc = check_text(m, op, path, "tensor name", e[i].name);
        if (!rc && e[i].kind) rc = check_text(m, op, path, "tensor kind", e[i].kind);
        if (rc) return rc;
        if (!e[i].name[0] || strcmp(e[i].name, "__metadata__") == 0)
            return vikt__io_fail(m, VIKT_ERR_ARG, op, path,
                                 "cannot store a tensor named '%s' in safetensors", e[i].name);
        if (e[i].kind && !e[i].kind[0])
            return vikt__io_fail(m, VIKT_ERR_ARG, op, path, "tensor '%s%s' has an empty kind",
                                 vikt__clip_prefix(e[i].name, 64), vikt__clip_tail(e[i].name, 64));
    }
    for (int64_t i = 0; i < 2 * nmeta; i++) {
        int rc = check_text(m, op, path, i % 2 ? "metadata value" : "metadata key", meta[i]);
        if (rc) return rc;
    }
    return VIKT_OK;
}

/* ---------------------------------------------------------------- write */

/* The 8-byte length and the header, padded with spaces to a multiple of 8,
 * in one block of *size bytes (the allocator's; the caller frees it). */
static int make_header(vikt_model *m, const char *op, const char *path, const vikt__st_entry *e,
                       int64_t n, const uint32_t *crc, const char *const *meta, int64_t nmeta,
                       unsigned char **out, size_t *size) {
    text t = {NULL, 0};
    put_header(&t, e, n, crc, meta, nmeta);
    size_t len = (t.len + 7) & ~(size_t)7;
    if (len > VIKT__ST_MAX_HEADER)
        return vikt__io_fail(m, VIKT_ERR_ARG, op, path,
                             "the header would be %zu bytes, above the limit of %u", len,
                             VIKT__ST_MAX_HEADER);
    unsigned char *buf = vikt__alloc(m, 8 + len);
    if (!buf) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for the header", op);
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)len >> (8 * b));
    t.buf = (char *)buf + 8;
    t.len = 0;
    put_header(&t, e, n, crc, meta, nmeta);
    memset(buf + 8 + t.len, ' ', len - t.len);
    *out = buf;
    *size = 8 + len;
    return VIKT_OK;
}

static int write_file(vikt_model *m, const char *op, const char *path, const unsigned char *hdr,
                      size_t hdr_size, const vikt__st_entry *e, int64_t n) {
    vikt__writer w;
    int rc = vikt__writer_open(&w, m, op, path);
    if (!rc) rc = vikt__writer_write(&w, hdr, hdr_size);
    for (int64_t i = 0; !rc && i < n; i++) rc = write_data(&w, &e[i]);
    /* writer_write has already aborted the writer when it failed. */
    return rc ? rc : vikt__writer_commit(&w);
}

int vikt__st_write(vikt_model *m, const char *op, const char *path, const vikt__st_entry *e,
                   int64_t n, const char *const *meta, int64_t nmeta) {
    int rc = check_entries(m, op, path, e, n, meta, nmeta);
    if (rc) return rc;
    size_t crc_bytes = (size_t)n * sizeof(uint32_t);
    uint32_t *crc = vikt__alloc(m, crc_bytes);
    if (!crc) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", op);
    for (int64_t i = 0; i < n; i++) crc[i] = data_crc(&e[i]);
    unsigned char *hdr = NULL;
    size_t hdr_size = 0;
    rc = make_header(m, op, path, e, n, crc, meta, nmeta, &hdr, &hdr_size);
    vikt__free(m, crc, crc_bytes);
    if (rc) return rc;
    rc = write_file(m, op, path, hdr, hdr_size, e, n);
    vikt__free(m, hdr, hdr_size);
    return rc;
}
