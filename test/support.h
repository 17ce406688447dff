/* Shared test helpers: an allocator that routes through cmocka's test_malloc
 * (so every test is a leak check), counts calls and can fail the Nth one;
 * and a finite-difference gradient checker. */
#ifndef VIKT_TEST_SUPPORT_H
#define VIKT_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vikt.h"

/* Counters of the test allocator. */
typedef struct vt_alloc_stats {
    int64_t calls;     /* alloc calls, failed ones included */
    int64_t frees;     /* free calls */
    int64_t live;      /* blocks not yet freed */
    int64_t fail_at;   /* the alloc call number (1-based) that fails; 0 = none */
    int64_t fail_from; /* when set, every call from this number on fails */
} vt_alloc_stats;

extern vt_alloc_stats vt_stats;

/* The allocator hooks over test_malloc; reset counters with vt_alloc_reset. */
extern const vikt_allocator vt_allocator;
void vt_alloc_reset(void);

/* A model on the test allocator; fails the test if creation fails. */
vikt_model *vt_model(uint64_t seed);

/* Assert that the model holds err and that its message contains every
 * non-NULL needle; then clear the error. */
void vt_expect_error(vikt_model *m, int err, const char *needle1, const char *needle2);

/* Deterministic values in [lo, hi] from a seed, for test data. */
void vt_fill(float *x, int64_t n, uint32_t seed, float lo, float hi);
/* Like vt_fill but keeps |x| >= margin (away from kinks at 0). */
void vt_fill_away_from_zero(float *x, int64_t n, uint32_t seed, float lo, float hi, float margin);

/* ------------------------------------------------------ gradient checking */

#define VT_MAX_INPUTS 8

/* Builds the op under test from the inputs; returns its output. */
typedef vikt_tensor *(*vt_build_fn)(vikt_model *m, vikt_tensor *const *in, void *ctx);

typedef struct vt_grad_input {
    int rank;
    int64_t shape[4];
    const float *data;   /* numel values */
    int requires_grad;   /* 0 for inputs held constant (targets, masks) */
    const char *param;   /* non-NULL: create it as the parameter of this name
                            (so a layer finds it) instead of a plain tensor */
} vt_grad_input;

/* Central differences in float64 (with Richardson extrapolation) against the
 * analytic float32 gradient of L = Σ out ⊙ R for a fixed R. Fails the test
 * where |a - n| > atol + rtol·|n|. The model is reseeded before every
 * evaluation so seeded ops (dropout) see the same draws. */
void vt_gradcheck(const char *what, int n, const vt_grad_input *inputs, vt_build_fn build,
                  void *ctx, double atol, double rtol);

/* ------------------------------------------------------------------ files */

/* A fresh directory $TMPDIR/vikt-TAG-XXXXXX (or under /tmp); malloc'd, fails
 * the test when it cannot be made. */
char *vt_tmpdir(const char *tag);
/* Removes the files in `dir`, then `dir` itself, and frees the string. */
void vt_rmdir(char *dir);
/* "dir/name", malloc'd. */
char *vt_join(const char *dir, const char *name);
/* Entries of `dir` (not . and ..) whose names contain `containing` ("" for all). */
int vt_count_entries(const char *dir, const char *containing);
/* The whole file, malloc'd with a NUL after the *n bytes; fails the test
 * when the file cannot be read. */
unsigned char *vt_read_file(const char *path, size_t *n);
/* Writes n bytes to path (replacing it); fails the test on a short write. */
void vt_write_file(const char *path, const void *bytes, size_t n);

#endif
