/* The step arena: a bump allocator over chunks from the model's allocator.
 * Rewinding keeps every chunk, so a step whose allocations fit the chunks an
 * earlier step left behind makes no allocator call. */
#include "vikt_internal.h"

#include <string.h>

#define CHUNK_MIN ((size_t)1 << 20)
#define HEADER_SIZE (((sizeof(vikt__chunk) + VIKT__ALIGN - 1) / VIKT__ALIGN) * VIKT__ALIGN)

static unsigned char *chunk_base(vikt__chunk *c) { return (unsigned char *)c + HEADER_SIZE; }

static void *take(vikt__chunk *c, size_t size) {
    if (c->size - c->used < size) return NULL;
    void *p = chunk_base(c) + c->used;
    c->used += size;
    return p;
}

void *vikt__arena_alloc(vikt_model *m, size_t size) {
    vikt__arena *a = &m->arena;
    size = (size + VIKT__ALIGN - 1) & ~(size_t)(VIKT__ALIGN - 1);
    if (size == 0) size = VIKT__ALIGN;
    /* Move forward through chunks kept from earlier steps. */
    while (a->current) {
        void *p = take(a->current, size);
        if (p) return p;
        if (!a->current->next) break;
        a->current = a->current->next;
        a->current->used = 0;
    }
    size_t want = size > CHUNK_MIN ? size : CHUNK_MIN;
    if (want > SIZE_MAX - HEADER_SIZE) return NULL;
    vikt__chunk *c = vikt__alloc(m, HEADER_SIZE + want);
    if (!c) return NULL;
    c->next = NULL;
    c->size = want;
    c->used = 0;
    if (a->current)
        a->current->next = c;
    else
        a->head = c;
    a->current = c;
    return take(c, size);
}

void vikt__arena_rewind(vikt__arena *a) {
    a->current = a->head;
    if (a->head) a->head->used = 0;
}

void vikt__arena_release(vikt_model *m, vikt__arena *a) {
    vikt__chunk *c = a->head;
    while (c) {
        vikt__chunk *next = c->next;
        vikt__free(m, c, HEADER_SIZE + c->size);
        c = next;
    }
    a->head = a->current = NULL;
}
