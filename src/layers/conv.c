/* 2-D convolution layer (torch.nn.Conv2d, square kernel, bias): the
 * parameters, then the conv op of src/ops/conv.c. */
#include "../vikt_internal.h"

#include <math.h>

vikt_tensor *vikt_conv2d(vikt_model *m, const char *name, vikt_tensor *x, int64_t out_channels,
                         int64_t kernel, int64_t stride, int64_t padding, int64_t dilation) {
    static const char op[] = "vikt_conv2d";
    if (!m || vikt__check_layer(m, op, name, x)) return NULL;
    char s[VIKT__SHAPE_STR];
    /* Checked before any parameter is made, so a bad call leaves no trace. */
    if (x->rank != 4 || x->shape[1] < 1) {
        vikt__fail(m, VIKT_ERR_SHAPE, "%s: '%s' needs input [N, C, H, W] with C >= 1, got %s", op,
                   name, vikt__shape_str(x, s));
        return NULL;
    }
    if (out_channels < 1 || kernel < 1 || kernel > INT32_MAX || stride < 1 || padding < 0 ||
        dilation < 1) {
        vikt__fail(m, VIKT_ERR_ARG,
                   "%s: '%s' needs out_channels, kernel, stride, dilation >= 1 and padding >= 0 "
                   "(got %lld, %lld, %lld, %lld, %lld) for input %s",
                   op, name, (long long)out_channels, (long long)kernel, (long long)stride,
                   (long long)dilation, (long long)padding, vikt__shape_str(x, s));
        return NULL;
    }
    int64_t in = x->shape[1];
    /* PyTorch's default: kaiming_uniform_(a=√5) gives ±1/√fan_in, as does the bias. */
    float bound = (float)(1.0 / sqrt((double)in * (double)kernel * (double)kernel));
    vikt_tensor *w = vikt__layer_param(m, op, name, "weight", 4,
                                       (int64_t[]){out_channels, in, kernel, kernel},
                                       VIKT__FILL_UNIFORM, bound);
    vikt_tensor *b = vikt__layer_param(m, op, name, "bias", 1, (int64_t[]){out_channels},
                                       VIKT__FILL_UNIFORM, bound);
    if (!w || !b) return NULL;
    return vikt__conv2d(m, x, w, b, stride, padding, dilation);
}
