/* Reading safetensors: parse and validate a header into a table of tensors,
 * then read a tensor's data as float32.
 *
 * The format (huggingface/safetensors): an unsigned 64-bit little-endian
 * header length N, N bytes of UTF-8 JSON {name: {"dtype", "shape",
 * "data_offsets": [begin, end]}, "__metadata__": {string: string}}, then the
 * data section, row-major little-endian, offsets relative to its start.
 *
 * Untrusted input, so the loader allocates one block of N bytes (N was first
 * checked against the file's real size) and nothing else: the table is built
 * inside that block, over the JSON text it came from.
 *
 *   pass 1  vikt__json_check: the text is JSON, UTF-8, nested <= 64 deep.
 *   pass 2  one walk of the top-level object. Each member is compacted into a
 *           binary record written at w, behind the read position r. A record
 *           is shorter than its text: strings decode to at most their length
 *           (a NUL replaces the quotes), a tensor's 38 fixed bytes stand in
 *           for at least 50 bytes of fixed JSON ("dtype", "shape",
 *           "data_offsets", punctuation), and each dimension is a LEB128
 *           varint, never longer than its decimal digits. So w <= r always
 *           (checked, not assumed), and every tensor frees >= 12 bytes, every
 *           metadata pair >= 4 (its four quotes and ':' and ',' against two
 *           NULs).
 *   index   those freed bytes, after the records, take the three sorted
 *           arrays of 4-byte record offsets: tensors by data offset and by
 *           name, metadata pairs by key.
 *   checks  duplicates (neighbours by name), metadata that names tensors
 *           (CRC32C, kind), byte counts, and the offsets tiling the data
 *           section from 0 to its end without gap or overlap.
 *
 * Records (offsets into the block; multi-byte fields copied with memcpy):
 *   tensor:   0x01, name, NUL, then dtype, rank, mark, has_crc (1 byte each),
 *             crc (4), kind (4: value offset + 1, or 0), begin (8), end (8),
 *             slot (8), rank varint dimensions
 *   metadata: 0x02, pair count (4), then count × (key, NUL, value, NUL) */
#include "io.h"

#include <stdio.h>
#include <string.h>

#define TAG_TENSOR 0x01
#define TAG_META 0x02
#define FIXED 36 /* tensor record bytes after the name's NUL, before the dimensions */
#define F_DTYPE 0
#define F_RANK 1
#define F_MARK 2
#define F_HAS_CRC 3
#define F_CRC 4
#define F_KIND 8
#define F_BEGIN 12
#define F_END 20
#define F_SLOT 28
#define NAME_CLIP 64

/* A name in a message: 'name', shortened to its last NAME_CLIP bytes. */
#define Q "'%s%s'"
#define QARG(s) vikt__clip_prefix(s, NAME_CLIP), vikt__clip_tail(s, NAME_CLIP)

/* ------------------------------------------------------- element types */

static float f32_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static double f64_bits(uint64_t bits) {
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* IEEE binary16 to binary32, exact: subnormals normalized, the NaN payload
 * kept in the top mantissa bits. */
static float f16_to_f32(uint32_t h) {
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0x1F) return f32_bits(sign | 0x7F800000u | man << 13);
    if (exp != 0) return f32_bits(sign | (exp + 112) << 23 | man << 13);
    if (man == 0) return f32_bits(sign);
    uint32_t e = 113; /* man·2^-24 = 1.f·2^(p-24) for the top set bit p */
    while (!(man & 0x400u)) man <<= 1, e--;
    return f32_bits(sign | e << 23 | (man & 0x3FFu) << 13);
}

/* OCP 8-bit E4M3 ("fn": bias 7, no infinities, S.1111.111 is NaN, max 448)
 * to binary32, exact. */
static float f8_e4m3_to_f32(uint32_t b) {
    uint32_t sign = (b & 0x80u) << 24, exp = (b >> 3) & 0xFu, man = b & 0x7u;
    if (exp == 0xF && man == 0x7) return f32_bits(sign | 0x7FC00000u);
    if (exp != 0) return f32_bits(sign | (exp + 120) << 23 | man << 20);
    float v = (float)man * 0x1p-9f; /* subnormal: man·2^-9, exact */
    return sign ? -v : v;
}

static uint64_t le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

/* A little-endian two's-complement integer of `bits` bits, without the
 * implementation-defined conversion of an unsigned value above INT64_MAX. */
static int64_t le_signed(const unsigned char *p, int bits) {
    uint64_t v = le(p, (size_t)bits / 8), sign = (uint64_t)1 << (bits - 1);
    if (v & sign) v |= ~(sign - 1); /* extend the sign to 64 bits */
    return v <= INT64_MAX ? (int64_t)v : -(int64_t)~v - 1;
}

/* n little-endian elements to float32: exact for every dtype of at most 16
 * bits and BOOL (0 or 1), rounded to the nearest float32 for F64 (as torch's
 * .float()) and for integers of 32 and 64 bits beyond 2^24 in magnitude. */
typedef void (*to_f32_fn)(const unsigned char *src, size_t n, float *dst);

#define TO_F32(fn, size, expr)                                          \
    static void fn(const unsigned char *s, size_t n, float *dst) {     \
        for (size_t i = 0; i < n; i++, s += (size)) dst[i] = (expr);   \
    }
TO_F32(from_bool, 1, s[0] != 0)
TO_F32(from_u8, 1, (float)s[0])
TO_F32(from_i8, 1, (float)le_signed(s, 8))
TO_F32(from_f8_e5m2, 1, f16_to_f32((uint32_t)s[0] << 8)) /* the top byte of a binary16 */
TO_F32(from_f8_e4m3, 1, f8_e4m3_to_f32(s[0]))
TO_F32(from_i16, 2, (float)le_signed(s, 16))
TO_F32(from_u16, 2, (float)le(s, 2))
TO_F32(from_f16, 2, f16_to_f32((uint32_t)le(s, 2)))
TO_F32(from_bf16, 2, f32_bits((uint32_t)le(s, 2) << 16))
TO_F32(from_i32, 4, (float)le_signed(s, 32))
TO_F32(from_u32, 4, (float)le(s, 4))
TO_F32(from_f32, 4, f32_bits((uint32_t)le(s, 4)))
TO_F32(from_f64, 8, (float)f64_bits(le(s, 8)))
TO_F32(from_i64, 8, (float)le_signed(s, 64))
TO_F32(from_u64, 8, (float)le(s, 8))
#undef TO_F32

/* The dtypes, indexed by enum vikt__dtype: name, bytes, conversion. */
static const struct {
    const char *name;
    unsigned char size;
    to_f32_fn to_f32;
} dtypes[VIKT__DT_COUNT] = {
    {"BOOL", 1, from_bool}, {"U8", 1, from_u8},     {"I8", 1, from_i8},
    {"F8_E5M2", 1, from_f8_e5m2}, {"F8_E4M3", 1, from_f8_e4m3},
    {"I16", 2, from_i16},   {"U16", 2, from_u16},   {"F16", 2, from_f16},
    {"BF16", 2, from_bf16}, {"I32", 4, from_i32},   {"U32", 4, from_u32},
    {"F32", 4, from_f32},   {"F64", 8, from_f64},   {"I64", 8, from_i64},
    {"U64", 8, from_u64},
};

const char *vikt__dtype_name(int dtype) {
    return dtype >= 0 && dtype < VIKT__DT_COUNT ? dtypes[dtype].name : "?";
}

size_t vikt__dtype_size(int dtype) {
    return dtype >= 0 && dtype < VIKT__DT_COUNT ? dtypes[dtype].size : 0;
}

int vikt__dtype_is_float(int dtype) {
    return dtype == VIKT__DT_F16 || dtype == VIKT__DT_BF16 || dtype == VIKT__DT_F32 ||
           dtype == VIKT__DT_F64;
}

/* A malformed file: VIKT_ERR_FORMAT with "op: path: detail". */
static int bad(const vikt__st *st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int bad(const vikt__st *st, const char *fmt, ...) {
    char detail[VIKT__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return vikt__io_fail(st->f->m, VIKT_ERR_FORMAT, st->f->op, st->f->path, "%s", detail);
}

/* ------------------------------------------------------------- records */

static uint32_t get32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static size_t varint_put(unsigned char *p, uint64_t v) {
    size_t n = 0;
    do {
        unsigned char b = v & 0x7F;
        v >>= 7;
        p[n++] = (unsigned char)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >>= 7) n++;
    return n;
}

static size_t varint_get(const unsigned char *p, uint64_t *v) {
    size_t n = 0;
    *v = 0;
    do *v |= (uint64_t)(p[n] & 0x7F) << (7 * n);
    while (p[n++] & 0x80);
    return n;
}

static const char *rec_name(const vikt__st *st, uint32_t rec) {
    return (const char *)st->block + rec + 1;
}

/* The fixed fields of a tensor record. */
static unsigned char *rec_fixed(const vikt__st *st, uint32_t rec) {
    return st->block + rec + 2 + strlen(rec_name(st, rec));
}

static void view(const vikt__st *st, uint32_t rec, vikt__st_tensor *t) {
    const unsigned char *q = rec_fixed(st, rec);
    uint32_t kind = get32(q + F_KIND);
    t->rec = rec;
    t->name = rec_name(st, rec);
    t->kind = kind ? (const char *)st->block + kind - 1 : NULL;
    t->dtype = q[F_DTYPE];
    t->rank = q[F_RANK];
    t->has_crc = q[F_HAS_CRC];
    t->crc = get32(q + F_CRC);
    t->begin = get64(q + F_BEGIN);
    t->end = get64(q + F_END);
    const unsigned char *d = q + FIXED;
    t->numel = 1;
    for (int i = 0; i < t->rank; i++) {
        uint64_t dim;
        d += varint_get(d, &dim);
        t->shape[i] = (int64_t)dim;
        t->numel *= t->shape[i]; /* bounded when parsed */
    }
}

/* ------------------------------------------------- pass 2: the structure */

typedef struct parser {
    vikt__st *st;
    vikt__json j;
    size_t w; /* where the next record goes; never past j.pos */
    int64_t ntensors, nmeta;
    int seen_meta;
} parser;

/* The fields of one tensor entry while it is read. */
typedef struct entry {
    int have_dtype, have_shape, have_offsets;
    int dtype, rank;
    uint64_t dims[VIKT__ST_MAX_RANK];
    uint64_t numel, begin, end;
} entry;

static int internal(parser *p) {
    return bad(p->st, "internal error: the table outgrew its text at byte %zu", p->j.pos);
}

static int parse_dtype(parser *p, const char *name, entry *e) {
    if (vikt__json_peek(&p->j) != '"') return bad(p->st, "tensor " Q ": dtype is not a string", QARG(name));
    size_t at = p->j.pos, len;
    if (vikt__json_string(&p->j, at, &len)) return internal(p);
    const char *s = (const char *)p->j.s + at;
    for (int d = 0; d < VIKT__DT_COUNT; d++)
        if (strcmp(s, dtypes[d].name) == 0 && strlen(dtypes[d].name) == len) {
            e->dtype = d;
            return VIKT_OK;
        }
    return bad(p->st, "tensor " Q ": unknown dtype '%s%s'", QARG(name), vikt__clip_prefix(s, 16),
               vikt__clip_tail(s, 16));
}

static int parse_dim(parser *p, const char *name, entry *e) {
    uint64_t d;
    int rc = vikt__json_uint(&p->j, INT64_MAX, &d);
    if (rc == VIKT__JSON_RANGE) return bad(p->st, "tensor " Q ": shape overflows", QARG(name));
    if (rc) return bad(p->st, "tensor " Q ": shape must hold non-negative integers", QARG(name));
    if (e->rank == VIKT__ST_MAX_RANK)
        return bad(p->st, "tensor " Q ": rank above %d, the most this reader supports", QARG(name),
                   VIKT__ST_MAX_RANK);
    /* Element counts stay below 2^60, so counts times 8 bytes fit int64_t. */
    if (d > 0 && e->numel > (uint64_t)(INT64_MAX / 8) / d)
        return bad(p->st, "tensor " Q ": shape overflows", QARG(name));
    e->numel *= d;
    e->dims[e->rank++] = d;
    return VIKT_OK;
}

static int parse_shape(parser *p, const char *name, entry *e) {
    if (!vikt__json_accept(&p->j, '['))
        return bad(p->st, "tensor " Q ": shape is not an array", QARG(name));
    e->numel = 1;
    if (vikt__json_accept(&p->j, ']')) return VIKT_OK;
    do {
        int rc = parse_dim(p, name, e);
        if (rc) return rc;
    } while (vikt__json_accept(&p->j, ','));
    return vikt__json_accept(&p->j, ']') ? VIKT_OK : internal(p);
}

static int not_two(parser *p, const char *name) {
    return bad(p->st, "tensor " Q ": data_offsets must be two non-negative integers", QARG(name));
}

static int parse_offsets(parser *p, const char *name, entry *e) {
    uint64_t v[2];
    if (!vikt__json_accept(&p->j, '['))
        return bad(p->st, "tensor " Q ": data_offsets is not an array", QARG(name));
    for (int i = 0; i < 2; i++) {
        if (i && !vikt__json_accept(&p->j, ',')) return not_two(p, name);
        int rc = vikt__json_uint(&p->j, UINT64_MAX, &v[i]);
        if (rc == VIKT__JSON_RANGE) return bad(p->st, "tensor " Q ": data_offsets out of range", QARG(name));
        if (rc) return not_two(p, name);
    }
    if (!vikt__json_accept(&p->j, ']')) return not_two(p, name);
    e->begin = v[0];
    e->end = v[1];
    return VIKT_OK;
}

/* One "key": value of a tensor entry; the key is decoded in place. */
static int parse_field(parser *p, const char *name, entry *e) {
    vikt__json_peek(&p->j);
    size_t at = p->j.pos, len;
    if (vikt__json_string(&p->j, at, &len) || !vikt__json_accept(&p->j, ':')) return internal(p);
    const char *key = (const char *)p->j.s + at;
    int *have = !strcmp(key, "dtype") ? &e->have_dtype : !strcmp(key, "shape") ? &e->have_shape
              : !strcmp(key, "data_offsets") ? &e->have_offsets : NULL;
    if (!have || strlen(key) != len)
        return bad(p->st, "tensor " Q ": unknown field '%s%s'", QARG(name), vikt__clip_prefix(key, 32),
                   vikt__clip_tail(key, 32));
    if (*have) return bad(p->st, "tensor " Q ": field '%s' appears twice", QARG(name), key);
    *have = 1;
    if (have == &e->have_dtype) return parse_dtype(p, name, e);
    if (have == &e->have_shape) return parse_shape(p, name, e);
    return parse_offsets(p, name, e);
}

/* The fixed fields and dimensions after the name (at p->w). */
static int emit_tensor(parser *p, const entry *e) {
    size_t need = FIXED;
    for (int i = 0; i < e->rank; i++) need += varint_len(e->dims[i]);
    if (p->w + need > p->j.pos) return internal(p);
    unsigned char *q = p->j.s + p->w;
    memset(q, 0, FIXED);
    q[F_DTYPE] = (unsigned char)e->dtype;
    q[F_RANK] = (unsigned char)e->rank;
    memcpy(q + F_BEGIN, &e->begin, 8);
    memcpy(q + F_END, &e->end, 8);
    size_t at = FIXED;
    for (int i = 0; i < e->rank; i++) at += varint_put(q + at, e->dims[i]);
    p->w += at;
    p->ntensors++;
    return VIKT_OK;
}

/* A tensor entry {"dtype", "shape", "data_offsets"}; its name is at rec+1. */
static int parse_tensor(parser *p, size_t rec) {
    const char *name = (const char *)p->j.s + rec + 1;
    if (!vikt__json_accept(&p->j, '{'))
        return bad(p->st, "tensor " Q ": its entry is not an object", QARG(name));
    entry e;
    memset(&e, 0, sizeof e);
    if (!vikt__json_accept(&p->j, '}')) {
        do {
            int rc = parse_field(p, name, &e);
            if (rc) return rc;
        } while (vikt__json_accept(&p->j, ','));
        if (!vikt__json_accept(&p->j, '}')) return internal(p);
    }
    const char *missing = !e.have_dtype ? "dtype" : !e.have_shape ? "shape"
                        : !e.have_offsets ? "data_offsets" : NULL;
    if (missing) return bad(p->st, "tensor " Q ": no '%s'", QARG(name), missing);
    return emit_tensor(p, &e);
}

/* "__metadata__": {string: string}, compacted to key NUL value NUL pairs. */
static int parse_meta(parser *p, size_t rec) {
    if (p->seen_meta) return bad(p->st, "duplicate name '__metadata__'");
    p->seen_meta = 1;
    if (!vikt__json_accept(&p->j, '{')) return bad(p->st, "__metadata__ is not an object");
    p->j.s[rec] = TAG_META;
    p->w = rec + 5;
    uint32_t count = 0;
    if (!vikt__json_accept(&p->j, '}')) {
        do {
            size_t key = p->w, klen, vlen;
            vikt__json_peek(&p->j);
            if (vikt__json_string(&p->j, key, &klen) || !vikt__json_accept(&p->j, ':')) return internal(p);
            const char *k = (const char *)p->j.s + key;
            if (vikt__json_peek(&p->j) != '"')
                return bad(p->st, "metadata " Q ": the value is not a string", QARG(k));
            p->w += klen + 1;
            if (vikt__json_string(&p->j, p->w, &vlen)) return internal(p);
            if (strlen(k) != klen || strlen((const char *)p->j.s + p->w) != vlen)
                return bad(p->st, "metadata " Q ": NUL character in the key or value", QARG(k));
            p->w += vlen + 1;
            count++;
        } while (vikt__json_accept(&p->j, ','));
        if (!vikt__json_accept(&p->j, '}')) return internal(p);
    }
    memcpy(p->j.s + rec + 1, &count, 4);
    p->nmeta += count;
    return VIKT_OK;
}

/* One member of the top-level object. Its key is decoded to rec+1 (a tensor
 * record's name); "__metadata__" then becomes a metadata block instead. */
static int parse_member(parser *p) {
    size_t rec = p->w, len;
    vikt__json_peek(&p->j);
    if (vikt__json_string(&p->j, rec + 1, &len) || !vikt__json_accept(&p->j, ':')) return internal(p);
    const char *name = (const char *)p->j.s + rec + 1;
    if (len == 12 && memcmp(name, "__metadata__", 12) == 0) return parse_meta(p, rec);
    if (len == 0) return bad(p->st, "empty tensor name");
    if (strlen(name) != len) return bad(p->st, "tensor name " Q " holds a NUL character", QARG(name));
    p->j.s[rec] = TAG_TENSOR;
    p->w = rec + 2 + len;
    return parse_tensor(p, rec);
}

static int parse_structure(parser *p) {
    if (!vikt__json_accept(&p->j, '{')) return bad(p->st, "the header is not a JSON object");
    if (vikt__json_accept(&p->j, '}')) return VIKT_OK;
    do {
        int rc = parse_member(p);
        if (rc) return rc;
    } while (vikt__json_accept(&p->j, ','));
    return vikt__json_accept(&p->j, '}') ? VIKT_OK : internal(p);
}

/* ---------------------------------------------------------------- index */

typedef int (*rec_cmp)(const vikt__st *st, uint32_t a, uint32_t b);

static int by_name(const vikt__st *st, uint32_t a, uint32_t b) {
    return strcmp(rec_name(st, a), rec_name(st, b));
}

/* Data order; ties (empty tensors at one offset) by name, so it is total. */
static int by_offset(const vikt__st *st, uint32_t a, uint32_t b) {
    const unsigned char *qa = rec_fixed(st, a), *qb = rec_fixed(st, b);
    uint64_t ba = get64(qa + F_BEGIN), bb = get64(qb + F_BEGIN);
    uint64_t ea = get64(qa + F_END), eb = get64(qb + F_END);
    if (ba != bb) return ba < bb ? -1 : 1;
    if (ea != eb) return ea < eb ? -1 : 1;
    return by_name(st, a, b);
}

static int by_key(const vikt__st *st, uint32_t a, uint32_t b) {
    return strcmp((const char *)st->block + a, (const char *)st->block + b);
}

/* Heapsort: O(n log n), in place, no recursion, nothing allocated. */
static void sift(const vikt__st *st, uint32_t *a, size_t i, size_t n, rec_cmp cmp) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && cmp(st, a[c + 1], a[c]) > 0) c++;
        if (cmp(st, a[c], a[i]) <= 0) return;
        uint32_t t = a[c];
        a[c] = a[i];
        a[i] = t;
        i = c;
    }
}

static void heap_sort(const vikt__st *st, uint32_t *a, size_t n, rec_cmp cmp) {
    for (size_t i = n / 2; i-- > 0;) sift(st, a, i, n, cmp);
    for (size_t end = n; end-- > 1;) {
        uint32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift(st, a, 0, end, cmp);
    }
}

/* Walk the records once, filling the three arrays placed after them. */
static int build_index(vikt__st *st, parser *p) {
    size_t at = (p->w + 3) & ~(size_t)3;
    size_t need = (size_t)(2 * p->ntensors + p->nmeta) * 4;
    if (at > st->block_size || st->block_size - at < need) return internal(p);
    uint32_t *t1 = (uint32_t *)(void *)(st->block + at), *t2 = t1 + p->ntensors, *mp = t2 + p->ntensors;
    size_t r = 0, nt = 0, nm = 0;
    while (r < p->w) {
        if (st->block[r] == TAG_TENSOR) {
            t1[nt] = t2[nt] = (uint32_t)r;
            nt++;
            vikt__st_tensor t;
            view(st, (uint32_t)r, &t);
            r = (size_t)(rec_fixed(st, (uint32_t)r) - st->block) + FIXED;
            for (int i = 0; i < t.rank; i++) r += varint_len((uint64_t)t.shape[i]);
        } else {
            uint32_t count = get32(st->block + r + 1);
            r += 5;
            for (uint32_t i = 0; i < count; i++, nm++) {
                mp[nm] = (uint32_t)r;
                r += strlen((const char *)st->block + r) + 1;
                r += strlen((const char *)st->block + r) + 1;
            }
        }
    }
    st->by_offset = t1, st->by_name = t2, st->meta = mp;
    st->ntensors = p->ntensors, st->nmeta = p->nmeta;
    heap_sort(st, t1, nt, by_offset);
    heap_sort(st, t2, nt, by_name);
    heap_sort(st, mp, nm, by_key);
    return VIKT_OK;
}

/* ------------------------------------------------------------- lookups */

/* The first index in a sorted array whose string is >= s. */
static int64_t lower_bound(const vikt__st *st, const uint32_t *a, int64_t n, const char *s,
                           size_t skip) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (strcmp((const char *)st->block + a[mid] + skip, s) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int vikt__st_find(const vikt__st *st, const char *name, vikt__st_tensor *t) {
    int64_t i = lower_bound(st, st->by_name, st->ntensors, name, 1);
    if (i == st->ntensors || strcmp(rec_name(st, st->by_name[i]), name) != 0) return 0;
    view(st, st->by_name[i], t);
    return 1;
}

void vikt__st_at(const vikt__st *st, int64_t i, vikt__st_tensor *t) { view(st, st->by_offset[i], t); }

void vikt__st_meta_at(const vikt__st *st, int64_t i, const char **key, const char **value) {
    *key = (const char *)st->block + st->meta[i];
    *value = *key + strlen(*key) + 1;
}

const char *vikt__st_meta(const vikt__st *st, const char *key) {
    int64_t i = lower_bound(st, st->meta, st->nmeta, key, 0);
    const char *k, *v;
    if (i == st->nmeta) return NULL;
    vikt__st_meta_at(st, i, &k, &v);
    return strcmp(k, key) == 0 ? v : NULL;
}

int vikt__st_mark(const vikt__st *st, const vikt__st_tensor *t) {
    return rec_fixed(st, t->rec)[F_MARK];
}

void vikt__st_set_mark(vikt__st *st, const vikt__st_tensor *t, int mark) {
    rec_fixed(st, t->rec)[F_MARK] = (unsigned char)mark;
}

void *vikt__st_slot(const vikt__st *st, const vikt__st_tensor *t) {
    void *p;
    memcpy(&p, rec_fixed(st, t->rec) + F_SLOT, sizeof p);
    return p;
}

void vikt__st_set_slot(vikt__st *st, const vikt__st_tensor *t, void *p) {
    memcpy(rec_fixed(st, t->rec) + F_SLOT, &p, sizeof p);
}

/* -------------------------------------------------------------- checks */

static int check_duplicates(const vikt__st *st) {
    for (int64_t i = 1; i < st->ntensors; i++)
        if (by_name(st, st->by_name[i - 1], st->by_name[i]) == 0)
            return bad(st, "duplicate tensor name " Q, QARG(rec_name(st, st->by_name[i])));
    for (int64_t i = 1; i < st->nmeta; i++)
        if (by_key(st, st->meta[i - 1], st->meta[i]) == 0)
            return bad(st, "duplicate metadata key " Q, QARG((const char *)st->block + st->meta[i]));
    return VIKT_OK;
}

static int hex8(const char *s, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 8; i++) {
        int c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v << 4 | (uint32_t)d;
    }
    return s[8] == '\0';
}

const char *vikt__st_kind(const vikt__st *st, const vikt__st_tensor *t) {
    if (t->kind) return t->kind;
    return st->marks_kinds ? "parameter" : NULL;
}

const char *vikt__st_kind_clash(const vikt__st *st, const vikt__st_tensor *f,
                                const vikt_tensor *t) {
    const char *theirs = vikt__st_kind(st, f);
    const char *mine = t->storage == VIKT__BUFFER ? "buffer" : "parameter";
    if (!theirs || (strcmp(theirs, "parameter") != 0 && strcmp(theirs, "buffer") != 0)) return NULL;
    return strcmp(theirs, mine) != 0 ? theirs : NULL;
}

/* "vikt.crc32c.<name>" and "vikt.kind.<name>" go into the tensor's record. */
static int attach_meta(vikt__st *st) {
    static const char crc_key[] = "vikt.crc32c.", kind_key[] = "vikt.kind.";
    for (int64_t i = 0; i < st->nmeta; i++) {
        const char *k, *v;
        vikt__st_meta_at(st, i, &k, &v);
        int is_crc = strncmp(k, crc_key, sizeof crc_key - 1) == 0;
        int is_kind = strncmp(k, kind_key, sizeof kind_key - 1) == 0;
        if (!is_crc && !is_kind) continue;
        vikt__st_tensor t;
        if (!vikt__st_find(st, k + (is_crc ? sizeof crc_key : sizeof kind_key) - 1, &t))
            return bad(st, "metadata " Q " names no tensor", QARG(k));
        unsigned char *q = rec_fixed(st, t.rec);
        if (is_kind) {
            if (!*v) return bad(st, "metadata " Q " is empty", QARG(k));
            st->marks_kinds = 1;
            uint32_t at = (uint32_t)(v - (const char *)st->block) + 1;
            memcpy(q + F_KIND, &at, 4);
            continue;
        }
        uint32_t crc;
        if (!hex8(v, &crc)) return bad(st, "metadata " Q " is not 8 hexadecimal digits", QARG(k));
        q[F_HAS_CRC] = 1;
        memcpy(q + F_CRC, &crc, 4);
    }
    return VIKT_OK;
}

static int check_sizes(const vikt__st *st) {
    for (int64_t i = 0; i < st->ntensors; i++) {
        vikt__st_tensor t;
        view(st, st->by_name[i], &t);
        if (t.begin > t.end)
            return bad(st, "tensor " Q ": data_offsets [%llu, %llu] are out of order", QARG(t.name),
                       (unsigned long long)t.begin, (unsigned long long)t.end);
        uint64_t bytes = (uint64_t)t.numel * vikt__dtype_size(t.dtype);
        if (t.end - t.begin != bytes) {
            char dims[VIKT__SHAPE_STR];
            int rank = t.rank > VIKT_MAX_RANK ? VIKT_MAX_RANK : t.rank;
            return bad(st, "tensor " Q ": shape %s%s of %s is %llu bytes, data_offsets span %llu",
                       QARG(t.name), vikt__dims_str(rank, t.shape, dims), rank < t.rank ? "x..." : "",
                       vikt__dtype_name(t.dtype), (unsigned long long)bytes,
                       (unsigned long long)(t.end - t.begin));
        }
    }
    return VIKT_OK;
}

/* In data order the tensors must tile [0, data_size) exactly. */
static int check_tiling(const vikt__st *st) {
    uint64_t expect = 0;
    vikt__st_tensor t, prev;
    memset(&t, 0, sizeof t);
    memset(&prev, 0, sizeof prev);
    for (int64_t i = 0; i < st->ntensors; i++, prev = t) {
        view(st, st->by_offset[i], &t);
        if (i == 0 && t.begin != 0)
            return bad(st, "data_offsets do not start at 0: the first tensor " Q " begins at %llu",
                       QARG(t.name), (unsigned long long)t.begin);
        if (t.begin > expect)
            return bad(st, "gap of %llu bytes between tensors " Q " and " Q,
                       (unsigned long long)(t.begin - expect), QARG(prev.name), QARG(t.name));
        if (t.begin < expect)
            return bad(st, "tensors " Q " and " Q " overlap", QARG(prev.name), QARG(t.name));
        expect = t.end;
    }
    if (expect > st->data_size)
        return bad(st, "truncated: tensor " Q " ends at byte %llu of the data, which has %llu",
                   QARG(t.name), (unsigned long long)expect, (unsigned long long)st->data_size);
    if (expect < st->data_size)
        return bad(st, "%llu bytes after the last tensor: the data does not end at the end of the file",
                   (unsigned long long)(st->data_size - expect));
    return VIKT_OK;
}

/* ---------------------------------------------------------------- open */

static int json_error(const vikt__st *st, const vikt__json *j) {
    if (j->err == VIKT__JSON_UTF8)
        return bad(st, "invalid UTF-8 in the header at byte %zu: %s", j->err_at, j->what);
    if (j->err == VIKT__JSON_DEPTH)
        return bad(st, "the header nests arrays and objects more than %d deep (byte %zu)",
                   VIKT__ST_MAX_DEPTH, j->err_at);
    return bad(st, "invalid JSON in the header at byte %zu: %s", j->err_at, j->what);
}

/* The 8-byte length and the checks that come before any allocation. */
static int header_length(vikt__st *st, uint64_t *len) {
    vikt__file *f = st->f;
    unsigned char b[8];
    if (f->size < 8)
        return bad(st, "truncated: %llu bytes, too short for the 8-byte header length",
                   (unsigned long long)f->size);
    int rc = vikt__file_read(f, 0, b, 8);
    if (rc) return rc;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    if (n > UINT64_MAX - 8) return bad(st, "header length %llu overflows 8 + length", (unsigned long long)n);
    if (n > VIKT__ST_MAX_HEADER)
        return bad(st, "header length %llu is above the limit of %u bytes", (unsigned long long)n,
                   VIKT__ST_MAX_HEADER);
    if (8 + n > f->size)
        return bad(st, "header length %llu runs past the end of the file (%llu bytes)",
                   (unsigned long long)n, (unsigned long long)f->size);
    *len = n;
    return VIKT_OK;
}

static int parse(vikt__st *st) {
    parser p;
    memset(&p, 0, sizeof p);
    p.st = st;
    vikt__json_init(&p.j, st->block, st->block_size, VIKT__ST_MAX_DEPTH);
    if (vikt__json_check(&p.j)) return json_error(st, &p.j);
    int rc = parse_structure(&p);
    if (!rc) rc = build_index(st, &p);
    if (!rc) rc = check_duplicates(st);
    if (!rc) rc = attach_meta(st);
    if (!rc) rc = check_sizes(st);
    if (!rc) rc = check_tiling(st);
    return rc;
}

int vikt__st_open(vikt__st *st, vikt__file *f) {
    memset(st, 0, sizeof *st);
    st->f = f;
    uint64_t len = 0;
    int rc = header_length(st, &len);
    if (rc) return rc;
    st->block_size = (size_t)len;
    st->block = vikt__alloc(f->m, st->block_size);
    if (!st->block)
        return vikt__io_fail(f->m, VIKT_ERR_NOMEM, f->op, f->path,
                             "out of memory for a header of %zu bytes", st->block_size);
    st->data_start = 8 + len;
    st->data_size = f->size - st->data_start;
    rc = vikt__file_read(f, 8, st->block, st->block_size);
    if (!rc) rc = parse(st);
    if (rc) vikt__st_close(st);
    return rc;
}

void vikt__st_close(vikt__st *st) {
    if (st->block) vikt__free(st->f->m, st->block, st->block_size);
    st->block = NULL;
    st->ntensors = st->nmeta = 0;
}

/* ------------------------------------------------------------- reading */

static int host_is_le(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static int check_crc(vikt__st *st, const vikt__st_tensor *t, uint32_t crc) {
    if (!t->has_crc || crc == t->crc) return VIKT_OK;
    return bad(st, "tensor " Q ": CRC32C mismatch (stored %08x, data %08x): the data is corrupt",
               QARG(t->name), (unsigned)t->crc, (unsigned)crc);
}

int vikt__st_read_f32(vikt__st *st, const vikt__st_tensor *t, float *dst, unsigned char *chunk) {
    uint64_t off = st->data_start + t->begin, left = t->end - t->begin;
    size_t size = vikt__dtype_size(t->dtype);
    uint32_t crc = 0;
    if (left > SIZE_MAX) return bad(st, "tensor " Q ": too large for this host", QARG(t->name));
    if (dst && t->dtype == VIKT__DT_F32 && host_is_le()) { /* the bytes are the floats */
        int rc = vikt__file_read(st->f, off, dst, (size_t)left);
        return rc ? rc : check_crc(st, t, vikt__crc32c(0, dst, (size_t)left));
    }
    for (size_t done = 0; left > 0;) {
        size_t n = left < VIKT__IO_CHUNK ? (size_t)left : VIKT__IO_CHUNK;
        int rc = vikt__file_read(st->f, off, chunk, n);
        if (rc) return rc;
        crc = vikt__crc32c(crc, chunk, n);
        if (dst) dtypes[t->dtype].to_f32(chunk, n / size, dst + done);
        done += n / size, off += n, left -= n;
    }
    return check_crc(st, t, crc);
}
