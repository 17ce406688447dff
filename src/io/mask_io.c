/* Pruning masks in files: metadata "vikt.mask.<name>" holding the mask as a
 * bitmap (value i in bit i % 8 of byte i / 8, 1 kept) in padded base64.
 * Metadata rather than more tensors, so a saved pruned model still loads
 * into its torch module with a strict load_state_dict, and a mask costs one
 * bit and a third per value instead of a float.
 *
 * The text is read strictly: only the canonical encoding of a bitmap of the
 * tensor's size is accepted (exact length, padding only at the end, unused
 * bits zero), so a mask and its text correspond one to one. */
#include "io.h"

#include <string.h>

#define KEY_LEN (sizeof VIKT__MASK_KEY - 1)

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static uint64_t bitmap_bytes(int64_t numel) { return ((uint64_t)numel + 7) / 8; }
static uint64_t text_length(int64_t numel) { return 4 * ((bitmap_bytes(numel) + 2) / 3); }

/* Byte j of the bitmap of a mask. */
static unsigned bitmap_byte(const uint8_t *mask, int64_t numel, uint64_t j) {
    unsigned byte = 0;
    for (int k = 0; k < 8 && (int64_t)(8 * j) + k < numel; k++)
        byte |= (unsigned)(mask[8 * j + (uint64_t)k] != 0) << k;
    return byte;
}

/* text_length(numel) characters and a NUL. */
static void encode(const uint8_t *mask, int64_t numel, char *out) {
    uint64_t n = bitmap_bytes(numel);
    for (uint64_t j = 0; j < n; j += 3) {
        uint32_t acc = 0;
        for (uint64_t b = 0; b < 3; b++)
            acc = acc << 8 | (j + b < n ? bitmap_byte(mask, numel, j + b) : 0u);
        uint64_t chars = j + 3 <= n ? 4 : n - j + 1;
        for (uint64_t c = 0; c < 4; c++)
            *out++ = c < chars ? B64[(acc >> (18 - 6 * c)) & 63u] : '=';
    }
    *out = '\0';
}

/* Store bitmap byte j into mask (when not NULL); 0 if it sets a bit past
 * the end of the mask. */
static int put_byte(unsigned byte, uint64_t j, int64_t numel, uint8_t *mask) {
    for (int k = 0; k < 8; k++) {
        int64_t i = (int64_t)(8 * j) + k;
        unsigned bit = (byte >> k) & 1u;
        if (i >= numel) {
            if (bit) return 0;
        } else if (mask) {
            mask[i] = (uint8_t)bit;
        }
    }
    return 1;
}

/* Decode the mask of numel values (or only check the text when mask is
 * NULL); 0 when the text is not the canonical encoding. */
static int decode(const char *text, int64_t numel, uint8_t *mask) {
    uint64_t n = bitmap_bytes(numel), len = strlen(text);
    if (len != text_length(numel)) return 0;
    uint64_t pad = 3 * (len / 4) - n; /* 0, 1 or 2 trailing '=' */
    for (uint64_t g = 0; g < len; g += 4) {
        uint32_t acc = 0;
        for (uint64_t c = g; c < g + 4; c++) {
            int v = c >= len - pad ? (text[c] == '=' ? 0 : -1) : b64_value(text[c]);
            if (v < 0) return 0;
            acc = acc << 6 | (uint32_t)v;
        }
        for (uint64_t b = 0; b < 3; b++) {
            unsigned byte = (acc >> (16 - 8 * b)) & 0xffu;
            uint64_t j = g / 4 * 3 + b;
            if (j < n ? !put_byte(byte, j, numel, mask) : byte != 0) return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ save */

int vikt__mask_meta_make(vikt_model *m, const char *op, vikt__mask_meta *mm) {
    memset(mm, 0, sizeof *mm);
    size_t text = 0;
    for (int64_t k = 0; k < m->nparams; k++) {
        const vikt_tensor *t = m->params[k];
        if (!t->mask) continue;
        mm->n++;
        text += KEY_LEN + strlen(t->name) + 1 + (size_t)text_length(t->numel) + 1;
    }
    if (!mm->n) return VIKT_OK;
    mm->pairs = vikt__alloc(m, (size_t)mm->n * 2 * sizeof *mm->pairs);
    mm->text = mm->pairs ? vikt__alloc(m, text) : NULL;
    if (!mm->text) {
        vikt__mask_meta_free(m, mm);
        return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory for the pruning masks", op);
    }
    mm->text_size = text;
    char *at = mm->text;
    int64_t i = 0;
    for (int64_t k = 0; k < m->nparams; k++) {
        const vikt_tensor *t = m->params[k];
        if (!t->mask) continue;
        size_t name = strlen(t->name);
        mm->pairs[2 * i] = at;
        memcpy(at, VIKT__MASK_KEY, KEY_LEN);
        memcpy(at + KEY_LEN, t->name, name + 1);
        at += KEY_LEN + name + 1;
        mm->pairs[2 * i + 1] = at;
        encode(t->mask, t->numel, at);
        at += text_length(t->numel) + 1;
        i++;
    }
    return VIKT_OK;
}

void vikt__mask_meta_free(vikt_model *m, vikt__mask_meta *mm) {
    vikt__free(m, mm->pairs, (size_t)mm->n * 2 * sizeof *mm->pairs);
    vikt__free(m, mm->text, mm->text_size);
    memset(mm, 0, sizeof *mm);
}

/* ------------------------------------------------------------------ load */

struct vikt__mask_pending {
    const char *name; /* the file's tensor name (borrowed from the file) */
    uint8_t *mask;    /* decoded; NULL once installed */
    int64_t numel;
};

/* The file tensor a mask entry names, checked; VIKT_OK or the error. */
static int mask_target(vikt_model *m, vikt__st *st, const char *op, const char *key,
                       const char *value, vikt__st_tensor *f) {
    const char *path = st->f->path;
    const char *name = key + KEY_LEN;
    if (!vikt__st_find(st, name, f))
        return vikt__io_fail(m, VIKT_ERR_FORMAT, op, path, "metadata '%s%s' names no tensor",
                             vikt__clip_prefix(key, 64), vikt__clip_tail(key, 64));
    /* Only parameters have masks; a tensor of another kind (a buffer, a
     * checkpoint's optimizer state) has no model parameter behind it. */
    int param = !f->kind || strcmp(f->kind, "parameter") == 0;
    const vikt_tensor *into = param ? vikt__st_slot(st, f) : NULL;
    if (!param || (into && into->storage != VIKT__PARAM))
        return vikt__io_fail(m, VIKT_ERR_FORMAT, op, path, "metadata '%s%s': only a parameter has a mask",
                             vikt__clip_prefix(key, 64), vikt__clip_tail(key, 64));
    if (!decode(value, f->numel, NULL))
        return vikt__io_fail(m, VIKT_ERR_FORMAT, op, path,
                             "metadata '%s%s' is not the base64 bitmap of %lld values",
                             vikt__clip_prefix(key, 64), vikt__clip_tail(key, 64),
                             (long long)f->numel);
    return VIKT_OK;
}

/* Metadata entry i as key and value; whether it is a mask entry. */
static int mask_entry(const vikt__st *st, int64_t i, const char **key, const char **value) {
    vikt__st_meta_at(st, i, key, value);
    return strncmp(*key, VIKT__MASK_KEY, KEY_LEN) == 0;
}

int vikt__mask_load_prepare(vikt_model *m, vikt__st *st, const char *op, vikt__st_pred wanted,
                            vikt__mask_load *ml) {
    memset(ml, 0, sizeof *ml);
    int64_t count = 0;
    for (int64_t i = 0; i < st->nmeta; i++) {
        const char *key, *value;
        vikt__st_tensor f;
        if (!mask_entry(st, i, &key, &value)) continue;
        int rc = mask_target(m, st, op, key, value, &f);
        if (rc) return rc;
        count += wanted(st, &f);
    }
    if (!count) return VIKT_OK;
    ml->p = vikt__alloc(m, (size_t)count * sizeof *ml->p);
    if (!ml->p) return vikt__io_fail(m, VIKT_ERR_NOMEM, op, st->f->path, "out of memory for masks");
    memset(ml->p, 0, (size_t)count * sizeof *ml->p);
    ml->n = count;
    int64_t j = 0;
    for (int64_t i = 0; i < st->nmeta; i++) {
        const char *key, *value;
        vikt__st_tensor f;
        if (!mask_entry(st, i, &key, &value)) continue;
        vikt__st_find(st, key + KEY_LEN, &f);
        if (!wanted(st, &f)) continue;
        struct vikt__mask_pending *p = &ml->p[j++];
        p->name = f.name;
        p->numel = f.numel;
        p->mask = vikt__alloc(m, (size_t)f.numel);
        if (!p->mask) {
            vikt__mask_load_free(m, ml);
            return vikt__io_fail(m, VIKT_ERR_NOMEM, op, st->f->path, "out of memory for the mask of '%s%s'",
                                 vikt__clip_prefix(f.name, 64), vikt__clip_tail(f.name, 64));
        }
        decode(value, f.numel, p->mask);
    }
    return VIKT_OK;
}

void vikt__mask_load_commit(vikt__st *st, vikt__st_pred wanted, vikt__mask_load *ml) {
    for (int64_t i = 0; i < st->ntensors; i++) {
        vikt__st_tensor f;
        vikt__st_at(st, i, &f);
        vikt_tensor *t = wanted(st, &f) ? vikt__st_slot(st, &f) : NULL;
        if (!t || !t->mask) continue;
        vikt__free(t->model, t->mask, (size_t)t->numel);
        t->mask = NULL;
    }
    for (int64_t j = 0; j < ml->n; j++) {
        vikt__st_tensor f;
        vikt__st_find(st, ml->p[j].name, &f);
        vikt_tensor *t = vikt__st_slot(st, &f);
        t->mask = ml->p[j].mask;
        ml->p[j].mask = NULL;
        vikt__prune_apply_mask(t);
    }
}

void vikt__mask_load_free(vikt_model *m, vikt__mask_load *ml) {
    for (int64_t j = 0; j < ml->n; j++) vikt__free(m, ml->p[j].mask, (size_t)ml->p[j].numel);
    vikt__free(m, ml->p, (size_t)ml->n * sizeof *ml->p);
    memset(ml, 0, sizeof *ml);
}
