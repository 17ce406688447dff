/* Federated averaging (FedAvg): the weighted mean of K parameter sets of one
 * architecture, from models in memory or from safetensors files.
 *
 * dst defines the architecture: its parameters and buffers, by name. Every
 * client must hold exactly those names with the same shapes and only finite
 * values; everything is checked before dst changes, and no error leaves dst
 * changed.
 *
 * Order independence, bitwise. Each element's weighted sum Σ w_i·θ_i is
 * computed exactly and rounded once to double, and so is the total weight
 * Σ w_i; their quotient is rounded to float. The correctly rounded value of
 * an exact sum is unique, so the result depends on the multiset of
 * (weight, parameter set) pairs only, never on the order of the clients. (A
 * running sum in client order is not: float and double addition are not
 * associative; with a term of 2^60, one of -2^60 and one of 1, the order
 * decides whether the 1 survives.)
 *
 * Exactness. The weights are scaled by one power of two so the largest is in
 * [0.5, 1) (exact; the quotient does not change, and no product can
 * overflow), then each is split into two parts of at most 27 significant
 * bits, so w_hi·θ and w_lo·θ, with θ's 24 bits, are exact in double. The 2K
 * exact products are added without error into a list of non-overlapping
 * partials (Shewchuk's expansion arithmetic, 1997), which is then rounded to
 * the nearest double, ties included. The one exception is a product below
 * 2^-1022, which needs weights whose ratio exceeds about 2^750; the result
 * is then still order-independent (each product depends on its client
 * alone) but may differ from the exact mean in the last bits.
 *
 * Consequences: the result is the weighted mean to within about 2^-51
 * relative before the float rounding, so almost always the float nearest to
 * the exact mean; and an element equal in every client (a frozen parameter)
 * comes out unchanged for any weights, since x·W/W lands within 2^-51 of x.
 */
#include "io/io.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define NAME_CLIP 64
#define Q "'%s%s'"
#define QARG(s) vikt__clip_prefix(s, NAME_CLIP), vikt__clip_tail(s, NAME_CLIP)

/* ------------------------------------------------------------ arithmetic */

/* a + b = hi + lo exactly, for any doubles (Knuth's two-sum). */
static double two_sum(double a, double b, double *lo) {
    double hi = a + b, bv = hi - a, av = hi - bv;
    *lo = (a - av) + (b - bv);
    return hi;
}

/* Add x to the partials p[0..*n), non-overlapping and increasing in
 * magnitude, keeping their exact sum; at most one partial more. */
static void expansion_add(double *p, int64_t *n, double x) {
    int64_t kept = 0;
    for (int64_t j = 0; j < *n; j++) {
        double lo;
        x = two_sum(x, p[j], &lo);
        if (lo != 0) p[kept++] = lo;
    }
    p[kept++] = x;
    *n = kept;
}

/* The exact sum of the partials rounded to the nearest double (ties to
 * even): add from the largest down until a partial no longer fits; what is
 * left decides a tie that the first rounding resolved the wrong way. */
static double expansion_round(const double *p, int64_t n) {
    if (n == 0) return 0.0;
    double hi = p[--n], lo = 0;
    while (n > 0) {
        double x = hi, y = p[--n];
        hi = x + y;
        lo = y - (hi - x);
        if (lo != 0) break;
    }
    /* hi + lo is exact; hi is its rounding. If lo is exactly half an ulp
     * of hi and the rest lies beyond it on the same side, round away. */
    if (n > 0 && ((lo < 0 && p[n - 1] < 0) || (lo > 0 && p[n - 1] > 0))) {
        double y = lo * 2, x = hi + y;
        if (x - hi == y) hi = x;
    }
    return hi;
}

/* x = hi + lo exactly, hi with x's low 27 significand bits cleared (26
 * significant bits left) and lo with at most 27: times a float's 24 bits,
 * each product fits a double's 53. Bit masking rather than Veltkamp's
 * multiply-and-subtract, which a compiler contracting to FMA would break. */
static void split(double x, double *hi, double *lo) {
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits &= ~(uint64_t)0x7FFFFFF;
    memcpy(hi, &bits, sizeof bits);
    *lo = x - *hi;
}

/* What one call needs besides the data: the split weights, their total,
 * and the partials of one element. One allocation. */
typedef struct averager {
    vikt_model *m;
    int64_t k;
    double *w_hi, *w_lo; /* k each: the scaled weights, split */
    double *partials;    /* 2k */
    const float **src;   /* k: the clients' data of the tensor at hand */
    double total;        /* Σ scaled weights, correctly rounded */
    size_t bytes;
} averager;

#define PER_CLIENT (4 * sizeof(double) + sizeof(const float *))

static int check_weights(vikt_model *m, const char *op, const double *w, int64_t k) {
    for (int64_t i = 0; i < k; i++)
        if (!(w[i] > 0) || !isfinite(w[i]))
            return vikt__fail(m, VIKT_ERR_ARG,
                              "%s: weight of client %lld is %g; weights are sample counts, "
                              "finite and > 0",
                              op, (long long)i, w[i]);
    return VIKT_OK;
}

static int averager_init(averager *a, vikt_model *m, const char *op, const double *w, int64_t k) {
    memset(a, 0, sizeof *a);
    a->m = m, a->k = k;
    if ((uint64_t)k > SIZE_MAX / PER_CLIENT)
        return vikt__fail(m, VIKT_ERR_NOMEM, "%s: %lld clients do not fit in memory", op, (long long)k);
    a->bytes = (size_t)k * PER_CLIENT;
    double *block = vikt__alloc(m, a->bytes);
    if (!block) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for %lld clients", op, (long long)k);
    a->w_hi = block;
    a->w_lo = block + k;
    a->partials = block + 2 * k;
    a->src = (const float **)(void *)(block + 4 * k);
    double max = 0;
    for (int64_t i = 0; i < k; i++) max = w[i] > max ? w[i] : max;
    int e;
    frexp(max, &e);
    int64_t n = 0;
    for (int64_t i = 0; i < k; i++) {
        double scaled = ldexp(w[i], -e);
        split(scaled, &a->w_hi[i], &a->w_lo[i]);
        expansion_add(a->partials, &n, scaled);
    }
    a->total = expansion_round(a->partials, n);
    return VIKT_OK;
}

static void averager_release(averager *a) {
    if (a->w_hi) vikt__free(a->m, a->w_hi, a->bytes);
}

/* out[e] = Σ w_i·src[i][e] / Σ w_i for numel elements. out may be one of the
 * sources: element e is written only after every source's element e is
 * read. */
static void average(averager *a, int64_t numel, float *out) {
    for (int64_t e = 0; e < numel; e++) {
        int64_t n = 0;
        for (int64_t i = 0; i < a->k; i++) {
            double x = (double)a->src[i][e];
            expansion_add(a->partials, &n, a->w_hi[i] * x);
            expansion_add(a->partials, &n, a->w_lo[i] * x);
        }
        out[e] = (float)(expansion_round(a->partials, n) / a->total);
    }
}

/* Index of the first non-finite value, or -1. */
static int64_t first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* The i-th tensor of dst: parameters first, then buffers. */
static vikt_tensor *dst_tensor(vikt_model *m, int64_t i) {
    return i < m->nparams ? m->params[i] : m->buffers[i - m->nparams];
}

static const char *kind_of(const vikt_tensor *t) {
    return t->storage == VIKT__BUFFER ? "buffer" : "parameter";
}

static int check_common(vikt_model *dst, const char *op, const void *list, const char *what,
                        const double *weights, int64_t k) {
    if (!list) return vikt__fail(dst, VIKT_ERR_NULL, "%s: %s is NULL", op, what);
    if (!weights) return vikt__fail(dst, VIKT_ERR_NULL, "%s: weights is NULL", op);
    if (k < 1) return vikt__fail(dst, VIKT_ERR_ARG, "%s: k is %lld; needs at least one client", op, (long long)k);
    return check_weights(dst, op, weights, k);
}

/* -------------------------------------------------------------- models */

#define OP "vikt_fedavg"

/* One list of client c against the same list of dst: every name with its
 * shape and finite values, and nothing more. */
static int check_list(vikt_model *dst, int64_t c, vikt_tensor *const *mine, int64_t n,
                      vikt_tensor *const *theirs, int64_t their_n, const char *kind,
                      vikt_tensor *(*find)(vikt_model *, const char *), vikt_model *client) {
    for (int64_t j = 0; j < n; j++) {
        vikt_tensor *t = mine[j], *u = find(client, t->name);
        char have[VIKT__SHAPE_STR], want[VIKT__SHAPE_STR];
        if (!u)
            return vikt__fail(dst, VIKT_ERR_NOT_FOUND, OP ": client %lld has no %s " Q,
                              (long long)c, kind, QARG(t->name));
        if (!vikt__same_shape(t, u))
            return vikt__fail(dst, VIKT_ERR_SHAPE, OP ": client %lld: %s " Q " is %s, dst has %s",
                              (long long)c, kind, QARG(t->name), vikt__shape_str(u, have),
                              vikt__shape_str(t, want));
        int64_t bad = first_nonfinite(u->data, u->numel);
        if (bad >= 0)
            return vikt__fail(dst, VIKT_ERR_ARG, OP ": client %lld: %s " Q " element %lld is %g",
                              (long long)c, kind, QARG(t->name), (long long)bad, (double)u->data[bad]);
    }
    /* Names are unique in a model, so equal counts mean equal name sets. */
    for (int64_t j = 0; their_n != n && j < their_n; j++) {
        const char *name = theirs[j]->name;
        int known = 0;
        for (int64_t i = 0; i < n && !known; i++) known = strcmp(mine[i]->name, name) == 0;
        if (!known)
            return vikt__fail(dst, VIKT_ERR_NOT_FOUND, OP ": client %lld has %s " Q ", which dst lacks",
                              (long long)c, kind, QARG(name));
    }
    return VIKT_OK;
}

static int check_client(vikt_model *dst, int64_t c, vikt_model *client) {
    if (!client) return vikt__fail(dst, VIKT_ERR_NULL, OP ": client %lld is NULL", (long long)c);
    int rc = check_list(dst, c, dst->params, dst->nparams, client->params, client->nparams,
                        "parameter", vikt_param_find, client);
    if (!rc)
        rc = check_list(dst, c, dst->buffers, dst->nbuffers, client->buffers, client->nbuffers,
                        "buffer", vikt_buffer_find, client);
    return rc;
}

int vikt_fedavg(vikt_model *dst, vikt_model *const *clients, const double *weights, int64_t k) {
    if (!dst) return VIKT_ERR_NULL;
    int rc = check_common(dst, OP, clients, "clients", weights, k);
    for (int64_t c = 0; !rc && c < k; c++) rc = check_client(dst, c, clients[c]);
    averager a;
    if (!rc) rc = averager_init(&a, dst, OP, weights, k);
    if (rc) return rc;
    /* Nothing can fail from here on, so dst is written in place. */
    for (int64_t j = 0; j < dst->nparams + dst->nbuffers; j++) {
        vikt_tensor *t = dst_tensor(dst, j);
        vikt_tensor *(*find)(vikt_model *, const char *) =
            t->storage == VIKT__BUFFER ? vikt_buffer_find : vikt_param_find;
        for (int64_t c = 0; c < k; c++) a.src[c] = find(clients[c], t->name)->data;
        average(&a, t->numel, t->data);
    }
    averager_release(&a);
    return VIKT_OK;
}

#undef OP

/* --------------------------------------------------------------- files */

#define OP "vikt_fedavg_files"

/* K opened files and the scratch of one call. */
typedef struct fedfiles {
    vikt_model *m;
    int64_t k;
    const char *const *paths;
    vikt__file *files; /* k */
    vikt__st *sts;     /* k */
    int64_t opened;    /* files[0..opened) are open, sts[0..opened) parsed */
    size_t table_bytes;
    float *out;        /* every dst tensor, back to back: the result */
    float *in;         /* k slots of the largest tensor */
    int64_t slot;      /* floats per slot */
    unsigned char *chunk;
    size_t out_bytes, in_bytes;
} fedfiles;

static int open_all(fedfiles *F) {
    if ((uint64_t)F->k > SIZE_MAX / (sizeof(vikt__file) + sizeof(vikt__st)))
        return vikt__fail(F->m, VIKT_ERR_NOMEM, OP ": %lld clients do not fit in memory", (long long)F->k);
    F->table_bytes = (size_t)F->k * (sizeof(vikt__file) + sizeof(vikt__st));
    F->files = vikt__alloc(F->m, F->table_bytes);
    if (!F->files) return vikt__fail(F->m, VIKT_ERR_NOMEM, OP ": out of memory for %lld clients", (long long)F->k);
    F->sts = (vikt__st *)(void *)(F->files + F->k);
    for (int64_t c = 0; c < F->k; c++) {
        if (!F->paths[c]) return vikt__fail(F->m, VIKT_ERR_NULL, OP ": path of client %lld is NULL", (long long)c);
        int rc = vikt__file_open(&F->files[c], F->m, OP, F->paths[c]);
        if (!rc) {
            rc = vikt__st_open(&F->sts[c], &F->files[c]);
            if (rc) vikt__file_close(&F->files[c]);
        }
        if (rc) return rc;
        F->opened = c + 1;
    }
    return VIKT_OK;
}

static void close_all(fedfiles *F) {
    for (int64_t c = 0; c < F->opened; c++) {
        vikt__st_close(&F->sts[c]);
        vikt__file_close(&F->files[c]);
    }
    if (F->files) vikt__free(F->m, F->files, F->table_bytes);
    if (F->out) vikt__free(F->m, F->out, F->out_bytes);
    if (F->in) vikt__free(F->m, F->in, F->in_bytes);
    if (F->chunk) vikt__free(F->m, F->chunk, VIKT__IO_CHUNK);
}

/* A tensor of another kind than parameter or buffer (optimizer state in a
 * checkpoint) is not part of the parameter set, as for vikt_load. */
static int foreign(const vikt__st_tensor *f) {
    return f->kind && strcmp(f->kind, "parameter") != 0 && strcmp(f->kind, "buffer") != 0;
}

static int same_shape(const vikt__st_tensor *f, const vikt_tensor *t) {
    if (f->rank != t->rank) return 0;
    for (int i = 0; i < t->rank; i++)
        if (f->shape[i] != t->shape[i]) return 0;
    return 1;
}

static int in_dst(vikt_model *m, const char *name) {
    return vikt_param_find(m, name) || vikt_buffer_find(m, name);
}

/* Names, dtypes and shapes of client c's file against dst. */
static int check_file(fedfiles *F, int64_t c) {
    vikt_model *m = F->m;
    const vikt__st *st = &F->sts[c];
    const char *path = F->paths[c];
    int64_t total = m->nparams + m->nbuffers;
    for (int64_t j = 0; j < total; j++) {
        vikt_tensor *t = dst_tensor(m, j);
        vikt__st_tensor f;
        if (!vikt__st_find(st, t->name, &f) || foreign(&f))
            return vikt__io_fail(m, VIKT_ERR_NOT_FOUND, OP, path, "client %lld has no %s " Q,
                                 (long long)c, kind_of(t), QARG(t->name));
        const char *clash = vikt__st_kind_clash(st, &f, t);
        if (clash)
            return vikt__io_fail(m, VIKT_ERR_SHAPE, OP, path, "client %lld: " Q " is a %s, dst has a %s",
                                 (long long)c, QARG(t->name), clash, kind_of(t));
        char want[VIKT__SHAPE_STR];
        if (!vikt__dtype_is_float(f.dtype) || !same_shape(&f, t)) {
            char have[VIKT__SHAPE_STR];
            if (f.rank <= VIKT_MAX_RANK) vikt__dims_str(f.rank, f.shape, have);
            else snprintf(have, sizeof have, "rank %d", f.rank);
            return vikt__io_fail(m, vikt__dtype_is_float(f.dtype) ? VIKT_ERR_SHAPE : VIKT_ERR_FORMAT,
                                 OP, path, "client %lld: %s " Q " is %s %s, dst has %s F32",
                                 (long long)c, kind_of(t), QARG(t->name), have,
                                 vikt__dtype_name(f.dtype), vikt__shape_str(t, want));
        }
    }
    for (int64_t i = 0; i < st->ntensors; i++) {
        vikt__st_tensor f;
        vikt__st_at(st, i, &f);
        if (!foreign(&f) && !in_dst(m, f.name))
            return vikt__io_fail(m, VIKT_ERR_NOT_FOUND, OP, path, "client %lld has " Q ", which dst lacks",
                                 (long long)c, QARG(f.name));
    }
    return VIKT_OK;
}

static int alloc_scratch(fedfiles *F) {
    vikt_model *m = F->m;
    int64_t total = 0, largest = 1;
    for (int64_t j = 0; j < m->nparams + m->nbuffers; j++) {
        int64_t n = dst_tensor(m, j)->numel;
        total += n;
        largest = n > largest ? n : largest;
    }
    if ((uint64_t)largest > SIZE_MAX / sizeof(float) / (uint64_t)F->k)
        return vikt__fail(m, VIKT_ERR_NOMEM, OP ": %lld clients of %lld floats do not fit in memory",
                          (long long)F->k, (long long)largest);
    F->slot = largest;
    F->out_bytes = (size_t)(total ? total : 1) * sizeof(float);
    F->in_bytes = (size_t)F->k * (size_t)largest * sizeof(float);
    F->out = vikt__alloc(m, F->out_bytes);
    F->in = F->out ? vikt__alloc(m, F->in_bytes) : NULL;
    F->chunk = F->in ? vikt__alloc(m, VIKT__IO_CHUNK) : NULL;
    if (!F->chunk) return vikt__fail(m, VIKT_ERR_NOMEM, OP ": out of memory");
    return VIKT_OK;
}

/* Read tensor t from every file (CRC checked when present, values checked
 * finite) and average it into out. */
static int average_tensor(fedfiles *F, averager *a, const vikt_tensor *t, float *out) {
    for (int64_t c = 0; c < F->k; c++) {
        float *slot = F->in + c * F->slot;
        vikt__st_tensor f;
        vikt__st_find(&F->sts[c], t->name, &f);
        int rc = vikt__st_read_f32(&F->sts[c], &f, slot, F->chunk);
        if (rc) return rc;
        int64_t bad = first_nonfinite(slot, t->numel);
        if (bad >= 0)
            return vikt__io_fail(F->m, VIKT_ERR_ARG, OP, F->paths[c],
                                 "client %lld: %s " Q " element %lld is %g", (long long)c,
                                 kind_of(t), QARG(t->name), (long long)bad, (double)slot[bad]);
        a->src[c] = slot;
    }
    average(a, t->numel, out);
    return VIKT_OK;
}

static int run_files(fedfiles *F, const double *weights) {
    vikt_model *m = F->m;
    int rc = open_all(F);
    for (int64_t c = 0; !rc && c < F->k; c++) rc = check_file(F, c);
    if (!rc) rc = alloc_scratch(F);
    averager a;
    if (!rc) rc = averager_init(&a, m, OP, weights, F->k);
    if (rc) return rc;
    int64_t total = m->nparams + m->nbuffers, at = 0;
    for (int64_t j = 0; !rc && j < total; j++) {
        vikt_tensor *t = dst_tensor(m, j);
        rc = average_tensor(F, &a, t, F->out + at);
        at += t->numel;
    }
    averager_release(&a);
    if (rc) return rc;
    /* Every file read and every value checked: only now does dst change. */
    at = 0;
    for (int64_t j = 0; j < total; j++) {
        vikt_tensor *t = dst_tensor(m, j);
        if (t->numel) memcpy(t->data, F->out + at, (size_t)t->numel * sizeof(float));
        at += t->numel;
    }
    return VIKT_OK;
}

int vikt_fedavg_files(vikt_model *dst, const char *const *paths, const double *weights, int64_t k) {
    if (!dst) return VIKT_ERR_NULL;
    int rc = check_common(dst, OP, paths, "paths", weights, k);
    if (rc) return rc;
    fedfiles F;
    memset(&F, 0, sizeof F);
    F.m = dst, F.k = k, F.paths = paths;
    rc = run_files(&F, weights);
    close_all(&F);
    return rc;
}
