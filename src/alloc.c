/* Allocation through the model's hooks, and the default hooks. */
#include "vikt_internal.h"

#include <stdlib.h>
#include <string.h>

/* The default allocator over malloc: over-allocate by align bytes and keep
 * the distance to the block's start just before the aligned pointer, so only
 * C's malloc/free are needed (aligned_alloc wants size % align == 0). */
static void *default_alloc(void *ud, size_t size, size_t align) {
    (void)ud;
    if (size > SIZE_MAX - align) return NULL;
    unsigned char *raw = malloc(size + align);
    if (!raw) return NULL;
    uintptr_t base = (uintptr_t)raw + 1;
    unsigned char *aligned = (unsigned char *)((base + align - 1) & ~(uintptr_t)(align - 1));
    aligned[-1] = (unsigned char)(aligned - raw);
    return aligned;
}

static void default_free(void *ud, void *ptr, size_t size) {
    (void)ud;
    (void)size;
    unsigned char *aligned = ptr;
    free(aligned - aligned[-1]);
}

void vikt__default_allocator(vikt_allocator *a) {
    a->alloc = default_alloc;
    a->free = default_free;
    a->ud = NULL;
}

void *vikt__alloc(vikt_model *m, size_t size) {
    if (size == 0) size = 1;
    return m->allocator.alloc(m->allocator.ud, size, VIKT__ALIGN);
}

void vikt__free(vikt_model *m, void *p, size_t size) {
    if (p) m->allocator.free(m->allocator.ud, p, size == 0 ? 1 : size);
}
