/* core/layers/lm_head.c -- `lm_head`: logits over the vocabulary per token.
 *
 *   x: (N, T*C)   W "weight": (V, C)   y: (N, T*V) logits,  y_t = x_t W^T (no bias)
 *
 * With `tie: <layer>` W is that earlier layer's tensor 0 (GPT-2 ties the head to wte, a
 * token_embedding of the same V and C): the model maps it there, allocates nothing and
 * adds the two gradients (core/model.c). Without it the head owns W (an untied head). The
 * loss is sequence_crossentropy, which applies the softmax over V per position. */
#include <cblas.h>
#include <string.h>

#include "core/layers/seq.h"

enum { KEY_TOKENS, KEY_VOCAB, KEY_TIE };

static const ml_layer_key keys[] = {
    [KEY_TOKENS] = {.name = "tokens",
                    .kind = ML_KEY_INT,
                    .def = 0,
                    .min = 1,
                    .max = 1 << 20,
                    .doc = "context length T",
                    .flags = ML_KEY_REQUIRED},
    [KEY_VOCAB] = {.name = "vocab",
                   .kind = ML_KEY_INT,
                   .def = 0,
                   .min = 1,
                   .max = 1 << 24,
                   .doc = "vocabulary size V",
                   .flags = ML_KEY_REQUIRED},
    [KEY_TIE] = {.name = "tie",
                 .kind = ML_KEY_STRING,
                 .doc = "an earlier layer whose (V, C) weight this reads (GPT-2: the "
                        "token_embedding); unset: a weight of its own"},
};

static int head_shape(ml_layer *l, pst_err *err)
{
    int t = (int)l->spec->val[KEY_TOKENS].i, v = (int)l->spec->val[KEY_VOCAB].i, c = 0;
    if (ml_seq_channels(l->in[0], t, &c, err))
        return PST_ERR_CONFIG;
    if (v < 1 || (size_t)t * (size_t)v > ((size_t)1 << 31))
        return pst_err_set(err, PST_ERR_CONFIG, "vocab: %d x %d tokens is out of range", v, t);
    l->out = t * v;
    l->ntensors = 1;
    l->tensor[0] = (ml_tensor){"weight", v, c};
    return PST_OK;
}

static void head_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he;
    ml_seq_normal(t[0], (size_t)l->tensor[0].rows * l->tensor[0].cols, ML_SEQ_INIT_SD, r);
}

static void head_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                         int n)
{
    int m = n * (int)l->spec->val[KEY_TOKENS].i, v = l->tensor[0].rows, c = l->tensor[0].cols;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, v, c, 1.0f, x[0], c, t[0], c, 0.0f, y,
                v);
}

/* dW = dy^T x (V, C) overwritten;  dx = dy W (M, C). */
static void head_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                          const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y;
    int m = n * (int)l->spec->val[KEY_TOKENS].i, v = l->tensor[0].rows, c = l->tensor[0].cols;
    if (dt[0])
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, v, c, m, 1.0f, dy, v, x[0], c, 0.0f,
                    dt[0], c);
    if (dx[0])
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, c, v, 1.0f, dy, v, t[0], c, 0.0f,
                    dx[0], c);
}

static double head_flops(const ml_layer *l, int n)
{
    return 6.0 * n * l->in[0] * l->tensor[0].rows;
}

const ml_layer_ops ml_layer_lm_head = {
    .name = "lm_head",
    .summary = "logits y_t = x_t W^T per token, (N, T*C) to (N, T*vocab); W (vocab, C) or tied",
    .prefix = "head",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .has_params = 1,
    .shape = head_shape,
    .init = head_init,
    .forward = head_forward,
    .backward = head_backward,
    .flops = head_flops,
    .tie_key = "tie",
};
