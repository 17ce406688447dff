/* vikt_lora_save / vikt_lora_load: a model's LoRA adapters alone, as a
 * safetensors file with PEFT's tensor names ("<layer>.lora_A.weight",
 * "<layer>.lora_B.weight") and one metadata pair per adapter,
 * "vikt.lora.<layer>" = "rank=R alpha=A dropout=P", which PEFT keeps in its
 * separate adapter_config.json. R is decimal; A and P are C99 hexadecimal
 * floats as numbers.c writes them ("alpha=0x1p+2 dropout=0x1.99999ap-4"),
 * exact and the same whatever the program's LC_NUMERIC.
 *
 * The load is all or nothing as vikt_load is: the file is matched against
 * the model, every shape checked and every CRC32C verified before the first
 * adapter is attached; attaching rolls back on failure. Only a read that
 * fails after the CRCs were verified can leave an adapter that existed
 * before the call partly overwritten. */
#include "io.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_PREFIX "vikt.lora."
#define PEFT_PREFIX "base_model.model."
#define VALUE_MAX (32 + 2 * VIKT__NUM_MAX) /* "rank=<int64> alpha=<hex> dropout=<hex>" */
#define NAME_CLIP 64
#define Q "'%s%s'"
#define QARG(s) vikt__clip_prefix(s, NAME_CLIP), vikt__clip_tail(s, NAME_CLIP)

/* ------------------------------------------------------------------ save */

int vikt_lora_save(vikt_model *m, const char *path) {
    static const char op[] = "vikt_lora_save";
    if (!m) return VIKT_ERR_NULL;
    if (!path) return vikt__fail(m, VIKT_ERR_NULL, "%s: path is NULL", op);
    int64_t n = m->peft ? m->peft->nlora : 0;
    if (n == 0) return vikt__fail(m, VIKT_ERR_NOT_FOUND, "%s: the model has no LoRA adapter", op);
    /* One block: 2n entries, 2n metadata pointers, n keys and n values. */
    size_t key_size = sizeof KEY_PREFIX + VIKT__NAME_MAX;
    size_t bytes = (size_t)n * (2 * sizeof(vikt__st_entry) + 2 * sizeof(char *) + key_size +
                                VALUE_MAX);
    vikt__st_entry *e = vikt__alloc(m, bytes);
    if (!e) return vikt__io_fail(m, VIKT_ERR_NOMEM, op, path, "out of memory");
    const char **meta = (const char **)(e + 2 * n);
    char *text = (char *)(meta + 2 * n);
    for (int64_t i = 0; i < n; i++) {
        const vikt__lora *l = &m->peft->lora[i];
        for (int k = 0; k < 2; k++) {
            const vikt_tensor *t = k ? l->b : l->a;
            e[2 * i + k] = (vikt__st_entry){t->name, NULL, t->rank, t->shape, t->data, t->numel};
        }
        char *key = text + (size_t)i * (key_size + VALUE_MAX), *value = key + key_size;
        snprintf(key, key_size, "%s%s", KEY_PREFIX, l->layer);
        char alpha[VIKT__NUM_MAX], dropout[VIKT__NUM_MAX];
        vikt__put_double(l->alpha, alpha);
        vikt__put_double(l->dropout, dropout);
        snprintf(value, VALUE_MAX, "rank=%lld alpha=%s dropout=%s", (long long)l->rank, alpha,
                 dropout);
        meta[2 * i] = key;
        meta[2 * i + 1] = value;
    }
    int rc = vikt__st_write(m, op, path, e, 2 * n, meta, n);
    vikt__free(m, e, bytes);
    return rc;
}

/* ------------------------------------------------------------------ load */

/* One adapter of the file, matched against the model. */
typedef struct planned {
    const char *layer; /* in the file's header block */
    int64_t rank;
    float alpha, dropout;
    vikt_tensor *w;       /* the base weight */
    vikt__lora *existing; /* the model's adapter on that layer, or NULL */
    vikt__st_tensor a, b;
} planned;

typedef struct reader {
    vikt_model *m;
    vikt__st *st;
    const char *path;
    planned *plan;
    int64_t n;
} reader;

static const char op_load[] = "vikt_lora_load";

/* "<label><value>" at *p, the value ending at a space or the end: a
 * positive count in decimal, or (is_float) a number as numbers.c writes it,
 * rounded to float. Advances *p past it. */
static int get_field(const char **p, const char *label, int is_float, long long *count,
                     float *x) {
    size_t n = strlen(label);
    if (strncmp(*p, label, n) != 0) return 0;
    const char *v = *p + n, *end = strchr(v, ' ');
    if (!end) end = v + strlen(v);
    *p = end;
    if (!is_float) {
        long long c = 0;
        if (v == end || *v == '0') return 0;
        for (; v < end; v++) {
            if (*v < '0' || *v > '9' || c > (LLONG_MAX - (*v - '0')) / 10) return 0;
            c = c * 10 + (*v - '0');
        }
        *count = c;
        return 1;
    }
    char text[VIKT__NUM_MAX];
    double d;
    if ((size_t)(end - v) >= sizeof text) return 0;
    memcpy(text, v, (size_t)(end - v));
    text[end - v] = '\0';
    if (!vikt__get_double(text, &d)) return 0;
    *x = (float)d;
    return 1;
}

static int parse_config(reader *r, const char *key, const char *value, planned *p) {
    long long rank = 0;
    float alpha = 0, dropout = -1;
    const char *q = value;
    if (!get_field(&q, "rank=", 0, &rank, NULL) || !get_field(&q, " alpha=", 1, NULL, &alpha) ||
        !get_field(&q, " dropout=", 1, NULL, &dropout) || *q != '\0' || !(alpha > 0.0f) ||
        !isfinite(alpha) || !(dropout >= 0.0f && dropout < 1.0f))
        return vikt__io_fail(r->m, VIKT_ERR_FORMAT, op_load, r->path,
                             "metadata " Q " is not 'rank=R alpha=A dropout=P' with R >= 1, "
                             "A > 0, 0 <= P < 1 (A and P as hexadecimal floats, e.g. 0x1p+3)",
                             QARG(key));
    p->rank = rank;
    p->alpha = alpha;
    p->dropout = dropout;
    return VIKT_OK;
}

/* The file's tensor "<layer>.<suffix>", under PEFT's prefix or without. */
static int find_tensor(reader *r, const char *layer, const char *suffix, vikt__st_tensor *t) {
    char name[sizeof PEFT_PREFIX + VIKT__NAME_MAX + 16];
    snprintf(name, sizeof name, "%s.%s", layer, suffix);
    if (vikt__st_find(r->st, name, t)) return VIKT_OK;
    snprintf(name, sizeof name, "%s%s.%s", PEFT_PREFIX, layer, suffix);
    if (vikt__st_find(r->st, name, t)) return VIKT_OK;
    return vikt__io_fail(r->m, VIKT_ERR_FORMAT, op_load, r->path,
                         "adapter " Q " has no tensor '%s'", QARG(layer), suffix);
}

static int check_shape(reader *r, const vikt__st_tensor *t, int64_t rows, int64_t cols) {
    if (vikt__dtype_is_float(t->dtype) && t->rank == 2 && t->shape[0] == rows &&
        t->shape[1] == cols)
        return VIKT_OK;
    char have[VIKT__SHAPE_STR + 8], want[VIKT__SHAPE_STR];
    if (t->rank <= VIKT_MAX_RANK) vikt__dims_str(t->rank, t->shape, have);
    else snprintf(have, sizeof have, "rank %d", t->rank);
    vikt__dims_str(2, (int64_t[]){rows, cols}, want);
    return vikt__io_fail(r->m, VIKT_ERR_SHAPE, op_load, r->path,
                         Q " is %s %s; the model needs float %s", QARG(t->name), have,
                         vikt__dtype_name(t->dtype), want);
}

/* Match one metadata pair "vikt.lora.<layer>" against the model. */
static int match(reader *r, const char *key, const char *value, planned *p) {
    vikt_model *m = r->m;
    memset(p, 0, sizeof *p);
    p->layer = key + strlen(KEY_PREFIX);
    int rc = parse_config(r, key, value, p);
    if (rc) return rc;
    p->w = vikt__dense_weight(m, p->layer);
    if (!p->w)
        return vikt__io_fail(m, VIKT_ERR_NOT_FOUND, op_load, r->path,
                             "the model has no dense layer " Q, QARG(p->layer));
    p->existing = vikt__lora_find(m, p->layer);
    if (p->existing && p->existing->rank != p->rank)
        return vikt__io_fail(m, VIKT_ERR_SHAPE, op_load, r->path,
                             "layer " Q " has LoRA of rank %lld, the file rank %lld",
                             QARG(p->layer), (long long)p->existing->rank, (long long)p->rank);
    if (p->existing && p->existing->merged)
        return vikt__io_fail(m, VIKT_ERR_STATE, op_load, r->path,
                             "layer " Q " has a merged LoRA adapter; unmerge it first",
                             QARG(p->layer));
    int64_t out = p->w->shape[0], in = p->w->shape[1];
    if ((rc = find_tensor(r, p->layer, "lora_A.weight", &p->a)) ||
        (rc = check_shape(r, &p->a, p->rank, in)) ||
        (rc = find_tensor(r, p->layer, "lora_B.weight", &p->b)) ||
        (rc = check_shape(r, &p->b, out, p->rank)))
        return rc;
    vikt__st_set_mark(r->st, &p->a, 1);
    vikt__st_set_mark(r->st, &p->b, 1);
    return VIKT_OK;
}

/* Every adapter in the metadata matched, nothing else in the file. */
static int match_all(reader *r) {
    for (int64_t i = 0; i < r->st->nmeta; i++) {
        const char *key, *value;
        vikt__st_meta_at(r->st, i, &key, &value);
        if (strncmp(key, KEY_PREFIX, strlen(KEY_PREFIX)) != 0) continue;
        int rc = match(r, key, value, &r->plan[r->n]);
        if (rc) return rc;
        r->n++;
    }
    if (r->n == 0)
        return vikt__io_fail(r->m, VIKT_ERR_FORMAT, op_load, r->path,
                             "no LoRA adapter in the file (metadata '" KEY_PREFIX "<layer>')");
    for (int64_t i = 0; i < r->st->ntensors; i++) {
        vikt__st_tensor t;
        vikt__st_at(r->st, i, &t);
        if (!vikt__st_mark(r->st, &t))
            return vikt__io_fail(r->m, VIKT_ERR_FORMAT, op_load, r->path,
                                 "tensor " Q " belongs to no adapter in the metadata",
                                 QARG(t.name));
    }
    return VIKT_OK;
}

/* Attach what is missing, then copy every A and B; undo the attaching if a
 * step fails. */
static int apply(reader *r, unsigned char *chunk) {
    vikt_model *m = r->m;
    int64_t nlora = m->peft ? m->peft->nlora : 0, nparams = m->nparams;
    for (int64_t i = 0; i < r->n; i++) {
        planned *p = &r->plan[i];
        if (p->existing) continue;
        if (!vikt__lora_add(m, op_load, p->layer, p->w, p->rank, p->alpha, p->dropout)) {
            vikt__peft_rollback(m, nlora, nparams);
            return m->errcode;
        }
    }
    for (int64_t i = 0; i < r->n; i++) {
        planned *p = &r->plan[i];
        vikt__lora *l = p->existing ? p->existing : vikt__lora_find(m, p->layer);
        int rc = vikt__st_read_f32(r->st, &p->a, l->a->data, chunk);
        if (!rc) rc = vikt__st_read_f32(r->st, &p->b, l->b->data, chunk);
        if (rc) {
            vikt__peft_rollback(m, nlora, nparams);
            return rc;
        }
    }
    for (int64_t i = 0; i < r->n; i++)
        if (r->plan[i].existing) {
            r->plan[i].existing->alpha = r->plan[i].alpha;
            r->plan[i].existing->dropout = r->plan[i].dropout;
        }
    vikt__peft_freeze_base(m);
    return VIKT_OK;
}

static int64_t load_open(reader *r, vikt__st *st) {
    vikt_model *m = r->m;
    size_t plan_bytes = (size_t)(st->nmeta ? st->nmeta : 1) * sizeof(planned);
    r->plan = vikt__alloc(m, plan_bytes);
    unsigned char *chunk = vikt__alloc(m, VIKT__IO_CHUNK);
    int rc = r->plan && chunk ? VIKT_OK
                              : vikt__io_fail(m, VIKT_ERR_NOMEM, op_load, r->path, "out of memory");
    if (!rc) rc = match_all(r);
    for (int64_t i = 0; !rc && i < r->n; i++) {
        rc = vikt__st_read_f32(st, &r->plan[i].a, NULL, chunk);
        if (!rc) rc = vikt__st_read_f32(st, &r->plan[i].b, NULL, chunk);
    }
    if (!rc) rc = apply(r, chunk);
    vikt__free(m, chunk, VIKT__IO_CHUNK);
    vikt__free(m, r->plan, plan_bytes);
    return rc ? rc : r->n;
}

int64_t vikt__lora_load_from(vikt_model *m, const char *path, const void *data, size_t size) {
    vikt__file f;
    int rc = VIKT_OK;
    if (path) rc = vikt__file_open(&f, m, op_load, path);
    else vikt__file_memory(&f, m, op_load, data ? data : "", size);
    if (rc) return rc;
    vikt__st st;
    rc = vikt__st_open(&st, &f);
    int64_t result = rc;
    if (!rc) {
        reader r = {m, &st, f.path, NULL, 0};
        result = load_open(&r, &st);
        vikt__st_close(&st);
    }
    vikt__file_close(&f);
    return result;
}

int64_t vikt_lora_load(vikt_model *m, const char *path) {
    if (!m) return VIKT_ERR_NULL;
    if (!path) return vikt__fail(m, VIKT_ERR_NULL, "%s: path is NULL", op_load);
    return vikt__lora_load_from(m, path, NULL, 0);
}
