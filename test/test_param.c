/* Named parameters: creation and lookup, initializers, counts, freezing and
 * the summary table. */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void created_once_then_found(void **state) {
    (void)state;
    vikt_model *m = vt_model(3);
    vikt_tensor *w = vikt_param(m, "fc1.weight", 2, (int64_t[]){4, 3}, VIKT_INIT_ONES);
    assert_non_null(w);
    assert_string_equal(vikt_tensor_name(w), "fc1.weight");
    assert_true(vikt_tensor_requires_grad(w));
    assert_non_null(vikt_tensor_grad(w));
    vikt_tensor_data(w)[0] = 5.0f;
    /* A second call returns the same tensor and does not re-initialize it. */
    assert_ptr_equal(vikt_param(m, "fc1.weight", 2, (int64_t[]){4, 3}, VIKT_INIT_ZEROS), w);
    assert_float_equal(vikt_tensor_data(w)[0], 5.0f, 0);
    assert_ptr_equal(vikt_param_find(m, "fc1.weight"), w);
    assert_null(vikt_param_find(m, "fc1.bias"));
    assert_int_equal(vikt_model_errcode(m), VIKT_OK);
    vikt_tensor_destroy(w); /* not a vikt_tensor_create tensor: ignored */
    assert_ptr_equal(vikt_param_at(m, 0), w);
    assert_null(vikt_param_at(m, 1));
    assert_null(vikt_param_at(m, -1));
    vikt_model_destroy(m);
}

static void counts_and_order(void **state) {
    (void)state;
    vikt_model *m = vt_model(3);
    const char *names[] = {"enc.0.weight", "enc.0.bias", "head.weight", "head.bias"};
    int64_t sizes[] = {12, 4, 8, 2};
    vikt_param(m, names[0], 2, (int64_t[]){4, 3}, VIKT_INIT_XAVIER_UNIFORM);
    vikt_param(m, names[1], 1, (int64_t[]){4}, VIKT_INIT_ZEROS);
    vikt_param(m, names[2], 2, (int64_t[]){2, 4}, VIKT_INIT_KAIMING_NORMAL);
    vikt_param(m, names[3], 1, (int64_t[]){2}, VIKT_INIT_ZEROS);
    assert_int_equal(vikt_param_count(m), 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(vikt_tensor_name(vikt_param_at(m, i)), names[i]);
        assert_int_equal(vikt_tensor_numel(vikt_param_at(m, i)), sizes[i]);
    }
    assert_int_equal(vikt_model_num_params(m), 26);
    assert_int_equal(vikt_model_num_trainable(m), 26);
    vikt_model_destroy(m);
}

/* Many draws: the empirical bound and spread follow the torch.nn.init
 * formulas for a [out=200, in=300] weight and a conv [8, 4, 3, 3] one. */
static void initializer_statistics(void **state) {
    (void)state;
    vikt_model *m = vt_model(11);
    struct {
        vikt_init init;
        double fan_in, fan_out;
    } cases[] = {{VIKT_INIT_XAVIER_UNIFORM, 300, 200}, {VIKT_INIT_XAVIER_NORMAL, 300, 200},
                 {VIKT_INIT_KAIMING_UNIFORM, 300, 200}, {VIKT_INIT_KAIMING_NORMAL, 300, 200}};
    for (int c = 0; c < 4; c++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", c);
        vikt_tensor *w = vikt_param(m, name, 2, (int64_t[]){200, 300}, cases[c].init);
        assert_non_null(w);
        double sum = 0, sq = 0, mx = 0;
        for (int64_t i = 0; i < 60000; i++) {
            double v = vikt_tensor_data(w)[i];
            sum += v, sq += v * v, mx = fabs(v) > mx ? fabs(v) : mx;
        }
        double std = sqrt(sq / 60000 - (sum / 60000) * (sum / 60000));
        int xavier = cases[c].init <= VIKT_INIT_XAVIER_NORMAL;
        double var = xavier ? 2.0 / (cases[c].fan_in + cases[c].fan_out) : 2.0 / cases[c].fan_in;
        assert_true(fabs(std - sqrt(var)) < 0.02 * sqrt(var));
        assert_true(fabs(sum / 60000) < 0.02 * sqrt(var));
        if (cases[c].init == VIKT_INIT_XAVIER_UNIFORM || cases[c].init == VIKT_INIT_KAIMING_UNIFORM)
            assert_true(mx <= sqrt(3 * var) * (1 + 1e-6));
    }
    /* Conv fans include the receptive field: fan_in = 4*3*3 = 36. */
    vikt_tensor *k = vikt_param(m, "conv.weight", 4, (int64_t[]){64, 4, 3, 3}, VIKT_INIT_KAIMING_UNIFORM);
    double mx = 0;
    for (int64_t i = 0; i < vikt_tensor_numel(k); i++)
        mx = fmax(mx, fabs(vikt_tensor_data(k)[i]));
    assert_true(mx <= sqrt(6.0 / 36) * (1 + 1e-6));
    assert_true(mx > 0.95 * sqrt(6.0 / 36));
    vikt_model_destroy(m);
}

/* Q·Qᵀ = I for a wide matrix, Qᵀ·Q = I for a tall one (to float rounding). */
static void orthogonal_is_orthogonal(void **state) {
    (void)state;
    vikt_model *m = vt_model(5);
    int64_t shapes[3][2] = {{6, 10}, {10, 6}, {8, 8}};
    for (int s = 0; s < 3; s++) {
        char name[16]; /* room for any int: -Wformat-truncation at -O1 */
        snprintf(name, sizeof name, "q%d", s);
        vikt_tensor *q = vikt_param(m, name, 2, shapes[s], VIKT_INIT_ORTHOGONAL);
        assert_non_null(q);
        int64_t r = shapes[s][0], c = shapes[s][1];
        const float *d = vikt_tensor_data(q);
        int wide = r < c;
        int64_t n = wide ? r : c, len = wide ? c : r;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                double dot = 0;
                for (int64_t k = 0; k < len; k++)
                    dot += wide ? (double)d[i * c + k] * d[j * c + k] : (double)d[k * c + i] * d[k * c + j];
                assert_true(fabs(dot - (i == j)) < 1e-5);
            }
    }
    assert_null(vikt_param(m, "bad", 1, (int64_t[]){4}, VIKT_INIT_ORTHOGONAL));
    vt_expect_error(m, VIKT_ERR_ARG, "bad", "rank >= 2");
    assert_int_equal(vikt_param_count(m), 3);
    vikt_model_destroy(m);
}

static void freeze_by_prefix(void **state) {
    (void)state;
    vikt_model *m = vt_model(3);
    vikt_param(m, "fc1.weight", 2, (int64_t[]){4, 3}, VIKT_INIT_ONES);
    vikt_param(m, "fc1.bias", 1, (int64_t[]){4}, VIKT_INIT_ONES);
    vikt_param(m, "fc10.weight", 2, (int64_t[]){2, 4}, VIKT_INIT_ONES);
    assert_int_equal(vikt_param_freeze(m, "fc1", 1), 2);
    assert_false(vikt_tensor_requires_grad(vikt_param_find(m, "fc1.weight")));
    assert_true(vikt_tensor_requires_grad(vikt_param_find(m, "fc10.weight")));
    assert_int_equal(vikt_model_num_trainable(m), 8);
    assert_int_equal(vikt_model_num_params(m), 24);
    assert_int_equal(vikt_param_freeze(m, "fc10.weight", 1), 1);
    assert_int_equal(vikt_model_num_trainable(m), 0);
    assert_int_equal(vikt_param_freeze(m, "", 0), 3);
    assert_int_equal(vikt_model_num_trainable(m), 24);
    assert_int_equal(vikt_param_freeze(m, "fc2", 1), VIKT_ERR_NOT_FOUND);
    vt_expect_error(m, VIKT_ERR_NOT_FOUND, "vikt_param_freeze", "fc2");
    assert_int_equal(vikt_param_freeze(m, NULL, 1), VIKT_ERR_NULL);
    vt_expect_error(m, VIKT_ERR_NULL, "pattern", NULL);
    assert_int_equal(vikt_param_freeze(NULL, "x", 1), VIKT_ERR_NULL);
    vikt_model_destroy(m);
}

/* A frozen parameter receives no gradient and SGD leaves it alone. */
static void frozen_parameters_do_not_train(void **state) {
    (void)state;
    vikt_model *m = vt_model(3);
    vikt_tensor *w = vikt_param(m, "w", 2, (int64_t[]){1, 1}, VIKT_INIT_ONES);
    vikt_tensor *b = vikt_param(m, "b", 1, (int64_t[]){1}, VIKT_INIT_ONES);
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(m, 0.1f, &opt), VIKT_OK);
    assert_int_equal(vikt_param_freeze(m, "w", 1), 1);
    vikt_step_begin(m);
    vikt_tensor *x = vikt_input(m, 2, (int64_t[]){1, 1}, (float[]){2.0f});
    vikt_tensor *y = vikt_add(m, vikt_matmul(m, x, w), b);
    assert_int_equal(vikt_backward(m, vikt_sum(m, y)), VIKT_OK);
    assert_float_equal(vikt_tensor_grad(w)[0], 0.0f, 0);
    assert_float_equal(vikt_tensor_grad(b)[0], 1.0f, 0);
    assert_int_equal(vikt_optimizer_step(opt), VIKT_OK);
    assert_float_equal(vikt_tensor_data(w)[0], 1.0f, 0);
    assert_float_equal(vikt_tensor_data(b)[0], 0.9f, 1e-7);
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
}

static void summary_table(void **state) {
    (void)state;
    vikt_model *m = vt_model(3);
    vikt_param(m, "fc1.weight", 2, (int64_t[]){256, 784}, VIKT_INIT_ZEROS);
    vikt_param(m, "fc1.bias", 1, (int64_t[]){256}, VIKT_INIT_ZEROS);
    vikt_param_freeze(m, "fc1.bias", 1);
    int64_t need = vikt_model_summary(m, NULL, 0);
    assert_true(need > 0);
    char buf[1024];
    assert_int_equal(vikt_model_summary(m, buf, sizeof buf), need);
    assert_int_equal((int64_t)strlen(buf), need);
    assert_non_null(strstr(buf, "fc1.weight  256x784"));
    assert_non_null(strstr(buf, "200704  yes"));
    assert_non_null(strstr(buf, "256  no"));
    assert_non_null(strstr(buf, "total 200960 parameters, 200704 trainable, 256 frozen, in 2 tensors"));
    /* Truncation keeps a terminated prefix and still reports the full length. */
    char small[20];
    assert_int_equal(vikt_model_summary(m, small, sizeof small), need);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(strncmp(small, buf, sizeof small - 1), 0);
    assert_int_equal(vikt_model_summary(m, NULL, 5), VIKT_ERR_NULL);
    vikt_model_destroy(m);
}

static void init_failure_leaves_no_parameter(void **state) {
    (void)state;
    vikt_model *m = vt_model(3);
    for (int64_t n = 1;; n++) {
        vt_stats.fail_at = vt_stats.calls + n;
        vikt_tensor *q = vikt_param(m, "q", 2, (int64_t[]){5, 7}, VIKT_INIT_ORTHOGONAL);
        vt_stats.fail_at = 0;
        if (q) break;
        vt_expect_error(m, VIKT_ERR_NOMEM, "vikt_param", NULL);
        assert_int_equal(vikt_param_count(m), 0);
        assert_true(n < 10);
    }
    assert_int_equal(vikt_param_count(m), 1);
    vikt_model_destroy(m);
    assert_int_equal(vt_stats.live, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(created_once_then_found),
        cmocka_unit_test(counts_and_order),
        cmocka_unit_test(initializer_statistics),
        cmocka_unit_test(orthogonal_is_orthogonal),
        cmocka_unit_test(freeze_by_prefix),
        cmocka_unit_test(frozen_parameters_do_not_train),
        cmocka_unit_test(summary_table),
        cmocka_unit_test(init_failure_leaves_no_parameter),
    };
    return cmocka_run_group_tests_name("param", tests, NULL, NULL);
}
