/* Which vector-kernel table the ops use: the one named like the GEMM kernel
 * dispatch.c chose, so VIKT_ISA and CPU detection pick both together. */
#include "gemm.h"
#include "vec.h"

#include <string.h>

#if !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#endif

static const vikt__vec *const tables[] = {
#ifdef VIKT__VEC_X86
    &vikt__vec_avx512,
    &vikt__vec_avx2,
#endif
#ifdef VIKT__VEC_NEON
    &vikt__vec_neon,
#endif
    &vikt__vec_scalar,
};

const vikt__vec *vikt__vec_find(const char *name) {
    if (!name || !vikt__gemm_kernel_find(name)) return NULL; /* not built, or not usable here */
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (strcmp(tables[i]->name, name) == 0) return tables[i];
    return NULL;
}

static const vikt__vec *choose(void) {
    const vikt__vec *v = vikt__vec_find(vikt__gemm_kernel_default()->name);
    return v ? v : &vikt__vec_scalar;
}

#if !defined(__STDC_NO_ATOMICS__)
/* Every thread that races to fill the cache computes the same value. */
static _Atomic(const vikt__vec *) chosen;

const vikt__vec *vikt__vec_get(void) {
    const vikt__vec *v = atomic_load_explicit(&chosen, memory_order_acquire);
    if (!v) {
        v = choose();
        atomic_store_explicit(&chosen, v, memory_order_release);
    }
    return v;
}
#else
const vikt__vec *vikt__vec_get(void) { return choose(); }
#endif
