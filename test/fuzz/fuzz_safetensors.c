/* libFuzzer target: the safetensors reader, vikt_load_buffer, and the
 * checkpoint and LoRA adapter readers (through their in-memory entries, the
 * code path of vikt_checkpoint_load and vikt_lora_load) on any bytes.
 *
 *   make fuzz         builds build/fuzz/fuzz_safetensors (clang,
 *                     -fsanitize=fuzzer,address,undefined)
 *   make check-fuzz   runs it for FUZZ_TIME seconds (default 60) from the
 *                     seeds in test/fuzz/corpus and test/fixtures/safetensors
 *
 * test/fuzz/corpus holds the named seeds tools/gen_safetensors_fixtures.py
 * writes and, under SHA-1 names, the inputs libFuzzer found that reach code
 * or states the seeds do not (kept with -merge=1). test/test_fuzz_replay.c
 * includes this file and runs all of them and every fixture through it in
 * each normal test run; a crash the fuzzer finds becomes a fixture there.
 *
 * Besides what the sanitizers catch, each input must keep the reader's
 * promises, or the target aborts: the header allocation is at most the
 * input's size; a load into an existing model allocates at most the size
 * plus 128 KiB; no "internal error" (the in-place table outgrowing its
 * text); an accepted file's tensors tile the data section, are found by
 * name, read without error unless their CRC says they are corrupt; a
 * checkpoint or adapter load that fails leaves the model (values, generator)
 * and the optimizer as they were; nothing leaks. */
#include "../../src/io/io.h"
#include "../../src/optim/optim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ------------------------------------------- allocator counting bytes */

typedef struct fz_count {
    int64_t live, peak;
} fz_count;

static void *fz_alloc(void *ud, size_t size, size_t align) {
    fz_count *c = ud;
    unsigned char *raw = malloc(size + align + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t start = (uintptr_t)(raw + sizeof(void *));
    unsigned char *p = (unsigned char *)((start + align - 1) & ~(uintptr_t)(align - 1));
    memcpy(p - sizeof(void *), &raw, sizeof raw);
    if ((c->live += (int64_t)size) > c->peak) c->peak = c->live;
    return p;
}

static void fz_free(void *ud, void *p, size_t size) {
    fz_count *c = ud;
    void *raw;
    memcpy(&raw, (unsigned char *)p - sizeof(void *), sizeof raw);
    c->live -= (int64_t)size;
    free(raw);
}

static void must(int ok, const char *what, const vikt_model *m) {
    if (ok) return;
    fprintf(stderr, "fuzz_safetensors: broken promise: %s (%s)\n", what, m ? vikt_model_errmsg(m) : "");
    abort();
}

static void check_status(const vikt_model *m, int rc) {
    must(rc == VIKT_OK || rc == VIKT_ERR_FORMAT || rc == VIKT_ERR_NOMEM || rc == VIKT_ERR_SHAPE ||
             rc == VIKT_ERR_NOT_FOUND,
         "a documented status (a memory source never fails to read)", m);
    /* "op: <memory>: detail": only the detail of the table check starts with
     * these words (every other detail starts with fixed text, so input
     * cannot forge them there). */
    const char *detail = strstr(vikt_model_errmsg(m), ": <memory>: ");
    must(!detail || strncmp(detail + 12, "internal error", 14) != 0, "no internal error", m);
    must(rc == VIKT_OK || vikt_model_errmsg(m)[0], "a message with every error", m);
}

/* ------------------------------------------------ the reader's view */

static _Alignas(8) unsigned char chunk[VIKT__IO_CHUNK];

static void walk_tensors(vikt__st *st, vikt_model *m) {
    uint64_t expect = 0;
    for (int64_t i = 0; i < st->ntensors; i++) {
        vikt__st_tensor t, again;
        vikt__st_at(st, i, &t);
        must(t.begin == expect && t.begin <= t.end, "tensors tile the data in order", m);
        must(t.end - t.begin == (uint64_t)t.numel * vikt__dtype_size(t.dtype), "byte spans", m);
        must(t.name[0] && vikt__st_find(st, t.name, &again) && again.rec == t.rec, "found by name", m);
        expect = t.end;
        if (t.numel > (1 << 20)) continue; /* every dtype converts */
        float *dst = malloc((size_t)t.numel * sizeof(float) + 1);
        int rc = vikt__st_read_f32(st, &t, dst, chunk);
        must(rc == VIKT_OK || (t.has_crc && rc == VIKT_ERR_FORMAT), "readable unless corrupt", m);
        free(dst);
        vikt_model_clear_error(m);
    }
    must(expect == st->data_size, "the data section ends with the last tensor", m);
}

static void walk_meta(vikt__st *st, vikt_model *m) {
    for (int64_t i = 0; i < st->nmeta; i++) {
        const char *k, *v;
        vikt__st_meta_at(st, i, &k, &v);
        must(vikt__st_meta(st, k) == v, "metadata found by key", m);
    }
}

static void reader(const uint8_t *data, size_t size, fz_count *c, vikt_model *m) {
    vikt__file f;
    vikt__st st;
    vikt__file_memory(&f, m, "fuzz", data, size);
    int64_t before = c->live;
    c->peak = c->live;
    int rc = vikt__st_open(&st, &f);
    must(c->peak - before <= (int64_t)size, "the header block is at most the input", m);
    check_status(m, rc);
    if (rc == VIKT_OK) {
        must(st.data_start + st.data_size == size, "header and data cover the input", m);
        walk_tensors(&st, m);
        walk_meta(&st, m);
        vikt__st_close(&st);
    }
    must(c->live == before, "the reader frees what it allocates", m);
    vikt_model_clear_error(m);
}

/* ---------------------------------------------------------- the loader */

static void loader(const uint8_t *data, size_t size, fz_count *c) {
    vikt_allocator a = {fz_alloc, fz_free, c};
    vikt_model *m;
    if (vikt_model_create(&a, 1, &m) != VIKT_OK) return;
    reader(data, size, c, m);
    for (int mode = 0; mode < 2; mode++) { /* into an empty model: tensors are created */
        check_status(m, vikt_load_buffer(m, data, size, (vikt_load_mode)mode));
        vikt_model_clear_error(m);
    }
    vikt_model_destroy(m);

    /* Into a model with names the seeds use: nothing is created, so the
     * whole load is bounded by the input plus 128 KiB. */
    if (vikt_model_create(&a, 1, &m) != VIKT_OK) return;
    vikt_param(m, "t", 1, (int64_t[]){2}, VIKT_INIT_ZEROS);
    vikt_param(m, "w", 2, (int64_t[]){2, 3}, VIKT_INIT_ZEROS);
    vikt_buffer(m, "bn.running_mean", 1, (int64_t[]){1}, 0.0f);
    for (int mode = 0; mode < 2; mode++) {
        int64_t before = c->live;
        c->peak = c->live;
        check_status(m, vikt_load_buffer(m, data, size, (vikt_load_mode)mode));
        must(c->peak - before <= (int64_t)size + 128 * 1024 + 1024,
             "a load allocates at most the input plus 128 KiB", m);
        vikt_model_clear_error(m);
    }
    must(vikt_param_count(m) == 2 && vikt_buffer_count(m) == 1, "the model is never extended", m);
    vikt_model_destroy(m);
}

/* ------------------------------------------- checkpoints and adapters */

/* What a failed load must leave as it was: the model's values and
 * generator, and the optimizer's counters and hyperparameters. */
static uint32_t fingerprint(vikt_model *m, vikt_optimizer *opt) {
    uint32_t h = vikt__crc32c(0, &m->rng, sizeof m->rng);
    for (int64_t i = 0; i < m->nparams; i++)
        h = vikt__crc32c(h, m->params[i]->data, (size_t)m->params[i]->numel * sizeof(float));
    for (int64_t i = 0; i < m->nbuffers; i++)
        h = vikt__crc32c(h, m->buffers[i]->data, (size_t)m->buffers[i]->numel * sizeof(float));
    if (opt) {
        h = vikt__crc32c(h, opt->hp, sizeof opt->hp);
        int64_t counts[3] = {opt->steps, opt->skipped, opt->nslots};
        h = vikt__crc32c(h, counts, sizeof counts);
        h = vikt__crc32c(h, &opt->slots, sizeof opt->slots);
    }
    return h;
}

/* The checkpoint reader (vikt.checkpoint.*, vikt.optimizer.*, vikt.rng.*)
 * with an Adam optimizer and without one, into the model the
 * checkpoint_adam seed was written for. */
static int checkpoint(const uint8_t *data, size_t size, fz_count *c) {
    vikt_allocator a = {fz_alloc, fz_free, c};
    vikt_model *m;
    int rc = VIKT_ERR_NOMEM;
    if (vikt_model_create(&a, 1, &m) != VIKT_OK) return rc;
    vikt_optimizer *opt = NULL;
    if (!vikt_param(m, "t", 1, (int64_t[]){2}, VIKT_INIT_ZEROS) ||
        !vikt_param(m, "w", 2, (int64_t[]){2, 3}, VIKT_INIT_ZEROS) ||
        !vikt_buffer(m, "bn.running_mean", 1, (int64_t[]){1}, 0.0f) ||
        vikt_adam_create(m, 1e-3f, &opt) != VIKT_OK) {
        vikt_model_destroy(m);
        return rc;
    }
    for (int with_opt = 0; with_opt < 2; with_opt++) {
        vikt_optimizer *o = with_opt ? opt : NULL;
        uint32_t before = fingerprint(m, opt);
        rc = vikt__checkpoint_load_from(m, o, NULL, data, size);
        must(rc == VIKT_OK || rc == VIKT_ERR_FORMAT || rc == VIKT_ERR_NOMEM || rc == VIKT_ERR_SHAPE ||
                 rc == VIKT_ERR_NOT_FOUND || rc == VIKT_ERR_ARG,
             "a documented checkpoint status", m);
        must(rc == VIKT_OK || vikt_model_errmsg(m)[0], "a message with every error", m);
        must(rc == VIKT_OK || fingerprint(m, opt) == before, "a failed checkpoint load changes nothing", m);
        vikt_model_clear_error(m);
    }
    must(vikt_param_count(m) == 2 && vikt_buffer_count(m) == 1, "the model is never extended", m);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    return rc; /* of the load with the optimizer */
}

/* The adapter reader (vikt.lora.*) onto a model with the dense layer "fc"
 * the lora seeds were written for, and "fc2" that has LoRA of rank 1. */
static int64_t adapters(const uint8_t *data, size_t size, fz_count *c) {
    vikt_allocator a = {fz_alloc, fz_free, c};
    vikt_model *m;
    if (vikt_model_create(&a, 1, &m) != VIKT_OK) return VIKT_ERR_NOMEM;
    vikt_step_begin(m);
    vikt_tensor *x = vikt_input(m, 2, (int64_t[]){1, 3}, (const float[]){1, 2, 3});
    if (!vikt_dense(m, "fc2", vikt_dense(m, "fc", x, 2), 2) ||
        vikt_lora_attach(m, "fc2", 1, 1.0f, 0.0f) != 1) {
        vikt_model_destroy(m);
        return VIKT_ERR_NOMEM;
    }
    int64_t nparams = vikt_param_count(m);
    uint32_t before = fingerprint(m, NULL);
    int64_t rc = vikt__lora_load_from(m, NULL, data, size);
    must(rc >= 1 || rc == VIKT_ERR_FORMAT || rc == VIKT_ERR_NOMEM || rc == VIKT_ERR_SHAPE ||
             rc == VIKT_ERR_NOT_FOUND,
         "a documented adapter status", m);
    must(rc >= 1 || vikt_model_errmsg(m)[0], "a message with every error", m);
    must(rc >= 1 || (vikt_param_count(m) == nparams && fingerprint(m, NULL) == before),
         "a failed adapter load changes nothing", m);
    must(rc < 1 || rc <= 2, "at most the two layers", m);
    vikt_model_destroy(m);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_count c = {0, 0};
    loader(data, size, &c);
    checkpoint(data, size, &c);
    adapters(data, size, &c);
    must(c.live == 0, "no leak", NULL);
    return 0;
}
