/* vikt_save / vikt_load: a model's parameters and buffers as a safetensors
 * file, and loading one by name, strictly or partially with a report.
 *
 * A load never changes the model unless it can finish: the header is
 * validated, every name is matched and every shape checked, and every CRC32C
 * verified (one read of the data) before the first value is copied (a
 * second read). Only a read that fails after that, or a file changed
 * between the two reads, can leave a model partly loaded.
 *
 * A checkpoint load (checkpoint.c) is a strict load with an extension
 * (vikt__load_ext) that checks and claims the optimizer's tensors before
 * the CRCs are verified and prepares their destinations before the copy. */
#include "io.h"

#include <stdio.h>
#include <string.h>

#define REPORT_MAX 65536 /* bytes of report text kept; the counts are always exact */
#define NAME_CLIP 64
#define Q "'%s%s'"
#define QARG(s) vikt__clip_prefix(s, NAME_CLIP), vikt__clip_tail(s, NAME_CLIP)

/* What a load decided for a file tensor (its mark in the table). */
enum {
    MARK_NONE = VIKT__MARK_NONE, MARK_LOAD = VIKT__MARK_LOAD, MARK_CREATE = VIKT__MARK_CREATE,
    MARK_MISMATCH = VIKT__MARK_MISMATCH, MARK_IGNORED = VIKT__MARK_IGNORED,
    MARK_CLAIMED = VIKT__MARK_CLAIMED
};

/* ---------------------------------------------------------------- report */

static void report_reset(vikt__io_state *io) {
    io->report_len = 0;
    io->report_dropped = 0;
    if (io->report) io->report[0] = '\0';
    memset(io->counts, 0, sizeof io->counts);
}

/* Room for `more` bytes and the NUL, growing by doubling up to REPORT_MAX.
 * The report is best effort: out of memory drops the line, not the load. */
static int report_room(vikt_model *m, vikt__io_state *io, size_t more) {
    size_t need = io->report_len + more + 1;
    if (need <= io->report_cap) return 1;
    if (need > REPORT_MAX) return 0;
    size_t cap = io->report_cap ? io->report_cap : 256;
    while (cap < need) cap *= 2;
    if (cap > REPORT_MAX) cap = REPORT_MAX;
    char *grown = vikt__alloc(m, cap);
    if (!grown) return 0;
    memcpy(grown, io->report ? io->report : "", io->report_len + 1);
    vikt__free(m, io->report, io->report_cap);
    io->report = grown;
    io->report_cap = cap;
    return 1;
}

static void report_add(vikt_model *m, int front, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Append a line (or put it first), unless the report is full. */
static void report_add(vikt_model *m, int front, const char *fmt, ...) {
    vikt__io_state *io = m->io;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    line[len++] = '\n';
    if (!report_room(m, io, len)) {
        io->report_dropped++;
        return;
    }
    char *at = io->report + (front ? 0 : io->report_len);
    if (front) memmove(io->report + len, io->report, io->report_len + 1);
    memcpy(at, line, len);
    io->report_len += len;
    io->report[io->report_len] = '\0';
}

int64_t vikt_load_report(const vikt_model *m, char *buf, size_t size) {
    if (!m || (!buf && size)) return VIKT_ERR_NULL;
    const char *text = m->io && m->io->report ? m->io->report : "";
    size_t len = strlen(text);
    if (size) {
        size_t k = len < size - 1 ? len : size - 1;
        memcpy(buf, text, k);
        buf[k] = '\0';
    }
    return (int64_t)len;
}

int64_t vikt_load_report_count(const vikt_model *m, vikt_load_stat stat) {
    if (!m) return VIKT_ERR_NULL;
    if ((int)stat < 0 || (int)stat >= VIKT__LOAD_STATS) return VIKT_ERR_ARG;
    return m->io ? m->io->counts[stat] : 0;
}

/* ---------------------------------------------------------------- loader */

typedef struct loader {
    vikt_model *m;
    vikt__st *st;
    const char *op;
    vikt_load_mode mode;
    int empty;        /* the model had no parameter and no buffer */
    int64_t *counts;  /* indexed by vikt_load_stat */
    int64_t values;   /* floats copied */
    int first_err;    /* code of the first problem a strict load fails on */
    char first[256];  /* and its description */
} loader;

static void shape_text(const vikt__st_tensor *t, char *buf) {
    if (t->rank <= VIKT_MAX_RANK) {
        vikt__dims_str(t->rank, t->shape, buf);
        return;
    }
    vikt__dims_str(VIKT_MAX_RANK, t->shape, buf);
    strcat(buf, "x...");
}

/* Count a problem, describe it in the report, keep the first for strict. */
static void problem(loader *L, vikt_load_stat stat, int err, const char *what, const char *name,
                    const char *detail) {
    L->counts[stat]++;
    report_add(L->m, 0, "%-10s %s  %s", what, name, detail);
    if (!L->first_err) {
        L->first_err = err;
        snprintf(L->first, sizeof L->first, "%s " Q ", %s", what, QARG(name), detail);
    }
}

/* A file tensor of a kind other than parameter or buffer (say optimizer
 * state in a checkpoint) is not the model's: vikt_load leaves it alone. */
static int foreign(const vikt__st_tensor *t) {
    return t->kind && strcmp(t->kind, "parameter") != 0 && strcmp(t->kind, "buffer") != 0;
}

static int same_shape(const vikt__st_tensor *f, const vikt_tensor *t) {
    if (f->rank != t->rank) return 0;
    for (int i = 0; i < t->rank; i++)
        if (f->shape[i] != t->shape[i]) return 0;
    return 1;
}

/* Match one model tensor against the file. */
static void match(loader *L, vikt_tensor *t, const char *what) {
    vikt__st_tensor f;
    char mine[VIKT__SHAPE_STR], theirs[VIKT__SHAPE_STR + 8], detail[2 * VIKT__SHAPE_STR + 64];
    vikt__shape_str(t, mine);
    if (!vikt__st_find(L->st, t->name, &f) || foreign(&f)) {
        snprintf(detail, sizeof detail, "%s %s, not in the file", what, mine);
        problem(L, VIKT_LOAD_MISSING, VIKT_ERR_NOT_FOUND, "missing", t->name, detail);
        return;
    }
    shape_text(&f, theirs);
    /* vikt marks its buffers; a file that does is trusted to mean it (a
     * running statistic is not a weight to train, nor the reverse). */
    const char *clash = vikt__st_kind_clash(L->st, &f, t);
    if (clash) {
        snprintf(detail, sizeof detail, "file %s %s, model %s %s", clash, theirs, what, mine);
        problem(L, VIKT_LOAD_MISMATCHED, VIKT_ERR_SHAPE, "mismatched", t->name, detail);
        vikt__st_set_mark(L->st, &f, MARK_MISMATCH);
        return;
    }
    if (!vikt__dtype_is_float(f.dtype) || !same_shape(&f, t)) {
        snprintf(detail, sizeof detail, "file %s %s, model %s %s", theirs,
                 vikt__dtype_name(f.dtype), what, mine);
        problem(L, VIKT_LOAD_MISMATCHED, vikt__dtype_is_float(f.dtype) ? VIKT_ERR_SHAPE : VIKT_ERR_FORMAT,
                "mismatched", t->name, detail);
        vikt__st_set_mark(L->st, &f, MARK_MISMATCH);
        return;
    }
    vikt__st_set_mark(L->st, &f, MARK_LOAD);
    vikt__st_set_slot(L->st, &f, t);
}

/* What the file holds that the model did not claim. */
static void classify_rest(loader *L) {
    for (int64_t i = 0; i < L->st->ntensors; i++) {
        vikt__st_tensor f;
        char dims[VIKT__SHAPE_STR + 8], detail[VIKT__SHAPE_STR + 96];
        vikt__st_at(L->st, i, &f);
        if (vikt__st_mark(L->st, &f) != MARK_NONE) continue;
        if (foreign(&f)) {
            vikt__st_set_mark(L->st, &f, MARK_IGNORED);
            L->counts[VIKT_LOAD_IGNORED]++;
            continue;
        }
        shape_text(&f, dims);
        int holdable = vikt__dtype_is_float(f.dtype) && f.rank <= VIKT_MAX_RANK;
        if (L->empty && holdable) {
            vikt__st_set_mark(L->st, &f, MARK_CREATE);
        } else if (L->empty) {
            snprintf(detail, sizeof detail, "file %s %s: a vikt tensor is float32 of rank <= %d",
                     dims, vikt__dtype_name(f.dtype), VIKT_MAX_RANK);
            problem(L, VIKT_LOAD_MISMATCHED, VIKT_ERR_FORMAT, "mismatched", f.name, detail);
            vikt__st_set_mark(L->st, &f, MARK_MISMATCH);
        } else {
            snprintf(detail, sizeof detail, "file %s %s, not in the model", dims,
                     vikt__dtype_name(f.dtype));
            problem(L, VIKT_LOAD_UNEXPECTED, VIKT_ERR_NOT_FOUND, "unexpected", f.name, detail);
        }
    }
}

static void classify(loader *L) {
    vikt_model *m = L->m;
    for (int64_t i = 0; i < m->nparams; i++) match(L, m->params[i], "parameter");
    for (int64_t i = 0; i < m->nbuffers; i++) match(L, m->buffers[i], "buffer");
    classify_rest(L);
}

/* File tensors whose values go into model tensors. */
static int into_model(const vikt__st *st, const vikt__st_tensor *f) {
    int mark = vikt__st_mark(st, f);
    return mark == MARK_LOAD || mark == MARK_CREATE;
}

/* ... and those an extension claimed (a checkpoint's optimizer state). */
static int wanted(const vikt__st *st, const vikt__st_tensor *f) {
    return into_model(st, f) || vikt__st_mark(st, f) == MARK_CLAIMED;
}

void vikt__load_claim(vikt__st *st, const vikt__st_tensor *t) {
    if (vikt__st_mark(st, t) == MARK_IGNORED) st->f->m->io->counts[VIKT_LOAD_IGNORED]--;
    vikt__st_set_mark(st, t, MARK_CLAIMED);
}

/* Every CRC32C checked before anything changes; reads the data once. */
static int verify(loader *L, unsigned char *chunk) {
    for (int64_t i = 0; i < L->st->ntensors; i++) {
        vikt__st_tensor f;
        vikt__st_at(L->st, i, &f);
        if (!wanted(L->st, &f) || !f.has_crc) continue;
        int rc = vikt__st_read_f32(L->st, &f, NULL, chunk);
        if (rc) return rc;
    }
    return VIKT_OK;
}

/* Undo creations: the model was empty, so everything in it was created. */
static void uncreate(vikt_model *m) {
    while (m->nparams > 0) vikt__tensor_release(m->params[--m->nparams]);
    while (m->nbuffers > 0) vikt__tensor_release(m->buffers[--m->nbuffers]);
}

/* Tensors the model lacked, as parameters or (kind "buffer") buffers. */
static int create(loader *L) {
    for (int64_t i = 0; i < L->st->ntensors; i++) {
        vikt__st_tensor f;
        vikt__st_at(L->st, i, &f);
        if (vikt__st_mark(L->st, &f) != MARK_CREATE) continue;
        vikt_tensor *t = f.kind && strcmp(f.kind, "buffer") == 0
                             ? vikt_buffer(L->m, f.name, f.rank, f.shape, 0.0f)
                             : vikt_param(L->m, f.name, f.rank, f.shape, VIKT_INIT_ZEROS);
        if (!t) {
            uncreate(L->m);
            return vikt__io_fail(L->m, VIKT_ERR_NOMEM, L->op, L->st->f->path,
                                 "out of memory creating " Q, QARG(f.name));
        }
        vikt__st_set_slot(L->st, &f, t);
        L->counts[VIKT_LOAD_CREATED]++;
    }
    return VIKT_OK;
}

static int copy(loader *L, unsigned char *chunk) {
    for (int64_t i = 0; i < L->st->ntensors; i++) {
        vikt__st_tensor f;
        vikt__st_at(L->st, i, &f);
        if (!wanted(L->st, &f)) continue;
        void *slot = vikt__st_slot(L->st, &f);
        float *dst = vikt__st_mark(L->st, &f) == MARK_CLAIMED ? slot : ((vikt_tensor *)slot)->data;
        int rc = vikt__st_read_f32(L->st, &f, dst, chunk);
        if (rc) return rc;
        L->counts[VIKT_LOAD_LOADED]++;
        L->values += f.numel;
    }
    return VIKT_OK;
}

static int strict_failure(loader *L) {
    return vikt__io_fail(L->m, L->first_err, L->op, L->st->f->path,
                         "strict load: %lld missing, %lld unexpected, %lld mismatched (first: %s); "
                         "see vikt_load_report()",
                         (long long)L->counts[VIKT_LOAD_MISSING],
                         (long long)L->counts[VIKT_LOAD_UNEXPECTED],
                         (long long)L->counts[VIKT_LOAD_MISMATCHED], L->first);
}

/* Verify, create, prepare the extension, copy; on failure nothing created
 * is left behind. */
static int apply(loader *L, vikt__load_ext *x) {
    unsigned char *chunk = vikt__alloc(L->m, VIKT__IO_CHUNK);
    if (!chunk) return vikt__io_fail(L->m, VIKT_ERR_NOMEM, L->op, L->st->f->path, "out of memory");
    vikt__mask_load masks = {NULL, 0};
    int rc = verify(L, chunk);
    if (!rc) rc = vikt__mask_load_prepare(L->m, L->st, L->op, into_model, &masks);
    if (!rc) rc = create(L);
    int prepared = 0;
    if (!rc && x) {
        rc = x->prepare(x, L->st);
        prepared = !rc;
    }
    if (!rc) rc = copy(L, chunk);
    if (prepared) (rc ? x->discard : x->commit)(x);
    if (rc && L->empty) {
        uncreate(L->m);
        L->counts[VIKT_LOAD_LOADED] = L->counts[VIKT_LOAD_CREATED] = 0;
    }
    if (!rc) vikt__mask_load_commit(L->st, into_model, &masks);
    vikt__mask_load_free(L->m, &masks);
    vikt__free(L->m, chunk, VIKT__IO_CHUNK);
    return rc;
}

static int load(vikt_model *m, vikt__file *f, vikt_load_mode mode, vikt__load_ext *x) {
    vikt__st st;
    int rc = vikt__st_open(&st, f);
    if (rc) return rc;
    loader L;
    memset(&L, 0, sizeof L);
    L.m = m, L.st = &st, L.op = f->op, L.mode = mode, L.counts = m->io->counts;
    L.empty = m->nparams == 0 && m->nbuffers == 0;
    classify(&L);
    int64_t problems = L.counts[VIKT_LOAD_MISSING] + L.counts[VIKT_LOAD_UNEXPECTED] +
                       L.counts[VIKT_LOAD_MISMATCHED];
    if (mode == VIKT_LOAD_STRICT && problems) rc = strict_failure(&L);
    else rc = x ? x->check(x, &st) : VIKT_OK;
    if (!rc) rc = apply(&L, x);
    if (!rc)
        report_add(m, 1, "%s: %s%s: loaded %lld tensors (%lld values), created %lld; %lld missing, "
                         "%lld unexpected, %lld mismatched, %lld ignored",
                   f->op, vikt__clip_prefix(f->path, 96), vikt__clip_tail(f->path, 96),
                   (long long)L.counts[VIKT_LOAD_LOADED], (long long)L.values,
                   (long long)L.counts[VIKT_LOAD_CREATED], (long long)L.counts[VIKT_LOAD_MISSING],
                   (long long)L.counts[VIKT_LOAD_UNEXPECTED],
                   (long long)L.counts[VIKT_LOAD_MISMATCHED], (long long)L.counts[VIKT_LOAD_IGNORED]);
    vikt__st_close(&st);
    return rc;
}

/* The report of a failed load starts with the error. */
static int finish(vikt_model *m, int rc) {
    vikt__io_state *io = m->io;
    if (rc) {
        if (!io->last_error[0]) snprintf(io->last_error, sizeof io->last_error, "%s", vikt_strerror(rc));
        report_add(m, 1, "%s", io->last_error);
    }
    if (io->report_dropped)
        report_add(m, 0, "... %lld more lines not shown", (long long)io->report_dropped);
    return rc;
}

/* Common checks; 0 to go on, else the error (recorded). */
static int begin(vikt_model *m, const char *op, vikt_load_mode mode) {
    vikt__io_state *io = vikt__io_state_get(m);
    if (!io) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", op);
    report_reset(io);
    io->last_error[0] = '\0';
    if (mode != VIKT_LOAD_STRICT && mode != VIKT_LOAD_PARTIAL) {
        snprintf(io->last_error, sizeof io->last_error, "%s: unknown load mode %d", op, (int)mode);
        vikt__fail(m, VIKT_ERR_ARG, "%s", io->last_error);
        return finish(m, VIKT_ERR_ARG);
    }
    return VIKT_OK;
}

int vikt_load(vikt_model *m, const char *path, vikt_load_mode mode) {
    if (!m) return VIKT_ERR_NULL;
    int rc = begin(m, "vikt_load", mode);
    if (rc) return rc;
    if (!path) {
        snprintf(m->io->last_error, sizeof m->io->last_error, "vikt_load: path is NULL");
        vikt__fail(m, VIKT_ERR_NULL, "%s", m->io->last_error);
        return finish(m, VIKT_ERR_NULL);
    }
    vikt__file f;
    rc = vikt__file_open(&f, m, "vikt_load", path);
    if (!rc) rc = load(m, &f, mode, NULL);
    vikt__file_close(&f);
    return finish(m, rc);
}

int vikt__load_with(vikt_model *m, const char *op, const char *path, const void *data,
                    size_t size, vikt__load_ext *x) {
    int rc = begin(m, op, VIKT_LOAD_STRICT);
    if (rc) return rc;
    vikt__file f;
    if (path) rc = vikt__file_open(&f, m, op, path);
    else vikt__file_memory(&f, m, op, data ? data : "", size);
    if (!rc) rc = load(m, &f, VIKT_LOAD_STRICT, x);
    vikt__file_close(&f);
    return finish(m, rc);
}

int vikt_load_buffer(vikt_model *m, const void *data, size_t size, vikt_load_mode mode) {
    if (!m) return VIKT_ERR_NULL;
    int rc = begin(m, "vikt_load_buffer", mode);
    if (rc) return rc;
    if (!data && size) {
        snprintf(m->io->last_error, sizeof m->io->last_error, "vikt_load_buffer: data is NULL");
        vikt__fail(m, VIKT_ERR_NULL, "%s", m->io->last_error);
        return finish(m, VIKT_ERR_NULL);
    }
    vikt__file f;
    vikt__file_memory(&f, m, "vikt_load_buffer", data ? data : "", size);
    return finish(m, load(m, &f, mode, NULL));
}

/* ------------------------------------------------------------------ save */

int vikt_save(vikt_model *m, const char *path) {
    if (!m) return VIKT_ERR_NULL;
    if (!path) return vikt__fail(m, VIKT_ERR_NULL, "vikt_save: path is NULL");
    int64_t n = m->nparams + m->nbuffers;
    size_t bytes = (size_t)n * sizeof(vikt__st_entry);
    vikt__st_entry *e = vikt__alloc(m, bytes);
    if (!e) return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_save: out of memory");
    for (int64_t i = 0; i < n; i++) {
        int is_buffer = i >= m->nparams;
        vikt_tensor *t = is_buffer ? m->buffers[i - m->nparams] : m->params[i];
        e[i].name = t->name;
        e[i].kind = is_buffer ? "buffer" : NULL;
        e[i].rank = t->rank;
        e[i].shape = t->shape;
        e[i].data = t->data;
        e[i].numel = t->numel;
    }
    vikt__mask_meta masks;
    int rc = vikt__mask_meta_make(m, "vikt_save", &masks);
    if (!rc) rc = vikt__st_write(m, "vikt_save", path, e, n, masks.pairs, masks.n);
    vikt__mask_meta_free(m, &masks);
    vikt__free(m, e, bytes);
    return rc;
}
