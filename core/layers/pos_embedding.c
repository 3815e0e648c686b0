/* core/layers/pos_embedding.c -- `pos_embedding`: y[n, t] = x[n, t] + wpe[t].
 *
 *   x: (N, T*C)   wpe "weight": (P, C), P = positions >= T   y: (N, T*C)
 *
 * GPT-2's learned positional embedding (`wpe`, P = n_positions rows); a window of T <= P
 * tokens reads rows 0..T-1, so a model trained on short windows keeps the checkpoint's
 * P rows. */
#include <string.h>

#include "core/layers/seq.h"

enum { KEY_TOKENS, KEY_POSITIONS };

static const ml_layer_key keys[] = {
    [KEY_TOKENS] = {.name = "tokens",
                    .kind = ML_KEY_INT,
                    .def = 0,
                    .min = 1,
                    .max = 1 << 20,
                    .doc = "context length T (tokens per sample)",
                    .flags = ML_KEY_REQUIRED},
    [KEY_POSITIONS] = {.name = "positions",
                       .kind = ML_KEY_INT,
                       .def = 0,
                       .min = 0,
                       .max = 1 << 20,
                       .doc = "rows P of wpe (n_positions); 0: T"},
};

static int pos_shape(ml_layer *l, pst_err *err)
{
    int t = (int)l->spec->val[KEY_TOKENS].i, p = (int)l->spec->val[KEY_POSITIONS].i, c = 0;
    if (ml_seq_channels(l->in[0], t, &c, err))
        return PST_ERR_CONFIG;
    if (p == 0)
        p = t;
    if (t > p)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "tokens: a context of %d tokens is longer than the %d positions", t, p);
    l->out = l->in[0];
    l->ntensors = 1;
    l->tensor[0] = (ml_tensor){"weight", p, c};
    return PST_OK;
}

/* GPT-2 draws wpe N(0, 0.01) (half wte's sd). */
static void pos_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he;
    ml_seq_normal(t[0], (size_t)l->tensor[0].rows * l->tensor[0].cols, 0.5f * ML_SEQ_INIT_SD, r);
}

static void pos_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                        int n)
{
    size_t tc = (size_t)l->out;
    for (int i = 0; i < n; i++) {
        const float *restrict xi = x[0] + i * tc, *restrict w = t[0];
        float *restrict yi = y + i * tc;
        for (size_t j = 0; j < tc; j++)
            yi[j] = xi[j] + w[j];
    }
}

/* dx = dy; dwpe[t] = sum over n of dy[n, t] (rows T..P-1 zero). */
static void pos_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                         const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y, (void)x, (void)t;
    size_t tc = (size_t)l->out;
    if (dt[0]) {
        float *restrict g = dt[0];
        memset(g, 0, (size_t)l->tensor[0].rows * l->tensor[0].cols * sizeof *g);
        for (int i = 0; i < n; i++) {
            const float *restrict d = dy + i * tc;
            for (size_t j = 0; j < tc; j++)
                g[j] += d[j];
        }
    }
    if (dx[0] && dx[0] != dy)
        memcpy(dx[0], dy, (size_t)n * tc * sizeof *dy);
}

static double pos_flops(const ml_layer *l, int n) { return 2.0 * n * l->out; }

const ml_layer_ops ml_layer_pos_embedding = {
    .name = "pos_embedding",
    .summary = "y[t] = x[t] + wpe[t] on (N, T*C); weight (positions, C)",
    .prefix = "wpe",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .has_params = 1,
    .inplace = 1,
    .shape = pos_shape,
    .init = pos_init,
    .forward = pos_forward,
    .backward = pos_backward,
    .flops = pos_flops,
};
