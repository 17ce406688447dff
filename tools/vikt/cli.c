/* The vikt command-line tool: look into safetensors files and compare them.
 *
 *   vikt inspect [--stats] FILE   a table of every tensor and the total
 *   vikt diff [--atol X] A B      per-tensor max |a - b| and cosine similarity
 *
 * Files go through the library's strict reader (src/io/), so a malformed
 * file is a message naming it and the problem, never a crash, and every
 * CRC32C vikt wrote is checked (by diff too, for tensors it does not
 * compare). Any dtype is read, converted to float32; one tensor is in memory
 * at a time (one from each file for diff): a file need not fit in memory.
 * Rows are printed as tensors are read: a tensor found corrupt part-way
 * ends the table there, without the total line, with the error on stderr.
 * Names come from files and are printed with control characters escaped, so
 * a file cannot drive the terminal. Exit status as diff(1): 0, 1 for
 * differences, 2 for trouble. */
#include "cli.h"

#include "io/io.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE_TEXT (VIKT__ST_MAX_RANK * 21 + 8) /* "scalar" or dims joined by 'x' */
#define NAME_CLIP 64
#define META_CLIP 200 /* bytes of a metadata value shown */
#define NUM_WIDTH 12  /* a statistic printed with %.6g */
#define FRACTION_WIDTH 9 /* the zero fraction, printed with %.4g */

static const char usage_text[] =
    "usage: vikt inspect [--stats] FILE\n"
    "       vikt diff [--atol X] A B\n"
    "       vikt help | --help | --version\n"
    "\n"
    "Look into safetensors files (written by vikt, PyTorch or any other writer).\n"
    "\n"
    "  inspect  a table of every tensor: name, dtype, shape and parameter count,\n"
    "           and the total. With --stats also, over the finite values: mean,\n"
    "           std (population: divides by n), min, max, L2 norm, the fraction\n"
    "           of exact zeros and the counts of NaN and Inf.\n"
    "  diff     compare tensors of the same name: the largest |a - b| and the\n"
    "           cosine similarity (1 when both are all zeros, 0 when only one\n"
    "           is, nan when a value is not finite); list names in one file\n"
    "           only and tensors whose shape or dtype differ. --atol X: values\n"
    "           within X of each other count as equal (default 0).\n"
    "\n"
    "Values of every dtype are read as float32. Exit status: 0 success (diff: no\n"
    "differences), 1 differences found (diff), 2 trouble (bad usage, a file that\n"
    "cannot be read or is malformed).\n";

typedef struct cli {
    vikt_model *m;
    FILE *out, *err;
    const char *op;       /* "vikt inspect", "vikt diff": starts every message */
    unsigned char *chunk; /* VIKT__IO_CHUNK bytes for dtype conversion */
    float *values[2];     /* a tensor's values (one per file for diff), grown */
    size_t cap[2];        /* bytes at values[i] */
} cli;

/* ------------------------------------------------------------------ text */

/* Bytes a terminal must not get from a file: C0 controls and DEL (shown
 * \xNN), and C1 controls, U+0080..U+009F (UTF-8 C2 80..C2 9F, shown \u00NN). */
static int is_c1(const unsigned char *p) { return p[0] == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F; }
static int is_c0(unsigned char c) { return c < 0x20 || c == 0x7F; }

/* Columns the text takes once escaped: one per character (valid UTF-8 is a
 * reader guarantee for names; wide characters count as one). */
static size_t text_width(const char *s) {
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (is_c0(*p)) w += 4, p++;
        else if (is_c1(p)) w += 6, p += 2;
        else w += (*p++ & 0xC0) != 0x80;
    }
    return w;
}

static void put_text(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (is_c0(*p)) fprintf(f, "\\x%02x", *p++);
        else if (is_c1(p)) fprintf(f, "\\u%04x", p[1]), p += 2;
        else fputc(*p++, f);
    }
}

static void pad(FILE *f, size_t n) {
    while (n-- > 0) fputc(' ', f);
}

/* A table cell: text escaped and padded to width, left or right aligned,
 * followed by the two-space gutter unless it ends the line. */
static void cell(FILE *f, const char *text, size_t width, int right, int last) {
    size_t w = text_width(text);
    if (right) pad(f, width > w ? width - w : 0);
    put_text(f, text);
    if (last) {
        fputc('\n', f);
        return;
    }
    if (!right) pad(f, width > w ? width - w : 0);
    fputs("  ", f);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static const char *shape_text(const vikt__st_tensor *t, char *buf) {
    if (t->rank == 0) return strcpy(buf, "scalar");
    size_t len = 0;
    for (int i = 0; i < t->rank; i++)
        len += (size_t)snprintf(buf + len, SHAPE_TEXT - len, "%s%lld", i ? "x" : "", (long long)t->shape[i]);
    return buf;
}

/* A statistic with 6 significant digits; "-" when there is none (NaN). */
static const char *num_text(double v, char *buf) {
    if (isnan(v)) return strcpy(buf, "-");
    snprintf(buf, 32, "%.6g", v);
    return buf;
}

/* -------------------------------------------------------------- messages */

/* Bad usage: "vikt: what 'arg'" (arg escaped, if any), then the usage, on
 * stderr. */
static int usage_error(cli *c, const char *what, const char *arg) {
    fprintf(c->err, "vikt: %s", what);
    if (arg) {
        fputs(" '", c->err);
        put_text(c->err, arg);
        fputc('\'', c->err);
    }
    fprintf(c->err, "\n\n%s", usage_text);
    return VIKT__CLI_TROUBLE;
}

/* The error the library recorded (it names the command, the file and the
 * problem), on stderr; clears it. */
static int trouble(cli *c) {
    const char *msg = vikt_model_errmsg(c->m);
    put_text(c->err, msg[0] ? msg : "vikt: unknown error");
    fputc('\n', c->err);
    vikt_model_clear_error(c->m);
    return VIKT__CLI_TROUBLE;
}

/* ----------------------------------------------------------------- files */

static int open_file(cli *c, const char *path, vikt__file *f, vikt__st *st) {
    if (!path[0]) return vikt__io_fail(c->m, VIKT_ERR_ARG, c->op, "''", "an empty file name");
    int rc = vikt__file_open(f, c->m, c->op, path);
    if (rc) return rc;
    rc = vikt__st_open(st, f);
    if (rc) vikt__file_close(f);
    return rc;
}

static void close_file(vikt__file *f, vikt__st *st) {
    vikt__st_close(st);
    vikt__file_close(f);
}

/* The tensor's values as float32 in c->values[slot], grown as needed; or,
 * with want_values 0, only its CRC32C checked when it has one. */
static int read_tensor(cli *c, vikt__st *st, const vikt__st_tensor *t, int slot, int want_values) {
    if (!want_values) return t->has_crc ? vikt__st_read_f32(st, t, NULL, c->chunk) : VIKT_OK;
    if ((uint64_t)t->numel > SIZE_MAX / sizeof(float))
        return vikt__io_fail(c->m, VIKT_ERR_NOMEM, c->op, st->f->path,
                             "tensor '%s%s' is too large for this host", vikt__clip_prefix(t->name, NAME_CLIP),
                             vikt__clip_tail(t->name, NAME_CLIP));
    size_t bytes = (size_t)t->numel * sizeof(float);
    if (bytes > c->cap[slot]) {
        vikt__free(c->m, c->values[slot], c->cap[slot]);
        c->cap[slot] = 0;
        c->values[slot] = vikt__alloc(c->m, bytes);
        if (!c->values[slot])
            return vikt__io_fail(c->m, VIKT_ERR_NOMEM, c->op, st->f->path,
                                 "out of memory for the %lld values of tensor '%s%s'", (long long)t->numel,
                                 vikt__clip_prefix(t->name, NAME_CLIP), vikt__clip_tail(t->name, NAME_CLIP));
        c->cap[slot] = bytes;
    }
    return vikt__st_read_f32(st, t, bytes ? c->values[slot] : NULL, c->chunk);
}

/* --------------------------------------------------------------- inspect */

enum { I_NAME, I_DTYPE, I_SHAPE, I_PARAMS, I_MEAN, I_STD, I_MIN, I_MAX, I_L2, I_ZEROS, I_NONFINITE, I_COLS };
static const char *const inspect_titles[I_COLS] = {"name", "dtype", "shape", "params", "mean", "std",
                                                   "min",  "max",   "l2",    "zeros",  "nan/inf"};

static void inspect_widths(const vikt__st *st, size_t *w) {
    char shape[SHAPE_TEXT], count[24];
    for (int k = 0; k < I_COLS; k++) w[k] = k >= I_MEAN && k <= I_L2 ? NUM_WIDTH : strlen(inspect_titles[k]);
    w[I_ZEROS] = FRACTION_WIDTH;
    for (int64_t i = 0; i < st->ntensors; i++) {
        vikt__st_tensor t;
        vikt__st_at(st, i, &t);
        w[I_NAME] = max_size(w[I_NAME], text_width(t.name));
        w[I_DTYPE] = max_size(w[I_DTYPE], strlen(vikt__dtype_name(t.dtype)));
        w[I_SHAPE] = max_size(w[I_SHAPE], strlen(shape_text(&t, shape)));
        w[I_PARAMS] = max_size(w[I_PARAMS], (size_t)snprintf(count, sizeof count, "%lld", (long long)t.numel));
    }
}

static void inspect_row(cli *c, const vikt__st_tensor *t, const vikt_stats *s, const size_t *w) {
    char shape[SHAPE_TEXT], count[24], num[I_COLS][32];
    snprintf(count, sizeof count, "%lld", (long long)t->numel);
    int last = s ? I_NONFINITE : I_PARAMS;
    cell(c->out, t->name, w[I_NAME], 0, 0);
    cell(c->out, vikt__dtype_name(t->dtype), w[I_DTYPE], 0, 0);
    cell(c->out, shape_text(t, shape), w[I_SHAPE], 0, 0);
    cell(c->out, count, w[I_PARAMS], 1, last == I_PARAMS);
    if (!s) return;
    const double v[] = {s->mean, s->std, s->min, s->max, s->l2_norm};
    for (int k = I_MEAN; k <= I_L2; k++) cell(c->out, num_text(v[k - I_MEAN], num[k]), w[k], 1, 0);
    if (s->count) snprintf(num[I_ZEROS], 32, "%.4g", s->zero_fraction);
    cell(c->out, s->count ? num[I_ZEROS] : "-", w[I_ZEROS], 1, 0);
    snprintf(num[I_NONFINITE], 32, "%lld/%lld", (long long)s->nan_count, (long long)s->inf_count);
    cell(c->out, num[I_NONFINITE], w[I_NONFINITE], 1, 1);
}

/* Metadata other than vikt's own per-tensor entries, one line each. */
static void inspect_metadata(cli *c, const vikt__st *st) {
    for (int64_t i = 0; i < st->nmeta; i++) {
        const char *k, *v;
        vikt__st_meta_at(st, i, &k, &v);
        if (!strncmp(k, "vikt.crc32c.", 12) || !strncmp(k, "vikt.kind.", 10)) continue;
        fputs("metadata: ", c->out);
        put_text(c->out, k);
        fputs(" = ", c->out);
        if (strlen(v) <= META_CLIP) {
            put_text(c->out, v);
        } else {
            char head[META_CLIP + 1];
            size_t n = META_CLIP;
            while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80) n--; /* whole characters */
            memcpy(head, v, n);
            head[n] = '\0';
            put_text(c->out, head);
            fprintf(c->out, "... (%zu bytes)", strlen(v));
        }
        fputc('\n', c->out);
    }
}

static int inspect(cli *c, const char *path, int with_stats) {
    vikt__file f;
    vikt__st st;
    if (open_file(c, path, &f, &st)) return trouble(c);
    size_t w[I_COLS];
    inspect_widths(&st, w);
    int last = with_stats ? I_NONFINITE : I_PARAMS;
    for (int k = 0; k <= last; k++) cell(c->out, inspect_titles[k], w[k], k >= I_PARAMS, k == last);
    int64_t total = 0, checked = 0, buffers = 0, buffer_values = 0;
    for (int64_t i = 0; i < st.ntensors; i++) {
        vikt__st_tensor t;
        vikt__st_at(&st, i, &t);
        if (read_tensor(c, &st, &t, 0, with_stats)) {
            close_file(&f, &st);
            return trouble(c);
        }
        vikt_stats s;
        if (with_stats) vikt_stats_compute(t.numel ? c->values[0] : NULL, t.numel, &s);
        inspect_row(c, &t, with_stats ? &s : NULL, w);
        total += t.numel;
        checked += t.has_crc;
        if (t.kind && !strcmp(t.kind, "buffer")) buffers++, buffer_values += t.numel;
    }
    fprintf(c->out, "total: %lld tensors, %lld parameters, %llu bytes of data", (long long)st.ntensors,
            (long long)total, (unsigned long long)st.data_size);
    if (buffers)
        fprintf(c->out, "; %lld of the tensors (%lld values) are buffers", (long long)buffers,
                (long long)buffer_values);
    if (checked) fprintf(c->out, "; CRC32C verified for %lld", (long long)checked);
    fputc('\n', c->out);
    inspect_metadata(c, &st);
    close_file(&f, &st);
    return VIKT__CLI_OK;
}

/* ------------------------------------------------------------------ diff */

/* The largest |a - b| (0 where both are the same infinity or both NaN; NaN
 * where only one is NaN) and the cosine similarity, in double. The cosine
 * of two all-zero tensors is 1 (identical), of one all-zero tensor and
 * another 0 (nothing in common); with a value that is not finite it is NaN. */
static void compare(const float *a, const float *b, int64_t n, double *max_abs, double *cosine) {
    double worst = 0, dot = 0, aa = 0, bb = 0;
    int nan_mismatch = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = a[i], y = b[i];
        dot += x * y, aa += x * x, bb += y * y;
        if (x == y || (isnan(x) && isnan(y))) continue;
        if (isnan(x) || isnan(y)) nan_mismatch = 1;
        else if (fabs(x - y) > worst) worst = fabs(x - y);
    }
    *max_abs = nan_mismatch ? NAN : worst;
    if (!isfinite(dot) || !isfinite(aa) || !isfinite(bb)) *cosine = NAN;
    else if (aa == 0 || bb == 0) *cosine = aa == bb ? 1 : 0;
    else {
        double cs = dot / (sqrt(aa) * sqrt(bb));
        *cosine = cs > 1 ? 1 : cs < -1 ? -1 : cs;
    }
}

enum { D_NAME, D_DTYPE, D_SHAPE, D_MAXABS, D_COSINE, D_STATUS, D_COLS };
static const char *const diff_titles[D_COLS] = {"name", "dtype", "shape", "max|a-b|", "cosine", "status"};

/* What the dtype and shape columns show for a tensor a and its namesake b
 * in the other file (or NULL): a's, or "a/b" where they differ. */
static void pair_text(const vikt__st_tensor *a, const vikt__st_tensor *b, char *dtype, char *shape) {
    char sa[SHAPE_TEXT], sb[SHAPE_TEXT];
    strcpy(dtype, vikt__dtype_name(a->dtype));
    shape_text(a, shape);
    if (!b) return;
    if (a->dtype != b->dtype) sprintf(dtype, "%s/%s", vikt__dtype_name(a->dtype), vikt__dtype_name(b->dtype));
    if (strcmp(shape_text(a, sa), shape_text(b, sb)) != 0) sprintf(shape, "%s/%s", sa, sb);
}

static int same_shape(const vikt__st_tensor *a, const vikt__st_tensor *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static void diff_widths(const vikt__st *A, const vikt__st *B, size_t *w) {
    char dtype[40], shape[2 * SHAPE_TEXT + 2];
    for (int k = 0; k < D_COLS; k++) w[k] = strlen(diff_titles[k]);
    w[D_MAXABS] = max_size(w[D_MAXABS], NUM_WIDTH);
    w[D_COSINE] = 12; /* "-0.999999999" */
    for (int side = 0; side < 2; side++) {
        const vikt__st *st = side ? B : A, *other = side ? A : B;
        for (int64_t i = 0; i < st->ntensors; i++) {
            vikt__st_tensor t, o;
            vikt__st_at(st, i, &t);
            int found = vikt__st_find(other, t.name, &o);
            if (side && found) continue; /* a row of A's */
            pair_text(&t, found ? &o : NULL, dtype, shape);
            w[D_NAME] = max_size(w[D_NAME], text_width(t.name));
            w[D_DTYPE] = max_size(w[D_DTYPE], strlen(dtype));
            w[D_SHAPE] = max_size(w[D_SHAPE], strlen(shape));
        }
    }
}

/* Tensors by the status their row shows; in both files = the first four. */
typedef struct diff_counts {
    int64_t equal, values, dtypes, shapes, only_a, only_b;
    double worst;           /* the largest max|a-b| seen */
    const char *worst_name; /* and where (a name in A, valid while it is open) */
} diff_counts;

static void diff_row(cli *c, const char *name, const char *dtype, const char *shape, const char *max_abs,
                     const char *cosine, const char *status, const size_t *w) {
    cell(c->out, name, w[D_NAME], 0, 0);
    cell(c->out, dtype, w[D_DTYPE], 0, 0);
    cell(c->out, shape, w[D_SHAPE], 0, 0);
    cell(c->out, max_abs, w[D_MAXABS], 1, 0);
    cell(c->out, cosine, w[D_COSINE], 1, 0);
    cell(c->out, status, w[D_STATUS], 0, 1);
}

/* A difference or cosine; NaN (a value that is not finite) as "nan". */
static const char *diff_number(double v, const char *format, char *buf) {
    if (isnan(v)) return strcpy(buf, "nan");
    snprintf(buf, 32, format, v);
    return buf;
}

/* One tensor of A against B's tensor of that name, if any. */
static int diff_one(cli *c, vikt__st *A, vikt__st *B, const vikt__st_tensor *a, double atol,
                    diff_counts *n, const size_t *w) {
    vikt__st_tensor b;
    char dtype[40], shape[2 * SHAPE_TEXT + 2], num[32], cos[32];
    int found = vikt__st_find(B, a->name, &b);
    pair_text(a, found ? &b : NULL, dtype, shape);
    if (!found || !same_shape(a, &b)) { /* nothing to compare; the data is still checked */
        int rc = read_tensor(c, A, a, 0, 0);
        if (!rc && found) rc = read_tensor(c, B, &b, 1, 0);
        if (rc) return rc;
        if (found) n->shapes++;
        else n->only_a++;
        diff_row(c, a->name, dtype, shape, "-", "-", found ? "shape differs" : "only in A", w);
        return VIKT_OK;
    }
    int rc = read_tensor(c, A, a, 0, 1);
    if (!rc) rc = read_tensor(c, B, &b, 1, 1);
    if (rc) return rc;
    double max_abs, cosine;
    compare(c->values[0], c->values[1], a->numel, &max_abs, &cosine);
    int differ = !(max_abs <= atol), other_dtype = a->dtype != b.dtype;
    n->values += differ;
    n->dtypes += !differ && other_dtype;
    n->equal += !differ && !other_dtype;
    /* NaN (a NaN against a number) is the worst difference there is. */
    int worse = n->worst_name ? !isnan(n->worst) && (isnan(max_abs) || max_abs > n->worst)
                              : isnan(max_abs) || max_abs > 0;
    if (worse) n->worst = max_abs, n->worst_name = a->name;
    diff_row(c, a->name, dtype, shape, diff_number(max_abs, "%.6g", num), diff_number(cosine, "%.9f", cos),
             differ ? "values differ" : other_dtype ? "dtype differs" : "equal", w);
    return VIKT_OK;
}

static void diff_summary(cli *c, const diff_counts *n) {
    fprintf(c->out, "total: %lld equal, %lld values differ, %lld dtype differs, %lld shape differs, "
            "%lld only in A, %lld only in B", (long long)n->equal, (long long)n->values, (long long)n->dtypes,
            (long long)n->shapes, (long long)n->only_a, (long long)n->only_b);
    if (n->worst_name) {
        char num[32];
        fprintf(c->out, "; largest max|a-b| %s in '", diff_number(n->worst, "%.6g", num));
        put_text(c->out, n->worst_name);
        fputc('\'', c->out);
    }
    fputc('\n', c->out);
}

static int diff(cli *c, const char *path_a, const char *path_b, double atol) {
    vikt__file fa, fb;
    vikt__st A, B;
    if (open_file(c, path_a, &fa, &A)) return trouble(c);
    if (open_file(c, path_b, &fb, &B)) {
        close_file(&fa, &A);
        return trouble(c);
    }
    size_t w[D_COLS];
    diff_widths(&A, &B, w);
    fputs("A: ", c->out), put_text(c->out, path_a), fputc('\n', c->out);
    fputs("B: ", c->out), put_text(c->out, path_b), fputc('\n', c->out);
    diff_row(c, diff_titles[0], diff_titles[1], diff_titles[2], diff_titles[3], diff_titles[4], diff_titles[5], w);
    diff_counts n;
    memset(&n, 0, sizeof n);
    int rc = VIKT_OK;
    for (int64_t i = 0; i < A.ntensors && !rc; i++) {
        vikt__st_tensor a;
        vikt__st_at(&A, i, &a);
        rc = diff_one(c, &A, &B, &a, atol, &n, w);
    }
    for (int64_t i = 0; i < B.ntensors && !rc; i++) {
        vikt__st_tensor b, a;
        char dtype[40], shape[2 * SHAPE_TEXT + 2];
        vikt__st_at(&B, i, &b);
        if (vikt__st_find(&A, b.name, &a)) continue;
        rc = read_tensor(c, &B, &b, 1, 0);
        if (rc) break;
        n.only_b++;
        pair_text(&b, NULL, dtype, shape);
        diff_row(c, b.name, dtype, shape, "-", "-", "only in B", w);
    }
    if (!rc) diff_summary(c, &n);
    close_file(&fb, &B);
    close_file(&fa, &A);
    if (rc) return trouble(c);
    return n.values || n.dtypes || n.shapes || n.only_a || n.only_b ? VIKT__CLI_DIFFER : VIKT__CLI_OK;
}

/* ------------------------------------------------------------- arguments */

/* Split argv[2..] into options the command knows and file operands. */
typedef struct args {
    int stats;
    double atol;
    const char *files[2];
    int nfiles;
} args;

static int parse_atol(cli *c, const char *text, double *atol) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (!text[0] || *end || errno || !(v >= 0) || isinf(v))
        return usage_error(c, "diff: --atol wants a finite number >= 0, not", text);
    *atol = v;
    return VIKT__CLI_OK;
}

static int parse_args(cli *c, const char *cmd, int argc, char **argv, int max_files, args *a) {
    int options = 1;
    char what[64];
    memset(a, 0, sizeof *a);
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (options && !strcmp(s, "--")) {
            options = 0;
        } else if (options && !strcmp(cmd, "inspect") && !strcmp(s, "--stats")) {
            a->stats = 1;
        } else if (options && !strcmp(cmd, "diff") && !strncmp(s, "--atol", 6) && (s[6] == '=' || !s[6])) {
            const char *v = s[6] == '=' ? s + 7 : i + 1 < argc ? argv[++i] : NULL;
            if (!v) return usage_error(c, "diff: --atol needs a value", NULL);
            if (parse_atol(c, v, &a->atol)) return VIKT__CLI_TROUBLE;
        } else if (options && s[0] == '-' && s[1]) {
            snprintf(what, sizeof what, "%s: unknown option", cmd);
            return usage_error(c, what, s);
        } else if (a->nfiles == max_files) {
            snprintf(what, sizeof what, "%s: one file too many:", cmd);
            return usage_error(c, what, s);
        } else {
            a->files[a->nfiles++] = s;
        }
    }
    if (a->nfiles < max_files)
        return usage_error(c, max_files == 1 ? "inspect: which file?" : "diff: which two files?", NULL);
    return VIKT__CLI_OK;
}

static int run(cli *c, int argc, char **argv) {
    const char *cmd = argv[1];
    args a;
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_text, c->out);
        return VIKT__CLI_OK;
    }
    if (!strcmp(cmd, "--version")) {
        fprintf(c->out, "vikt %s\n", vikt_version());
        return VIKT__CLI_OK;
    }
    if (!strcmp(cmd, "inspect")) {
        c->op = "vikt inspect";
        if (parse_args(c, cmd, argc, argv, 1, &a)) return VIKT__CLI_TROUBLE;
        return inspect(c, a.files[0], a.stats);
    }
    if (!strcmp(cmd, "diff")) {
        c->op = "vikt diff";
        if (parse_args(c, cmd, argc, argv, 2, &a)) return VIKT__CLI_TROUBLE;
        return diff(c, a.files[0], a.files[1], a.atol);
    }
    return usage_error(c, "unknown command", cmd);
}

int vikt__cli_main(int argc, char **argv, FILE *out, FILE *err, const vikt_allocator *allocator) {
    cli c;
    memset(&c, 0, sizeof c);
    c.out = out, c.err = err, c.op = "vikt";
    if (argc < 2 || !argv || !argv[1]) return usage_error(&c, "which command?", NULL);
    if (vikt_model_create(allocator, 0, &c.m) != VIKT_OK) {
        fputs("vikt: out of memory\n", err);
        return VIKT__CLI_TROUBLE;
    }
    int status;
    c.chunk = vikt__alloc(c.m, VIKT__IO_CHUNK);
    if (!c.chunk) {
        fputs("vikt: out of memory\n", err);
        status = VIKT__CLI_TROUBLE;
    } else {
        status = run(&c, argc, argv);
    }
    vikt__free(c.m, c.chunk, VIKT__IO_CHUNK);
    for (int i = 0; i < 2; i++) vikt__free(c.m, c.values[i], c.cap[i]);
    vikt_model_destroy(c.m);
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(err, "vikt: cannot write the output: %s\n", strerror(errno));
        return VIKT__CLI_TROUBLE;
    }
    return status;
}
