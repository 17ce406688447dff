/* Worker threads: a small pool owned by one model.
 *
 * The pool exists only after vikt_set_num_threads(m, n) with n > 1: the
 * default of one thread starts nothing. The n - 1 workers are created once
 * and reused by every parallel call until the thread count changes or the
 * model is destroyed. A parallel call hands out task indices 0..n-1, runs
 * index 0 on the calling thread and returns when every task is done.
 *
 * Waiting: a worker that finished a task spins for a short while (about
 * 50 µs of pause instructions) watching for the next job before it sleeps on
 * a condition variable, and the caller spins the same way for the workers to
 * finish. A training step calls the GEMM many times in a row, and waking a
 * sleeping thread costs 5-60 µs (more on virtual machines), as long as a
 * small product takes; an idle model costs no CPU after the spin runs out.
 *
 * Built with -DVIKT_NO_THREADS (targets without pthreads) the library stays
 * single-threaded and vikt_set_num_threads() accepts only 1. */
#define _POSIX_C_SOURCE 200809L /* pthread_sigmask with -std=c11 */
#include "vikt_internal.h"

#include <string.h>

#ifndef VIKT_NO_THREADS
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

/* Spins of cpu_relax() before sleeping: ~50 µs on recent x86, where pause
 * takes 40-140 cycles; yield on Arm is shorter, so spin longer there. */
#if defined(__x86_64__) || defined(__i386__)
#define SPINS 1000
static inline void cpu_relax(void) { __builtin_ia32_pause(); }
#elif defined(__aarch64__) || defined(__arm__)
#define SPINS 20000
static inline void cpu_relax(void) { __asm__ __volatile__("yield" ::: "memory"); }
#else
#define SPINS 20000
static inline void cpu_relax(void) {}
#endif

typedef struct vikt__worker {
    struct vikt__pool *pool;
    int index;
    pthread_t thread;
} vikt__worker;

struct vikt__pool {
    pthread_mutex_t mu;
    pthread_cond_t wake;            /* a new job or quit (under mu) */
    pthread_cond_t done;            /* pending reached 0 (under mu) */
    _Atomic uint64_t generation;    /* incremented for every job */
    atomic_int quit;
    atomic_int pending;             /* workers that have not finished the job */
    int ntasks;                     /* tasks of the current job */
    vikt__task_fn fn;
    void *arg;
    int nworkers;                   /* workers started */
    vikt__worker workers[];
};

static size_t pool_size(int nworkers) {
    return sizeof(vikt__pool) + (size_t)nworkers * sizeof(vikt__worker);
}

static void *worker_main(void *p) {
    vikt__worker *w = p;
    vikt__pool *pool = w->pool;
    uint64_t seen = 0; /* the generation when the pool was made, before any job */
    for (;;) {
        /* Spin, then sleep, until the generation moves on or quit is set. The
         * job's fields were written before the generation was bumped
         * (release), so they are visible once the new value is seen. */
        int spins = 0;
        while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen &&
               !atomic_load_explicit(&pool->quit, memory_order_relaxed) && spins++ < SPINS)
            cpu_relax();
        if (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&pool->mu);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->quit))
                pthread_cond_wait(&pool->wake, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->quit)) break;
        seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        /* Every worker acknowledges every job, also one it has no task in:
         * otherwise the caller could start the next job while a skipping
         * worker still reads this one's fields, and it would run a task of
         * the new job under the old generation, then again. */
        if (w->index < pool->ntasks) pool->fn(pool->arg, w->index);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mu); /* the caller may be asleep on done */
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
    return NULL;
}

static void stop_workers(vikt__pool *pool) {
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->quit, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->nworkers; i++) pthread_join(pool->workers[i].thread, NULL);
    pool->nworkers = 0;
}

static int pool_create(vikt_model *m, int nthreads, vikt__pool **out) {
    int nworkers = nthreads - 1;
    vikt__pool *pool = vikt__alloc(m, pool_size(nworkers));
    if (!pool) return VIKT_ERR_NOMEM;
    memset(pool, 0, pool_size(nworkers));
    if (pthread_mutex_init(&pool->mu, NULL)) goto fail_mutex;
    if (pthread_cond_init(&pool->wake, NULL)) goto fail_wake;
    if (pthread_cond_init(&pool->done, NULL)) goto fail_done;
    /* Workers start with every signal blocked, so the program's handlers
     * keep running on its own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int ok = 1;
    for (int i = 0; i < nworkers && ok; i++) {
        vikt__worker *w = &pool->workers[i];
        w->pool = pool;
        w->index = i + 1;
        if (pthread_create(&w->thread, NULL, worker_main, w))
            ok = 0;
        else
            pool->nworkers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!ok) {
        stop_workers(pool);
        pthread_cond_destroy(&pool->done);
        goto fail_done;
    }
    *out = pool;
    return VIKT_OK;
fail_done:
    pthread_cond_destroy(&pool->wake);
fail_wake:
    pthread_mutex_destroy(&pool->mu);
fail_mutex:
    vikt__free(m, pool, pool_size(nworkers));
    return VIKT_ERR_NOMEM;
}

void vikt__pool_destroy(vikt_model *m, vikt__pool *pool) {
    if (!pool) return;
    int nworkers = pool->nworkers;
    stop_workers(pool);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mu);
    vikt__free(m, pool, pool_size(nworkers));
}

void vikt__pool_run(vikt__pool *pool, int ntasks, vikt__task_fn fn, void *arg) {
    if (!pool || ntasks <= 1) {
        for (int i = 0; i < ntasks; i++) fn(arg, i);
        return;
    }
    if (ntasks > pool->nworkers + 1) ntasks = pool->nworkers + 1;
    /* Only this thread writes the job, and only while no job runs. */
    pool->fn = fn;
    pool->arg = arg;
    pool->ntasks = ntasks;
    atomic_store_explicit(&pool->pending, pool->nworkers, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_mutex_lock(&pool->mu); /* wake the workers that went to sleep */
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0);
    for (int spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0 &&
                        spins < SPINS;
         spins++)
        cpu_relax();
    if (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&pool->mu);
        while (atomic_load(&pool->pending) > 0) pthread_cond_wait(&pool->done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
}

#else /* VIKT_NO_THREADS */

void vikt__pool_destroy(vikt_model *m, vikt__pool *pool) {
    (void)m;
    (void)pool;
}

void vikt__pool_run(vikt__pool *pool, int ntasks, vikt__task_fn fn, void *arg) {
    (void)pool;
    for (int i = 0; i < ntasks; i++) fn(arg, i);
}

static int pool_create(vikt_model *m, int nthreads, vikt__pool **out) {
    (void)m;
    (void)nthreads;
    *out = NULL;
    return VIKT_ERR_ARG;
}

#endif

int vikt_set_num_threads(vikt_model *m, int n) {
    if (!m) return VIKT_ERR_NULL;
    if (n < 1 || n > VIKT__MAX_THREADS)
        return vikt__fail(m, VIKT_ERR_ARG, "vikt_set_num_threads: %d is not in 1..%d", n,
                          VIKT__MAX_THREADS);
    if (n == vikt_num_threads(m)) return VIKT_OK;
    vikt__pool *pool = NULL;
    if (n > 1) {
        int rc = pool_create(m, n, &pool);
        if (rc)
            return vikt__fail(m, rc, "vikt_set_num_threads: could not start %d worker threads",
                              n - 1);
    }
    vikt__pool_destroy(m, m->pool);
    vikt__gemm_release(m); /* per-thread buffers are sized again on next use */
    m->pool = pool;
    m->nthreads = n;
    return VIKT_OK;
}

int vikt_num_threads(const vikt_model *m) {
    if (!m) return 0;
    return m->nthreads > 1 ? m->nthreads : 1;
}
