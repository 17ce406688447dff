/* Checkpoints: a training run's whole state in one safetensors file, so that
 * a run stopped and resumed continues bitwise as if it had never stopped.
 *
 * The file is what vikt_save writes (parameters, buffers) plus the
 * optimizer's state buffers as tensors of kind "optimizer", named
 * "optimizer.<buffer>.<parameter>", and string metadata for the scalars:
 *
 *   vikt.checkpoint.version        "1"
 *   vikt.checkpoint.crc32c         CRC32C of the checkpoint's own metadata
 *   vikt.rng.state, vikt.rng.inc   the model's PCG32 state, 16 hex digits each
 *   vikt.optimizer                 the rule ("Adam"), absent without an optimizer
 *   vikt.optimizer.<name>          each hyperparameter the rule uses
 *   vikt.optimizer.step            steps taken (the schedule position)
 *   vikt.optimizer.skipped_steps   steps skipped for non-finite gradients
 *   vikt.optimizer.current_lr      the next step's rate (for readers; not read)
 *   vikt.optimizer.state.<param>   "<t> <buffer> <buffer>…": the parameter's
 *                                  own step count and its initialized buffers
 *
 * Doubles are written from their bits in C99's hexadecimal form (numbers.c),
 * which is exact and holds no locale-dependent decimal point. The metadata is outside
 * the per-tensor CRCs, so the checkpoint's keys and the tensors' kinds carry
 * their own CRC: the XOR of one CRC32C per key/value pair, which needs no
 * sorting; and every tensor must have its CRC.
 *
 * Saving goes through the same crash-safe writer as vikt_save. Loading is
 * model_io.c's strict load extended (vikt__load_ext): everything is checked
 * before anything changes, the optimizer's new state is read into fresh
 * buffers, and the old state is swapped out only when all of it arrived. */
#include "io.h"

#include "../optim/optim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define VERSION "1"
#define K_VERSION "vikt.checkpoint.version"
#define K_CRC "vikt.checkpoint.crc32c"
#define K_RNG_STATE "vikt.rng.state"
#define K_RNG_INC "vikt.rng.inc"
#define K_OPT "vikt.optimizer"
#define K_OPT_ "vikt.optimizer."
#define K_STATE_ "vikt.optimizer.state."
#define STATE_TENSOR_ "optimizer."
#define STATE_KIND "optimizer"

#define STATE_MAX 80 /* bytes of a "<t> <buffer>…" value, with its NUL */
#define NAME_CLIP 64
#define Q "'%s%s'"
#define QARG(s) vikt__clip_prefix(s, NAME_CLIP), vikt__clip_tail(s, NAME_CLIP)

enum { NPARAM = VIKT__OPT_NPARAM, NBUF = VIKT__OPT_NBUF, NKIND = VIKT__OPT_NKIND };

/* --------------------------------------------------------------- numbers */

/* A count in decimal without leading zeros, from s up to the first space or
 * the end; *end receives where it stopped. */
static int get_count(const char *s, int64_t *v, const char **end) {
    int64_t x = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (x > (INT64_MAX - (*p - '0')) / 10) return 0;
        x = x * 10 + (*p - '0');
    }
    if (p == s || (*s == '0' && p - s > 1) || (*p && *p != ' ')) return 0;
    *v = x;
    *end = p;
    return 1;
}

static int get_hex64(const char *s, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        if (vikt__hex_digit(s[i]) < 0) return 0;
        x = x << 4 | (uint64_t)vikt__hex_digit(s[i]);
    }
    *v = x;
    return s[16] == '\0';
}

/* "<t> <buffer> <buffer>…": the parameter's step count (>= 1) and its
 * initialized buffers, named as the rule names them, in the rule's order. */
static void put_state(int kind, const vikt__slot *s, char *out) {
    int n = snprintf(out, STATE_MAX, "%lld", (long long)s->step);
    for (int b = 0; b < NBUF; b++)
        if (s->live & (1u << b))
            n += snprintf(out + n, STATE_MAX - (size_t)n, " %s", vikt__optim_buffer_name(kind, b));
}

static int get_state(int kind, const char *v, int64_t *step, unsigned *live) {
    const char *p;
    if (!get_count(v, step, &p) || *step < 1) return 0;
    *live = 0;
    for (int b = 0; *p; b++) {
        p++; /* the space */
        for (; b < NBUF && vikt__optim_buffer_name(kind, b); b++) {
            size_t len = strlen(vikt__optim_buffer_name(kind, b));
            if (strncmp(p, vikt__optim_buffer_name(kind, b), len) == 0 &&
                (p[len] == ' ' || !p[len]))
                break;
        }
        if (b == NBUF || !vikt__optim_buffer_name(kind, b)) return 0;
        *live |= 1u << b;
        p += strlen(vikt__optim_buffer_name(kind, b));
    }
    return 1;
}

/* ------------------------------------------------------------------- CRC */

/* The keys the checkpoint's CRC covers: vikt's own, tensor kinds included,
 * except the per-tensor CRCs (which cover the data and every tensor must
 * have) and the CRC itself. */
static int own_key(const char *k) {
    return strncmp(k, "vikt.", 5) == 0 && strncmp(k, "vikt.crc32c.", 12) != 0 &&
           strcmp(k, K_CRC) != 0;
}

/* crc32c(prefix key NUL value NUL) */
static uint32_t pair_crc(const char *prefix, const char *key, const char *value) {
    uint32_t crc = vikt__crc32c(0, prefix, strlen(prefix));
    crc = vikt__crc32c(crc, key, strlen(key) + 1);
    return vikt__crc32c(crc, value, strlen(value) + 1);
}

uint32_t vikt__checkpoint_crc(const vikt__st_entry *e, int64_t n, const char *const *meta,
                              int64_t nmeta) {
    uint32_t crc = 0;
    for (int64_t i = 0; i < n; i++)
        if (e[i].kind) crc ^= pair_crc("vikt.kind.", e[i].name, e[i].kind);
    for (int64_t i = 0; i < nmeta; i++)
        if (own_key(meta[2 * i])) crc ^= pair_crc("", meta[2 * i], meta[2 * i + 1]);
    return crc;
}

/* ------------------------------------------------------------------ save */

/* Everything a save writes, described twice by the same code: a pass that
 * counts entries, metadata pairs and text bytes, then one that fills a
 * single block of exactly that size. */
typedef struct saver {
    vikt_model *m;
    const vikt_optimizer *opt;
    const vikt__mask_meta *masks; /* pruning masks, as vikt_save writes them */
    vikt__st_entry *e; /* NULL while counting */
    const char **meta;
    char *text;
    int64_t ne, nmeta;
    size_t len;
} saver;

/* a, b, c and d joined, kept in the block; NULL while counting. */
static const char *keep(saver *s, const char *a, const char *b, const char *c, const char *d) {
    const char *parts[4] = {a, b, c, d};
    char *at = s->text ? s->text + s->len : NULL;
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(parts[i]);
        if (s->text) memcpy(s->text + s->len, parts[i], n);
        s->len += n;
    }
    if (s->text) s->text[s->len] = '\0';
    s->len++;
    return at;
}

static void add_meta(saver *s, const char *key_a, const char *key_b, const char *value) {
    const char *k = keep(s, key_a, key_b, "", ""), *v = keep(s, value, "", "", "");
    if (s->meta) s->meta[2 * s->nmeta] = k, s->meta[2 * s->nmeta + 1] = v;
    s->nmeta++;
}

static void add_entry(saver *s, const char *name, const char *kind, const vikt_tensor *t,
                      const float *data) {
    if (s->e) {
        vikt__st_entry *e = &s->e[s->ne];
        e->name = name, e->kind = kind, e->rank = t->rank, e->shape = t->shape;
        e->data = data, e->numel = t->numel;
    }
    s->ne++;
}

static void describe_optimizer(saver *s) {
    const vikt_optimizer *opt = s->opt;
    vikt_model *m = s->m;
    char num[VIKT__NUM_MAX], state[STATE_MAX];
    double lr;
    add_meta(s, K_OPT, "", vikt__optim_kind_name(opt->kind));
    for (int i = 0; i < NPARAM; i++) {
        if (!vikt__optim_param_stored(opt->kind, i)) continue;
        vikt__put_double(opt->hp[i], num);
        add_meta(s, K_OPT_, vikt__optim_param_name(i), num);
    }
    snprintf(num, sizeof num, "%lld", (long long)opt->steps);
    add_meta(s, K_OPT_, "step", num);
    snprintf(num, sizeof num, "%lld", (long long)opt->skipped);
    add_meta(s, K_OPT_, "skipped_steps", num);
    vikt_optimizer_get(opt, VIKT_OPT_CURRENT_LR, &lr);
    vikt__put_double(lr, num);
    add_meta(s, K_OPT_, "current_lr", num);
    for (int64_t k = 0; k < opt->nslots && k < m->nparams; k++) {
        const vikt__slot *slot = &opt->slots[k];
        const vikt_tensor *p = m->params[k];
        if (slot->step == 0 && slot->live == 0) continue; /* untouched: fresh on load too */
        put_state(opt->kind, slot, state);
        add_meta(s, K_STATE_, p->name, state);
        for (int b = 0; b < NBUF; b++) {
            if (!(slot->live & (1u << b))) continue;
            const char *buf = vikt__optim_buffer_name(opt->kind, b);
            add_entry(s, keep(s, STATE_TENSOR_, buf, ".", p->name), STATE_KIND, p, slot->buf[b]);
        }
    }
}

static void describe(saver *s) {
    vikt_model *m = s->m;
    char num[VIKT__NUM_MAX];
    s->ne = s->nmeta = 0;
    s->len = 0;
    for (int64_t i = 0; i < m->nparams; i++)
        add_entry(s, m->params[i]->name, NULL, m->params[i], m->params[i]->data);
    for (int64_t i = 0; i < m->nbuffers; i++)
        add_entry(s, m->buffers[i]->name, "buffer", m->buffers[i], m->buffers[i]->data);
    add_meta(s, K_VERSION, "", VERSION);
    snprintf(num, sizeof num, "%016llx", (unsigned long long)m->rng.state);
    add_meta(s, K_RNG_STATE, "", num);
    snprintf(num, sizeof num, "%016llx", (unsigned long long)m->rng.inc);
    add_meta(s, K_RNG_INC, "", num);
    for (int64_t i = 0; i < s->masks->n; i++)
        add_meta(s, s->masks->pairs[2 * i], "", s->masks->pairs[2 * i + 1]);
    if (s->opt) describe_optimizer(s);
    /* Last, over every pair before it. */
    uint32_t crc = s->meta ? vikt__checkpoint_crc(s->e, s->ne, s->meta, s->nmeta) : 0;
    snprintf(num, sizeof num, "%08x", (unsigned)crc);
    add_meta(s, K_CRC, "", num);
}

/* State tensors are named "optimizer.…"; a model tensor of such a name
 * could collide with one. */
static int check_names(vikt_model *m, const char *path) {
    for (int64_t i = 0; i < m->nparams + m->nbuffers; i++) {
        const vikt_tensor *t = i < m->nparams ? m->params[i] : m->buffers[i - m->nparams];
        const char *name = t->name;
        if (strncmp(name, STATE_TENSOR_, strlen(STATE_TENSOR_)) == 0)
            return vikt__io_fail(m, VIKT_ERR_ARG, "vikt_checkpoint_save", path,
                                 "the name " Q " is reserved for optimizer state", QARG(name));
    }
    return VIKT_OK;
}

int vikt_checkpoint_save(vikt_model *m, const vikt_optimizer *opt, const char *path) {
    static const char op[] = "vikt_checkpoint_save";
    if (!m) return VIKT_ERR_NULL;
    if (!path) return vikt__fail(m, VIKT_ERR_NULL, "%s: path is NULL", op);
    if (opt && opt->model != m)
        return vikt__io_fail(m, VIKT_ERR_ARG, op, path, "the optimizer belongs to another model");
    int rc = opt ? check_names(m, path) : VIKT_OK;
    if (rc) return rc;
    vikt__mask_meta masks;
    rc = vikt__mask_meta_make(m, op, &masks);
    if (rc) return rc;
    saver s = {m, opt, &masks, NULL, NULL, NULL, 0, 0, 0};
    describe(&s);
    size_t entries = (size_t)s.ne * sizeof *s.e, pairs = (size_t)s.nmeta * 2 * sizeof *s.meta;
    size_t bytes = entries + pairs + s.len;
    unsigned char *block = vikt__alloc(m, bytes);
    if (!block) {
        rc = vikt__io_fail(m, VIKT_ERR_NOMEM, op, path, "out of memory");
    } else {
        s.e = (vikt__st_entry *)(void *)block;
        s.meta = (const char **)(void *)(block + entries);
        s.text = (char *)block + entries + pairs;
        describe(&s);
        rc = vikt__st_write(m, op, path, s.e, s.ne, s.meta, s.nmeta);
        vikt__free(m, block, bytes);
    }
    vikt__mask_meta_free(m, &masks);
    return rc;
}

/* ------------------------------------------------------------------ load */

/* A load in progress: what check read from the file, and the state prepare
 * made, until commit takes it into use or discard frees it. */
typedef struct restore {
    vikt__load_ext ext; /* first: the loader's callbacks receive &ext */
    vikt_model *m;
    vikt_optimizer *opt; /* or NULL */
    const char *path;
    vikt__rng rng;
    double hp[NPARAM];
    int64_t steps, skipped;
    vikt__slot *slots; /* nslots, from prepare */
    int64_t nslots;
    char *scratch; /* room for any name the file holds with a prefix */
    size_t scratch_size;
} restore;

static const char op_load[] = "vikt_checkpoint_load";

static int bad(restore *r, int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int bad(restore *r, int err, const char *fmt, ...) {
    char detail[VIKT__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return vikt__io_fail(r->m, err, op_load, r->path, "%s", detail);
}

/* a, b, c and d joined in the scratch buffer. */
static const char *scratch_name(restore *r, const char *a, const char *b, const char *c,
                                const char *d) {
    snprintf(r->scratch, r->scratch_size, "%s%s%s%s", a, b, c, d);
    return r->scratch;
}

static int make_scratch(restore *r, const vikt__st *st) {
    size_t longest = 0;
    for (int64_t i = 0; i < st->ntensors; i++) {
        vikt__st_tensor t;
        vikt__st_at(st, i, &t);
        if (strlen(t.name) > longest) longest = strlen(t.name);
    }
    r->scratch_size = longest + 64; /* the longest prefix, a buffer's name and '.' */
    r->scratch = vikt__alloc(r->m, r->scratch_size);
    return r->scratch ? VIKT_OK : bad(r, VIKT_ERR_NOMEM, "out of memory");
}

/* The version first: a file of another version is refused for that reason
 * and no other. */
static int check_version(restore *r, const vikt__st *st) {
    const char *v = vikt__st_meta(st, K_VERSION);
    if (!v)
        return bad(r, VIKT_ERR_FORMAT, "not a checkpoint (no '" K_VERSION "' metadata; "
                                       "vikt_load reads the weights of any safetensors file)");
    if (strcmp(v, VERSION) != 0)
        return bad(r, VIKT_ERR_FORMAT,
                   "checkpoint format version '%.32s'; this library reads " VERSION, v);
    return VIKT_OK;
}

/* Every checkpoint key is known, and the pairs match their CRC. */
static int check_keys(restore *r, const vikt__st *st) {
    uint32_t crc = 0, stored;
    for (int64_t i = 0; i < st->nmeta; i++) {
        const char *k, *v;
        vikt__st_meta_at(st, i, &k, &v);
        if (!own_key(k)) continue;
        int known = strncmp(k, "vikt.kind.", 10) == 0 || strcmp(k, K_VERSION) == 0 ||
                    strcmp(k, K_RNG_STATE) == 0 || strcmp(k, K_RNG_INC) == 0 || strncmp(k, VIKT__MASK_KEY, strlen(VIKT__MASK_KEY)) == 0 ||
                    strcmp(k, K_OPT) == 0 || strncmp(k, K_OPT_, strlen(K_OPT_)) == 0;
        if (!known) return bad(r, VIKT_ERR_FORMAT, "unknown checkpoint metadata " Q, QARG(k));
        crc ^= pair_crc("", k, v);
    }
    const char *v = vikt__st_meta(st, K_CRC);
    if (!v) return bad(r, VIKT_ERR_FORMAT, "metadata '" K_CRC "' is missing");
    int64_t digits = 0;
    for (stored = 0; vikt__hex_digit(v[digits]) >= 0 && digits < 8; digits++)
        stored = stored << 4 | (uint32_t)vikt__hex_digit(v[digits]);
    if (digits != 8 || v[8])
        return bad(r, VIKT_ERR_FORMAT, "metadata '" K_CRC "' is not 8 hexadecimal digits");
    if (stored != crc)
        return bad(r, VIKT_ERR_FORMAT,
                   "checkpoint metadata CRC32C mismatch (stored %08x, computed %08x): the header "
                   "is corrupt", (unsigned)stored, (unsigned)crc);
    return VIKT_OK;
}

/* vikt writes a CRC32C for every tensor; without one, corrupt data could
 * pass. */
static int check_tensor_crcs(restore *r, const vikt__st *st) {
    for (int64_t i = 0; i < st->ntensors; i++) {
        vikt__st_tensor t;
        vikt__st_at(st, i, &t);
        if (!t.has_crc) return bad(r, VIKT_ERR_FORMAT, "tensor " Q " has no CRC32C", QARG(t.name));
    }
    return VIKT_OK;
}

static int check_rng(restore *r, const vikt__st *st) {
    const char *state = vikt__st_meta(st, K_RNG_STATE), *inc = vikt__st_meta(st, K_RNG_INC);
    if (!state || !inc)
        return bad(r, VIKT_ERR_FORMAT, "metadata '%s' is missing",
                   state ? K_RNG_INC : K_RNG_STATE);
    if (!get_hex64(state, &r->rng.state) || !get_hex64(inc, &r->rng.inc) || !(r->rng.inc & 1))
        return bad(r, VIKT_ERR_FORMAT,
                   "random generator state '%.20s'/'%.20s' is not two 16-digit hexadecimal "
                   "numbers with an odd increment", state, inc);
    return VIKT_OK;
}

static int same_dims(const vikt__st_tensor *a, const vikt__st_tensor *b) {
    if (a->rank != b->rank) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

/* One parameter's "vikt.optimizer.state.<name>": the parameter is the
 * model's, and each buffer it lists is in the file, F32, of its shape. */
static int check_state(restore *r, vikt__st *st, const char *key, const char *value) {
    const char *name = key + strlen(K_STATE_);
    int kind = r->opt->kind;
    vikt__st_tensor p, t;
    int64_t step;
    unsigned live;
    int mark = vikt__st_find(st, name, &p) ? vikt__st_mark(st, &p) : VIKT__MARK_NONE;
    int is_param = (mark == VIKT__MARK_LOAD || mark == VIKT__MARK_CREATE) &&
                   !(p.kind && strcmp(p.kind, "buffer") == 0);
    if (!is_param)
        return bad(r, VIKT_ERR_FORMAT, "optimizer state for " Q ", which is no parameter",
                   QARG(name));
    if (!get_state(kind, value, &step, &live))
        return bad(r, VIKT_ERR_FORMAT,
                   "optimizer state of " Q ": '%.40s' is not a step count >= 1 and %s buffer "
                   "names", QARG(name), value, vikt__optim_kind_name(kind));
    if (step > r->steps) /* a parameter is updated at most once per step */
        return bad(r, VIKT_ERR_FORMAT, "optimizer state of " Q ": %lld updates in %lld steps",
                   QARG(name), (long long)step, (long long)r->steps);
    for (int b = 0; b < NBUF; b++) {
        if (!(live & (1u << b))) continue;
        const char *tname =
            scratch_name(r, STATE_TENSOR_, vikt__optim_buffer_name(kind, b), ".", name);
        if (!vikt__st_find(st, tname, &t))
            return bad(r, VIKT_ERR_FORMAT, "optimizer state tensor " Q " is missing", QARG(tname));
        if (!t.kind || strcmp(t.kind, STATE_KIND) != 0 || t.dtype != VIKT__DT_F32 ||
            !same_dims(&t, &p)) {
            char want[VIKT__SHAPE_STR + 8], have[VIKT__SHAPE_STR + 8];
            vikt__dims_str(p.rank > VIKT_MAX_RANK ? VIKT_MAX_RANK : p.rank, p.shape, want);
            vikt__dims_str(t.rank > VIKT_MAX_RANK ? VIKT_MAX_RANK : t.rank, t.shape, have);
            return bad(r, VIKT_ERR_FORMAT,
                       "optimizer state tensor " Q " is %s %s of kind '%.16s'; want F32 %s of "
                       "kind '" STATE_KIND "'", QARG(tname), have, vikt__dtype_name(t.dtype),
                       t.kind ? t.kind : "parameter", want);
        }
        vikt__load_claim(st, &t);
    }
    return VIKT_OK;
}

static int check_kind(restore *r, const vikt__st *st) {
    const char *kind = vikt__st_meta(st, K_OPT);
    const char *mine = vikt__optim_kind_name(r->opt->kind);
    if (!kind)
        return bad(r, VIKT_ERR_ARG, "the checkpoint holds no optimizer state (it was saved "
                                    "without one); pass NULL to load the rest");
    if (strcmp(kind, mine) == 0) return VIKT_OK;
    for (int k = 0; k < NKIND; k++)
        if (strcmp(kind, vikt__optim_kind_name(k)) == 0)
            return bad(r, VIKT_ERR_ARG, "the checkpoint holds %s state, the optimizer is %s",
                       kind, mine);
    return bad(r, VIKT_ERR_FORMAT, "unknown optimizer '%.32s'", kind);
}

/* The hyperparameters the rule uses, each one, as vikt_optimizer_set
 * would accept them. */
static int check_hyperparameters(restore *r, const vikt__st *st) {
    int kind = r->opt->kind;
    memcpy(r->hp, r->opt->hp, sizeof r->hp);
    for (int i = 0; i < NPARAM; i++) {
        if (!vikt__optim_param_stored(kind, i)) continue;
        const char *key = scratch_name(r, K_OPT_, vikt__optim_param_name(i), "", "");
        const char *v = vikt__st_meta(st, key);
        if (!v) return bad(r, VIKT_ERR_FORMAT, "metadata '%s' is missing", key);
        if (!vikt__get_double(v, &r->hp[i]))
            return bad(r, VIKT_ERR_FORMAT, "metadata '%s' = '%.40s' is not a number as vikt "
                       "writes it", key, v);
    }
    char why[160];
    if (vikt__optim_check(kind, r->hp, why, sizeof why))
        return bad(r, VIKT_ERR_FORMAT, "%s hyperparameters: %s", vikt__optim_kind_name(kind), why);
    return VIKT_OK;
}

static int check_counter(restore *r, const vikt__st *st, const char *key, int64_t *count) {
    const char *v = vikt__st_meta(st, key), *end;
    if (!v) return bad(r, VIKT_ERR_FORMAT, "metadata '%s' is missing", key);
    if (!get_count(v, count, &end) || *end)
        return bad(r, VIKT_ERR_FORMAT, "metadata '%s' = '%.40s' is not a count", key, v);
    return VIKT_OK;
}

/* The schedule position, the skipped steps, and the rate (read only to
 * check it is well formed: it follows from the others). */
static int check_counters(restore *r, const vikt__st *st) {
    int rc = check_counter(r, st, K_OPT_ "step", &r->steps);
    if (!rc) rc = check_counter(r, st, K_OPT_ "skipped_steps", &r->skipped);
    if (rc) return rc;
    const char *v = vikt__st_meta(st, K_OPT_ "current_lr");
    double lr;
    if (!v) return bad(r, VIKT_ERR_FORMAT, "metadata '" K_OPT_ "current_lr' is missing");
    if (!vikt__get_double(v, &lr))
        return bad(r, VIKT_ERR_FORMAT, "metadata '" K_OPT_ "current_lr' = '%.40s' is not a "
                                       "number as vikt writes it", v);
    return VIKT_OK;
}

/* Every "vikt.optimizer.…" key is one the rule reads. */
static int check_optimizer_keys(restore *r, vikt__st *st) {
    int kind = r->opt->kind;
    for (int64_t i = 0; i < st->nmeta; i++) {
        const char *k, *v;
        vikt__st_meta_at(st, i, &k, &v);
        if (strncmp(k, K_OPT_, strlen(K_OPT_)) != 0) continue;
        if (strncmp(k, K_STATE_, strlen(K_STATE_)) == 0) {
            int rc = check_state(r, st, k, v);
            if (rc) return rc;
            continue;
        }
        const char *rest = k + strlen(K_OPT_);
        int known = strcmp(rest, "step") == 0 || strcmp(rest, "skipped_steps") == 0 ||
                    strcmp(rest, "current_lr") == 0;
        for (int p = 0; p < NPARAM && !known; p++)
            known = vikt__optim_param_stored(kind, p) &&
                    strcmp(rest, vikt__optim_param_name(p)) == 0;
        if (!known)
            return bad(r, VIKT_ERR_FORMAT, "metadata " Q " is not a setting of %s", QARG(k),
                       vikt__optim_kind_name(kind));
    }
    return VIKT_OK;
}

/* With an optimizer, every tensor of the file is restored: one of a kind
 * nothing claimed would be state left behind. */
static int check_unclaimed(restore *r, const vikt__st *st) {
    for (int64_t i = 0; i < st->ntensors; i++) {
        vikt__st_tensor t;
        vikt__st_at(st, i, &t);
        if (vikt__st_mark(st, &t) != VIKT__MARK_IGNORED) continue;
        if (strcmp(t.kind, STATE_KIND) == 0)
            return bad(r, VIKT_ERR_FORMAT, "tensor " Q " of kind '" STATE_KIND "' is in no "
                       "parameter's optimizer state", QARG(t.name));
        return bad(r, VIKT_ERR_FORMAT, "tensor " Q " is of kind '%.32s', which this library "
                   "cannot restore", QARG(t.name), t.kind);
    }
    return VIKT_OK;
}

static int check(vikt__load_ext *x, vikt__st *st) {
    restore *r = (restore *)(void *)x;
    int rc = check_version(r, st);
    if (!rc) rc = check_keys(r, st);
    if (!rc) rc = check_tensor_crcs(r, st);
    if (!rc) rc = check_rng(r, st);
    if (!rc && r->opt) rc = make_scratch(r, st);
    if (!rc && r->opt) rc = check_kind(r, st);
    if (!rc && r->opt) rc = check_hyperparameters(r, st);
    if (!rc && r->opt) rc = check_counters(r, st);
    if (!rc && r->opt) rc = check_optimizer_keys(r, st);
    if (!rc && r->opt) rc = check_unclaimed(r, st);
    return rc;
}

static void free_slots(vikt_model *m, vikt__slot *slots, int64_t n) {
    for (int64_t k = 0; k < n; k++) vikt__optim_slot_free(m, &slots[k]);
    vikt__free(m, slots, (size_t)n * sizeof *slots);
}

/* New state for every parameter (the model's tensors exist now, created ones
 * included), its buffers the destinations of the claimed tensors. */
static int prepare(vikt__load_ext *x, vikt__st *st) {
    restore *r = (restore *)(void *)x;
    vikt_model *m = r->m;
    if (!r->opt || m->nparams == 0) return VIKT_OK;
    int kind = r->opt->kind;
    r->slots = vikt__alloc(m, (size_t)m->nparams * sizeof *r->slots);
    if (!r->slots) return bad(r, VIKT_ERR_NOMEM, "out of memory for the optimizer state");
    memset(r->slots, 0, (size_t)m->nparams * sizeof *r->slots);
    r->nslots = m->nparams;
    for (int64_t k = 0; k < m->nparams; k++) {
        const vikt_tensor *p = m->params[k];
        vikt__slot *s = &r->slots[k];
        const char *v = vikt__st_meta(st, scratch_name(r, K_STATE_, p->name, "", ""));
        s->numel = p->numel;
        if (!v) continue; /* never updated: fresh, as in the saved run */
        get_state(kind, v, &s->step, &s->live);
        for (int b = 0; b < NBUF; b++) {
            if (!(s->live & (1u << b))) continue;
            vikt__st_tensor t;
            s->buf[b] = vikt__alloc(m, (size_t)p->numel * sizeof(float));
            if (!s->buf[b]) {
                free_slots(m, r->slots, r->nslots);
                r->slots = NULL;
                return bad(r, VIKT_ERR_NOMEM,
                           "out of memory for the %s state of " Q " (%lld values)",
                           vikt__optim_kind_name(kind), QARG(p->name), (long long)p->numel);
            }
            /* Present, of this shape: check_state saw it. */
            const char *buf = vikt__optim_buffer_name(kind, b);
            vikt__st_find(st, scratch_name(r, STATE_TENSOR_, buf, ".", p->name), &t);
            vikt__st_set_slot(st, &t, s->buf[b]);
        }
    }
    return VIKT_OK;
}

static void commit(vikt__load_ext *x) {
    restore *r = (restore *)(void *)x;
    vikt_optimizer *opt = r->opt;
    r->m->rng = r->rng;
    if (!opt) return;
    free_slots(r->m, opt->slots, opt->nslots);
    opt->slots = r->slots, opt->nslots = r->nslots;
    memcpy(opt->hp, r->hp, sizeof opt->hp);
    opt->steps = r->steps, opt->skipped = r->skipped;
    r->slots = NULL;
}

static void discard(vikt__load_ext *x) {
    restore *r = (restore *)(void *)x;
    if (r->slots) free_slots(r->m, r->slots, r->nslots);
    r->slots = NULL;
}

int vikt__checkpoint_load_from(vikt_model *m, vikt_optimizer *opt, const char *path,
                               const void *data, size_t size) {
    const char *where = path ? path : "<memory>";
    if (opt && opt->model != m)
        return vikt__io_fail(m, VIKT_ERR_ARG, op_load, where,
                             "the optimizer belongs to another model");
    restore r;
    memset(&r, 0, sizeof r);
    r.ext.check = check, r.ext.prepare = prepare, r.ext.commit = commit, r.ext.discard = discard;
    r.m = m, r.opt = opt, r.path = where;
    int rc = vikt__load_with(m, op_load, path, data, size, &r.ext);
    vikt__free(m, r.scratch, r.scratch_size);
    return rc;
}

int vikt_checkpoint_load(vikt_model *m, vikt_optimizer *opt, const char *path) {
    if (!m) return VIKT_ERR_NULL;
    if (!path) return vikt__fail(m, VIKT_ERR_NULL, "%s: path is NULL", op_load);
    return vikt__checkpoint_load_from(m, opt, path, NULL, 0);
}
