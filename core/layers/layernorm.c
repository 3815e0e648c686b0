/* core/layers/layernorm.c -- `layernorm` over the C channels of each token.
 *
 *   x: (N, T*C)   w "weight": (C)   b "bias": (C)   y: (N, T*C)
 *   mu = mean_c x,  var = mean_c (x - mu)^2 (biased),  r = 1 / sqrt(var + eps),
 *   xhat = (x - mu) r,  y = xhat * w + b                       (Ba et al. 2016; eps 1e-5)
 *
 * Backward (llm.c's layernorm_backward), per token with g = dy * w:
 *   dx = r (g - mean_c g - xhat mean_c(g xhat)),  dw = sum dy xhat,  db = sum dy.
 * mu and r are recomputed from x in backward (2 passes over C) instead of kept. */
#include <math.h>
#include <string.h>

#include "core/layers/seq.h"

#define LN_EPS 1e-5f

enum { KEY_TOKENS };

static const ml_layer_key keys[] = {
    [KEY_TOKENS] = {.name = "tokens",
                    .kind = ML_KEY_INT,
                    .def = 0,
                    .min = 1,
                    .max = 1 << 20,
                    .doc = "context length T; normalises each of the T rows of C",
                    .flags = ML_KEY_REQUIRED},
};

static int ln_shape(ml_layer *l, pst_err *err)
{
    int c = 0;
    if (ml_seq_channels(l->in[0], (int)l->spec->val[KEY_TOKENS].i, &c, err))
        return PST_ERR_CONFIG;
    l->out = l->in[0];
    l->ntensors = 2;
    l->tensor[0] = (ml_tensor){"weight", c, 1};
    l->tensor[1] = (ml_tensor){"bias", c, 1};
    return PST_OK;
}

static void ln_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he, (void)r;
    for (int j = 0; j < l->tensor[0].rows; j++)
        t[0][j] = 1.0f;
    memset(t[1], 0, (size_t)l->tensor[1].rows * sizeof(float));
}

/* mu and r of one row of c. */
static void ln_stats(const float *restrict x, int c, float *mu, float *r)
{
    float m = 0.0f, v = 0.0f;
    for (int j = 0; j < c; j++)
        m += x[j];
    m /= (float)c;
    for (int j = 0; j < c; j++) {
        float d = x[j] - m;
        v += d * d;
    }
    v /= (float)c;
    *mu = m;
    *r = 1.0f / sqrtf(v + LN_EPS);
}

static void ln_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                       int n)
{
    int c = l->tensor[0].rows;
    size_t rows = (size_t)n * (l->in[0] / c);
    const float *restrict w = t[0], *restrict b = t[1];
    for (size_t i = 0; i < rows; i++) {
        const float *restrict xi = x[0] + i * c;
        float *restrict yi = y + i * c;
        float mu, r;
        ln_stats(xi, c, &mu, &r);
        for (int j = 0; j < c; j++)
            yi[j] = (xi[j] - mu) * r * w[j] + b[j];
    }
}

static void ln_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                        const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y;
    int c = l->tensor[0].rows;
    size_t rows = (size_t)n * (l->in[0] / c);
    const float *restrict w = t[0];
    float *restrict dw = dt[0], *restrict db = dt[1];
    if (dw) {
        memset(dw, 0, (size_t)c * sizeof *dw);
        memset(db, 0, (size_t)c * sizeof *db);
    }
    for (size_t i = 0; i < rows; i++) {
        const float *restrict xi = x[0] + i * c, *restrict di = dy + i * c;
        float mu, r;
        ln_stats(xi, c, &mu, &r);
        if (dw)
            for (int j = 0; j < c; j++) {
                dw[j] += di[j] * (xi[j] - mu) * r;
                db[j] += di[j];
            }
        if (!dx[0])
            continue;
        float mg = 0.0f, mgx = 0.0f;
        for (int j = 0; j < c; j++) {
            float g = di[j] * w[j];
            mg += g;
            mgx += g * (xi[j] - mu) * r;
        }
        mg /= (float)c;
        mgx /= (float)c;
        float *restrict o = dx[0] + i * c;
        for (int j = 0; j < c; j++)
            o[j] = r * (di[j] * w[j] - mg - (xi[j] - mu) * r * mgx);
    }
}

static double ln_flops(const ml_layer *l, int n) { return 20.0 * n * l->out; }

const ml_layer_ops ml_layer_layernorm = {
    .name = "layernorm",
    .summary = "LayerNorm over C per token of (N, T*C), eps 1e-5; weight (C), bias (C)",
    .prefix = "ln",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .has_params = 1,
    .shape = ln_shape,
    .init = ln_init,
    .forward = ln_forward,
    .backward = ln_backward,
    .flops = ln_flops,
};
