/* tests/test_nn.c -- every kernel of core/nn.c and of the activation table against double-precision references, and
 * every backward pass and loss gradient against central finite differences of those
 * references (for batch 1, odd and even shapes). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/layer.h"
#include "core/nn.h"
#include "base/rng.h"

typedef struct {
    int n, in, out;
} shape;

static const shape shapes[] = {{1, 1, 1}, {1, 7, 3},  {3, 5, 4},
                               {5, 1, 9}, {8, 13, 2}, {17, 33, 10}};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static void fill(float *a, size_t n, rng_state *r, float scale)
{
    for (size_t i = 0; i < n; i++)
        a[i] = scale * (2.0f * rng_uniform(r) - 1.0f);
}

/* Compares a to b: max |a - b| <= atol + rtol * max |b|. */
static void assert_close(const float *a, const double *b, size_t n, double rtol, double atol)
{
    double bmax = 0.0, dmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(b[i]) > bmax)
            bmax = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (d > dmax)
            dmax = d;
    }
    if (dmax > atol + rtol * bmax)
        fail_msg("max abs diff %g > %g (max |ref| %g, n %zu)", dmax, atol + rtol * bmax, bmax, n);
}

/* ---- dense ------------------------------------------------------------------------ */

/* Reference y = x W^T + b in double. */
static void dense_ref(double *y, const double *x, const double *w, const double *b, int n, int in,
                      int out)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < out; j++) {
            double s = b[j];
            for (int k = 0; k < in; k++)
                s += x[i * in + k] * w[j * in + k];
            y[i * out + j] = s;
        }
}

/* L = sum_ij c_ij y_ij with fixed random c, so dL/dy = c. */
static double dense_objective(const double *x, const double *w, const double *b, const double *c,
                              int n, int in, int out)
{
    double *y = malloc(sizeof(double) * n * out);
    dense_ref(y, x, w, b, n, in, out);
    double L = 0.0;
    for (int i = 0; i < n * out; i++)
        L += c[i] * y[i];
    free(y);
    return L;
}

static double *to_double(const float *a, size_t n)
{
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        d[i] = a[i];
    return d;
}

/* Central difference of f with respect to every entry of v (double, h = 1e-5). */
#define FD(grad, v, len, expr)                                                                     \
    do {                                                                                           \
        for (size_t q_ = 0; q_ < (size_t)(len); q_++) {                                            \
            double keep_ = (v)[q_];                                                                \
            (v)[q_] = keep_ + 1e-5;                                                                \
            double fp_ = (expr);                                                                   \
            (v)[q_] = keep_ - 1e-5;                                                                \
            double fm_ = (expr);                                                                   \
            (v)[q_] = keep_;                                                                       \
            (grad)[q_] = (fp_ - fm_) / 2e-5;                                                       \
        }                                                                                          \
    } while (0)

/* FD with step h: the float-kernel objective of an activation without a reference needs a
 * step far above float rounding. */
#define FDH(grad, v, len, expr, h)                                                                 \
    do {                                                                                           \
        for (size_t q_ = 0; q_ < (size_t)(len); q_++) {                                            \
            double keep_ = (v)[q_];                                                                \
            (v)[q_] = keep_ + (h);                                                                 \
            double fp_ = (expr);                                                                   \
            (v)[q_] = keep_ - (h);                                                                 \
            double fm_ = (expr);                                                                   \
            (v)[q_] = keep_;                                                                       \
            (grad)[q_] = (fp_ - fm_) / (2 * (h));                                                  \
        }                                                                                          \
    } while (0)

static void test_dense_forward_matches_reference(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 1);
    for (int s = 0; s < NSHAPES; s++) {
        int n = shapes[s].n, in = shapes[s].in, out = shapes[s].out;
        float *x = malloc(sizeof(float) * n * in), *w = malloc(sizeof(float) * out * in);
        float *b = malloc(sizeof(float) * out), *y = malloc(sizeof(float) * n * out);
        fill(x, n * in, &r, 1.0f);
        fill(w, out * in, &r, 1.0f);
        fill(b, out, &r, 1.0f);
        ml_dense_forward(y, x, w, b, n, in, out);
        double *xd = to_double(x, n * in), *wd = to_double(w, out * in), *bd = to_double(b, out);
        double *yd = malloc(sizeof(double) * n * out);
        dense_ref(yd, xd, wd, bd, n, in, out);
        assert_close(y, yd, n * out, 1e-5, 1e-6);
        free(x), free(w), free(b), free(y), free(xd), free(wd), free(bd), free(yd);
    }
}

static void test_dense_backward_finite_differences(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 2);
    for (int s = 0; s < NSHAPES; s++) {
        int n = shapes[s].n, in = shapes[s].in, out = shapes[s].out;
        float *x = malloc(sizeof(float) * n * in), *w = malloc(sizeof(float) * out * in);
        float *dy = malloc(sizeof(float) * n * out), *dx = malloc(sizeof(float) * n * in);
        float *dw = malloc(sizeof(float) * out * in), *db = malloc(sizeof(float) * out);
        fill(x, n * in, &r, 1.0f);
        fill(w, out * in, &r, 1.0f);
        fill(dy, n * out, &r, 1.0f);
        ml_dense_backward(dx, dw, db, dy, x, w, n, in, out, 0);

        double *xd = to_double(x, n * in), *wd = to_double(w, out * in),
               *cd = to_double(dy, n * out);
        double *bd = calloc(out, sizeof(double));
        double *gx = malloc(sizeof(double) * n * in), *gw = malloc(sizeof(double) * out * in);
        double *gb = malloc(sizeof(double) * out);
        FD(gx, xd, n * in, dense_objective(xd, wd, bd, cd, n, in, out));
        FD(gw, wd, out * in, dense_objective(xd, wd, bd, cd, n, in, out));
        FD(gb, bd, out, dense_objective(xd, wd, bd, cd, n, in, out));
        assert_close(dx, gx, n * in, 1e-4, 1e-5);
        assert_close(dw, gw, out * in, 1e-4, 1e-5);
        assert_close(db, gb, out, 1e-4, 1e-5);

        /* accumulate = 1 adds to what is there: a second call doubles dw and db. */
        ml_dense_backward(NULL, dw, db, dy, x, w, n, in, out, 1);
        for (int i = 0; i < out * in; i++)
            gw[i] *= 2.0;
        for (int i = 0; i < out; i++)
            gb[i] *= 2.0;
        assert_close(dw, gw, out * in, 1e-4, 1e-5);
        assert_close(db, gb, out, 1e-4, 1e-5);
        free(x), free(w), free(dy), free(dx), free(dw), free(db);
        free(xd), free(wd), free(cd), free(bd), free(gx), free(gw), free(gb);
    }
}

/* ---- activations: every entry of the table (core/layers/activation.c) ------------- */

/* The double-precision reference of an activation by name; 0 when there is none (a new
 * entry is then checked against finite differences of its own float kernel). */
static int act_ref(double *y, const double *x, int rows, int cols, const char *name)
{
    if (strcmp(name, "softmax") == 0) {
        for (int i = 0; i < rows; i++) {
            double mx = x[i * cols], s = 0;
            for (int j = 1; j < cols; j++)
                mx = fmax(mx, x[i * cols + j]);
            for (int j = 0; j < cols; j++)
                s += exp(x[i * cols + j] - mx);
            for (int j = 0; j < cols; j++)
                y[i * cols + j] = exp(x[i * cols + j] - mx) / s;
        }
        return 1;
    }
    for (int i = 0; i < rows * cols; i++) {
        double v = x[i];
        if (strcmp(name, "linear") == 0)
            y[i] = v;
        else if (strcmp(name, "relu") == 0)
            y[i] = v > 0 ? v : 0;
        else if (strcmp(name, "sigmoid") == 0)
            y[i] = 1.0 / (1.0 + exp(-v));
        else if (strcmp(name, "tanh") == 0)
            y[i] = tanh(v);
        else if (strcmp(name, "gelu") == 0) /* GPT-2's tanh form */
            y[i] = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        else
            return 0;
    }
    return 1;
}

/* sum c * f(x): through the reference when there is one, else through the float kernel. */
static double act_objective(const double *x, const double *c, int rows, int cols,
                            const ml_activation *a)
{
    size_t len = (size_t)rows * cols;
    double *y = malloc(sizeof(double) * len), L = 0;
    if (!act_ref(y, x, rows, cols, a->name)) {
        float *xf = malloc(sizeof(float) * len), *yf = malloc(sizeof(float) * len);
        for (size_t i = 0; i < len; i++)
            xf[i] = (float)x[i];
        a->forward(yf, xf, rows, cols);
        for (size_t i = 0; i < len; i++)
            y[i] = yf[i];
        free(xf), free(yf);
    }
    for (size_t i = 0; i < len; i++)
        L += c[i] * y[i];
    free(y);
    return L;
}

static void test_activations_forward_and_backward(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 3);
    assert_string_equal(ml_activation_name(0), "linear");
    for (int a = 0; a < ml_activation_count(); a++)
        for (int s = 0; s < NSHAPES; s++) {
            const ml_activation *act = ml_activation_at(a);
            int rows = shapes[s].n, cols = shapes[s].out;
            size_t len = (size_t)rows * cols;
            float *x = malloc(sizeof(float) * len), *y = malloc(sizeof(float) * len);
            float *dy = malloc(sizeof(float) * len), *dx = malloc(sizeof(float) * len);
            fill(x, len, &r, 3.0f);
            /* Keep ReLU inputs away from the kink, where the derivative is undefined. */
            for (size_t i = 0; i < len; i++)
                if (fabsf(x[i]) < 0.05f)
                    x[i] = 0.1f;
            fill(dy, len, &r, 1.0f);
            act->forward(y, x, rows, cols);
            double *xd = to_double(x, len), *cd = to_double(dy, len);
            double *yd = malloc(sizeof(double) * len), *gx = malloc(sizeof(double) * len);
            int ref = act_ref(yd, xd, rows, cols, act->name);
            if (ref)
                assert_close(y, yd, len, 1e-6, 1e-6);
            /* Without a reference the objective runs in float: a coarser check. */
            double rtol = ref ? 1e-4 : 1e-2, atol = ref ? 1e-5 : 1e-3;
            if (act->backward_x)
                act->backward_x(dx, dy, x, rows, cols);
            else
                act->backward(dx, dy, y, rows, cols);
            FDH(gx, xd, len, act_objective(xd, cd, rows, cols, act), ref ? 1e-5 : 1e-3);
            assert_close(dx, gx, len, rtol, atol);
            /* In place: dx may be dy. */
            if (act->backward_x)
                act->backward_x(dy, dy, x, rows, cols);
            else
                act->backward(dy, dy, y, rows, cols);
            assert_close(dy, gx, len, rtol, atol);
            /* Forward in place gives the same. */
            act->forward(x, x, rows, cols);
            assert_memory_equal(x, y, len * sizeof(float));
            free(x), free(y), free(dy), free(dx), free(xd), free(cd), free(yd), free(gx);
        }
}

static void test_softmax_is_stable_for_large_logits(void **state)
{
    (void)state;
    const ml_activation *softmax = ml_activation_at(ml_activation_find("softmax"));
    const ml_activation *sigmoid = ml_activation_at(ml_activation_find("sigmoid"));
    float x[4] = {1000.0f, 1000.0f, -1000.0f, 0.0f}, y[4];
    softmax->forward(y, x, 1, 4);
    assert_float_equal(y[0], 0.5f, 1e-6);
    assert_float_equal(y[1], 0.5f, 1e-6);
    assert_float_equal(y[2], 0.0f, 1e-6);
    float s[2] = {-200.0f, 200.0f}, p[2];
    sigmoid->forward(p, s, 1, 2);
    assert_float_equal(p[0], 0.0f, 1e-6);
    assert_float_equal(p[1], 1.0f, 1e-6);
}

/* ---- losses ----------------------------------------------------------------------- */

static double softmax_xent_ref(const double *z, const int32_t *label, int n, int c)
{
    double L = 0;
    for (int i = 0; i < n; i++) {
        double mx = z[i * c], s = 0;
        for (int j = 1; j < c; j++)
            mx = fmax(mx, z[i * c + j]);
        for (int j = 0; j < c; j++)
            s += exp(z[i * c + j] - mx);
        L -= z[i * c + label[i]] - mx - log(s);
    }
    return L / n;
}

static double xent_ref(const double *p, const int32_t *label, int n, int c)
{
    double L = 0;
    for (int i = 0; i < n; i++)
        L -= log(p[i * c + label[i]]);
    return L / n;
}

static double sigmoid_bce_ref(const double *z, const double *t, int len)
{
    double L = 0;
    for (int i = 0; i < len; i++) {
        double s = 1.0 / (1.0 + exp(-z[i]));
        L -= t[i] * log(s) + (1 - t[i]) * log(1 - s);
    }
    return L / len;
}

static double bce_ref(const double *p, const double *t, int len)
{
    double L = 0;
    for (int i = 0; i < len; i++)
        L -= t[i] * log(p[i]) + (1 - t[i]) * log(1 - p[i]);
    return L / len;
}

static double mse_ref(const double *y, const double *t, int len)
{
    double L = 0;
    for (int i = 0; i < len; i++)
        L += (y[i] - t[i]) * (y[i] - t[i]);
    return L / len;
}

static void test_losses_value_and_gradient(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 4);
    for (int s = 0; s < NSHAPES; s++) {
        int n = shapes[s].n, c = shapes[s].out + 1; /* at least 2 classes */
        size_t len = (size_t)n * c;
        float *z = malloc(sizeof(float) * len), *g = malloc(sizeof(float) * len);
        float *p = malloc(sizeof(float) * len), *t = malloc(sizeof(float) * len);
        int32_t *label = malloc(sizeof(int32_t) * n);
        fill(z, len, &r, 2.0f);
        for (int i = 0; i < n; i++)
            label[i] = (int32_t)rng_below(&r, (uint64_t)c);
        for (size_t i = 0; i < len; i++)
            t[i] = rng_uniform(&r);
        double *zd = to_double(z, len), *td = to_double(t, len);
        double *gd = malloc(sizeof(double) * len);

        /* softmax + cross-entropy from logits */
        double L = ml_softmax_xent(g, p, z, label, n, c);
        assert_float_equal(L, softmax_xent_ref(zd, label, n, c), 1e-5);
        FD(gd, zd, len, softmax_xent_ref(zd, label, n, c));
        assert_close(g, gd, len, 1e-4, 1e-6);
        for (int i = 0; i < n; i++) { /* prob rows sum to one */
            double sum = 0;
            for (int j = 0; j < c; j++)
                sum += p[i * c + j];
            assert_float_equal(sum, 1.0, 1e-5);
        }

        /* cross-entropy on probabilities */
        double *pd = to_double(p, len);
        L = ml_xent(g, p, label, n, c);
        assert_float_equal(L, xent_ref(pd, label, n, c), 1e-5);
        FD(gd, pd, len, xent_ref(pd, label, n, c));
        assert_close(g, gd, len, 1e-4, 1e-6);

        /* sigmoid + binary cross-entropy from logits, soft targets */
        L = ml_sigmoid_bce(g, p, z, t, n, c);
        assert_float_equal(L, sigmoid_bce_ref(zd, td, (int)len), 1e-5);
        FD(gd, zd, len, sigmoid_bce_ref(zd, td, (int)len));
        assert_close(g, gd, len, 1e-4, 1e-6);

        /* binary cross-entropy on probabilities (p = sigmoid(z) from the call above) */
        free(pd);
        pd = to_double(p, len);
        L = ml_bce(g, p, t, n, c);
        assert_float_equal(L, bce_ref(pd, td, (int)len), 1e-5);
        FD(gd, pd, len, bce_ref(pd, td, (int)len));
        assert_close(g, gd, len, 1e-3, 1e-6);

        /* mean squared error */
        L = ml_mse(g, z, t, n, c);
        assert_float_equal(L, mse_ref(zd, td, (int)len), 1e-5);
        FD(gd, zd, len, mse_ref(zd, td, (int)len));
        assert_close(g, gd, len, 1e-4, 1e-6);

        free(z), free(g), free(p), free(t), free(label), free(zd), free(td), free(gd), free(pd);
    }
}

static void test_losses_are_stable_at_extremes(void **state)
{
    (void)state;
    /* Logits of +-1000 must give finite losses and gradients (naive exp overflows). */
    float z[2] = {1000.0f, -1000.0f}, g[2];
    int32_t label[1] = {1};
    double L = ml_softmax_xent(g, NULL, z, label, 1, 2);
    assert_float_equal(L, 2000.0, 1e-3);
    assert_float_equal(g[0], 1.0f, 1e-6);
    assert_float_equal(g[1], -1.0f, 1e-6);
    float t[2] = {0.0f, 1.0f};
    L = ml_sigmoid_bce(g, NULL, z, t, 1, 2);
    assert_float_equal(L, 1000.0, 1e-3); /* mean of 1000 and 1000 */
    assert_true(isfinite(g[0]) && isfinite(g[1]));
    float p[2] = {0.0f, 1.0f};
    L = ml_bce(g, p, t, 1, 2);
    assert_true(isfinite(L) && L < 1e-5);
    L = ml_xent(g, p, label, 1, 2);
    assert_true(isfinite(L) && L < 1e-5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_forward_matches_reference),
        cmocka_unit_test(test_dense_backward_finite_differences),
        cmocka_unit_test(test_activations_forward_and_backward),
        cmocka_unit_test(test_softmax_is_stable_for_large_logits),
        cmocka_unit_test(test_losses_value_and_gradient),
        cmocka_unit_test(test_losses_are_stable_at_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
