/* Private structures and vikt__ functions shared between the library's files.
 * Nothing here is installed; every symbol is hidden and localized in the
 * archive. */
#ifndef VIKT_INTERNAL_H
#define VIKT_INTERNAL_H

#include "vikt.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#define VIKT__ALIGN 64
#define VIKT__ERRMSG_MAX 256

/* ------------------------------------------------------------- allocation */

void vikt__default_allocator(vikt_allocator *a); /* aligned malloc/free */
void *vikt__alloc(vikt_model *m, size_t size);
void vikt__free(vikt_model *m, void *p, size_t size);

/* A bump allocator over a list of chunks. Rewinding keeps the chunks, so a
 * step that needs no more than an earlier one allocates nothing. */
typedef struct vikt__chunk {
    struct vikt__chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
} vikt__chunk;

typedef struct vikt__arena {
    vikt__chunk *head;    /* first chunk */
    vikt__chunk *current; /* chunk being filled */
} vikt__arena;

void *vikt__arena_alloc(vikt_model *m, size_t size);
void vikt__arena_rewind(vikt__arena *a);
void vikt__arena_release(vikt_model *m, vikt__arena *a);

/* ------------------------------------------------------------------- rng */

/* PCG32 (O'Neill 2014, pcg-random.org): 64-bit LCG state, XSH-RR output. */
typedef struct vikt__rng {
    uint64_t state;
    uint64_t inc;
} vikt__rng;

void vikt__rng_seed(vikt__rng *r, uint64_t seed);
uint32_t vikt__rng_u32(vikt__rng *r);
float vikt__rng_uniform(vikt__rng *r); /* [0, 1) with 24 bits */
float vikt__rng_normal(vikt__rng *r);  /* N(0, 1) */
uint64_t vikt__rng_below(vikt__rng *r, uint64_t bound); /* uniform in [0, bound), bound >= 1 */

/* ---------------------------------------------------------------- tensors */

enum vikt__storage {
    VIKT__STEP = 0,       /* arena: until the next vikt_step_begin */
    VIKT__PERSISTENT = 1, /* allocator: vikt_tensor_create */
    VIKT__PARAM = 2,      /* allocator, named, in the model's parameter list */
    VIKT__BUFFER = 3      /* allocator, named, in the buffer list (not trained) */
};

typedef struct vikt__record vikt__record;

struct vikt_tensor {
    vikt_model *model;
    float *data;
    float *grad; /* NULL until needed for step tensors */
    int64_t shape[VIKT_MAX_RANK];
    int64_t numel;
    int rank;
    int storage;       /* enum vikt__storage */
    int requires_grad;
    vikt__record *producer; /* the tape record that made it, or NULL (leaf) */
    const char *op_name;    /* the op that computed it, recorded or not; NULL if none */
    char *name;        /* parameters only */
    /* Parameters only: numel bytes, 1 kept, 0 pruned; NULL unless pruned
     * (src/prune.c). Optimizer steps and loads keep masked values at 0. */
    uint8_t *mask;
    /* Persistent tensors are on the model's list so destroy can free them. */
    vikt_tensor *owned_prev, *owned_next;
};

/* ------------------------------------------------------------ ops & tape */

/* Arguments an op keeps for its backward pass. */
typedef struct vikt__args {
    int64_t i[4];
    float f[2];
    void *saved; /* arena memory the forward pass leaves for backward */
} vikt__args;

/* One op: its name for messages, a shape check that also computes the output
 * shape, the forward computation and the gradient. */
typedef struct vikt__op {
    const char *name;
    /* Fill out_shape/out_rank or record an error and return it. */
    int (*shape)(vikt_model *m, const struct vikt__op *op, vikt_tensor *const *in,
                 int n, vikt__args *args, int64_t *out_shape, int *out_rank);
    /* Compute out from in; may fill args->saved (arena). */
    int (*forward)(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                   vikt_tensor *out);
    /* Add the input gradients given out->grad. vikt__grad() gives a buffer
     * for an input that requires a gradient, NULL otherwise. */
    int (*backward)(vikt_model *m, vikt_tensor *const *in, int n,
                    const vikt__args *args, vikt_tensor *out);
    /* Non-zero when infinities in the output are the op's contract (the
     * causal mask's -inf), not an overflow: anomaly mode lets them pass. */
    int makes_infinities;
} vikt__op;

struct vikt__record {
    const vikt__op *op;
    vikt_tensor *out;
    vikt__record *prev;
    int n;
    vikt_tensor **in; /* n inputs, in the arena */
    vikt__args args;
};

/* Run an op: validate, allocate the output, forward, record on the tape. */
vikt_tensor *vikt__apply(vikt_model *m, const vikt__op *op, vikt_tensor *const *in,
                         int n, const vikt__args *args);

/* The gradient buffer of t during backward, allocated and zeroed on first use;
 * NULL if t does not require a gradient or memory ran out (error recorded). */
float *vikt__grad(vikt_tensor *t);

/* A zero-filled persistent tensor on the model's list, or NULL; and its
 * release (unlinks and frees data, gradient, name and struct). */
vikt_tensor *vikt__persistent_tensor(vikt_model *m, const char *opname, int rank,
                                     const int64_t *shape, int requires_grad);
void vikt__tensor_release(vikt_tensor *t);

/* A step tensor of the given shape (data uninitialized), or NULL. */
vikt_tensor *vikt__step_tensor(vikt_model *m, const char *opname, int rank,
                               const int64_t *shape);

/* --------------------------------------------------------------- model */

struct vikt_model {
    vikt_allocator allocator;
    vikt__rng rng;
    vikt__arena arena;
    vikt__record *tape; /* newest record */
    vikt_tensor *owned; /* every persistent tensor, parameters included */
    vikt_tensor **params; /* parameters in creation order */
    int64_t nparams;
    int64_t params_cap;
    vikt_tensor **buffers; /* buffers (running statistics …) in creation order */
    int64_t nbuffers;
    int64_t buffers_cap;
    int grad_enabled;
    int training;
    int errcode;
    char errmsg[VIKT__ERRMSG_MAX];
    /* Threads and GEMM packing buffers (src/pool.c, src/kernels/dispatch.c):
     * pool is NULL while nthreads <= 1; gemm_ws is made on first use. */
    struct vikt__pool *pool;
    int nthreads;
    struct vikt__gemm_ws *gemm_ws;
    /* Files (src/io/): the last load's report and the tests' fault hook;
     * NULL until a save or load needs it. */
    struct vikt__io_state *io;
    /* LoRA and bottleneck adapters (src/layers/lora.c); NULL until attached. */
    struct vikt__peft *peft;
    /* vikt_set_anomaly_mode: ops and backward check for NaN/Inf (src/tape.c). */
    int anomaly;
};

/* Free the model's file state (src/io/file.c). */
void vikt__io_release(vikt_model *m);

/* Record err (if none is held) with a printf-style message; returns err. */
int vikt__fail(vikt_model *m, int err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* "32x784": a tensor's shape for messages; buf needs VIKT__SHAPE_STR bytes. */
#define VIKT__SHAPE_STR 96
const char *vikt__shape_str(const vikt_tensor *t, char *buf);
const char *vikt__dims_str(int rank, const int64_t *shape, char *buf);

/* Validate rank/shape from a caller and compute the element count. */
int vikt__check_shape(vikt_model *m, const char *opname, int rank,
                      const int64_t *shape, int64_t *numel);

int vikt__same_shape(const vikt_tensor *a, const vikt_tensor *b);
int vikt__norm_axis(int axis, int rank); /* -1 if out of range */

/* A tensor seen as [outer, shape[axis], inner] around one axis. */
int64_t vikt__outer_size(const vikt_tensor *t, int axis);
int64_t vikt__inner_size(const vikt_tensor *t, int axis);

/* The index of the first NaN or infinity in x, or -1 (src/stats.c). */
int64_t vikt__first_nonfinite(const float *x, int64_t n);

/* "NaN", "-inf" or "%g" of a value, for messages (NaN's sign is dropped:
 * glibc prints "-nan" for the NaN that x86 arithmetic makes). */
#define VIKT__VALUE_STR 32
const char *vikt__value_str(float v, char *buf);

/* "flat index 5 [1, 2]": where in t an element is, for messages; buf needs
 * VIKT__WHERE_STR bytes. */
#define VIKT__WHERE_STR 128
const char *vikt__where_str(const vikt_tensor *t, int64_t index, char *buf);

/* dst[i] += src[i] where the two never overlap (a gradient and scratch or
 * another gradient). Four independent lanes keep the loop free of a
 * store-to-load chain and let the compiler vectorize it (col2im, the
 * stride-1 case, was 14 % of the CNN bench step before). */
static inline void vikt__add_into(float *restrict dst, const float *restrict src, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float a = dst[i] + src[i], b = dst[i + 1] + src[i + 1];
        float c = dst[i + 2] + src[i + 2], d = dst[i + 3] + src[i + 3];
        dst[i] = a, dst[i + 1] = b, dst[i + 2] = c, dst[i + 3] = d;
    }
    for (; i < n; i++) dst[i] += src[i];
}

/* 1 / (1 + e^-x) without overflow for large |x|. */
static inline float vikt__sigmoid(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* tanh within 3 ulp of the exact value, about 3x faster than glibc's tanhf
 * (which goes through expm1f and took a third of an LSTM step's time):
 * an odd Taylor polynomial to x⁹ below 0.25 (next term < 1e-8 relative),
 * (1 − e^−2a)/(1 + e^−2a) above, where 1 − e^−2a loses nothing (Sterbenz).
 * NaN gives NaN, ±Inf gives ±1. */
static inline float vikt__tanh(float x) {
    float a = fabsf(x), r;
    if (a < 0.25f) {
        float s = a * a;
        r = a + a * s * (-1.0f / 3 + s * (2.0f / 15 + s * (-17.0f / 315 + s * (62.0f / 2835))));
    } else {
        float t = expf(-2.0f * a);
        r = (1.0f - t) / (1.0f + t);
    }
    return copysignf(r, x);
}

/* A module-path match (src/param.c): name equals pattern, or begins with it
 * followed by '.' (or pattern ends in '.'); "" matches every name. */
int vikt__name_matches(const char *name, const char *pattern);

/* Text appended like snprintf (src/param.c): len counts every byte asked
 * for, what did not fit in buf[size] included. */
typedef struct vikt__text {
    char *buf;
    size_t size;
    int64_t len;
} vikt__text;

void vikt__emit(vikt__text *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------- pruning */

/* Hooks of vikt_optimizer_step (src/prune.c): zero the gradients, then the
 * values, of every parameter's masked entries. Allocate nothing. */
void vikt__prune_mask_grads(vikt_model *m);
void vikt__prune_mask_weights(vikt_model *m);
/* Set a parameter's masked values to 0. */
void vikt__prune_apply_mask(vikt_tensor *t);

/* ----------------------------------------------------------------- layers */

#define VIKT__NAME_MAX 256

/* How a layer fills a parameter it creates. */
typedef enum vikt__fill {
    VIKT__FILL_CONST = 0,   /* every element = a */
    VIKT__FILL_UNIFORM = 1, /* U(-a, a) */
    VIKT__FILL_NORMAL = 2   /* N(0, a²) */
} vikt__fill;

/* The parameter "<layer>.<suffix>": found, or created and filled. A layer's
 * call site names the op for messages. NULL with the error recorded. */
vikt_tensor *vikt__layer_param(vikt_model *m, const char *opname, const char *layer,
                               const char *suffix, int rank, const int64_t *shape,
                               vikt__fill fill, float a);

/* "<layer>.<suffix>" into buf (VIKT__NAME_MAX bytes); VIKT_ERR_ARG if too long. */
int vikt__sub_name(vikt_model *m, const char *opname, const char *layer, const char *suffix,
                   char *buf);

/* A layer's name argument must be a non-empty string. */
int vikt__check_layer(vikt_model *m, const char *opname, const char *name, vikt_tensor *x);
/* vikt__check_layer, and x must be a sequence [N, T, D] with D >= 1. */
int vikt__check_sequence_layer(vikt_model *m, const char *opname, const char *name,
                               vikt_tensor *x);

/* Ops behind the convolution, normalization and embedding layers (their
 * parameters passed in; errors name the public layer). */
vikt_tensor *vikt__conv2d(vikt_model *m, vikt_tensor *x, vikt_tensor *w, vikt_tensor *b,
                          int64_t stride, int64_t padding, int64_t dilation); /* b may be NULL */
vikt_tensor *vikt__layer_norm(vikt_model *m, vikt_tensor *x, vikt_tensor *weight,
                              vikt_tensor *bias, float eps);
vikt_tensor *vikt__batch_norm(vikt_model *m, vikt_tensor *x, vikt_tensor *weight,
                              vikt_tensor *bias, vikt_tensor *running_mean,
                              vikt_tensor *running_var, int training, float momentum, float eps);
/* y = x·Wᵀ + b for x [..., in] of rank 1 to 3 (src/ops/linear.c). */
vikt_tensor *vikt__linear(vikt_model *m, vikt_tensor *x, vikt_tensor *w, vikt_tensor *b);
/* softmax(Q_h·K_hᵀ/√dh [causal])·V_h per head h of q, k, v [N, T, D], heads
 * merged back into [N, T, D] (src/ops/attention.c); the caller checked that
 * heads divides D. */
vikt_tensor *vikt__attention_core(vikt_model *m, vikt_tensor *q, vikt_tensor *k, vikt_tensor *v,
                                  int64_t heads, int causal);
vikt_tensor *vikt__embedding(vikt_model *m, vikt_tensor *weight, const int32_t *ids, int rank,
                             const int64_t *shape);

/* --------------------------------------------------------------- adapters */

/* A LoRA adapter on the dense layer `layer`: y += (alpha/rank)·dropout(x)·Aᵀ·Bᵀ
 * with A = "<layer>.lora_A.weight" [rank, in] and B = "<layer>.lora_B.weight"
 * [out, rank]; while merged, W holds W + (alpha/rank)·B·A and the forward
 * skips the adapter. */
typedef struct vikt__lora {
    char layer[VIKT__NAME_MAX];
    int64_t rank;
    float alpha, dropout;
    int merged;
    vikt_tensor *w, *a, *b; /* parameters: they live as long as the model */
} vikt__lora;

/* The model's adapters (src/layers/lora.c). */
typedef struct vikt__peft {
    vikt__lora *lora;
    int64_t nlora, lora_cap;
    struct vikt__bottleneck *adapters;
    int64_t nadapters, adapters_cap;
} vikt__peft;

/* vikt_dense's hook: y plus whatever adapters the layer `name` has (x is the
 * layer's input of rank 1 to 3, y its output); y itself when it has none. */
vikt_tensor *vikt__peft_dense(vikt_model *m, const char *name, vikt_tensor *x, vikt_tensor *y);
/* The weight of the dense layer `layer` ("<layer>.weight" [out, in] with a
 * bias [out], not an adapter's own projection), or NULL. */
vikt_tensor *vikt__dense_weight(vikt_model *m, const char *layer);
/* The LoRA adapter of layer, or NULL. */
vikt__lora *vikt__lora_find(vikt_model *m, const char *layer);
/* Attach LoRA to one dense layer whose weight is w (creating A and B, or
 * using existing parameters of those names and shapes) without freezing
 * anything; NULL with the error recorded. */
vikt__lora *vikt__lora_add(vikt_model *m, const char *op, const char *layer, vikt_tensor *w,
                           int64_t rank, float alpha, float dropout);
/* Undo adds: drop the LoRA entries from index nlora on and release the
 * parameters created from index nparams on (both appended in order). */
void vikt__peft_rollback(vikt_model *m, int64_t nlora, int64_t nparams);
/* Freeze every parameter except the adapters' (PEFT's default). */
void vikt__peft_freeze_base(vikt_model *m);
void vikt__peft_release(vikt_model *m);

/* ------------------------------------------------------------------ data */

/* Samples shared by a dataset and the datasets split from it; freed when
 * the last one is destroyed. Owned stores (loaders) hold model memory;
 * borrowed ones point at the caller's arrays. */
typedef struct vikt__samples {
    int refs;
    int owned;
    int64_t rows;          /* samples stored */
    int64_t sample_numel;  /* floats per sample */
    int64_t target_width;  /* floats per target row, 0 without targets */
    float *features;       /* rows x sample_numel */
    int32_t *labels;       /* rows, or NULL */
    float *targets;        /* rows x target_width, or NULL */
} vikt__samples;

struct vikt_dataset {
    vikt_model *model;
    vikt__samples *samples;
    int64_t n;             /* length of the order */
    int64_t *order;        /* n row indices into samples */
    int rank;              /* of one sample, 1..3 */
    int64_t shape[3];
    int64_t sample_numel;
    int64_t target_width;  /* 0 unless float targets */
    int64_t classes;       /* 0 unless labels */
};

/* A dataset over samples (taking a reference) with the order 0..n-1;
 * NULL with VIKT_ERR_NOMEM recorded. */
vikt_dataset *vikt__dataset_new(vikt_model *m, const char *opname, vikt__samples *s, int rank,
                                const int64_t *shape, int64_t target_width, int64_t classes);
/* Owned samples with room for rows (labels when with_labels); NULL with
 * VIKT_ERR_NOMEM recorded. */
vikt__samples *vikt__samples_alloc(vikt_model *m, const char *opname, int64_t rows,
                                   int64_t sample_numel, int with_labels);
void vikt__samples_release(vikt_model *m, vikt__samples *s);
/* Open a regular file for reading and take its size; VIKT_ERR_IO recorded
 * naming opname and path otherwise. */
int vikt__data_open(vikt_model *m, const char *opname, const char *path, FILE **f,
                    uint64_t *size);

/* ------------------------------------------------------------------ gemm */

/* C = alpha·op(A)·op(B) + beta·C, row-major; op(A) is MxK, op(B) is KxN.
 * beta = 0 ignores C's old contents (NaN included); alpha = 0 reads neither A
 * nor B (the BLAS contract). Runs the kernel dispatch.c chose on the model's
 * threads; returns VIKT_OK, or VIKT_ERR_NOMEM (recorded naming opname and
 * the product, C unchanged) when a packing buffer cannot be allocated. */
int vikt__gemm(vikt_model *m, const char *opname, int trans_a, int trans_b, int64_t M,
               int64_t N, int64_t K,
               float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
               float beta, float *C, int64_t ldc);
/* For ops that run their own tasks on the model's threads (vikt__pool_run):
 * vikt__gemm_reserve, on the model's thread before the tasks start, makes
 * the packing buffers of threads 0..threads-1 fit an op(A)·op(B) of this
 * shape (VIKT_OK, or VIKT_ERR_NOMEM recorded naming opname); then
 * vikt__gemm_on computes one product of a reserved shape whole on task
 * t with thread t's buffer. It never fails and, the product being computed
 * by the same kernel as vikt__gemm would, gives the same bits. */
int vikt__gemm_reserve(vikt_model *m, const char *opname, int threads, int trans_a, int trans_b,
                       int64_t M, int64_t N, int64_t K);
void vikt__gemm_on(vikt_model *m, int t, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                   float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                   float beta, float *C, int64_t ldc);
/* Free the model's packing buffers (they are made again on next use). */
void vikt__gemm_release(vikt_model *m);
void vikt__gemm_scalar(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, const float *B,
                       int64_t ldb, float beta, float *C, int64_t ldc);

/* --------------------------------------------------------------- threads */

#define VIKT__MAX_THREADS 64

/* A task of a parallel call: index runs over 0..ntasks-1. */
typedef void (*vikt__task_fn)(void *arg, int index);
typedef struct vikt__pool vikt__pool;

/* Run fn(arg, i) for every i < ntasks (at most the pool's thread count; all
 * on the caller when pool is NULL), index 0 on the calling thread; returns
 * when all are done. */
void vikt__pool_run(vikt__pool *pool, int ntasks, vikt__task_fn fn, void *arg);
void vikt__pool_destroy(vikt_model *m, vikt__pool *pool);

#endif
