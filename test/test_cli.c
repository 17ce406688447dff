/* The vikt command-line tool, run in-process through vikt__cli_main (fork
 * and exec hang under qemu-user) with its output in temporary files, and
 * every allocation through the counting test allocator:
 *
 * - inspect on a file vikt wrote and on files PyTorch wrote (F32, F16,
 *   BF16, F64; integer and bool tensors): names, dtypes, shapes, counts,
 *   the total, and with --stats every statistic against one computed here
 *   in long double from the fixture values;
 * - diff of identical files, of files with known perturbations (max |a - b|
 *   and cosine printed as computed here), of names in one file only, shape
 *   and dtype mismatches, NaN, --atol; exit 0 / 1;
 * - every malformed fixture, a missing file, a directory, usage errors, an
 *   unwritable output and out-of-memory at every allocation: exit 2, a
 *   message naming the file, nothing leaked;
 * - names with control characters come out escaped. */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include "../tools/vikt/cli.h"
#include "fixtures/safetensors_fixtures.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXDIR "test/fixtures/safetensors/"
#define MAXARGS 8

/* ---------------------------------------------------------- running it */

typedef struct result {
    int code;
    char *out, *err; /* malloc'd, NUL-terminated */
} result;

static char *slurp(FILE *f) {
    assert_int_equal(fflush(f), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Run `vikt args...` (a NULL-terminated list) on the test allocator. */
static result run_argv(const char *const *args) {
    char *argv[MAXARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)"vikt";
    while (args[argc - 1]) {
        assert_true(argc <= MAXARGS);
        argv[argc] = (char *)args[argc - 1];
        argc++;
    }
    argv[argc] = NULL;
    FILE *out = tmpfile(), *err = tmpfile();
    assert_true(out && err);
    result r;
    vt_alloc_reset();
    r.code = vikt__cli_main(argc, argv, out, err, &vt_allocator);
    assert_int_equal(vt_stats.live, 0); /* everything it allocated, it freed */
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
}

#define RUN(...) run_argv((const char *const[]){__VA_ARGS__, NULL})

static void done(result *r) {
    free(r->out);
    free(r->err);
}

static void expect_contains(const char *what, const char *text, const char *needle) {
    if (!strstr(text, needle)) fail_msg("%s lacks \"%s\":\n%s", what, needle, text);
}

/* The line of text whose first word is `first` (a copy, malloc'd), or NULL. */
static char *line_of(const char *text, const char *first) {
    size_t n = strlen(first);
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= n && !strncmp(p, first, n) && (len == n || p[n] == ' ')) {
            char *line = malloc(len + 1);
            memcpy(line, p, len);
            line[len] = '\0';
            return line;
        }
        p += len + (end != NULL);
    }
    return NULL;
}

/* Split a table row into words (in place); returns their number. */
static int words(char *line, char **w, int max) {
    int n = 0;
    for (char *t = strtok(line, " "); t && n < max; t = strtok(NULL, " ")) w[n++] = t;
    return n;
}

/* ------------------------------------------------------ the references */

typedef struct ref_stats {
    double mean, std, min, max, l2, zero_fraction;
} ref_stats;

/* Two passes in long double over n finite values. */
static ref_stats reference(const float *x, int64_t n) {
    long double sum = 0, sq = 0, dev = 0;
    ref_stats r = {0, 0, INFINITY, -INFINITY, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        sum += x[i], sq += (long double)x[i] * x[i];
        r.min = x[i] < r.min ? x[i] : r.min;
        r.max = x[i] > r.max ? x[i] : r.max;
        r.zero_fraction += x[i] == 0.0f;
    }
    long double mean = sum / n;
    for (int64_t i = 0; i < n; i++) dev += (x[i] - mean) * (x[i] - mean);
    r.mean = (double)mean, r.std = (double)sqrtl(dev / n), r.l2 = (double)sqrtl(sq);
    r.zero_fraction /= (double)n;
    return r;
}

/* A printed number against the reference: %.6g keeps 6 significant digits. */
static void expect_number(const char *what, const char *text, double want, double rel) {
    char *end;
    double got = strtod(text, &end);
    if (*end || !(fabs(got - want) <= rel * fabs(want) + 1e-12))
        fail_msg("%s: printed \"%s\", expected %.9g", what, text, want);
}

/* The row of tensor `name`: dtype, shape, count, and with values the
 * statistics (11 words) against the reference over those values. */
static void expect_row(const char *out, const char *name, const char *dtype, const char *shape,
                       int64_t numel, const float *values) {
    char *line = line_of(out, name), *w[16];
    if (!line) fail_msg("no row for %s in:\n%s", name, out);
    int n = words(line, w, 16);
    char count[32];
    snprintf(count, sizeof count, "%lld", (long long)numel);
    if (n != (values ? 11 : 4) || strcmp(w[1], dtype) || strcmp(w[2], shape) || strcmp(w[3], count))
        fail_msg("row of %s: %d words, \"%s %s %s\"; expected %s %s %s", name, n, w[1], n > 2 ? w[2] : "",
                 n > 3 ? w[3] : "", dtype, shape, count);
    if (values) {
        ref_stats r = reference(values, numel);
        expect_number("mean", w[4], r.mean, 6e-6);
        expect_number("std", w[5], r.std, 6e-6);
        expect_number("min", w[6], r.min, 6e-6);
        expect_number("max", w[7], r.max, 6e-6);
        expect_number("l2", w[8], r.l2, 6e-6);
        expect_number("zeros", w[9], r.zero_fraction, 6e-4);
        assert_string_equal(w[10], "0/0");
    }
    free(line);
}

/* The values of vikt_mlp.safetensors (tools/gen_safetensors_fixtures.py
 * pattern()), tensor k in file order. */
static const char *const mlp_names[8] = {"fc1.weight", "fc1.bias", "bn.weight", "bn.bias",
                                         "fc2.weight", "fc2.bias", "bn.running_mean", "bn.running_var"};
static const char *const mlp_shapes[8] = {"4x5", "4", "4", "4", "3x4", "3", "4", "4"};
static const int64_t mlp_numel[8] = {20, 4, 4, 4, 12, 3, 4, 4};

static void mlp_pattern(int k, float *x) {
    for (int64_t i = 0; i < mlp_numel[k]; i++)
        x[i] = k == 7 ? 0.5f + (float)i * 0.125f : (float)((i * 7 + k * 13) % 97 - 48) / 64.0f;
}

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* -------------------------------------------------------------- inspect */

static void inspect_vikt_file(void **state) {
    (void)state;
    for (int stats = 0; stats < 2; stats++) {
        result r = stats ? RUN("inspect", "--stats", FIXDIR "vikt_mlp.safetensors")
                         : RUN("inspect", FIXDIR "vikt_mlp.safetensors");
        assert_int_equal(r.code, VIKT__CLI_OK);
        assert_string_equal(r.err, "");
        expect_contains("header", r.out,
                        stats ? "name             dtype  shape  params          mean           std"
                              : "name             dtype  shape  params\n");
        for (int k = 0; k < 8; k++) {
            float x[20];
            mlp_pattern(k, x);
            expect_row(r.out, mlp_names[k], "F32", mlp_shapes[k], mlp_numel[k], stats ? x : NULL);
        }
        expect_contains("total", r.out,
                        "total: 8 tensors, 55 parameters, 220 bytes of data; 2 of the tensors (8 values) "
                        "are buffers; CRC32C verified for 8\nmetadata: format = pt\n");
        done(&r);
    }
}

/* The aligned table, exactly, for a file PyTorch wrote. */
static void inspect_table_layout(void **state) {
    (void)state;
    result r = RUN("inspect", FIXDIR "golden_mlp_f16.safetensors");
    assert_int_equal(r.code, VIKT__CLI_OK);
    assert_string_equal(r.out, "name        dtype  shape  params\n"
                               "fc1.weight  F16    4x5        20\n"
                               "fc1.bias    F16    4           4\n"
                               "fc2.weight  F16    3x4        12\n"
                               "fc2.bias    F16    3           3\n"
                               "total: 4 tensors, 39 parameters, 78 bytes of data\n"
                               "metadata: format = pt\n");
    done(&r);
}

static void inspect_torch_float_files(void **state) {
    (void)state;
    static const char *const shapes[4] = {"4x5", "4", "3x4", "3"};
    static const int64_t numel[4] = {20, 4, 12, 3};
    static const char *const dtypes[4] = {"F32", "F16", "BF16", "F64"};
    for (size_t c = 0; c < sizeof golden_mlp_cases / sizeof golden_mlp_cases[0]; c++) {
        char path[128];
        snprintf(path, sizeof path, FIXDIR "%s", golden_mlp_cases[c].file);
        result r = RUN("inspect", "--stats", path);
        assert_int_equal(r.code, VIKT__CLI_OK);
        for (int k = 0; k < 4; k++) {
            float x[20];
            for (int64_t i = 0; i < numel[k]; i++) x[i] = from_bits(golden_mlp_cases[c].bits[k][i]);
            expect_row(r.out, golden_mlp_names[k], dtypes[c], shapes[k], numel[k], x);
        }
        expect_contains("total", r.out, "total: 4 tensors, 39 parameters");
        done(&r);
    }
}

/* num_batches_tracked (I64, a scalar), BOOL, U8, I8, I16 and I32 tensors
 * are listed and described like the float ones. */
static void inspect_torch_int_dtypes(void **state) {
    (void)state;
    result r = RUN("inspect", "--stats", FIXDIR "golden_torch_int_dtypes.safetensors");
    assert_int_equal(r.code, VIKT__CLI_OK);
    assert_string_equal(r.err, "");
    int64_t total = 0;
    size_t n = sizeof golden_int_tensors / sizeof golden_int_tensors[0];
    for (size_t i = 0; i < n; i++) {
        const golden_int_tensor *g = &golden_int_tensors[i];
        char shape[64] = "scalar";
        for (int d = 0, len = 0; d < g->rank; d++)
            len += snprintf(shape + len, sizeof shape - (size_t)len, "%s%lld", d ? "x" : "", (long long)g->shape[d]);
        expect_row(r.out, g->name, g->dtype, shape, g->numel, g->values);
        total += g->numel;
    }
    char want[96];
    snprintf(want, sizeof want, "total: %zu tensors, %lld parameters", n, (long long)total);
    expect_contains("total", r.out, want);
    /* In file order: the safetensors package puts I64 first, BOOL last. */
    assert_true(strstr(r.out, "bn.num_batches_tracked") < strstr(r.out, "fc.weight"));
    assert_true(strstr(r.out, "fc.weight") < strstr(r.out, "mask "));
    done(&r);
}

/* ------------------------------------------------------- files to diff */

typedef struct tfile {
    const char *name;
    int rank;
    int64_t shape[2];
    const float *values;
} tfile;

static char tmpdir[256];

static void make_tmpdir(void) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/vikt-cli-XXXXXX", base);
    if (!mkdtemp(tmpdir)) fail_msg("mkdtemp: %s", strerror(errno));
}

/* Save the tensors with vikt_save as tmpdir/file; returns the path (static
 * buffer per slot). */
static const char *save(int slot, const char *file, const tfile *t, int n) {
    static char paths[3][512];
    vt_alloc_reset();
    vikt_model *m = vt_model(1);
    for (int i = 0; i < n; i++) {
        vikt_tensor *p = vikt_param(m, t[i].name, t[i].rank, t[i].shape, VIKT_INIT_ZEROS);
        assert_non_null(p);
        assert_int_equal(vikt_tensor_copy_in(p, t[i].values, vikt_tensor_numel(p)), VIKT_OK);
    }
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", tmpdir, file);
    assert_int_equal(vikt_save(m, paths[slot]), VIKT_OK);
    vikt_model_destroy(m);
    return paths[slot];
}

static void cleanup(int n) {
    static const char *const files[] = {"a.safetensors", "b.safetensors", "c.safetensors"};
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

/* The row of `name` in a diff: its words. */
static int diff_row(const char *out, const char *name, char **w, char **line) {
    *line = line_of(out, name);
    if (!*line) fail_msg("no row for %s in:\n%s", name, out);
    return words(*line, w, 12);
}

static void expect_diff_row(const char *out, const char *name, const char *dtype, const char *shape,
                            const char *max_abs, const char *cosine, const char *status) {
    char *line, *w[12] = {NULL};
    int n = diff_row(out, name, w, &line);
    if (n < 2) fail_msg("row of %s: %d words", name, n);
    char got[256], want[256];
    snprintf(got, sizeof got, "%s", w[1]);
    for (int i = 2; i < n; i++) snprintf(got + strlen(got), sizeof got - strlen(got), " %s", w[i]);
    snprintf(want, sizeof want, "%s %s %s %s %s", dtype, shape, max_abs, cosine, status);
    if (strcmp(got, want)) fail_msg("row of %s: \"%s\", expected \"%s\"", name, got, want);
    free(line);
}

/* -------------------------------------------------------------- diff */

static void diff_identical(void **state) {
    (void)state;
    result r = RUN("diff", FIXDIR "vikt_mlp.safetensors", FIXDIR "vikt_mlp.safetensors");
    assert_int_equal(r.code, VIKT__CLI_OK);
    assert_string_equal(r.err, "");
    expect_contains("paths", r.out, "A: " FIXDIR "vikt_mlp.safetensors\nB: " FIXDIR "vikt_mlp.safetensors\n");
    for (int k = 0; k < 8; k++)
        expect_diff_row(r.out, mlp_names[k], "F32", mlp_shapes[k], "0", "1.000000000", "equal");
    expect_contains("total", r.out,
                    "total: 8 equal, 0 values differ, 0 dtype differs, 0 shape differs, 0 only in A, "
                    "0 only in B\n");
    done(&r);
}

/* A known perturbation: one element moved by 0.25; a tensor negated; zero
 * tensors against zeros and against values. */
static void diff_perturbed(void **state) {
    (void)state;
    make_tmpdir();
    float w[6] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 1.5f}, w2[6];
    float v[3] = {1, 2, 3}, neg[3] = {-1, -2, -3}, zero[3] = {0, 0, 0};
    memcpy(w2, w, sizeof w);
    w2[4] += 0.25f;
    const tfile a[] = {{"w", 2, {2, 3}, w}, {"v", 1, {3}, v}, {"z", 1, {3}, zero}, {"zv", 1, {3}, zero}};
    const tfile b[] = {{"w", 2, {2, 3}, w2}, {"v", 1, {3}, neg}, {"z", 1, {3}, zero}, {"zv", 1, {3}, v}};
    const char *pa = save(0, "a.safetensors", a, 4), *pb = save(1, "b.safetensors", b, 4);
    result r = RUN("diff", pa, pb);
    assert_int_equal(r.code, VIKT__CLI_DIFFER);
    assert_string_equal(r.err, "");
    /* The cosine of w and w2, here in long double. */
    long double dot = 0, aa = 0, bb = 0;
    for (int i = 0; i < 6; i++) dot += (long double)w[i] * w2[i], aa += (long double)w[i] * w[i], bb += (long double)w2[i] * w2[i];
    char cos[32];
    snprintf(cos, sizeof cos, "%.9f", (double)(dot / sqrtl(aa * bb)));
    assert_string_not_equal(cos, "1.000000000");
    expect_diff_row(r.out, "w", "F32", "2x3", "0.25", cos, "values differ");
    expect_diff_row(r.out, "v", "F32", "3", "6", "-1.000000000", "values differ");
    expect_diff_row(r.out, "z", "F32", "3", "0", "1.000000000", "equal");  /* both all zero */
    expect_diff_row(r.out, "zv", "F32", "3", "3", "0.000000000", "values differ"); /* one all zero */
    expect_contains("total", r.out,
                    "total: 1 equal, 3 values differ, 0 dtype differs, 0 shape differs, 0 only in A, "
                    "0 only in B; largest max|a-b| 6 in 'v'\n");
    done(&r);
    /* Within --atol the perturbed tensor is equal; the others are not. */
    r = RUN("diff", "--atol", "0.25", pa, pb);
    assert_int_equal(r.code, VIKT__CLI_DIFFER);
    expect_diff_row(r.out, "w", "F32", "2x3", "0.25", cos, "equal");
    done(&r);
    r = RUN("diff", "--atol=6", pa, pb);
    assert_int_equal(r.code, VIKT__CLI_OK); /* everything within 6 */
    expect_contains("total", r.out, "total: 4 equal, 0 values differ");
    done(&r);
    cleanup(2);
}

static void diff_names_and_shapes(void **state) {
    (void)state;
    make_tmpdir();
    float six[6] = {1, 2, 3, 4, 5, 6};
    const tfile a[] = {{"w", 2, {2, 3}, six}, {"only_a", 1, {2}, six}, {"same", 1, {3}, six}};
    const tfile b[] = {{"same", 1, {3}, six}, {"w", 2, {3, 2}, six}, {"only_b", 2, {1, 1}, six}};
    const char *pa = save(0, "a.safetensors", a, 3), *pb = save(1, "b.safetensors", b, 3);
    result r = RUN("diff", pa, pb);
    assert_int_equal(r.code, VIKT__CLI_DIFFER);
    expect_diff_row(r.out, "w", "F32", "2x3/3x2", "-", "-", "shape differs");
    expect_diff_row(r.out, "only_a", "F32", "2", "-", "-", "only in A");
    expect_diff_row(r.out, "only_b", "F32", "1x1", "-", "-", "only in B");
    expect_diff_row(r.out, "same", "F32", "3", "0", "1.000000000", "equal");
    expect_contains("total", r.out,
                    "total: 1 equal, 0 values differ, 0 dtype differs, 1 shape differs, 1 only in A, "
                    "1 only in B\n");
    /* A's tensors in its file order, then B's own. */
    assert_true(strstr(r.out, "\nw ") < strstr(r.out, "\nonly_a ") &&
                strstr(r.out, "\nsame ") < strstr(r.out, "\nonly_b "));
    done(&r);
    cleanup(2);
}

/* F32 against F16 copies of the same weights: the dtype column shows both,
 * and the max |a - b| is the rounding to F16, computed here. */
static void diff_dtypes(void **state) {
    (void)state;
    const golden_mlp_case *f32 = &golden_mlp_cases[0], *f16 = &golden_mlp_cases[1];
    static const char *const shapes[4] = {"4x5", "4", "3x4", "3"};
    static const int64_t numel[4] = {20, 4, 12, 3};
    for (int atol = 0; atol < 2; atol++) {
        result r = atol ? RUN("diff", "--atol", "1e-3", FIXDIR "golden_mlp_f32.safetensors",
                              FIXDIR "golden_mlp_f16.safetensors")
                        : RUN("diff", FIXDIR "golden_mlp_f32.safetensors", FIXDIR "golden_mlp_f16.safetensors");
        assert_int_equal(r.code, VIKT__CLI_DIFFER);
        for (int k = 0; k < 4; k++) {
            double worst = 0;
            long double dot = 0, aa = 0, bb = 0;
            for (int64_t i = 0; i < numel[k]; i++) {
                double x = from_bits(f32->bits[k][i]), y = from_bits(f16->bits[k][i]);
                worst = fabs(x - y) > worst ? fabs(x - y) : worst;
                dot += (long double)x * y, aa += (long double)x * x, bb += (long double)y * y;
            }
            char num[32], cos[32];
            snprintf(num, sizeof num, "%.6g", worst);
            snprintf(cos, sizeof cos, "%.9f", (double)(dot / sqrtl(aa * bb)));
            expect_diff_row(r.out, golden_mlp_names[k], "F32/F16", shapes[k], num, cos,
                            atol ? "dtype differs" : "values differ");
        }
        expect_contains("total", r.out, atol ? "0 values differ, 4 dtype differs" : "4 values differ, 0 dtype differs");
        done(&r);
    }
}

/* NaN at the same place is no difference; NaN against a number is. */
static void diff_nan(void **state) {
    (void)state;
    make_tmpdir();
    float x[3] = {1, NAN, 3}, y[3] = {1, NAN, 3}, z[3] = {1, 2, NAN};
    const tfile a[] = {{"t", 1, {3}, x}}, b[] = {{"t", 1, {3}, y}}, c[] = {{"t", 1, {3}, z}};
    const char *pa = save(0, "a.safetensors", a, 1), *pb = save(1, "b.safetensors", b, 1);
    const char *pc = save(2, "c.safetensors", c, 1);
    result r = RUN("diff", pa, pb);
    assert_int_equal(r.code, VIKT__CLI_OK);
    expect_diff_row(r.out, "t", "F32", "3", "0", "nan", "equal");
    done(&r);
    r = RUN("diff", "--atol", "100", pa, pc);
    assert_int_equal(r.code, VIKT__CLI_DIFFER);
    expect_diff_row(r.out, "t", "F32", "3", "nan", "nan", "values differ");
    expect_contains("total", r.out, "largest max|a-b| nan in 't'");
    done(&r);
    /* --stats counts the NaN and describes the rest. */
    r = RUN("inspect", "--stats", pc);
    assert_int_equal(r.code, VIKT__CLI_OK);
    char *line = line_of(r.out, "t"), *w[12];
    assert_int_equal(words(line, w, 12), 11);
    expect_number("mean", w[4], 1.5, 1e-12);
    assert_string_equal(w[10], "1/0");
    free(line);
    done(&r);
    cleanup(3);
}

/* ---------------------------------------------------------------- errors */

/* Every malformed fixture: exit 2, the file and the problem named on
 * stderr, whichever side of a diff it is on. */
static void malformed_files(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        char path[160];
        snprintf(path, sizeof path, FIXDIR "%s", bad_cases[i].file);
        const char *const runs[4][5] = {{"inspect", path, NULL},
                                        {"inspect", "--stats", path, NULL},
                                        {"diff", path, FIXDIR "vikt_mlp.safetensors", NULL},
                                        {"diff", FIXDIR "golden_mlp_f32.safetensors", path, NULL}};
        for (int k = 0; k < 4; k++) {
            result r = run_argv(runs[k]);
            if (r.code != VIKT__CLI_TROUBLE) fail_msg("%s (run %d): exit %d", path, k, r.code);
            expect_contains("stderr", r.err, path);
            expect_contains("stderr", r.err, bad_cases[i].needle);
            expect_contains("stderr", r.err, k < 2 ? "vikt inspect: " : "vikt diff: ");
            /* No total: the table, if any, stops at the problem. */
            if (strstr(r.out, "total:")) fail_msg("%s: a total despite the error:\n%s", path, r.out);
            done(&r);
        }
    }
}

static void unreadable_files(void **state) {
    (void)state;
    result r = RUN("inspect", "test/fixtures/no-such-file.safetensors");
    assert_int_equal(r.code, VIKT__CLI_TROUBLE);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "vikt inspect: test/fixtures/no-such-file.safetensors: cannot open: "
                               "No such file or directory\n");
    done(&r);
    r = RUN("diff", FIXDIR "vikt_mlp.safetensors", "test/fixtures");
    assert_int_equal(r.code, VIKT__CLI_TROUBLE);
    assert_string_equal(r.err, "vikt diff: test/fixtures: is a directory\n");
    done(&r);
    r = RUN("inspect", "");
    assert_int_equal(r.code, VIKT__CLI_TROUBLE);
    assert_string_equal(r.err, "vikt inspect: '': an empty file name\n");
    done(&r);
    r = RUN("inspect", "/dev/null");
    assert_int_equal(r.code, VIKT__CLI_TROUBLE);
    assert_string_equal(r.err, "vikt inspect: /dev/null: is not a regular file\n");
    done(&r);
}

static void usage_errors(void **state) {
    (void)state;
    static const char *const cases[][6] = {
        {NULL},                                          /* no command */
        {"bogus", NULL},                                 /* unknown command */
        {"inspect", NULL},                               /* missing file */
        {"inspect", "--stats", NULL},
        {"diff", FIXDIR "vikt_mlp.safetensors", NULL},   /* one file of two */
        {"inspect", "--bogus", FIXDIR "vikt_mlp.safetensors", NULL},
        {"inspect", "a", "b", NULL},                     /* one too many */
        {"diff", "a", "b", "c", NULL},
        {"diff", "--stats", "a", "b", NULL},              /* another command's option */
        {"diff", "--atol", NULL},
        {"diff", "--atol", "x", "a", "b"},
        {"diff", "--atol=-1", "a", "b", NULL},
        {"diff", "--atol", "inf", "a", "b"},
        {"diff", "--atol", "nan", "a", "b"},
        {"diff", "--atol", "", "a", "b"},
    };
    static const char *const needles[] = {
        "vikt: which command?",  "vikt: unknown command 'bogus'", "vikt: inspect: which file?",
        "vikt: inspect: which file?", "vikt: diff: which two files?",
        "vikt: inspect: unknown option '--bogus'", "vikt: inspect: one file too many: 'b'",
        "vikt: diff: one file too many: 'c'", "vikt: diff: unknown option '--stats'",
        "vikt: diff: --atol needs a value", "--atol wants a finite number >= 0, not 'x'",
        "not '-1'", "not 'inf'", "not 'nan'", "not ''"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        result r = run_argv(cases[i]);
        if (r.code != VIKT__CLI_TROUBLE) fail_msg("case %zu: exit %d", i, r.code);
        expect_contains("stderr", r.err, needles[i]);
        expect_contains("stderr", r.err, "\n\nusage: vikt inspect [--stats] FILE\n");
        assert_string_equal(r.out, "");
        done(&r);
    }
    /* "--" ends the options: a file named --stats is a file. */
    result r = RUN("inspect", "--", "--stats");
    assert_int_equal(r.code, VIKT__CLI_TROUBLE);
    expect_contains("stderr", r.err, "vikt inspect: --stats: cannot open");
    done(&r);
}

/* Asked-for help goes to stdout with status 0 (GNU convention). */
static void help_and_version(void **state) {
    (void)state;
    static const char *const asks[] = {"help", "--help", "-h"};
    for (int i = 0; i < 3; i++) {
        result r = RUN(asks[i]);
        assert_int_equal(r.code, VIKT__CLI_OK);
        expect_contains("stdout", r.out, "usage: vikt inspect [--stats] FILE\n       vikt diff [--atol X] A B\n");
        expect_contains("stdout", r.out, "Exit status: 0 success");
        assert_string_equal(r.err, "");
        done(&r);
    }
    result r = RUN("--version");
    assert_int_equal(r.code, VIKT__CLI_OK);
    char want[64];
    snprintf(want, sizeof want, "vikt %s\n", vikt_version());
    assert_string_equal(r.out, want);
    done(&r);
}

/* Output that cannot be written is trouble, not success. */
static void unwritable_output(void **state) {
    (void)state;
    FILE *full = fopen("/dev/full", "w");
    if (!full) skip();
    FILE *err = tmpfile();
    char *argv[] = {(char *)"vikt", (char *)"inspect", (char *)FIXDIR "vikt_mlp.safetensors", NULL};
    vt_alloc_reset();
    assert_int_equal(vikt__cli_main(3, argv, full, err, &vt_allocator), VIKT__CLI_TROUBLE);
    fclose(full);
    char *text = slurp(err);
    expect_contains("stderr", text, "vikt: cannot write the output: ");
    free(text);
}

/* Out of memory at every allocation of an inspect --stats and a diff: exit
 * 2 with a message, nothing leaked (run_argv checks), until the run
 * completes. */
static void out_of_memory(void **state) {
    (void)state;
    const char *const runs[2][5] = {{"inspect", "--stats", FIXDIR "golden_torch_int_dtypes.safetensors", NULL},
                                    {"diff", FIXDIR "golden_mlp_f32.safetensors", FIXDIR "golden_mlp_f16.safetensors", NULL}};
    for (int k = 0; k < 2; k++) {
        int64_t at = 1;
        for (;; at++) {
            char *argv[6] = {(char *)"vikt"};
            int argc = 1;
            while (runs[k][argc - 1]) argv[argc] = (char *)runs[k][argc - 1], argc++;
            FILE *out = tmpfile(), *err = tmpfile();
            vt_alloc_reset();
            vt_stats.fail_at = at;
            int code = vikt__cli_main(argc, argv, out, err, &vt_allocator);
            int64_t calls = vt_stats.calls;
            assert_int_equal(vt_stats.live, 0);
            char *o = slurp(out), *e = slurp(err);
            if (calls < at) { /* the failure was never reached: a clean run */
                assert_int_equal(code, k ? VIKT__CLI_DIFFER : VIKT__CLI_OK);
                free(o), free(e);
                break;
            }
            if (code != VIKT__CLI_TROUBLE) fail_msg("run %d, allocation %lld failed: exit %d", k, (long long)at, code);
            expect_contains("stderr", e, "out of memory");
            free(o), free(e);
        }
        assert_true(at > 3); /* model, chunk, header, values */
    }
}

/* Names are data: control characters come out escaped, never raw. */
static void names_escaped(void **state) {
    (void)state;
    make_tmpdir();
    float v[1] = {1};
    const tfile t[] = {{"evil\x1b[31m\n", 1, {1}, v}, {"c1\xc2\x9b" "x", 1, {1}, v}, {"caf\xc3\xa9", 1, {1}, v}};
    const char *p = save(0, "a.safetensors", t, 3);
    result r = RUN("inspect", p);
    assert_int_equal(r.code, VIKT__CLI_OK);
    assert_null(strchr(r.out, '\x1b'));
    assert_null(strstr(r.out, "\xc2\x9b"));
    expect_contains("stdout", r.out, "evil\\x1b[31m\\x0a  F32");
    expect_contains("stdout", r.out, "c1\\u009bx         F32"); /* padded to the widest name */
    expect_contains("stdout", r.out, "caf\xc3\xa9              F32"); /* é is one column */
    done(&r);
    cleanup(1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inspect_vikt_file),
        cmocka_unit_test(inspect_table_layout),
        cmocka_unit_test(inspect_torch_float_files),
        cmocka_unit_test(inspect_torch_int_dtypes),
        cmocka_unit_test(diff_identical),
        cmocka_unit_test(diff_perturbed),
        cmocka_unit_test(diff_names_and_shapes),
        cmocka_unit_test(diff_dtypes),
        cmocka_unit_test(diff_nan),
        cmocka_unit_test(malformed_files),
        cmocka_unit_test(unreadable_files),
        cmocka_unit_test(usage_errors),
        cmocka_unit_test(help_and_version),
        cmocka_unit_test(unwritable_output),
        cmocka_unit_test(out_of_memory),
        cmocka_unit_test(names_escaped),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
