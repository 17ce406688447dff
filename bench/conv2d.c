/* conv2d: the library's im2col + GEMM op against a direct loop nest, on the
 * issue's CNN shapes (batch 32) and a few wider layers, one line each:
 *
 *   conv2d shape=NxCxHxW out=O k=3 pad=P im2col_fwd_us=A im2col_bwd_us=B
 *          direct_fwd_us=C direct_bwd_us=D direct_over_im2col_fwd=E fwd_bwd=F
 *
 * (on one line). Backward computes dx, dW and db. Each figure is the best of
 * the repetitions (argument 1, default 50); one thread; the GEMM kernel is
 * the dispatcher's choice (VIKT_ISA overrides it). The direct loop is kept
 * here, not in the library: im2col + GEMM was faster on every shape measured
 * (see src/ops/conv.c). Not a test: nothing fails on a slow result.
 *
 * It includes src/ops/conv.c to reach the op's static functions, so it links
 * the library's objects other than conv.o (after `make`):
 *
 *   cc -std=c11 -O2 -Iinclude -Isrc bench/conv2d.c \
 *      $(find build/obj/src -name '*.o' ! -path '*ops/conv.o') \
 *      -lm -pthread -o build/bench-conv2d && build/bench-conv2d
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "../src/ops/conv.c"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* y[n,o] = b[o] + Σ_c,i,j W[o,c,i,j]·x[n, c, oh·s−p+i·d, ow·s−p+j·d]: one
 * kernel tap at a time over the whole output plane, so the inner loop runs
 * along a row and vectorizes (stride 1). */
static void direct_fwd(const conv_geom *g, const float *x, const float *w, const float *b,
                       float *y) {
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->O; o++) {
            float *yo = y + (n * g->O + o) * g->cols;
            for (int64_t p = 0; p < g->cols; p++) yo[p] = b[o];
            for (int64_t c = 0; c < g->C; c++)
                for (int64_t i = 0; i < g->kh; i++)
                    for (int64_t j = 0; j < g->kw; j++) {
                        const float *xc = x + (n * g->C + c) * g->H * g->W;
                        float wv = w[((o * g->C + c) * g->kh + i) * g->kw + j];
                        int64_t offh = i * g->dil - g->pad, offw = j * g->dil - g->pad;
                        int64_t h0, h1, w0, w1;
                        valid_range(offh, g->stride, g->H, g->Ho, &h0, &h1);
                        valid_range(offw, g->stride, g->W, g->Wo, &w0, &w1);
                        for (int64_t oh = h0; oh < h1; oh++) {
                            const float *src = xc + (oh * g->stride + offh) * g->W + offw;
                            float *dst = yo + oh * g->Wo;
                            if (g->stride == 1) /* the common case, vectorized */
                                for (int64_t ow = w0; ow < w1; ow++) dst[ow] += wv * src[ow];
                            else
                                for (int64_t ow = w0; ow < w1; ow++)
                                    dst[ow] += wv * src[ow * g->stride];
                        }
                    }
        }
}

/* db[o] += Σ dy; dW[o,c,i,j] += Σ dy·x (shifted); dx (shifted) += W·dy. */
static void direct_bwd(const conv_geom *g, const float *x, const float *w, const float *dy,
                       float *dx, float *dw, float *db) {
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->O; o++) {
            const float *dyo = dy + (n * g->O + o) * g->cols;
            float s = 0;
            for (int64_t p = 0; p < g->cols; p++) s += dyo[p];
            db[o] += s;
            for (int64_t c = 0; c < g->C; c++)
                for (int64_t i = 0; i < g->kh; i++)
                    for (int64_t j = 0; j < g->kw; j++) {
                        const float *xc = x + (n * g->C + c) * g->H * g->W;
                        float *dxc = dx + (n * g->C + c) * g->H * g->W;
                        int64_t widx = ((o * g->C + c) * g->kh + i) * g->kw + j;
                        float wv = w[widx], acc = 0;
                        int64_t offh = i * g->dil - g->pad, offw = j * g->dil - g->pad;
                        int64_t h0, h1, w0, w1;
                        valid_range(offh, g->stride, g->H, g->Ho, &h0, &h1);
                        valid_range(offw, g->stride, g->W, g->Wo, &w0, &w1);
                        for (int64_t oh = h0; oh < h1; oh++) {
                            int64_t at = (oh * g->stride + offh) * g->W + offw;
                            const float *d = dyo + oh * g->Wo;
                            for (int64_t ow = w0; ow < w1; ow++) {
                                acc += d[ow] * xc[at + ow * g->stride];
                                dxc[at + ow * g->stride] += wv * d[ow];
                            }
                        }
                        dw[widx] += acc;
                    }
        }
}

static void run(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t pad, int reps) {
    vikt_model *m;
    vikt_tensor *x, *w, *b, *y;
    if (vikt_model_create(NULL, 1, &m) != VIKT_OK) exit(1);
    vikt_tensor_create(m, 4, (int64_t[]){N, C, H, W}, NULL, 1, &x);
    vikt_tensor_create(m, 4, (int64_t[]){O, C, 3, 3}, NULL, 1, &w);
    vikt_tensor_create(m, 1, (int64_t[]){O}, NULL, 1, &b);
    vikt_tensor_fill_uniform(x, -1, 1);
    vikt_tensor_fill_uniform(w, -0.3f, 0.3f);
    vikt_tensor_fill_uniform(b, -0.3f, 0.3f);
    vikt__args args = {{1, pad, 1, 0}, {0, 0}, NULL};
    conv_geom g;
    geometry(x, w, &args, &g);
    vikt_tensor_create(m, 4, (int64_t[]){N, O, g.Ho, g.Wo}, NULL, 1, &y);
    for (int64_t i = 0; i < y->numel; i++) y->grad[i] = (float)((i * 7) % 11 - 5) * 0.25f;
    vikt_tensor *in[3] = {x, w, b};
    float *y2 = malloc((size_t)y->numel * sizeof(float));
    float *dx2 = calloc((size_t)x->numel, sizeof(float)), *dw2 = calloc((size_t)w->numel, sizeof(float));
    float *db2 = calloc((size_t)O, sizeof(float));
    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int r = 0; r < reps; r++) {
        vikt_step_begin(m); /* the op's column buffers come from the arena */
        double t[5];
        t[0] = now();
        conv_fwd(m, in, 3, &args, y);
        t[1] = now();
        conv_bwd(m, in, 3, &args, y);
        t[2] = now();
        direct_fwd(&g, x->data, w->data, b->data, y2);
        t[3] = now();
        direct_bwd(&g, x->data, w->data, y->grad, dx2, dw2, db2);
        t[4] = now();
        for (int k = 0; k < 4; k++)
            if (t[k + 1] - t[k] < best[k]) best[k] = t[k + 1] - t[k];
    }
    double diff = 0; /* the two agree (forward) */
    for (int64_t i = 0; i < y->numel; i++) diff = fmax(diff, fabs((double)y->data[i] - y2[i]));
    printf("conv2d shape=%lldx%lldx%lldx%lld out=%lld k=3 pad=%lld im2col_fwd_us=%.0f "
           "im2col_bwd_us=%.0f direct_fwd_us=%.0f direct_bwd_us=%.0f "
           "direct_over_im2col_fwd=%.2f fwd_bwd=%.2f max_abs_diff=%.1e\n",
           (long long)N, (long long)C, (long long)H, (long long)W, (long long)O, (long long)pad,
           best[0] * 1e6, best[1] * 1e6, best[2] * 1e6, best[3] * 1e6, best[2] / best[0],
           (best[2] + best[3]) / (best[0] + best[1]), diff);
    free(y2), free(dx2), free(dw2), free(db2);
    vikt_model_destroy(m);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 50;
    run(32, 1, 28, 28, 8, 0, reps);   /* the first layer */
    run(32, 8, 13, 13, 16, 0, reps);  /* the second layer */
    run(32, 8, 13, 13, 16, 1, reps);
    run(32, 16, 16, 16, 32, 1, reps);
    run(32, 32, 14, 14, 64, 1, reps);
    return 0;
}
