/* core/layers/batchnorm.c -- the `batchnorm` layer type (Ioffe & Szegedy 2015).
 *
 *   x: (N, C, H, W) -- statistics per channel over N*H*W values -- or (N, F) -- per
 *   feature over N values (C = F, H*W = 1); y: the shape of x.
 *   gamma "weight" (C), beta "bias" (C): trained;
 *   "running_mean" (C), "running_var" (C): state (core/layer.h ml_tensor.state).
 *
 * Training (M = N*H*W values per channel c):
 *   mu = mean(x_c), var = mean((x_c - mu)^2) (biased), xhat = (x - mu) / sqrt(var + eps)
 *   y = gamma xhat + beta
 *   running_mean = momentum running_mean + (1 - momentum) mu
 *   running_var  = momentum running_var  + (1 - momentum) var M / (M - 1)   (unbiased)
 *   (Keras' momentum: 0.99 keeps 99% of the old value; PyTorch's momentum is 1 - it.)
 *   backward: dbeta = sum dy, dgamma = sum dy xhat,
 *             dx = gamma / sqrt(var + eps) / M * (M dy - dbeta - xhat dgamma)
 *   mu and var are recomputed from x in backward (nothing is kept between the calls).
 * Evaluation: y = gamma (x - running_mean) / sqrt(running_var + eps) + beta; backward
 * (a frozen body's fine-tuning) the matching affine map.
 *
 * The running statistics are tensors of the flat vector (so checkpoints carry them and
 * `pstrain eval` uses them) with zero gradients, in a frozen optimizer group. In a
 * distributed job each worker updates its own copy from its batches; the rule
 * (docs/job-file.md "Batch normalisation") is that worker 0's statistics are
 * authoritative: they are the ones a checkpoint keeps. */
#include <math.h>
#include <string.h>

#include "core/layer.h"

enum { KEY_MOMENTUM, KEY_EPS };
enum { T_GAMMA, T_BETA, T_MEAN, T_VAR };

static const ml_layer_key keys[] = {
    [KEY_MOMENTUM] = {.name = "momentum",
                      .kind = ML_KEY_FLOAT,
                      .def = 0.99,
                      .min = 0.0,
                      .max = 1.0,
                      .doc = "running statistics keep this share of their old value per "
                             "training step (Keras' convention)"},
    [KEY_EPS] = {.name = "epsilon",
                 .kind = ML_KEY_FLOAT,
                 .def = 1e-3,
                 .min = 1e-12,
                 .max = 1.0,
                 .doc = "added to the variance before the square root"},
};

static int bn_shape(ml_layer *l, pst_err *err)
{
    const ml_shape *in = &l->in_shape[0];
    if (in->rank != 1 && in->rank != 3)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "inputs: batchnorm needs features (F) or an image (C, H, W)");
    int c = in->d[0];
    l->out = l->in[0];
    l->out_shape = *in;
    l->ntensors = 4;
    l->tensor[T_GAMMA] = (ml_tensor){"weight", c, 1};
    l->tensor[T_BETA] = (ml_tensor){"bias", c, 1};
    l->tensor[T_MEAN] = (ml_tensor){"running_mean", c, 1};
    l->tensor[T_VAR] = (ml_tensor){"running_var", c, 1};
    l->state_mask = 1u << T_MEAN | 1u << T_VAR;
    return PST_OK;
}

/* Per channel: mean, 1/sqrt(var + eps) (2 C floats). */
static size_t bn_workspace(const ml_layer *l, int n)
{
    (void)n;
    return 2 * (size_t)l->tensor[T_GAMMA].rows;
}

static void bn_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he, (void)r;
    int c = l->tensor[T_GAMMA].rows;
    for (int i = 0; i < c; i++) {
        t[T_GAMMA][i] = 1.0f;
        t[T_BETA][i] = 0.0f;
        t[T_MEAN][i] = 0.0f;
        t[T_VAR][i] = 1.0f;
    }
}

/* Channels C and values per channel and sample S (H*W, or 1). */
static void dims(const ml_layer *l, int *c, size_t *s)
{
    *c = l->tensor[T_GAMMA].rows;
    *s = (size_t)l->in[0] / (size_t)*c;
}

/* mean[c] and istd[c] = 1/sqrt(var + eps): the batch's (training) or the running ones.
 * Returns the batch variance's unbiasing factor M / (M - 1) (1 for M = 1). */
static double stats(const ml_layer *l, const float *x, const float *const *t, int n, float *mean,
                    float *istd)
{
    int C;
    size_t S;
    dims(l, &C, &S);
    double eps = l->spec->val[KEY_EPS].f;
    if (!l->training) {
        for (int c = 0; c < C; c++) {
            mean[c] = t[T_MEAN][c];
            istd[c] = (float)(1.0 / sqrt((double)t[T_VAR][c] + eps));
        }
        return 1.0;
    }
    double M = (double)n * (double)S;
    for (int c = 0; c < C; c++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * C + c) * S;
            for (size_t k = 0; k < S; k++)
                sum += p[k];
        }
        double mu = sum / M, sq = 0.0;
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)i * C + c) * S;
            for (size_t k = 0; k < S; k++)
                sq += ((double)p[k] - mu) * ((double)p[k] - mu);
        }
        mean[c] = (float)mu;
        istd[c] = (float)(1.0 / sqrt(sq / M + eps));
    }
    return M > 1.0 ? M / (M - 1.0) : 1.0;
}

static void bn_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                       int n)
{
    int C;
    size_t S;
    dims(l, &C, &S);
    float *mean = l->ws, *istd = l->ws + C;
    double unbias = stats(l, x[0], t, n, mean, istd);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            const float *p = x[0] + ((size_t)i * C + c) * S;
            float *q = y + ((size_t)i * C + c) * S;
            float a = t[T_GAMMA][c] * istd[c], b = t[T_BETA][c] - a * mean[c];
            for (size_t k = 0; k < S; k++)
                q[k] = a * p[k] + b;
        }
    if (l->training && l->state[T_MEAN] && l->state[T_VAR]) {
        float mom = (float)l->spec->val[KEY_MOMENTUM].f;
        double eps = l->spec->val[KEY_EPS].f;
        for (int c = 0; c < C; c++) {
            double var = 1.0 / ((double)istd[c] * istd[c]) - eps;
            var = var > 0.0 ? var : 0.0;
            l->state[T_MEAN][c] = mom * l->state[T_MEAN][c] + (1.0f - mom) * mean[c];
            l->state[T_VAR][c] = mom * l->state[T_VAR][c] + (1.0f - mom) * (float)(var * unbias);
        }
    }
}

static void bn_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                        const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y;
    int C;
    size_t S;
    dims(l, &C, &S);
    float *mean = l->ws, *istd = l->ws + C;
    stats(l, x[0], t, n, mean, istd);
    double M = (double)n * (double)S;
    for (int c = 0; c < C; c++) {
        double db = 0.0, dg = 0.0;
        for (int i = 0; i < n; i++) {
            const float *p = x[0] + ((size_t)i * C + c) * S, *d = dy + ((size_t)i * C + c) * S;
            for (size_t k = 0; k < S; k++) {
                db += d[k];
                dg += (double)d[k] * ((p[k] - mean[c]) * istd[c]);
            }
        }
        if (dt[T_GAMMA]) {
            dt[T_GAMMA][c] = (float)dg;
            dt[T_BETA][c] = (float)db;
            dt[T_MEAN][c] = 0.0f;
            dt[T_VAR][c] = 0.0f;
        }
        if (!dx[0])
            continue;
        float a = t[T_GAMMA][c] * istd[c];
        /* evaluation: mean and istd are constants, dx = gamma istd dy */
        float fb = l->training ? (float)(db / M) : 0.0f;
        float fg = l->training ? (float)(dg / M) : 0.0f;
        for (int i = 0; i < n; i++) {
            const float *p = x[0] + ((size_t)i * C + c) * S, *d = dy + ((size_t)i * C + c) * S;
            float *q = dx[0] + ((size_t)i * C + c) * S;
            for (size_t k = 0; k < S; k++)
                q[k] = a * (d[k] - fb - (p[k] - mean[c]) * istd[c] * fg);
        }
    }
}

static double bn_flops(const ml_layer *l, int n) { return 12.0 * n * l->in[0]; }

const ml_layer_ops ml_layer_batchnorm = {
    .name = "batchnorm",
    .summary = "batch normalisation over channels (images) or features; gamma `weight`, beta "
               "`bias`, running_mean and running_var (state, not trained)",
    .prefix = "batchnorm",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .has_params = 1,
    .shape = bn_shape,
    .init = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .flops = bn_flops,
    .workspace = bn_workspace,
};
