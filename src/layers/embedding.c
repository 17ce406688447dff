/* Embedding layer (torch.nn.Embedding): a [num_embeddings, dim] table drawn
 * from N(0, 1), looked up by the op of src/ops/embedding.c. */
#include "../vikt_internal.h"

vikt_tensor *vikt_embedding(vikt_model *m, const char *name, const int32_t *ids, int rank,
                            const int64_t *shape, int64_t num_embeddings, int64_t dim) {
    static const char op[] = "vikt_embedding";
    if (!m) return NULL;
    /* As vikt__check_layer (there is no input tensor here). */
    if (!name || !name[0]) {
        vikt__fail(m, name ? VIKT_ERR_ARG : VIKT_ERR_NULL, "%s: the layer name is %s", op,
                   name ? "empty" : "NULL");
        return NULL;
    }
    int64_t count;
    if (rank > 3) {
        vikt__fail(m, VIKT_ERR_SHAPE, "%s: '%s' needs ids of rank 0 to 3, got rank %d", op, name,
                   rank);
        return NULL;
    }
    if (vikt__check_shape(m, op, rank, shape, &count)) return NULL;
    if (num_embeddings < 1 || dim < 1) {
        vikt__fail(m, VIKT_ERR_ARG, "%s: '%s' needs num_embeddings >= 1 and dim >= 1 (got %lld, %lld)",
                   op, name, (long long)num_embeddings, (long long)dim);
        return NULL;
    }
    vikt_tensor *w = vikt__layer_param(m, op, name, "weight", 2,
                                       (int64_t[]){num_embeddings, dim}, VIKT__FILL_NORMAL, 1.0f);
    if (!w) return NULL;
    return vikt__embedding(m, w, ids, rank, shape);
}
