/* Small helpers the examples share, so that each example shows what it is
 * about and not the same option parsing and error reporting again. Not part
 * of the library: copy what you need. An example defines EXAMPLE_NAME (the
 * prefix of its messages) before it includes this file:
 *
 *   #define EXAMPLE_NAME "prune_digits"
 *   #include "example_util.h"
 *
 * ex_failed                  report a failed vikt call (the model's message)
 * ex_parse_long              a whole-number option with a range check
 * ex_parse_options           the --flag value loop, with --help
 * ex_model_create            vikt_model_create that reports its failure
 * ex_digits, ex_load_digits  the digits CSV as a 75/25 train/test split in
 *                            caller arrays (define EXAMPLE_DIGITS first)
 */
#ifndef VIKT_EXAMPLE_UTIL_H
#define VIKT_EXAMPLE_UTIL_H

#ifndef EXAMPLE_NAME
#error "define EXAMPLE_NAME (the example's name, for its messages) before example_util.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vikt.h>

/* Whether the call that returned `rc` failed: a negative `rc` or the model's
 * sticky error (pass 0 for calls that return no status). Prints
 * "NAME: what: message": the model's message names the op and the shapes;
 * the status text stands in when there is none. */
static inline int ex_failed(vikt_model *m, const char *what, int64_t rc) {
    if (rc >= 0 && !vikt_model_errcode(m)) return 0;
    const char *msg = vikt_model_errmsg(m);
    fprintf(stderr, EXAMPLE_NAME ": %s: %s\n", what,
            msg && *msg ? msg : vikt_strerror(rc < 0 ? (int)rc : vikt_model_errcode(m)));
    return 1;
}

/* Parses `s`, the value of option `flag`, as a whole number in lo..hi;
 * -1 with a message when it is missing, not a number or out of range. */
static inline int ex_parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, EXAMPLE_NAME ": %s needs a whole number in %ld..%ld\n", flag, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads argv as "--flag value" pairs. --help (or -h) prints usage(stdout)
 * and gives 1. Every other flag goes with its value (NULL after the last
 * argument) to option(), which gives 0 when it took the pair, -1 on a bad
 * value (having said why) and 1 for a flag it does not know. Gives 0 to
 * run, 1 after --help, -1 on a bad or unknown option. */
static inline int ex_parse_options(int argc, char **argv, void (*usage)(FILE *),
                                   int (*option)(void *o, const char *flag, const char *value),
                                   void *o) {
    for (int i = 1; i < argc; i += 2) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(flag, "--help") || !strcmp(flag, "-h")) {
            usage(stdout);
            return 1;
        }
        int took = option(o, flag, value);
        if (took > 0) fprintf(stderr, EXAMPLE_NAME ": unknown argument %s (try --help)\n", flag);
        if (took) return -1;
    }
    return 0;
}

/* vikt_model_create with the default allocator; 1 with a message on failure. */
static inline int ex_model_create(uint64_t seed, vikt_model **m) {
    int rc = vikt_model_create(NULL, seed, m);
    if (rc) fprintf(stderr, EXAMPLE_NAME ": vikt_model_create: %s\n", vikt_strerror(rc));
    return rc != 0;
}

#ifdef EXAMPLE_DIGITS
enum { EX_PIXELS = 64, EX_CLASSES = 10 };

/* One part of the digits in caller arrays, so that datasets of any model can
 * be made over it or over a slice of it (a dataset belongs to one model). */
typedef struct ex_digits {
    int64_t n;
    float *x;   /* [n, 64] pixels in [0, 1] */
    int32_t *y; /* [n] labels 0..9 */
} ex_digits;

static inline void ex_free_digits(ex_digits *d) {
    free(d->x);
    free(d->y);
}

static inline int ex_copy_digits(vikt_model *m, const vikt_dataset *ds, ex_digits *d) {
    d->n = vikt_dataset_size(ds);
    d->x = malloc((size_t)d->n * EX_PIXELS * sizeof *d->x);
    d->y = malloc((size_t)d->n * sizeof *d->y);
    if (!d->x || !d->y) {
        fprintf(stderr, EXAMPLE_NAME ": out of memory for %lld samples\n", (long long)d->n);
        return 1;
    }
    return ex_failed(m, "copying the data",
                     vikt_dataset_copy_batch(ds, 0, d->n, d->x, d->y, NULL));
}

/* The digits CSV at `path` (pixels 0..16 scaled to [0, 1]) split 75/25 with
 * the model's seed, so the training rows come in random order (contiguous
 * shards of them are IID). Free both parts with ex_free_digits, also after
 * a failure. */
static inline int ex_load_digits(vikt_model *m, const char *path, ex_digits *train,
                                 ex_digits *test) {
    vikt_dataset *all = NULL, *tr = NULL, *te = NULL;
    int status =
        ex_failed(m, "loading", vikt_dataset_load_csv(m, path, 0, -1, ',', EX_CLASSES, &all));
    if (!status) status = ex_failed(m, "scaling", vikt_dataset_scale(all, 1.0f / 16.0f, 0.0f));
    if (!status)
        status = ex_failed(m, "splitting",
                           vikt_dataset_split(all, vikt_dataset_size(all) / 4, &tr, &te));
    if (!status) status = ex_copy_digits(m, tr, train) || ex_copy_digits(m, te, test);
    vikt_dataset_destroy(all);
    vikt_dataset_destroy(tr);
    vikt_dataset_destroy(te);
    return status;
}
#endif /* EXAMPLE_DIGITS */

#endif /* VIKT_EXAMPLE_UTIL_H */
