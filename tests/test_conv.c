/* tests/test_conv.c -- the image layers (conv2d, max/avg/global pools, flatten, dropout,
 * batchnorm) and input shapes.
 *
 * Each layer's backward (dx and every parameter gradient) is checked against central
 * finite differences of f = <y, dy> for a random dy, on several shapes (batch 1, odd
 * sizes, stride 2, padding, 1x1 and 3x3 kernels, several channels); whole models with
 * these layers are checked the same way through their loss (the model's wiring of shapes
 * and buffers). `test_conv --dump FILE` writes the reference cases for
 * tests/ref/conv_ref.py (PyTorch) as JSON and exits. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/rng.h"
#include "core/model.h"
#include "spec_helpers.h"

/* ---- Specs ---------------------------------------------------------------------------- */

static ml_layer_spec spec_of(const ml_layer_ops *ops)
{
    ml_layer_spec s;
    ml_layer_spec_init(&s, ops);
    return s;
}

static void set_i(ml_layer_spec *s, const char *key, int64_t v)
{
    int k = ml_layer_key_find(s->ops, key);
    assert_true(k >= 0);
    s->val[k].i = v;
}

static void set_f(ml_layer_spec *s, const char *key, double v)
{
    int k = ml_layer_key_find(s->ops, key);
    assert_true(k >= 0);
    s->val[k].f = v;
}

/* padding: a literal (code-written specs are never fini'd). */
static ml_layer_spec conv(int filters, int kernel, int stride, const char *padding, int act)
{
    ml_layer_spec s = spec_of(&ml_layer_conv2d);
    set_i(&s, "filters", filters);
    set_i(&s, "kernel", kernel);
    set_i(&s, "stride", stride);
    set_i(&s, "activation", act);
    s.val[ml_layer_key_find(s.ops, "padding")].s = (char *)padding;
    return s;
}

static ml_layer_spec pool(const ml_layer_ops *ops, int p, int stride)
{
    ml_layer_spec s = spec_of(ops);
    set_i(&s, "pool", p);
    set_i(&s, "stride", stride);
    return s;
}

/* ---- One layer on its own -------------------------------------------------------------- */

typedef struct {
    ml_layer l;
    ml_layer_spec spec;
    int n;
    float *t[ML_MAX_TENSORS], *dt[ML_MAX_TENSORS];
    float *x, *y, *dy, *dx;
} harness;

static float *randv(rng_state *r, size_t n, float scale)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = scale * (2.0f * rng_uniform(r) - 1.0f);
    return v;
}

/* Builds layer s on input shape in for n samples: random x, dy and parameters. */
static void h_make(harness *h, ml_layer_spec s, ml_shape in, int n, int training, uint64_t seed)
{
    memset(h, 0, sizeof *h);
    h->spec = s;
    h->n = n;
    h->l.spec = &h->spec;
    h->l.nin = 1;
    h->l.in_shape[0] = in;
    h->l.in[0] = ml_shape_width(&in);
    h->l.training = training;
    h->l.seed = seed;
    pst_err err = {0};
    assert_int_equal(s.ops->shape(&h->l, &err), 0);
    rng_state r;
    rng_seed(&r, seed);
    size_t ws = s.ops->workspace ? s.ops->workspace(&h->l, n) : 0;
    h->l.ws = malloc(sizeof(float) * (ws + 1));
    for (int k = 0; k < h->l.ntensors; k++) {
        size_t len = (size_t)h->l.tensor[k].rows * h->l.tensor[k].cols;
        h->t[k] = randv(&r, len, 1.0f);
        h->dt[k] = calloc(len, sizeof(float));
        if ((h->l.state_mask >> k) & 1u) {
            for (size_t i = 0; i < len; i++) /* a variance must be positive */
                h->t[k][i] = 0.5f + fabsf(h->t[k][i]);
            h->l.state[k] = h->t[k];
        }
    }
    h->x = randv(&r, (size_t)n * h->l.in[0], 1.0f);
    h->dy = randv(&r, (size_t)n * h->l.out, 1.0f);
    h->y = calloc((size_t)n * h->l.out, sizeof(float));
    h->dx = calloc((size_t)n * h->l.in[0], sizeof(float));
}

static void h_free(harness *h)
{
    for (int k = 0; k < h->l.ntensors; k++)
        free(h->t[k]), free(h->dt[k]);
    free(h->x), free(h->y), free(h->dy), free(h->dx), free(h->l.ws);
}

static void h_forward(harness *h)
{
    const float *x[1] = {h->x};
    const float *t[ML_MAX_TENSORS] = {h->t[0], h->t[1], h->t[2], h->t[3]};
    h->spec.ops->forward(&h->l, h->y, x, t, h->n);
}

static void h_backward(harness *h)
{
    float *dx[1] = {h->dx};
    const float *x[1] = {h->x};
    const float *t[ML_MAX_TENSORS] = {h->t[0], h->t[1], h->t[2], h->t[3]};
    h->spec.ops->backward(&h->l, dx, h->dt, h->dy, h->y, x, t, h->n);
}

/* f = <y, dy> in double. */
static double h_f(harness *h)
{
    h_forward(h);
    double f = 0.0;
    for (size_t i = 0; i < (size_t)h->n * h->l.out; i++)
        f += (double)h->y[i] * h->dy[i];
    return f;
}

/* ||g - g_fd|| <= 3e-3 ||g_fd|| + 1e-4 over the vector v of len entries (tolerance as
 * tests/test_model.c's: float forwards, h = 1e-3). State tensors have zero gradients. */
static void fd_check(harness *h, float *v, const float *g, size_t len, const char *what)
{
    const float step = 1e-3f;
    double num = 0.0, den = 0.0;
    for (size_t k = 0; k < len; k++) {
        float keep = v[k];
        v[k] = keep + step;
        double fp = h_f(h);
        v[k] = keep - step;
        double fm = h_f(h);
        v[k] = keep;
        double fd = (fp - fm) / (2.0 * step);
        num += (g[k] - fd) * (g[k] - fd);
        den += fd * fd;
    }
    if (sqrt(num) > 3e-3 * sqrt(den) + 1e-4)
        fail_msg("%s %s: gradient mismatch |g - fd| = %g, |fd| = %g", h->spec.ops->name, what,
                 sqrt(num), sqrt(den));
}

static void check_layer(ml_layer_spec s, ml_shape in, int n, int training, uint64_t seed)
{
    harness h;
    h_make(&h, s, in, n, training, seed);
    if (s.ops == &ml_layer_max_pool2d) {
        /* distinct values 0.01 apart: no step of the differences moves a window's argmax */
        uint32_t len = (uint32_t)n * (uint32_t)h.l.in[0];
        uint32_t *perm = malloc(sizeof *perm * len);
        rng_state r;
        rng_seed(&r, seed);
        for (uint32_t i = 0; i < len; i++)
            perm[i] = i;
        rng_shuffle_u32(&r, perm, len);
        for (uint32_t i = 0; i < len; i++)
            h.x[i] = 0.01f * (float)perm[i] - 0.005f * (float)len;
        free(perm);
    }
    h_forward(&h);
    h_backward(&h);
    /* the mode's statistics must not move while the differences are taken */
    for (int k = 0; k < h.l.ntensors; k++)
        h.l.state[k] = NULL;
    fd_check(&h, h.x, h.dx, (size_t)n * h.l.in[0], "dx");
    for (int k = 0; k < h.l.ntensors; k++) {
        float *g = h.dt[k];
        size_t len = (size_t)h.l.tensor[k].rows * h.l.tensor[k].cols;
        if ((h.l.state_mask >> k) & 1u) { /* state: no gradient by design */
            for (size_t i = 0; i < len; i++)
                assert_true(g[i] == 0.0f);
            continue;
        }
        fd_check(&h, h.t[k], g, len, h.l.tensor[k].name);
    }
    h_free(&h);
}

static ml_shape img(int c, int hh, int w) { return ml_shape_image(c, hh, w); }

static void test_conv_gradients(void **state)
{
    (void)state;
    check_layer(conv(2, 3, 1, NULL, 0), img(1, 5, 5), 1, 1, 1);    /* batch 1, valid */
    check_layer(conv(3, 3, 1, NULL, 0), img(2, 5, 7), 3, 1, 2);    /* odd, rectangular */
    check_layer(conv(2, 1, 1, NULL, 0), img(3, 4, 5), 2, 1, 3);    /* 1x1 */
    check_layer(conv(4, 3, 2, "1", 0), img(2, 7, 6), 2, 1, 4);     /* stride 2, pad 1 */
    check_layer(conv(2, 3, 2, "same", 0), img(3, 6, 7), 2, 1, 5);  /* same, stride 2 */
    check_layer(conv(2, 3, 1, "same", 0), img(2, 5, 5), 1, 1, 6);  /* same, stride 1 */
    check_layer(conv(3, 2, 3, "valid", 0), img(2, 8, 7), 2, 1, 7); /* even kernel, stride 3 */
    ml_layer_spec d = conv(2, 3, 1, "2", 0);
    set_i(&d, "dilation", 2);
    check_layer(d, img(2, 6, 5), 2, 1, 8);
}

static void test_pool_gradients(void **state)
{
    (void)state;
    check_layer(pool(&ml_layer_max_pool2d, 2, 0), img(2, 6, 6), 1, 1, 11);
    check_layer(pool(&ml_layer_max_pool2d, 2, 0), img(3, 7, 5), 3, 1, 12); /* floor */
    check_layer(pool(&ml_layer_max_pool2d, 3, 2), img(2, 7, 7), 2, 1, 13); /* overlapping */
    check_layer(pool(&ml_layer_avg_pool2d, 2, 0), img(2, 5, 6), 2, 1, 14);
    check_layer(pool(&ml_layer_avg_pool2d, 3, 1), img(1, 5, 5), 1, 1, 15);
    check_layer(spec_of(&ml_layer_global_avg_pool), img(3, 4, 5), 2, 1, 16);
    check_layer(spec_of(&ml_layer_flatten), img(2, 3, 3), 2, 1, 17);
}

static void test_dropout_and_batchnorm_gradients(void **state)
{
    (void)state;
    ml_layer_spec d = spec_of(&ml_layer_dropout);
    set_f(&d, "rate", 0.3);
    check_layer(d, img(2, 4, 4), 3, 1, 21);
    check_layer(d, ml_shape_flat(9), 2, 0, 22);
    ml_layer_spec b = spec_of(&ml_layer_batchnorm);
    check_layer(b, img(3, 4, 5), 2, 1, 23);     /* over channels */
    check_layer(b, img(2, 3, 3), 1, 1, 24);     /* batch 1: 9 values per channel */
    check_layer(b, ml_shape_flat(5), 6, 1, 25); /* over features */
    check_layer(b, img(3, 2, 3), 2, 0, 26);     /* evaluation: running statistics */
    check_layer(b, ml_shape_flat(4), 3, 0, 27);
}

/* ---- Forward values ------------------------------------------------------------------- */

static void test_conv_known_values(void **state)
{
    (void)state;
    /* one 3x3 image 1..9, a 2x2 kernel of ones, bias 0.5: sums of each 2x2 window */
    harness h;
    h_make(&h, conv(1, 2, 1, NULL, 0), img(1, 3, 3), 1, 1, 1);
    for (int i = 0; i < 9; i++)
        h.x[i] = (float)(i + 1);
    for (int i = 0; i < 4; i++)
        h.t[0][i] = 1.0f;
    h.t[1][0] = 0.5f;
    h_forward(&h);
    float want[4] = {12.5f, 16.5f, 24.5f, 28.5f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(h.y[i], want[i], 1e-5);
    h_free(&h);
    /* same padding keeps 3x3; the centre sees all nine */
    h_make(&h, conv(1, 3, 1, "same", 0), img(1, 3, 3), 1, 1, 1);
    for (int i = 0; i < 9; i++)
        h.x[i] = (float)(i + 1), h.t[0][i] = 1.0f;
    h.t[1][0] = 0.0f;
    h_forward(&h);
    assert_int_equal(h.l.out_shape.d[1], 3);
    assert_float_equal(h.y[4], 45.0f, 1e-5);
    assert_float_equal(h.y[0], 1.0f + 2 + 4 + 5, 1e-5);
    h_free(&h);
}

static void test_dropout_modes(void **state)
{
    (void)state;
    ml_layer_spec d = spec_of(&ml_layer_dropout);
    set_f(&d, "rate", 0.25);
    harness h;
    h_make(&h, d, ml_shape_flat(1000), 8, 1, 5);
    for (int i = 0; i < 8000; i++)
        h.x[i] = 1.0f;
    h_forward(&h);
    int zeros = 0;
    for (int i = 0; i < 8000; i++) {
        zeros += h.y[i] == 0.0f;
        assert_true(h.y[i] == 0.0f || fabsf(h.y[i] - 1.0f / 0.75f) < 1e-6f);
    }
    assert_in_range(zeros, 1800, 2200); /* 2000 expected, sd ~39 */
    float *first = malloc(sizeof(float) * 8000);
    memcpy(first, h.y, sizeof(float) * 8000);
    h_forward(&h); /* the same seed: the same mask */
    assert_memory_equal(first, h.y, sizeof(float) * 8000);
    h.l.seed = 6; /* another step */
    h_forward(&h);
    assert_true(memcmp(first, h.y, sizeof(float) * 8000) != 0);
    h.l.training = 0; /* evaluation: identity */
    h_forward(&h);
    for (int i = 0; i < 8000; i++)
        assert_true(h.y[i] == 1.0f);
    free(first);
    h_free(&h);
}

static void test_batchnorm_statistics(void **state)
{
    (void)state;
    ml_layer_spec b = spec_of(&ml_layer_batchnorm);
    set_f(&b, "momentum", 0.9);
    harness h;
    h_make(&h, b, img(2, 2, 2), 3, 1, 9);
    for (int k = 0; k < 2; k++)
        h.t[0][k] = 1.0f, h.t[1][k] = 0.0f, h.t[2][k] = 0.0f, h.t[3][k] = 1.0f;
    h_forward(&h);
    /* channel 0: 12 values; y has mean 0 and variance var / (var + eps) */
    for (int c = 0; c < 2; c++) {
        double s = 0, sq = 0, mx = 0, vx = 0;
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 4; k++) {
                s += h.y[(i * 2 + c) * 4 + k];
                sq += h.y[(i * 2 + c) * 4 + k] * h.y[(i * 2 + c) * 4 + k];
                mx += h.x[(i * 2 + c) * 4 + k];
            }
        mx /= 12;
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 4; k++)
                vx += pow(h.x[(i * 2 + c) * 4 + k] - mx, 2);
        assert_true(fabs(s / 12) < 1e-5);
        assert_true(fabs(sq / 12 - (vx / 12) / (vx / 12 + 1e-3)) < 1e-4);
        assert_float_equal(h.t[2][c], 0.1 * mx, 1e-5);
        assert_float_equal(h.t[3][c], 0.9 + 0.1 * vx / 11, 1e-5); /* unbiased */
    }
    /* evaluation uses the running statistics: y = (x - rm) / sqrt(rv + eps) */
    h.l.training = 0;
    h_forward(&h);
    float want = (h.x[0] - h.t[2][0]) / sqrtf(h.t[3][0] + 1e-3f);
    assert_float_equal(h.y[0], want, 1e-5);
    h_free(&h);
}

/* ---- Whole models ---------------------------------------------------------------------- */

static void check_model(ml_layer_spec *layers, unsigned nl, ml_shape in, int n, uint64_t seed)
{
    ml_model_spec spec = {
        .layers = layers, .nlayers = nl, .loss = ML_LOSS_CCE, .init = ML_INIT_GLOROT};
    pst_err err = {0};
    ml_model *m = ml_model_create_shaped(&spec, &in, n, &err);
    if (!m)
        fail_msg("create: %s", err.msg);
    ml_model_init(m, seed);
    ml_model_set_mode(m, 1, seed);
    rng_state r;
    rng_seed(&r, seed + 1);
    int D = ml_model_in_dim(m), K = ml_model_out_dim(m);
    float *x = randv(&r, (size_t)n * D, 1.0f);
    int32_t label[16];
    for (int i = 0; i < n; i++)
        label[i] = (int32_t)rng_below(&r, (uint64_t)K);
    ml_model_forward(m, x, n);
    ml_model_loss(m, label, NULL, n);
    ml_model_backward(m, x, n);
    size_t P = ml_model_nparams(m);
    float *g = malloc(sizeof(float) * P), *p = ml_model_params(m);
    memcpy(g, ml_model_grads(m), sizeof(float) * P);
    double num = 0, den = 0;
    const float h = 1e-3f;
    for (int s = 0; s < ml_model_nsegments(m); s++) {
        const ml_segment *sg = ml_model_segment(m, s);
        if (sg->state) { /* running statistics: no gradient, and not read in training */
            for (size_t k = 0; k < sg->len; k++)
                assert_true(g[sg->offset + k] == 0.0f);
            continue;
        }
        for (size_t k = sg->offset; k < sg->offset + sg->len; k++) {
            float keep = p[k];
            p[k] = keep + h;
            ml_model_forward(m, x, n);
            double lp = ml_model_loss(m, label, NULL, n);
            p[k] = keep - h;
            ml_model_forward(m, x, n);
            double lm = ml_model_loss(m, label, NULL, n);
            p[k] = keep;
            double fd = (lp - lm) / (2.0 * h);
            num += (g[k] - fd) * (g[k] - fd);
            den += fd * fd;
        }
    }
    if (sqrt(num) > 3e-3 * sqrt(den) + 1e-5)
        fail_msg("model gradient mismatch: |g - fd| = %g, |fd| = %g", sqrt(num), sqrt(den));
    free(x), free(g);
    ml_model_destroy(m);
}

static void test_model_gradients(void **state)
{
    (void)state;
    ml_layer_spec fl = spec_of(&ml_layer_flatten), dr = spec_of(&ml_layer_dropout);
    set_f(&dr, "rate", 0.2);
    ml_layer_spec cnn[] = {conv(3, 3, 1, NULL, ACT_TANH),
                           pool(&ml_layer_max_pool2d, 2, 0),
                           conv(4, 3, 1, "same", ACT_TANH),
                           fl,
                           dr,
                           DENSE(3, ACT_SOFTMAX)};
    check_model(cnn, 6, img(1, 8, 7), 1, 31);
    check_model(cnn, 6, img(1, 8, 7), 3, 32);
    /* a residual block: x + conv(bn(conv(x))), then global pooling; dense with no flatten */
    ml_layer_spec c1 = conv(2, 3, 1, "same", ACT_TANH);
    c1.name = "c1";
    ml_layer_spec bn = spec_of(&ml_layer_batchnorm), c2 = conv(2, 1, 1, NULL, 0);
    c2.name = "c2";
    ml_layer_spec add = spec_of(&ml_layer_add);
    char *ins[] = {"c1", "c2"};
    add.inputs = ins;
    add.ninputs = 2;
    ml_layer_spec res[] = {
        c1, bn, c2, add, spec_of(&ml_layer_global_avg_pool), DENSE(3, ACT_SOFTMAX)};
    check_model(res, 6, img(2, 5, 5), 2, 33);
    ml_layer_spec avg[] = {conv(2, 3, 2, "1", ACT_TANH), pool(&ml_layer_avg_pool2d, 2, 1),
                           DENSE(2, ACT_SOFTMAX)};
    check_model(avg, 3, img(3, 7, 6), 2, 34);
    /* batchnorm over features */
    ml_layer_spec feat[] = {DENSE(4, ACT_TANH), spec_of(&ml_layer_batchnorm),
                            DENSE(3, ACT_SOFTMAX)};
    check_model(feat, 3, ml_shape_flat(5), 4, 35);
}

static void test_shapes_through_model(void **state)
{
    (void)state;
    ml_layer_spec L[] = {conv(8, 3, 1, NULL, ACT_RELU), pool(&ml_layer_max_pool2d, 2, 0),
                         spec_of(&ml_layer_flatten), DENSE(10, ACT_SOFTMAX)};
    ml_model_spec spec = {.layers = L, .nlayers = 4, .loss = ML_LOSS_CCE};
    ml_shape in = img(1, 28, 28);
    pst_err err = {0};
    ml_model *m = ml_model_create_shaped(&spec, &in, 4, &err);
    assert_non_null(m);
    assert_int_equal(ml_model_in_dim(m), 784);
    assert_int_equal(ml_model_in_shape(m).rank, 3);
    /* conv weight (8, 9), bias 8, dense (10, 8*13*13) + 10 */
    size_t want = 8 * 9 + 8 + 10 * 8 * 13 * 13 + 10;
    assert_int_equal(ml_model_nparams(m), want);
    assert_int_equal(ml_model_spec_nparams_shaped(&spec, &in), want);
    assert_int_equal(ml_model_segment(m, 0)->cols, 9);
    ml_model_destroy(m);
    /* batchnorm's state segments */
    ml_layer_spec B[] = {spec_of(&ml_layer_batchnorm), DENSE(2, ACT_SOFTMAX)};
    spec = (ml_model_spec){.layers = B, .nlayers = 2, .loss = ML_LOSS_CCE};
    m = ml_model_create(&spec, 3, 2, &err);
    assert_non_null(m);
    assert_int_equal(ml_model_nsegments(m), 6);
    assert_string_equal(ml_model_segment(m, 2)->name, "batchnorm_0.running_mean");
    assert_int_equal(ml_model_segment(m, 2)->state, 1);
    assert_int_equal(ml_model_segment(m, 0)->state, 0);
    ml_model_destroy(m);
}

/* One clear line each for inputs a layer cannot take. */
static void expect_refusal(ml_layer_spec *L, unsigned nl, ml_shape in, const char *want)
{
    ml_model_spec spec = {.layers = L, .nlayers = nl, .loss = ML_LOSS_CCE};
    pst_err err = {0};
    ml_model *m = ml_model_create_shaped(&spec, &in, 2, &err);
    assert_null(m);
    if (!strstr(err.msg, want))
        fail_msg("wanted '%s' in: %s", want, err.msg);
    assert_null(strchr(err.msg, '\n'));
}

static void test_bad_input(void **state)
{
    (void)state;
    ml_layer_spec a[] = {conv(4, 3, 1, NULL, 0), DENSE(2, ACT_SOFTMAX)};
    expect_refusal(a, 2, ml_shape_flat(784), "model.layers.0.inputs: conv2d needs an image");
    expect_refusal(a, 2, img(1, 2, 5), "model.layers.0.kernel: 3 (dilation 1) is larger than");
    ml_layer_spec b[] = {conv(4, 3, 1, "sideways", 0), DENSE(2, ACT_SOFTMAX)};
    expect_refusal(b, 2, img(1, 5, 5), "padding: 'sideways' is not valid, same or an integer");
    ml_layer_spec c[] = {DENSE(4, 0), pool(&ml_layer_max_pool2d, 2, 0), DENSE(2, ACT_SOFTMAX)};
    expect_refusal(c, 3, img(1, 5, 5), "model.layers.1.inputs: max_pool2d needs an image");
    ml_layer_spec d[] = {pool(&ml_layer_avg_pool2d, 6, 0), DENSE(2, ACT_SOFTMAX)};
    expect_refusal(d, 2, img(1, 5, 5), "pool: 6 is larger than the input (1, 5, 5)");
    ml_layer_spec e[] = {spec_of(&ml_layer_global_avg_pool), DENSE(2, ACT_SOFTMAX)};
    expect_refusal(e, 2, ml_shape_flat(9), "global_avg_pool needs an image input");
}

/* ---- The PyTorch reference's cases (tests/ref/conv_ref.py) ------------------------------ */

static void dump_array(FILE *f, const char *name, const float *v, size_t n)
{
    fprintf(f, "\"%s\": [", name);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%.9g", i ? "," : "", (double)v[i]);
    fprintf(f, "]");
}

static void dump_case(FILE *f, int first, ml_layer_spec s, ml_shape in, int n, int training,
                      uint64_t seed, const char *args)
{
    harness h;
    h_make(&h, s, in, n, training, seed);
    float rm[64] = {0}, rv[64] = {0};
    for (int k = 0; k < h.l.ntensors; k++)
        if ((h.l.state_mask >> k) & 1u)
            memcpy(k == 2 ? rm : rv, h.t[k], sizeof(float) * (size_t)h.l.tensor[k].rows);
    h_forward(&h);
    h_backward(&h);
    fprintf(
        f,
        "%s{\"type\": \"%s\", \"args\": {%s}, \"n\": %d, \"training\": %d, \"in\": [%d, %d, %d], ",
        first ? "" : ",\n", s.ops->name, args, n, training, in.d[0], in.d[1], in.d[2]);
    fprintf(f, "\"out\": [%d, %d, %d], ", h.l.out_shape.d[0], h.l.out_shape.d[1],
            h.l.out_shape.d[2]);
    dump_array(f, "x", h.x, (size_t)n * h.l.in[0]);
    fputs(", ", f);
    dump_array(f, "dy", h.dy, (size_t)n * h.l.out);
    fputs(", ", f);
    dump_array(f, "y", h.y, (size_t)n * h.l.out);
    fputs(", ", f);
    dump_array(f, "dx", h.dx, (size_t)n * h.l.in[0]);
    for (int k = 0; k < h.l.ntensors; k++) {
        size_t len = (size_t)h.l.tensor[k].rows * h.l.tensor[k].cols;
        char nm[64];
        int st = (h.l.state_mask >> k) & 1u;
        fputs(", ", f);
        snprintf(nm, sizeof nm, "%s", h.l.tensor[k].name);
        dump_array(f, nm, st ? (k == 2 ? rm : rv) : h.t[k], len);
        if (st) { /* the updated statistics */
            snprintf(nm, sizeof nm, "%s_after", h.l.tensor[k].name);
            fputs(", ", f);
            dump_array(f, nm, h.t[k], len);
        } else {
            snprintf(nm, sizeof nm, "d%s", h.l.tensor[k].name);
            fputs(", ", f);
            dump_array(f, nm, h.dt[k], len);
        }
    }
    fputs("}", f);
    h_free(&h);
}

static int dump(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fputs("[\n", f);
    dump_case(f, 1, conv(4, 3, 1, NULL, 0), img(3, 7, 6), 2, 1, 41,
              "\"kernel\": 3, \"stride\": 1, \"padding\": 0, \"dilation\": 1");
    dump_case(f, 0, conv(3, 3, 2, "1", 0), img(2, 8, 7), 3, 1, 42,
              "\"kernel\": 3, \"stride\": 2, \"padding\": 1, \"dilation\": 1");
    dump_case(f, 0, conv(5, 1, 1, NULL, 0), img(4, 5, 5), 1, 1, 43,
              "\"kernel\": 1, \"stride\": 1, \"padding\": 0, \"dilation\": 1");
    dump_case(f, 0, conv(2, 3, 1, "same", 0), img(2, 6, 5), 2, 1, 44,
              "\"kernel\": 3, \"stride\": 1, \"padding\": 1, \"dilation\": 1");
    ml_layer_spec d = conv(2, 3, 1, "2", 0);
    set_i(&d, "dilation", 2);
    dump_case(f, 0, d, img(2, 7, 7), 2, 1, 45,
              "\"kernel\": 3, \"stride\": 1, \"padding\": 2, \"dilation\": 2");
    dump_case(f, 0, pool(&ml_layer_max_pool2d, 2, 0), img(3, 7, 6), 2, 1, 46,
              "\"pool\": 2, \"stride\": 2");
    dump_case(f, 0, pool(&ml_layer_max_pool2d, 3, 2), img(2, 9, 8), 2, 1, 47,
              "\"pool\": 3, \"stride\": 2");
    dump_case(f, 0, pool(&ml_layer_avg_pool2d, 2, 0), img(3, 6, 7), 2, 1, 48,
              "\"pool\": 2, \"stride\": 2");
    dump_case(f, 0, pool(&ml_layer_avg_pool2d, 3, 1), img(2, 6, 6), 1, 1, 49,
              "\"pool\": 3, \"stride\": 1");
    dump_case(f, 0, spec_of(&ml_layer_global_avg_pool), img(3, 4, 5), 2, 1, 50, "");
    ml_layer_spec b = spec_of(&ml_layer_batchnorm);
    set_f(&b, "momentum", 0.9);
    set_f(&b, "epsilon", 1e-5);
    dump_case(f, 0, b, img(3, 4, 5), 4, 1, 51, "\"momentum\": 0.9, \"eps\": 1e-5");
    dump_case(f, 0, b, img(2, 3, 3), 3, 0, 52, "\"momentum\": 0.9, \"eps\": 1e-5");
    fputs("\n]\n", f);
    return fclose(f) != 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--dump") == 0)
        return dump(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_gradients),
        cmocka_unit_test(test_pool_gradients),
        cmocka_unit_test(test_dropout_and_batchnorm_gradients),
        cmocka_unit_test(test_conv_known_values),
        cmocka_unit_test(test_dropout_modes),
        cmocka_unit_test(test_batchnorm_statistics),
        cmocka_unit_test(test_model_gradients),
        cmocka_unit_test(test_shapes_through_model),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
