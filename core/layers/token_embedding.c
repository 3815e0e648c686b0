/* core/layers/token_embedding.c -- `token_embedding`: y[n, t] = wte[id(n, t)].
 *
 *   x: (N, T) token ids as floats (the model input)   wte "weight": (V, C)   y: (N, T*C)
 *
 * wte is a dense tensor of the flat vector (servers shard it like any other), unlike the
 * sparse `embedding` tables: a vocabulary of 50257 rows is read by every batch. GPT-2's
 * `wte` maps onto it as stored. The tied output head (lm_head, tie: <this layer>) reads
 * the same tensor; the model adds both gradients. */
#include <assert.h>
#include <string.h>

#include "core/layers/seq.h"

enum { KEY_VOCAB, KEY_DIM };

static const ml_layer_key keys[] = {
    [KEY_VOCAB] = {.name = "vocab",
                   .kind = ML_KEY_INT,
                   .def = 0,
                   .min = 1,
                   .max = 1 << 24,
                   .doc = "vocabulary size V (rows of wte)",
                   .flags = ML_KEY_REQUIRED},
    [KEY_DIM] = {.name = "dim",
                 .kind = ML_KEY_INT,
                 .def = 0,
                 .min = 1,
                 .max = 1 << 20,
                 .doc = "channels C per token",
                 .flags = ML_KEY_REQUIRED},
};

static int tok_shape(ml_layer *l, pst_err *err)
{
    int v = (int)l->spec->val[KEY_VOCAB].i, c = (int)l->spec->val[KEY_DIM].i;
    if (v < 1 || c < 1)
        return pst_err_set(err, PST_ERR_CONFIG, "vocab, dim: must be >= 1, got %d and %d", v, c);
    if ((size_t)l->in[0] * (size_t)c > ((size_t)1 << 31))
        return pst_err_set(err, PST_ERR_CONFIG, "dim: %d tokens x %d channels is too wide",
                           l->in[0], c);
    l->out = l->in[0] * c;
    l->ntensors = 1;
    l->tensor[0] = (ml_tensor){"weight", v, c};
    return PST_OK;
}

static void tok_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he;
    ml_seq_normal(t[0], (size_t)l->tensor[0].rows * l->tensor[0].cols, ML_SEQ_INIT_SD, r);
}

/* The id at x[i]: the data source keeps ids below V (a violation is a bug). */
static inline size_t tok_id(const ml_layer *l, float x)
{
    int id = (int)x;
    assert(id >= 0 && id < l->tensor[0].rows && (float)id == x);
    return (size_t)id;
}

static void tok_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                        int n)
{
    size_t c = (size_t)l->tensor[0].cols, tokens = (size_t)n * l->in[0];
    for (size_t i = 0; i < tokens; i++)
        memcpy(y + i * c, t[0] + tok_id(l, x[0][i]) * c, c * sizeof *y);
}

/* dwte[id] = sum of dy over the positions holding id (overwritten: zeroed first). The ids
 * are data: no dx. */
static void tok_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                         const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y, (void)t;
    if (dx[0])
        memset(dx[0], 0, (size_t)n * l->in[0] * sizeof(float));
    if (!dt[0])
        return;
    size_t c = (size_t)l->tensor[0].cols, tokens = (size_t)n * l->in[0];
    memset(dt[0], 0, (size_t)l->tensor[0].rows * c * sizeof(float));
    for (size_t i = 0; i < tokens; i++) {
        float *restrict g = dt[0] + tok_id(l, x[0][i]) * c;
        const float *restrict d = dy + i * c;
        for (size_t j = 0; j < c; j++)
            g[j] += d[j];
    }
}

static double tok_flops(const ml_layer *l, int n) { return (double)n * l->out; }

const ml_layer_ops ml_layer_token_embedding = {
    .name = "token_embedding",
    .summary = "y[t] = wte[id_t]: ids (N, T) as floats to (N, T*C); weight (vocab, dim), dense",
    .prefix = "wte",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .has_params = 1,
    .shape = tok_shape,
    .init = tok_init,
    .forward = tok_forward,
    .backward = tok_backward,
    .flops = tok_flops,
};
