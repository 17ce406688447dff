/* Embedding lookup: out[k, :] = W[ids[k], :] for a table W [V, D]; backward
 * adds each output row's gradient into the row it came from, so an id that
 * occurs several times collects the sum (torch.nn.Embedding, dense gradient). */
#include "../vikt_internal.h"

#include <string.h>

/* args: i[0] = rank of the id array (0..3), i[1..3] = its shape; saved = the
 * caller's ids during the shape check, the arena copy after forward. */

static int64_t id_count(const vikt__args *args) {
    int64_t k = 1;
    for (int d = 0; d < (int)args->i[0]; d++) k *= args->i[1 + d];
    return k;
}

static int emb_shape(vikt_model *m, const vikt__op *op, vikt_tensor *const *in, int n,
                     vikt__args *args, int64_t *shape, int *rank) {
    (void)n;
    const vikt_tensor *w = in[0];
    char sw[VIKT__SHAPE_STR], si[VIKT__SHAPE_STR];
    int id_rank = (int)args->i[0];
    if (w->rank != 2)
        return vikt__fail(m, VIKT_ERR_SHAPE, "%s: the table must be [V, D], got %s", op->name,
                          vikt__shape_str(w, sw));
    int64_t count = id_count(args);
    const int32_t *ids = args->saved;
    if (count > 0 && !ids) return vikt__fail(m, VIKT_ERR_NULL, "%s: ids is NULL", op->name);
    for (int64_t k = 0; k < count; k++)
        if (ids[k] < 0 || ids[k] >= w->shape[0])
            return vikt__fail(m, VIKT_ERR_ARG,
                              "%s: id %d at position %lld is outside 0..%lld (ids %s, table %s)",
                              op->name, (int)ids[k], (long long)k, (long long)w->shape[0] - 1,
                              vikt__dims_str(id_rank, args->i + 1, si), vikt__shape_str(w, sw));
    *rank = id_rank + 1;
    for (int d = 0; d < id_rank; d++) shape[d] = args->i[1 + d];
    shape[id_rank] = w->shape[1];
    return VIKT_OK;
}

static int emb_fwd(vikt_model *m, vikt_tensor *const *in, int n, vikt__args *args,
                   vikt_tensor *out) {
    (void)n;
    int64_t count = id_count(args), D = in[0]->shape[1];
    /* The caller's array may change after the call; backward reads a copy. */
    int32_t *ids = vikt__arena_alloc(m, (size_t)count * sizeof(int32_t));
    if (!ids) return vikt__fail(m, VIKT_ERR_NOMEM, "vikt_embedding: out of memory for the ids");
    if (count > 0) memcpy(ids, args->saved, (size_t)count * sizeof(int32_t));
    for (int64_t k = 0; k < count; k++)
        memcpy(out->data + k * D, in[0]->data + (int64_t)ids[k] * D, (size_t)D * sizeof(float));
    args->saved = ids;
    return VIKT_OK;
}

static int emb_bwd(vikt_model *m, vikt_tensor *const *in, int n, const vikt__args *args,
                   vikt_tensor *out) {
    (void)n;
    float *gw = vikt__grad(in[0]);
    if (!gw) return m->errcode;
    int64_t count = id_count(args), D = in[0]->shape[1];
    const int32_t *ids = args->saved;
    for (int64_t k = 0; k < count; k++) {
        float *row = gw + (int64_t)ids[k] * D;
        const float *d = out->grad + k * D;
        for (int64_t j = 0; j < D; j++) row[j] += d[j];
    }
    return VIKT_OK;
}

static const vikt__op embedding_op = {"vikt_embedding", emb_shape, emb_fwd, emb_bwd, 0};

/* The caller checked rank (0..3) and shape (non-negative, bounded). */
vikt_tensor *vikt__embedding(vikt_model *m, vikt_tensor *weight, const int32_t *ids, int rank,
                             const int64_t *shape) {
    vikt__args args;
    memset(&args, 0, sizeof args);
    args.i[0] = rank;
    for (int d = 0; d < rank; d++) args.i[1 + d] = shape[d];
    args.saved = (void *)(uintptr_t)ids;
    return vikt__apply(m, &embedding_op, &weight, 1, &args);
}
