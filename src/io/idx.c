/* The IDX loader (MNIST, Fashion-MNIST; format and errors documented in
 * vikt.h under "IDX files"). Every header is checked against the file's
 * size before anything is allocated, so a corrupt count cannot ask for more
 * memory than the file holds. */
#include "../vikt_internal.h"
#include "io.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char OP[] = "vikt_dataset_load_idx";

typedef struct idx_file {
    vikt_model *m;
    const char *path;
    FILE *f;
    uint64_t size;          /* bytes in the file */
    int ndims;
    uint64_t dims[4];
    uint64_t header_bytes;  /* 4 + 4·ndims */
    uint64_t values;        /* product of dims */
} idx_file;

static int idx_error(const idx_file *x, uint64_t offset, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Record "OP: FILE: byte OFFSET: problem". */
static int idx_error(const idx_file *x, uint64_t offset, const char *fmt, ...) {
    char problem[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return vikt__io_fail(x->m, VIKT_ERR_FORMAT, OP, x->path, "byte %llu: %s",
                         (unsigned long long)offset, problem);
}

static uint32_t big_endian_u32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int idx_read(idx_file *x, void *buf, size_t n) {
    if (fread(buf, 1, n, x->f) == n) return VIKT_OK;
    return vikt__fail(x->m, VIKT_ERR_IO, "%s: %s: read failed%s", OP, x->path,
                      ferror(x->f) ? "" : " (the file shrank while being read)");
}

static int read_magic(idx_file *x, int min_dims, int max_dims) {
    if (x->size < 4)
        return idx_error(x, x->size, "truncated: %llu bytes, shorter than the 4-byte magic",
                         (unsigned long long)x->size);
    unsigned char magic[4];
    int err = idx_read(x, magic, 4);
    if (err) return err;
    x->ndims = magic[3];
    if (magic[0] || magic[1] || magic[2] != 0x08 || x->ndims < min_dims || x->ndims > max_dims)
        return idx_error(x, 0,
                         "bad magic 0x%08lx: expected 0x000008NN, unsigned bytes in %d to %d "
                         "dimensions",
                         (unsigned long)big_endian_u32(magic), min_dims, max_dims);
    return VIKT_OK;
}

static int read_dims(idx_file *x) {
    x->header_bytes = 4 + 4 * (uint64_t)x->ndims;
    if (x->size < x->header_bytes)
        return idx_error(x, x->size, "truncated header: expected %llu bytes, the file has %llu",
                         (unsigned long long)x->header_bytes, (unsigned long long)x->size);
    unsigned char raw[16];
    int err = idx_read(x, raw, 4 * (size_t)x->ndims);
    if (err) return err;
    for (int i = 0; i < x->ndims; i++) {
        x->dims[i] = big_endian_u32(raw + 4 * i);
        if (x->dims[i] == 0) return idx_error(x, 4 + 4 * (uint64_t)i, "dimension %d is 0", i);
    }
    return VIKT_OK;
}

/* The file must hold exactly header + values bytes. */
static int check_size(idx_file *x) {
    char dims[96] = "";
    for (int i = 0; i < x->ndims; i++)
        snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%llu", i ? "x" : "",
                 (unsigned long long)x->dims[i]);
    /* Each factor is below 2^32, so stopping once the product passes the
     * file's size keeps it from overflowing. */
    x->values = 1;
    for (int i = 0; i < x->ndims && x->values <= x->size; i++) x->values *= x->dims[i];
    if (x->values > x->size - x->header_bytes)
        return x->values > x->size
                   ? idx_error(x, x->size, "truncated: %s values need more bytes than the file's %llu",
                               dims, (unsigned long long)x->size)
                   : idx_error(x, x->size, "truncated: %s values need %llu bytes, the file has %llu",
                               dims, (unsigned long long)(x->header_bytes + x->values),
                               (unsigned long long)x->size);
    uint64_t expected = x->header_bytes + x->values;
    if (expected != x->size)
        return idx_error(x, expected, "%llu bytes after the %s values",
                         (unsigned long long)(x->size - expected), dims);
    return VIKT_OK;
}

/* Open and validate the header: the magic (0x08 type, min..max dimensions),
 * non-zero dimensions, and a size that is exactly header + values. */
static int idx_open(idx_file *x, vikt_model *m, const char *path, int min_dims, int max_dims) {
    memset(x, 0, sizeof *x);
    x->m = m;
    x->path = path;
    int err = vikt__data_open(m, OP, path, &x->f, &x->size);
    if (!err) err = read_magic(x, min_dims, max_dims);
    if (!err) err = read_dims(x);
    if (!err) err = check_size(x);
    return err;
}

static void idx_close(idx_file *x) {
    if (x->f) fclose(x->f);
    x->f = NULL;
}

/* Read the images into the store as v / 255. The bytes are read into the
 * tail of the float array and widened front to back: float i overwrites
 * bytes 4i..4i+3, all below byte 3n + i + 1, the first one not yet read. */
static int read_images(idx_file *x, float *out) {
    uint64_t n = x->values;
    unsigned char *bytes = (unsigned char *)out + 3 * n;
    int err = idx_read(x, bytes, (size_t)n);
    if (err) return err;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char v = bytes[i];
        out[i] = (float)v / 255.0f;
    }
    return VIKT_OK;
}

static int read_labels(vikt_model *m, const char *path, uint64_t count, vikt__samples *s,
                       int64_t *classes) {
    idx_file x;
    int err = idx_open(&x, m, path, 1, 1);
    if (!err && x.dims[0] != count) {
        err = idx_error(&x, 4, "%llu labels for %llu images", (unsigned long long)x.dims[0],
                        (unsigned long long)count);
    }
    /* Bytes go to the tail of the int32 array and are widened front to back,
     * as for the images. */
    unsigned char *bytes = (unsigned char *)s->labels + 3 * count;
    if (!err) err = idx_read(&x, bytes, (size_t)count);
    idx_close(&x);
    if (err) return err;
    *classes = 0;
    for (uint64_t i = 0; i < count; i++) {
        unsigned char v = bytes[i];
        s->labels[i] = v;
        if (v >= *classes) *classes = (int64_t)v + 1;
    }
    return VIKT_OK;
}

int vikt_dataset_load_idx(vikt_model *m, const char *images_path, const char *labels_path,
                          vikt_dataset **out) {
    if (!out) return VIKT_ERR_NULL;
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    if (!images_path) return vikt__fail(m, VIKT_ERR_NULL, "%s: images_path is NULL", OP);
    idx_file x;
    int err = idx_open(&x, m, images_path, 2, 4);
    if (err) {
        idx_close(&x);
        return err;
    }
    uint64_t count = x.dims[0];
    int rank = x.ndims - 1;
    int64_t shape[3];
    for (int i = 0; i < rank; i++) shape[i] = (int64_t)x.dims[i + 1];
    if (rank == 2) { /* [H, W] images get a channel axis for conv2d */
        shape[2] = shape[1];
        shape[1] = shape[0];
        shape[0] = 1;
        rank = 3;
    }
    vikt__samples *s =
        vikt__samples_alloc(m, OP, (int64_t)count, (int64_t)(x.values / count), labels_path != NULL);
    if (!s) {
        idx_close(&x);
        return VIKT_ERR_NOMEM;
    }
    err = read_images(&x, s->features);
    idx_close(&x);
    int64_t classes = 0;
    if (!err && labels_path) err = read_labels(m, labels_path, count, s, &classes);
    if (!err) {
        *out = vikt__dataset_new(m, OP, s, rank, shape, 0, classes);
        if (!*out) err = VIKT_ERR_NOMEM;
    }
    if (err) vikt__samples_release(m, s);
    return err;
}
