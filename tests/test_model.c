/* tests/test_model.c -- the layer stack: parameter layout, initialisation, and the whole
 * model's backward pass against central finite differences of its loss. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/model.h"
#include "spec_helpers.h"
#include "base/rng.h"

/* Loss of the model at its current parameters, accumulated in double. */
static double model_loss(ml_model *m, const float *x, const int32_t *label, const float *t, int n)
{
    ml_model_forward(m, x, n);
    return ml_model_loss(m, label, t, n);
}

/* Checks ml_model_backward against (L(p + h) - L(p - h)) / 2h for every parameter.
 * The forward pass is float, so h cannot be tiny (1e-3: small enough that few ReLU inputs
 * cross their kink, large enough that float rounding stays ~1e-4 of the difference), and
 * the comparison is on the whole vector: ||g - g_fd|| <= 2e-3 ||g_fd|| + 1e-5. A wrong
 * formula or a mis-wired buffer is off by far more. */
static void check_model_gradient(ml_layer_spec *layers, unsigned nl, ml_loss loss, int in, int n,
                                 uint64_t seed)
{
    ml_model_spec spec = {.layers = layers, .nlayers = nl, .loss = loss, .init = ML_INIT_GLOROT};
    pst_err err = {0};
    ml_model *m = ml_model_create(&spec, in, n, &err);
    assert_non_null(m);
    ml_model_init(m, seed);
    rng_state r;
    rng_seed(&r, seed + 1);
    int out = ml_model_out_dim(m);
    float *x = malloc(sizeof(float) * n * in);
    float *t = malloc(sizeof(float) * n * out);
    int32_t *label = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n * in; i++)
        x[i] = 2.0f * rng_uniform(&r) - 1.0f;
    for (int i = 0; i < n * out; i++)
        t[i] = loss == ML_LOSS_BCE ? (float)(rng_uniform(&r) > 0.5f) : rng_normal(&r);
    for (int i = 0; i < n; i++)
        label[i] = (int32_t)rng_below(&r, (uint64_t)out);
    const int32_t *lab = loss == ML_LOSS_CCE ? label : NULL;
    const float *tgt = loss == ML_LOSS_CCE ? NULL : t;

    model_loss(m, x, lab, tgt, n);
    ml_model_backward(m, x, n);
    size_t P = ml_model_nparams(m);
    float *g = malloc(sizeof(float) * P);
    memcpy(g, ml_model_grads(m), sizeof(float) * P);

    float *p = ml_model_params(m);
    double num = 0, den = 0;
    const float h = 1e-3f;
    for (size_t k = 0; k < P; k++) {
        float keep = p[k];
        p[k] = keep + h;
        double lp = model_loss(m, x, lab, tgt, n);
        p[k] = keep - h;
        double lm = model_loss(m, x, lab, tgt, n);
        p[k] = keep;
        double fd = (lp - lm) / (2.0 * h);
        num += (g[k] - fd) * (g[k] - fd);
        den += fd * fd;
    }
    double rel = sqrt(num) / (sqrt(den) + 1e-12);
    if (sqrt(num) > 2e-3 * sqrt(den) + 1e-5)
        fail_msg("gradient mismatch: relative error %g (|g_fd| = %g)", rel, sqrt(den));
    free(x), free(t), free(label), free(g);
    ml_model_destroy(m);
}

static void test_gradient_tanh_softmax_cce(void **state)
{
    (void)state;
    ml_layer_spec L[] = {DENSE(5, ACT_TANH), DENSE(3, ACT_SOFTMAX)};
    check_model_gradient(L, 2, ML_LOSS_CCE, 4, 1, 10);
    check_model_gradient(L, 2, ML_LOSS_CCE, 4, 3, 11);
    check_model_gradient(L, 2, ML_LOSS_CCE, 7, 8, 12);
}

static void test_gradient_relu_stack_with_activation_layers(void **state)
{
    (void)state;
    ml_layer_spec L[] = {DENSE(6, ACT_LINEAR), ACT(ACT_RELU), DENSE(5, ACT_RELU),
                         DENSE(4, ACT_LINEAR), ACT(ACT_SOFTMAX)};
    check_model_gradient(L, 5, ML_LOSS_CCE, 3, 1, 20);
    check_model_gradient(L, 5, ML_LOSS_CCE, 9, 5, 21);
}

static void test_gradient_sigmoid_bce(void **state)
{
    (void)state;
    ml_layer_spec one[] = {DENSE(4, ACT_TANH), DENSE(1, ACT_SIGMOID)};
    check_model_gradient(one, 2, ML_LOSS_BCE, 3, 1, 30);
    check_model_gradient(one, 2, ML_LOSS_BCE, 5, 7, 31);
    ml_layer_spec multi[] = {DENSE(3, ACT_SIGMOID), DENSE(2, ACT_LINEAR), ACT(ACT_SIGMOID)};
    check_model_gradient(multi, 3, ML_LOSS_BCE, 4, 6, 32);
}

static void test_gradient_mse_regression(void **state)
{
    (void)state;
    ml_layer_spec L[] = {DENSE(7, ACT_SIGMOID), ACT(ACT_TANH), DENSE(2, ACT_LINEAR)};
    check_model_gradient(L, 3, ML_LOSS_MSE, 6, 1, 40);
    check_model_gradient(L, 3, ML_LOSS_MSE, 6, 9, 41);
    /* MSE through an unfused softmax output (Keras allows it) */
    ml_layer_spec S[] = {DENSE(3, ACT_SOFTMAX)};
    check_model_gradient(S, 1, ML_LOSS_MSE, 2, 4, 42);
}

static void test_layout_and_segments(void **state)
{
    (void)state;
    ml_layer_spec L[] = {DENSE(256, ACT_RELU), DENSE(128, ACT_RELU), DENSE(10, ACT_SOFTMAX)};
    L[1].name = "hidden";
    ml_model_spec spec = {.layers = L, .nlayers = 3, .loss = ML_LOSS_CCE};
    ml_model *m = ml_model_create(&spec, 784, 128, NULL);
    assert_non_null(m);
    /* 784*256+256 + 256*128+128 + 128*10+10 */
    assert_int_equal(ml_model_nparams(m), 235146);
    assert_int_equal(ml_model_nsegments(m), 6);
    assert_string_equal(ml_model_segment(m, 0)->name, "dense_0.weight");
    assert_string_equal(ml_model_segment(m, 2)->name, "hidden.weight");
    assert_string_equal(ml_model_segment(m, 3)->name, "hidden.bias");
    assert_string_equal(ml_model_segment(m, 4)->name, "dense_2.weight");
    size_t off = 0;
    for (int i = 0; i < ml_model_nsegments(m); i++) {
        const ml_segment *s = ml_model_segment(m, i);
        assert_int_equal(s->offset, off); /* contiguous, in order */
        assert_int_equal(s->len, (size_t)s->rows * s->cols);
        off += s->len;
    }
    assert_int_equal(off, ml_model_nparams(m));
    assert_int_equal(ml_model_segment(m, 2)->rows, 128);
    assert_int_equal(ml_model_segment(m, 2)->cols, 256);
    assert_int_equal(ml_model_out_dim(m), 10);
    ml_model_destroy(m);
}

static void test_init_is_seeded_and_scaled(void **state)
{
    (void)state;
    ml_layer_spec L[] = {DENSE(300, ACT_RELU), DENSE(50, ACT_TANH)};
    ml_model_spec spec = {.layers = L, .nlayers = 2, .loss = ML_LOSS_MSE};
    ml_model *a = ml_model_create(&spec, 400, 4, NULL);
    ml_model *b = ml_model_create(&spec, 400, 4, NULL);
    ml_model_init(a, 7);
    ml_model_init(b, 7);
    size_t P = ml_model_nparams(a);
    assert_memory_equal(ml_model_params(a), ml_model_params(b), P * sizeof(float));
    ml_model_init(b, 8);
    assert_memory_not_equal(ml_model_params(a), ml_model_params(b), P * sizeof(float));

    /* Layer 0 (ReLU): He normal, std sqrt(2/400) = 0.0707. */
    const ml_segment *w0 = ml_model_segment(a, 0);
    const float *p = ml_model_params(a) + w0->offset;
    double s2 = 0;
    for (size_t i = 0; i < w0->len; i++)
        s2 += (double)p[i] * p[i];
    assert_float_equal(sqrt(s2 / w0->len), sqrt(2.0 / 400), 0.002);
    /* Layer 1 (tanh): Glorot uniform in +-sqrt(6/350), variance a^2/3. */
    const ml_segment *w1 = ml_model_segment(a, 2);
    p = ml_model_params(a) + w1->offset;
    double lim = sqrt(6.0 / 350), mx = 0;
    s2 = 0;
    for (size_t i = 0; i < w1->len; i++) {
        mx = fmax(mx, fabs(p[i]));
        s2 += (double)p[i] * p[i];
    }
    assert_true(mx <= lim);
    assert_float_equal(s2 / w1->len, lim * lim / 3, 0.1 * lim * lim / 3);
    /* Biases are zero. */
    const ml_segment *b0 = ml_model_segment(a, 1);
    for (size_t i = 0; i < b0->len; i++)
        assert_true(ml_model_params(a)[b0->offset + i] == 0.0f);
    ml_model_destroy(a);
    ml_model_destroy(b);
}

static void test_bad_specs_are_errors(void **state)
{
    (void)state;
    pst_err err = {0};
    ml_layer_spec nosoft[] = {DENSE(3, ACT_RELU)};
    ml_model_spec spec = {.layers = nosoft, .nlayers = 1, .loss = ML_LOSS_CCE};
    assert_null(ml_model_create(&spec, 4, 2, &err));
    assert_int_equal(err.code, PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "softmax"));

    spec.loss = ML_LOSS_BCE;
    assert_null(ml_model_create(&spec, 4, 2, &err));
    assert_non_null(strstr(err.msg, "sigmoid"));

    ml_layer_spec zero[] = {DENSE(0, ACT_LINEAR)};
    ml_model_spec z = {.layers = zero, .nlayers = 1, .loss = ML_LOSS_MSE};
    assert_null(ml_model_create(&z, 4, 2, &err));
    assert_non_null(strstr(err.msg, "model.layers.0.units"));

    ml_layer_spec actonly[] = {ACT(ACT_SOFTMAX)};
    ml_model_spec a = {.layers = actonly, .nlayers = 1, .loss = ML_LOSS_CCE};
    assert_null(ml_model_create(&a, 4, 2, &err));
    assert_non_null(strstr(err.msg, "dense"));

    ml_model_spec empty = {.layers = NULL, .nlayers = 0};
    assert_null(ml_model_create(&empty, 4, 2, &err));
}

static void test_forward_output_is_probability(void **state)
{
    (void)state;
    ml_layer_spec L[] = {DENSE(8, ACT_RELU), DENSE(4, ACT_SOFTMAX)};
    ml_model_spec spec = {.layers = L, .nlayers = 2, .loss = ML_LOSS_CCE};
    ml_model *m = ml_model_create(&spec, 5, 3, NULL);
    ml_model_init(m, 1);
    float x[15];
    for (int i = 0; i < 15; i++)
        x[i] = (float)i / 7.0f - 1.0f;
    const float *y = ml_model_forward(m, x, 3);
    for (int i = 0; i < 3; i++) {
        double s = 0;
        for (int j = 0; j < 4; j++) {
            assert_true(y[i * 4 + j] > 0.0f);
            s += y[i * 4 + j];
        }
        assert_float_equal(s, 1.0, 1e-5);
    }
    ml_model_destroy(m);
}

/* Frozen layers: backward leaves their gradient entries alone (a sentinel survives) and
 * writes the others exactly as with nothing frozen; a frozen bottom layer is skipped, a
 * frozen middle layer still passes the gradient down to a trainable layer below it. */
static void test_frozen_layers(void **state)
{
    (void)state;
    ml_layer_spec L[] = {DENSE(6, ACT_RELU), DENSE(5, ACT_TANH), ACT(ACT_RELU),
                         DENSE(3, ACT_SOFTMAX)};
    ml_model_spec spec = {.layers = L, .nlayers = 4, .loss = ML_LOSS_CCE};
    enum { N = 4, IN = 7 };
    ml_model *ref = ml_model_create(&spec, IN, N, NULL);
    ml_model *m = ml_model_create(&spec, IN, N, NULL);
    assert_non_null(ref);
    assert_non_null(m);
    ml_model_init(ref, 9);
    ml_model_init(m, 9);
    float x[N * IN];
    for (int i = 0; i < N * IN; i++)
        x[i] = sinf((float)i);
    int32_t label[N] = {0, 2, 1, 2};
    model_loss(ref, x, label, NULL, N);
    ml_model_backward(ref, x, N);
    const float *gr = ml_model_grads(ref);
    size_t P = ml_model_nparams(m);
    /* frozen sets: {layer 0}, {layer 1}, {layers 0 and 1} */
    const int freeze[3][2] = {{0, -1}, {1, -1}, {0, 1}};
    for (int c = 0; c < 3; c++) {
        for (int l = 0; l < 4; l++)
            ml_model_set_trainable(m, l, 1);
        for (int k = 0; k < 2; k++)
            if (freeze[c][k] >= 0)
                ml_model_set_trainable(m, freeze[c][k], 0);
        float *g = ml_model_grads(m);
        for (size_t i = 0; i < P; i++)
            g[i] = 12345.0f;
        model_loss(m, x, label, NULL, N);
        ml_model_backward(m, x, N);
        for (int sgi = 0; sgi < ml_model_nsegments(m); sgi++) {
            const ml_segment *sg = ml_model_segment(m, sgi);
            int frozen = sg->layer == freeze[c][0] || sg->layer == freeze[c][1];
            for (size_t i = sg->offset; i < sg->offset + sg->len; i++)
                if (frozen)
                    assert_true(g[i] == 12345.0f);
                else
                    assert_true(g[i] == gr[i]);
        }
    }
    ml_model_destroy(ref);
    ml_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_tanh_softmax_cce),
        cmocka_unit_test(test_gradient_relu_stack_with_activation_layers),
        cmocka_unit_test(test_gradient_sigmoid_bce),
        cmocka_unit_test(test_gradient_mse_regression),
        cmocka_unit_test(test_layout_and_segments),
        cmocka_unit_test(test_init_is_seeded_and_scaled),
        cmocka_unit_test(test_bad_specs_are_errors),
        cmocka_unit_test(test_forward_output_is_probability),
        cmocka_unit_test(test_frozen_layers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
