/* mkdtemp, opendir, rmdir and unlink are POSIX. */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

vt_alloc_stats vt_stats;

/* Blocks carry their test_malloc pointer just before the aligned address. */
static void *vt_alloc_fn(void *ud, size_t size, size_t align) {
    (void)ud;
    vt_stats.calls++;
    if (vt_stats.fail_at && vt_stats.calls == vt_stats.fail_at) return NULL;
    if (vt_stats.fail_from && vt_stats.calls >= vt_stats.fail_from) return NULL;
    assert_true(size > 0);
    assert_true(align > 0 && (align & (align - 1)) == 0);
    unsigned char *raw = test_malloc(size + align + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t start = (uintptr_t)(raw + sizeof(void *));
    unsigned char *aligned = (unsigned char *)((start + align - 1) & ~(uintptr_t)(align - 1));
    memcpy(aligned - sizeof(void *), &raw, sizeof raw);
    vt_stats.live++;
    return aligned;
}

static void vt_free_fn(void *ud, void *ptr, size_t size) {
    (void)ud;
    (void)size;
    assert_non_null(ptr);
    void *raw;
    memcpy(&raw, (unsigned char *)ptr - sizeof(void *), sizeof raw);
    vt_stats.frees++;
    vt_stats.live--;
    test_free(raw);
}

const vikt_allocator vt_allocator = {vt_alloc_fn, vt_free_fn, NULL};

void vt_alloc_reset(void) { memset(&vt_stats, 0, sizeof vt_stats); }

vikt_model *vt_model(uint64_t seed) {
    vikt_model *m = NULL;
    assert_int_equal(vikt_model_create(&vt_allocator, seed, &m), VIKT_OK);
    assert_non_null(m);
    return m;
}

void vt_expect_error(vikt_model *m, int err, const char *needle1, const char *needle2) {
    const char *msg = vikt_model_errmsg(m);
    if (vikt_model_errcode(m) != err)
        fail_msg("expected error %d (%s), model holds %d: \"%s\"", err, vikt_strerror(err),
                 vikt_model_errcode(m), msg);
    if (needle1 && !strstr(msg, needle1)) fail_msg("message \"%s\" lacks \"%s\"", msg, needle1);
    if (needle2 && !strstr(msg, needle2)) fail_msg("message \"%s\" lacks \"%s\"", msg, needle2);
    vikt_model_clear_error(m);
}

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

void vt_fill(float *x, int64_t n, uint32_t seed, float lo, float hi) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)lcg(&s) / 16777216.0f;
}

void vt_fill_away_from_zero(float *x, int64_t n, uint32_t seed, float lo, float hi,
                            float margin) {
    vt_fill(x, n, seed, lo, hi);
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) < margin) x[i] = x[i] < 0 ? -margin - 0.05f : margin + 0.05f;
}

/* ------------------------------------------------------ gradient checking */

static int64_t numel_of(const vt_grad_input *in) {
    int64_t n = 1;
    for (int i = 0; i < in->rank; i++) n *= in->shape[i];
    return n;
}

/* Projection weights R_i: fixed, non-trivial, different per element. */
static float projection(int64_t i) { return (float)(0.5 + 0.5 * sin(0.91 * (double)i + 0.3)); }

/* L = Σ out_i · R_i, evaluated in double from out's float32 values. */
static double loss_value(vikt_model *m, vikt_tensor **t, vt_build_fn build, void *ctx) {
    vikt_step_begin(m);
    vikt_model_seed(m, 1234);
    vikt_tensor *out = build(m, t, ctx);
    if (!out) fail_msg("build failed: %s", vikt_model_errmsg(m));
    const float *y = vikt_tensor_data(out);
    double acc = 0;
    for (int64_t i = 0; i < vikt_tensor_numel(out); i++) acc += (double)y[i] * projection(i);
    return acc;
}

static double central(vikt_model *m, vikt_tensor **t, vt_build_fn build, void *ctx, float *x,
                      float x0, float h) {
    x[0] = x0 + h;
    double up = loss_value(m, t, build, ctx);
    x[0] = x0 - h;
    double down = loss_value(m, t, build, ctx);
    x[0] = x0;
    /* The step actually taken in float32 may differ from h. */
    return (up - down) / ((double)(x0 + h) - (double)(x0 - h));
}

void vt_gradcheck(const char *what, int n, const vt_grad_input *inputs, vt_build_fn build,
                  void *ctx, double atol, double rtol) {
    vikt_model *m = vt_model(7);
    vikt_tensor *t[VT_MAX_INPUTS] = {0};
    assert_true(n >= 1 && n <= VT_MAX_INPUTS);
    for (int k = 0; k < n; k++) {
        if (inputs[k].param) {
            t[k] = vikt_param(m, inputs[k].param, inputs[k].rank, inputs[k].shape, VIKT_INIT_ZEROS);
            assert_non_null(t[k]);
            assert_int_equal(vikt_tensor_copy_in(t[k], inputs[k].data, numel_of(&inputs[k])),
                             VIKT_OK);
            assert_int_equal(vikt_tensor_set_requires_grad(t[k], inputs[k].requires_grad), VIKT_OK);
        } else {
            assert_int_equal(vikt_tensor_create(m, inputs[k].rank, inputs[k].shape,
                                                inputs[k].data, inputs[k].requires_grad, &t[k]),
                             VIKT_OK);
        }
    }

    /* Analytic: backward of Σ out ⊙ R. */
    vikt_step_begin(m);
    vikt_model_seed(m, 1234);
    vikt_tensor *out = build(m, t, ctx);
    if (!out) fail_msg("%s: build failed: %s", what, vikt_model_errmsg(m));
    int64_t nout = vikt_tensor_numel(out);
    float *r = malloc((size_t)(nout > 0 ? nout : 1) * sizeof(float));
    for (int64_t i = 0; i < nout; i++) r[i] = projection(i);
    int64_t shape[4];
    int rank = vikt_tensor_shape(out, shape);
    vikt_tensor *rt = vikt_input(m, rank, shape, r);
    vikt_tensor *loss = vikt_sum(m, vikt_mul(m, out, rt));
    free(r);
    if (vikt_backward(m, loss) != VIKT_OK) fail_msg("%s: backward: %s", what, vikt_model_errmsg(m));

    /* Numeric, input by input, element by element. */
    vikt_set_grad_enabled(m, 0);
    int checked = 0;
    for (int k = 0; k < n; k++) {
        if (!inputs[k].requires_grad) continue;
        int64_t count = numel_of(&inputs[k]);
        float *x = vikt_tensor_data(t[k]);
        const float *g = vikt_tensor_grad(t[k]);
        assert_non_null(g);
        for (int64_t i = 0; i < count; i++) {
            float x0 = x[i];
            float h = 1e-2f * (fabsf(x0) > 1.0f ? fabsf(x0) : 1.0f);
            double d1 = central(m, t, build, ctx, &x[i], x0, h);
            double d2 = central(m, t, build, ctx, &x[i], x0, h / 2);
            double num = (4.0 * d2 - d1) / 3.0; /* Richardson: O(h^4) */
            double err = fabs((double)g[i] - num);
            if (err > atol + rtol * fabs(num))
                fail_msg("%s: input %d element %lld: analytic %.7g, numeric %.7g (|diff| %.3g)",
                         what, k, (long long)i, (double)g[i], num, err);
            checked++;
        }
    }
    assert_true(checked > 0);
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_model_destroy(m);
}

/* ------------------------------------------------------------------ files */

char *vt_tmpdir(const char *tag) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    size_t size = strlen(base) + strlen(tag) + 16;
    char *dir = malloc(size);
    assert_non_null(dir);
    snprintf(dir, size, "%s/vikt-%s-XXXXXX", base, tag);
    if (!mkdtemp(dir)) fail_msg("mkdtemp %s: %s", dir, strerror(errno));
    return dir;
}

static int is_dot_or_dotdot(const char *name) {
    return !strcmp(name, ".") || !strcmp(name, "..");
}

void vt_rmdir(char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (is_dot_or_dotdot(e->d_name)) continue;
        char *path = vt_join(dir, e->d_name);
        unlink(path);
        free(path);
    }
    closedir(d);
    rmdir(dir);
    free(dir);
}

char *vt_join(const char *dir, const char *name) {
    size_t size = strlen(dir) + strlen(name) + 2;
    char *path = malloc(size);
    assert_non_null(path);
    snprintf(path, size, "%s/%s", dir, name);
    return path;
}

int vt_count_entries(const char *dir, const char *containing) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += !is_dot_or_dotdot(e->d_name) && strstr(e->d_name, containing);
    closedir(d);
    return n;
}

unsigned char *vt_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(*n + 1);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, *n, f), *n);
    bytes[*n] = 0;
    fclose(f);
    return bytes;
}

void vt_write_file(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}
