/* Datasets: caller arrays, the CSV and IDX loaders (good files and every
 * documented error with its location), shuffles, splits, batches, OOM. */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[64];
static char path_buf[128];

static int make_tmpdir(void **state) {
    (void)state;
    strcpy(tmpdir, "/tmp/vikt_test_data_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state) {
    (void)state;
    return rmdir(tmpdir);
}

/* Write bytes to tmpdir/name; returns the path (static buffer). */
static const char *write_file(const char *name, const void *bytes, size_t n) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", tmpdir, name);
    FILE *f = fopen(path_buf, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path_buf;
}

static const char *write_text(const char *name, const char *text) {
    return write_file(name, text, strlen(text));
}

/* ------------------------------------------------------------------ CSV */

static void csv_good_file(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    const char *p = write_text("good.csv", "a,b,label\r\n"
                                           "1.5, -2e1 ,3\r\n"
                                           "\r\n"
                                           "  \t \n"
                                           "+.25,7.,0\n"
                                           "0,1E-2,2"); /* no final newline */
    vikt_dataset *ds;
    assert_int_equal(vikt_dataset_load_csv(m, p, 1, -1, ',', 0, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_size(ds), 3);
    int64_t shape[3];
    assert_int_equal(vikt_dataset_feature_shape(ds, shape), 1);
    assert_int_equal(shape[0], 2);
    assert_int_equal(vikt_dataset_num_classes(ds), 4);
    assert_int_equal(vikt_dataset_target_width(ds), 0);
    float x[6];
    int32_t y[3];
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, 3, x, y, NULL), VIKT_OK);
    const float want[6] = {1.5f, -20.0f, 0.25f, 7.0f, 0.0f, 0.01f};
    for (int i = 0; i < 6; i++) assert_true(x[i] == want[i]);
    assert_int_equal(y[0], 3);
    assert_int_equal(y[1], 0);
    assert_int_equal(y[2], 2);
    vikt_dataset_destroy(ds);
    unlink(p);

    /* A byte-order mark before the first field. */
    p = write_text("bom.csv", "\xEF\xBB\xBF" "2,1\n3,x\n");
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -1, ',', 0, &ds), VIKT_ERR_FORMAT);
    vt_expect_error(m, VIKT_ERR_FORMAT, "bom.csv:2:3: not a number", NULL);
    p = write_text("bom.csv", "\xEF\xBB\xBF" "2,1\n");
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -1, ',', 0, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, 1, x, y, NULL), VIKT_OK);
    assert_true(x[0] == 2.0f && y[0] == 1);
    vikt_dataset_destroy(ds);
    unlink(p);

    /* The label first, ';' between fields, no header, a class count. */
    p = write_text("semi.csv", "1;0.5;0.25\n0;1;2\n");
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, 0, ';', 5, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_num_classes(ds), 5);
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, 2, x, y, NULL), VIKT_OK);
    assert_true(x[0] == 0.5f && x[1] == 0.25f && x[2] == 1.0f && x[3] == 2.0f);
    assert_true(y[0] == 1 && y[1] == 0);
    vikt_dataset_destroy(ds);
    unlink(p);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* A program running under a comma-decimal LC_NUMERIC locale still reads
 * the file's '.' (strtod alone would read "0.5" as 0 there). */
static void csv_ignores_the_locale(void **state) {
    (void)state;
    if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "fr_FR.UTF-8"))
        skip(); /* no comma-decimal locale installed */
    vikt_model *m = vt_model(3);
    vikt_dataset *ds;
    float x[2];
    int32_t y[1];
    const char *p = write_text("locale.csv", "0.5,-1.25e1,1\n");
    int rc = vikt_dataset_load_csv(m, p, 0, -1, ',', 0, &ds);
    setlocale(LC_NUMERIC, "C");
    assert_int_equal(rc, VIKT_OK);
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, 1, x, y, NULL), VIKT_OK);
    assert_true(x[0] == 0.5f && x[1] == -12.5f && y[0] == 1);
    vikt_dataset_destroy(ds);
    unlink(p);
    vikt_model_destroy(m);
}

typedef struct bad_csv {
    const char *text;
    int header;
    int64_t classes;
    const char *where;   /* "LINE:COL: " after the file name */
    const char *problem; /* part of the message */
} bad_csv;

static void csv_malformed_files(void **state) {
    (void)state;
    static const bad_csv cases[] = {
        {"1,2,0\n1,x,0\n", 0, 0, ":2:3: ", "not a number: \"x\""},
        {"1,2,0\n1,,0\n", 0, 0, ":2:3: ", "empty field"},
        {"1,2,0\n1, ,0\n", 0, 0, ":2:3: ", "empty field"},
        {"h\n1,2,0\n1,2\n", 1, 0, ":3:4: ", "too few fields: expected 3, found 2"},
        {"1,2,0\n1,2,0,4\n", 0, 0, ":2:7: ", "too many fields: expected 3"},
        {"1,2,0\n1,2,1.5\n", 0, 0, ":2:5: ", "label 1.5 is not a whole number"},
        {"1,2,-1\n", 0, 0, ":1:5: ", "label -1 is not a whole number"},
        {"1,2,3\n1,2,7\n", 0, 5, ":2:5: ", "label 7 is not below classes = 5"},
        {"1,nan,0\n", 0, 0, ":1:3: ", "not a number: \"nan\""},
        {"inf,1,0\n", 0, 0, ":1:1: ", "not a number: \"inf\""},
        {"0x10,1,0\n", 0, 0, ":1:1: ", "not a number: \"0x10\""},
        {"1e39,1,0\n", 0, 0, ":1:1: ", "1e39 is out of float32's range"},
        {"1,2,0\n1.2.3,2,0\n", 0, 0, ":2:1: ", "not a number: \"1.2.3\""},
        {"1,2,0\n\"1\",2,0\n", 0, 0, ":2:1: ", "not a number: \"\"1\"\""},
        {"1,2e,0\n", 0, 0, ":1:3: ", "not a number: \"2e\""},
        {"1,2\r,0\n", 0, 0, ":1:3: ", "not a number"},
        {"", 0, 0, ":1:1: ", "no data lines"},
        {"a,b,c\n\n", 1, 0, ":1:1: ", "no data lines after the header"},
        {"5\n", 0, 0, ":1:1: ", "one field"},
    };
    vikt_model *m = vt_model(1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.csv", i);
        const char *p = write_text(name, cases[i].text);
        char where[160];
        snprintf(where, sizeof where, "%s%s", p, cases[i].where);
        vikt_dataset *ds = (vikt_dataset *)&ds;
        int err = vikt_dataset_load_csv(m, p, cases[i].header, -1, ',', cases[i].classes, &ds);
        if (err != VIKT_ERR_FORMAT)
            fail_msg("case %zu: got %d: %s", i, err, vikt_model_errmsg(m));
        assert_null(ds);
        vt_expect_error(m, VIKT_ERR_FORMAT, where, cases[i].problem);
        unlink(p);
    }
    vikt_model_destroy(m);
}

static void csv_bad_arguments(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt_dataset *ds;
    const char *p = write_text("args.csv", "1,2,0\n");
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -1, ',', 0, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_load_csv(NULL, p, 0, -1, ',', 0, &ds), VIKT_ERR_NULL);
    assert_null(ds);
    assert_int_equal(vikt_dataset_load_csv(m, NULL, 0, -1, ',', 0, &ds), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "vikt_dataset_load_csv", "path");
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -1, '.', 0, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "delimiter", NULL);
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -1, '\n', 0, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "delimiter", NULL);
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -1, ',', -2, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "classes", NULL);
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, 3, ',', 0, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "label_column 3 outside the 3 fields", NULL);
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -4, ',', 0, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "label_column -4", NULL);
    unlink(p);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.csv", tmpdir);
    assert_int_equal(vikt_dataset_load_csv(m, missing, 0, -1, ',', 0, &ds), VIKT_ERR_IO);
    vt_expect_error(m, VIKT_ERR_IO, missing, "cannot open");
    assert_int_equal(vikt_dataset_load_csv(m, tmpdir, 0, -1, ',', 0, &ds), VIKT_ERR_IO);
    vt_expect_error(m, VIKT_ERR_IO, tmpdir, "not a regular file");
    vikt_model_destroy(m);
}

/* A huge first line then short lines must not allocate rows x its width. */
static void csv_wide_first_line_fails_cheaply(void **state) {
    (void)state;
    enum { WIDE = 5000, LINES = 5000 };
    size_t cap = WIDE * 2 + LINES * 6 + 16, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int i = 0; i < WIDE; i++) text[len++] = '1', text[len++] = i + 1 < WIDE ? ',' : '\n';
    for (int i = 0; i < LINES; i++) len += (size_t)snprintf(text + len, cap - len, "1,0\n");
    const char *p = write_file("wide.csv", text, len);
    free(text);
    vt_alloc_reset();
    vikt_model *m = vt_model(1);
    vikt_dataset *ds;
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -1, ',', 0, &ds), VIKT_ERR_FORMAT);
    vt_expect_error(m, VIKT_ERR_FORMAT, ":2:4: ", "too few fields: expected 5000, found 2");
    vikt_model_destroy(m);
    unlink(p);
}

/* ------------------------------------------------------------------ IDX */

static size_t idx_header(unsigned char *b, int type, int ndims, const uint32_t *dims) {
    b[0] = b[1] = 0;
    b[2] = (unsigned char)type;
    b[3] = (unsigned char)ndims;
    for (int i = 0; i < ndims; i++) {
        b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        b[7 + 4 * i] = (unsigned char)dims[i];
    }
    return 4 + 4 * (size_t)ndims;
}

/* 3 images of 2x2 (values i*4+j*... ) and their labels. */
static const char *write_images(const char *name, size_t drop, size_t extra) {
    unsigned char b[64];
    size_t n = idx_header(b, 0x08, 3, (uint32_t[]){3, 2, 2});
    for (int i = 0; i < 12; i++) b[n++] = (unsigned char)(i * 20 + (i == 11 ? 35 : 0));
    for (size_t i = 0; i < extra; i++) b[n++] = 0;
    return write_file(name, b, n - drop);
}

static const char *write_labels(const char *name, uint32_t count) {
    unsigned char b[64];
    size_t n = idx_header(b, 0x08, 1, (uint32_t[]){count});
    for (uint32_t i = 0; i < count; i++) b[n++] = (unsigned char)(7 - i * 3);
    return write_file(name, b, n);
}

static void idx_good_files(void **state) {
    (void)state;
    char images[160], labels[160];
    strcpy(images, write_images("img.idx", 0, 0));
    strcpy(labels, write_labels("lab.idx", 3));
    vikt_model *m = vt_model(1);
    vikt_dataset *ds;
    assert_int_equal(vikt_dataset_load_idx(m, images, labels, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_size(ds), 3);
    int64_t shape[3];
    assert_int_equal(vikt_dataset_feature_shape(ds, shape), 3);
    assert_true(shape[0] == 1 && shape[1] == 2 && shape[2] == 2);
    assert_int_equal(vikt_dataset_num_classes(ds), 8);
    float x[12];
    int32_t y[3];
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, 3, x, y, NULL), VIKT_OK);
    for (int i = 0; i < 12; i++)
        assert_true(x[i] == (float)(i * 20 + (i == 11 ? 35 : 0)) / 255.0f);
    assert_true(x[11] == 1.0f);
    assert_true(y[0] == 7 && y[1] == 4 && y[2] == 1);
    vikt_step_begin(m);
    vikt_tensor *t = vikt_dataset_input(ds, 1, 2);
    assert_non_null(t);
    assert_int_equal(vikt_tensor_rank(t), 4);
    assert_int_equal(vikt_tensor_dim(t, 0), 2);
    assert_int_equal(vikt_tensor_dim(t, 1), 1);
    assert_memory_equal(vikt_tensor_data(t), x + 4, 8 * sizeof(float));
    vikt_dataset_destroy(ds);

    /* Without labels. */
    assert_int_equal(vikt_dataset_load_idx(m, images, NULL, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_num_classes(ds), 0);
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, 1, x, y, NULL), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "without labels", NULL);
    vikt_dataset_destroy(ds);

    /* Rank-2 image files ([n, d]) keep a rank-1 sample. */
    unsigned char b[32];
    size_t n = idx_header(b, 0x08, 2, (uint32_t[]){2, 3});
    memset(b + n, 51, 6);
    const char *p = write_file("flat.idx", b, n + 6);
    assert_int_equal(vikt_dataset_load_idx(m, p, NULL, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_feature_shape(ds, shape), 1);
    assert_int_equal(shape[0], 3);
    vikt_dataset_destroy(ds);
    unlink(p);
    unlink(images);
    unlink(labels);
    vikt_model_destroy(m);
}

static void expect_idx_error(vikt_model *m, const char *images, const char *labels,
                             const char *file, const char *where, const char *problem) {
    vikt_dataset *ds = (vikt_dataset *)&ds;
    int err = vikt_dataset_load_idx(m, images, labels, &ds);
    if (err != VIKT_ERR_FORMAT) fail_msg("got %d: %s", err, vikt_model_errmsg(m));
    assert_null(ds);
    char needle[200];
    snprintf(needle, sizeof needle, "vikt_dataset_load_idx: %s: %s", file, where);
    vt_expect_error(m, VIKT_ERR_FORMAT, needle, problem);
}

static void idx_malformed_files(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    char images[160], labels[160], bad[160];
    strcpy(images, write_images("img.idx", 0, 0));
    strcpy(labels, write_labels("lab.idx", 3));

    strcpy(bad, write_images("short.idx", 5, 0));
    expect_idx_error(m, bad, labels, bad, "byte 23: ",
                     "truncated: 3x2x2 values need 28 bytes, the file has 23");
    strcpy(bad, write_images("long.idx", 0, 2));
    expect_idx_error(m, bad, labels, bad, "byte 28: ", "2 bytes after the 3x2x2 values");
    unsigned char b[64] = {0}; /* "huge.idx" writes 4 bytes past its header */
    size_t n = idx_header(b, 0x08, 3, (uint32_t[]){3, 2, 2});
    strcpy(bad, write_file("hdr.idx", b, 10));
    expect_idx_error(m, bad, labels, bad, "byte 10: ", "truncated header: expected 16 bytes");
    strcpy(bad, write_file("tiny.idx", b, 3));
    expect_idx_error(m, bad, labels, bad, "byte 3: ", "shorter than the 4-byte magic");
    b[2] = 0x0D; /* float32 IDX: not read */
    strcpy(bad, write_file("float.idx", b, n));
    expect_idx_error(m, bad, labels, bad, "byte 0: ", "bad magic 0x00000d03");
    b[2] = 0x08;
    b[3] = 5;
    strcpy(bad, write_file("dims.idx", b, n));
    expect_idx_error(m, bad, labels, bad, "byte 0: ", "bad magic 0x00000805");
    /* An images file used as labels: 3 dimensions where 1 is expected. */
    expect_idx_error(m, images, images, images, "byte 0: ", "bad magic 0x00000803");
    n = idx_header(b, 0x08, 3, (uint32_t[]){3, 0, 2});
    strcpy(bad, write_file("zero.idx", b, n));
    expect_idx_error(m, bad, labels, bad, "byte 8: ", "dimension 1 is 0");
    /* Counts whose product overflows 64 bits do not wrap around. */
    n = idx_header(b, 0x08, 4, (uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu, 2});
    strcpy(bad, write_file("huge.idx", b, n + 4));
    expect_idx_error(m, bad, labels, bad, "byte 24: ",
                     "truncated: 4294967295x4294967295x4294967295x2 values need more bytes than the file's 24");
    unlink(bad);

    char fewer[160];
    strcpy(fewer, write_labels("lab2.idx", 2));
    expect_idx_error(m, images, fewer, fewer, "byte 4: ", "2 labels for 3 images");
    vikt_dataset *ds;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.idx", tmpdir);
    assert_int_equal(vikt_dataset_load_idx(m, missing, labels, &ds), VIKT_ERR_IO);
    vt_expect_error(m, VIKT_ERR_IO, missing, "cannot open");
    assert_int_equal(vikt_dataset_load_idx(m, images, missing, &ds), VIKT_ERR_IO);
    vt_expect_error(m, VIKT_ERR_IO, missing, "cannot open");
    assert_int_equal(vikt_dataset_load_idx(m, NULL, labels, &ds), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "images_path", NULL);
    assert_int_equal(vikt_dataset_load_idx(NULL, images, labels, &ds), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_load_idx(m, images, labels, NULL), VIKT_ERR_NULL);
    const char *names[] = {"short.idx", "long.idx", "hdr.idx", "tiny.idx", "float.idx",
                           "dims.idx", "zero.idx", "lab2.idx"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(bad, sizeof bad, "%s/%s", tmpdir, names[i]);
        unlink(bad);
    }
    unlink(images);
    unlink(labels);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------ caller arrays */

enum { N = 10, D = 3 };

static void fill_data(float *x, int32_t *y) {
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(i * 10 + j);
        y[i] = i % 4;
    }
}

static void create_and_batches(void **state) {
    (void)state;
    float x[N * D], t[N * 2];
    int32_t y[N];
    fill_data(x, y);
    for (int i = 0; i < N * 2; i++) t[i] = (float)i * 0.5f;
    vikt_model *m = vt_model(1);
    vikt_dataset *ds;
    assert_int_equal(vikt_dataset_create(m, N, 1, (int64_t[]){D}, x, NULL, t, 2, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_target_width(ds), 2);
    assert_int_equal(vikt_dataset_num_classes(ds), 0);
    vikt_step_begin(m);
    vikt_tensor *in = vikt_dataset_input(ds, 8, 2);
    vikt_tensor *tg = vikt_dataset_target_input(ds, 8, 2);
    assert_non_null(in);
    assert_non_null(tg);
    assert_memory_equal(vikt_tensor_data(in), x + 8 * D, 2 * D * sizeof(float));
    assert_memory_equal(vikt_tensor_data(tg), t + 16, 4 * sizeof(float));
    assert_null(vikt_dataset_input(ds, 9, 2));
    vt_expect_error(m, VIKT_ERR_ARG, "vikt_dataset_input: positions [9, 9 + 2)", NULL);
    assert_null(vikt_dataset_input(ds, 0, 0));
    vt_expect_error(m, VIKT_ERR_ARG, NULL, NULL);
    assert_null(vikt_dataset_input(NULL, 0, 1));
    assert_int_equal(vikt_dataset_scale(ds, 2, 0), VIKT_ERR_STATE);
    vt_expect_error(m, VIKT_ERR_STATE, "caller's arrays", NULL);
    vikt_dataset_destroy(ds);

    assert_int_equal(vikt_dataset_create(m, N, 2, (int64_t[]){1, D}, x, y, NULL, 0, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_num_classes(ds), 4);
    assert_null(vikt_dataset_target_input(ds, 0, 1));
    vt_expect_error(m, VIKT_ERR_ARG, "no float targets", NULL);
    float tb[2];
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, 1, NULL, NULL, tb), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "without targets", NULL);
    assert_int_equal(vikt_dataset_copy_batch(ds, -1, 1, NULL, NULL, NULL), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, NULL, NULL);
    vikt_dataset_destroy(ds);

    /* Bad arguments, each named. */
    const int64_t d3[] = {D};
    assert_int_equal(vikt_dataset_create(m, N, 1, d3, x, y, NULL, 0, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_create(NULL, N, 1, d3, x, y, NULL, 0, &ds), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_create(m, N, 1, d3, NULL, y, NULL, 0, &ds), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "features", NULL);
    assert_int_equal(vikt_dataset_create(m, 0, 1, d3, x, y, NULL, 0, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "n = 0", NULL);
    assert_int_equal(vikt_dataset_create(m, N, 4, (int64_t[]){1, 1, 1, D}, x, y, NULL, 0, &ds),
                     VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "sample rank 4", NULL);
    assert_int_equal(vikt_dataset_create(m, N, 1, (int64_t[]){0}, x, y, NULL, 0, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "shape[0] = 0", NULL);
    assert_int_equal(vikt_dataset_create(m, N, 1, d3, x, y, t, 2, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "not both", NULL);
    assert_int_equal(vikt_dataset_create(m, N, 1, d3, x, NULL, t, 0, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "target_width = 0", NULL);
    assert_int_equal(vikt_dataset_create(m, N, 1, d3, x, y, NULL, 1, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "without targets", NULL);
    y[3] = -2;
    assert_int_equal(vikt_dataset_create(m, N, 1, d3, x, y, NULL, 0, &ds), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "labels[3] = -2", NULL);
    assert_null(ds);
    assert_int_equal(vikt_dataset_size(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_feature_shape(NULL, NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_num_classes(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_target_width(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_shuffle(NULL), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_scale(NULL, 1, 0), VIKT_ERR_NULL);
    assert_int_equal(vikt_dataset_copy_batch(NULL, 0, 1, NULL, NULL, NULL), VIKT_ERR_NULL);
    vikt_dataset_destroy(NULL);
    vikt_model_destroy(m);
}

/* --------------------------------------------------- shuffles and splits */

static void order_of(vikt_dataset *ds, int32_t *ids) {
    /* Labels are the sample's index here, so they read back the order. */
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, vikt_dataset_size(ds), NULL, ids, NULL),
                     VIKT_OK);
}

static void shuffles_are_seeded_permutations(void **state) {
    (void)state;
    enum { M = 50 };
    float x[M];
    int32_t ids[M];
    for (int i = 0; i < M; i++) x[i] = (float)i, ids[i] = i;
    int32_t first[3][M];
    for (int run = 0; run < 2; run++) {
        vikt_model *m = vt_model(42);
        vikt_dataset *ds;
        assert_int_equal(vikt_dataset_create(m, M, 1, (int64_t[]){1}, x, ids, NULL, 0, &ds), VIKT_OK);
        for (int epoch = 0; epoch < 3; epoch++) {
            int32_t got[M];
            assert_int_equal(vikt_dataset_shuffle(ds), VIKT_OK);
            order_of(ds, got);
            int seen[M] = {0};
            for (int i = 0; i < M; i++) seen[got[i]]++;
            for (int i = 0; i < M; i++) assert_int_equal(seen[i], 1);
            if (run == 0) {
                memcpy(first[epoch], got, sizeof got);
                int moved = 0;
                for (int i = 0; i < M; i++) moved += got[i] != i;
                assert_true(moved > M / 2);
                if (epoch > 0) assert_memory_not_equal(got, first[epoch - 1], sizeof got);
            } else {
                assert_memory_equal(got, first[epoch], sizeof got); /* same seed, same order */
            }
            /* Batches follow the order, features with their labels. */
            float fx[M];
            assert_int_equal(vikt_dataset_copy_batch(ds, 0, M, fx, NULL, NULL), VIKT_OK);
            for (int i = 0; i < M; i++) assert_true(fx[i] == (float)got[i]);
        }
        vikt_dataset_destroy(ds);
        vikt_model_destroy(m);
    }
    /* Another seed gives another order. */
    vikt_model *m = vt_model(43);
    vikt_dataset *ds;
    assert_int_equal(vikt_dataset_create(m, M, 1, (int64_t[]){1}, x, ids, NULL, 0, &ds), VIKT_OK);
    vikt_dataset_shuffle(ds);
    int32_t got[M];
    order_of(ds, got);
    assert_memory_not_equal(got, first[0], sizeof got);
    vikt_dataset_destroy(ds);
    vikt_model_destroy(m);
}

static void splits_are_disjoint_and_seeded(void **state) {
    (void)state;
    enum { M = 40, V = 12 };
    float x[M];
    int32_t ids[M];
    for (int i = 0; i < M; i++) x[i] = (float)i, ids[i] = i;
    int32_t prev_train[M - V];
    for (int run = 0; run < 2; run++) {
        vikt_model *m = vt_model(5);
        vikt_dataset *ds, *tr, *va;
        assert_int_equal(vikt_dataset_create(m, M, 1, (int64_t[]){1}, x, ids, NULL, 0, &ds), VIKT_OK);
        assert_int_equal(vikt_dataset_split(ds, V, &tr, &va), VIKT_OK);
        vikt_dataset_destroy(ds); /* the parts keep the shared samples */
        assert_int_equal(vikt_dataset_size(tr), M - V);
        assert_int_equal(vikt_dataset_size(va), V);
        int32_t a[M - V], b[V];
        order_of(tr, a);
        order_of(va, b);
        int seen[M] = {0};
        for (int i = 0; i < M - V; i++) seen[a[i]]++;
        for (int i = 0; i < V; i++) seen[b[i]]++;
        for (int i = 0; i < M; i++) assert_int_equal(seen[i], 1);
        if (run == 1) assert_memory_equal(a, prev_train, sizeof a);
        memcpy(prev_train, a, sizeof a);
        /* Shuffling a part keeps it within its own samples. */
        vikt_dataset_shuffle(va);
        int32_t c[V];
        order_of(va, c);
        for (int i = 0; i < V; i++) {
            int found = 0;
            for (int j = 0; j < V; j++) found |= c[i] == b[j];
            assert_true(found);
        }
        assert_int_equal(vikt_dataset_num_classes(va), M);
        vikt_dataset *p1 = tr, *p2 = tr;
        assert_int_equal(vikt_dataset_split(tr, 0, &p1, &p2), VIKT_ERR_ARG);
        assert_null(p1);
        assert_null(p2);
        vt_expect_error(m, VIKT_ERR_ARG, "val_count = 0 of 28 samples, need 1 to 27", NULL);
        assert_int_equal(vikt_dataset_split(tr, M - V, &p1, &p2), VIKT_ERR_ARG);
        vt_expect_error(m, VIKT_ERR_ARG, NULL, NULL);
        assert_int_equal(vikt_dataset_split(NULL, 1, &p1, &p2), VIKT_ERR_NULL);
        assert_int_equal(vikt_dataset_split(tr, 1, NULL, &p2), VIKT_ERR_NULL);
        vikt_dataset_destroy(tr);
        vikt_dataset_destroy(va);
        vikt_model_destroy(m);
    }
}

static void scale_changes_loaded_features(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    const char *p = write_text("scale.csv", "16,8,1\n0,4,0\n");
    vikt_dataset *ds, *tr, *va;
    assert_int_equal(vikt_dataset_load_csv(m, p, 0, -1, ',', 0, &ds), VIKT_OK);
    assert_int_equal(vikt_dataset_split(ds, 1, &tr, &va), VIKT_OK);
    assert_int_equal(vikt_dataset_scale(tr, 1.0f / 16, 0.5f), VIKT_OK);
    float x[4];
    assert_int_equal(vikt_dataset_copy_batch(ds, 0, 2, x, NULL, NULL), VIKT_OK);
    assert_true(x[0] == 1.5f && x[1] == 1.0f && x[2] == 0.5f && x[3] == 0.75f);
    assert_int_equal(vikt_dataset_scale(ds, NAN, 0), VIKT_ERR_ARG);
    vt_expect_error(m, VIKT_ERR_ARG, "finite", NULL);
    vikt_dataset_destroy(ds);
    vikt_dataset_destroy(tr);
    vikt_dataset_destroy(va);
    unlink(p);
    vikt_model_destroy(m);
}

/* ---------------------------------------------------------------- OOM */

/* Fail every allocation in turn: each load fails cleanly (no leak, the
 * error is NOMEM) until the budget suffices. */
static void loaders_survive_out_of_memory(void **state) {
    (void)state;
    char csv[160], images[160], labels[160];
    strcpy(csv, write_text("oom.csv", "1,2,0\n3,4,1\n"));
    strcpy(images, write_images("oom_img.idx", 0, 0));
    strcpy(labels, write_labels("oom_lab.idx", 3));
    float x[N * D];
    int32_t y[N];
    fill_data(x, y);
    for (int which = 0; which < 4; which++) {
        int ok = 0;
        for (int64_t k = 1; k < 20 && !ok; k++) {
            vt_alloc_reset();
            vikt_model *m = vt_model(1);
            vikt_dataset *ds = NULL, *tr = NULL, *va = NULL;
            vt_stats.fail_at = vt_stats.calls + k;
            int err;
            if (which == 0)
                err = vikt_dataset_load_csv(m, csv, 0, -1, ',', 0, &ds);
            else if (which == 1)
                err = vikt_dataset_load_idx(m, images, labels, &ds);
            else if (which == 2)
                err = vikt_dataset_create(m, N, 1, (int64_t[]){D}, x, y, NULL, 0, &ds);
            else {
                vt_stats.fail_at = 0;
                assert_int_equal(vikt_dataset_create(m, N, 1, (int64_t[]){D}, x, y, NULL, 0, &ds),
                                 VIKT_OK);
                vt_stats.fail_at = vt_stats.calls + k;
                err = vikt_dataset_split(ds, 3, &tr, &va);
            }
            if (err == VIKT_OK) {
                ok = 1;
            } else {
                assert_int_equal(err, VIKT_ERR_NOMEM);
                vt_expect_error(m, VIKT_ERR_NOMEM, "out of memory", NULL);
                assert_null(which == 3 ? tr : ds);
            }
            vikt_dataset_destroy(ds);
            vikt_dataset_destroy(tr);
            vikt_dataset_destroy(va);
            vikt_model_destroy(m);
            assert_int_equal(vt_stats.live, 0);
        }
        assert_true(ok);
    }
    unlink(csv);
    unlink(images);
    unlink(labels);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(csv_good_file),
        cmocka_unit_test(csv_ignores_the_locale),
        cmocka_unit_test(csv_malformed_files),
        cmocka_unit_test(csv_bad_arguments),
        cmocka_unit_test(csv_wide_first_line_fails_cheaply),
        cmocka_unit_test(idx_good_files),
        cmocka_unit_test(idx_malformed_files),
        cmocka_unit_test(create_and_batches),
        cmocka_unit_test(shuffles_are_seeded_permutations),
        cmocka_unit_test(splits_are_disjoint_and_seeded),
        cmocka_unit_test(scale_changes_loaded_features),
        cmocka_unit_test(loaders_survive_out_of_memory),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
