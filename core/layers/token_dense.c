/* core/layers/token_dense.c -- `token_dense`: the same affine map on every token,
 * y_t = f(x_t W + b), in GPT-2's Conv1D layout.
 *
 *   x: (N, T*IN)   W "weight": (IN, OUT)   b "bias": (OUT)   y: (N, T*OUT), OUT = units
 *
 * `dense` maps a whole sample (N, T*C) and would mix tokens; this maps the N*T rows of C
 * in one sgemm. W is stored (in, out) as GPT-2's h.L.mlp.c_fc / c_proj are (not dense's
 * (OUT, IN)), so checkpoints copy in unchanged. `activation: gelu` gives GPT-2's MLP. */
#include <string.h>

#include "core/layers/lora.h"
#include "core/layers/seq.h"
#include "core/nn.h"

enum { KEY_TOKENS, KEY_UNITS, KEY_ACTIVATION, KEY_LORA_RANK, KEY_LORA_ALPHA };
enum { T_WEIGHT, T_BIAS, T_LORA_A, T_LORA_B };

static const ml_layer_key keys[] = {
    [KEY_TOKENS] = {.name = "tokens",
                    .kind = ML_KEY_INT,
                    .def = 0,
                    .min = 1,
                    .max = 1 << 20,
                    .doc = "context length T",
                    .flags = ML_KEY_REQUIRED},
    [KEY_UNITS] = {.name = "units",
                   .kind = ML_KEY_INT,
                   .def = 0,
                   .min = 1,
                   .max = 1 << 20,
                   .doc = "output channels per token",
                   .flags = ML_KEY_REQUIRED},
    [KEY_ACTIVATION] = {.name = "activation",
                        .kind = ML_KEY_ENUM,
                        .def = 0,
                        .enum_name = ml_activation_name,
                        .doc = "applied after the affine map"},
    ML_LORA_KEYS(KEY_LORA_RANK, KEY_LORA_ALPHA),
};

/* LoRA (core/layers/lora.h): r, and s = alpha / r; r 0 without adapters. */
static int td_rank(const ml_layer *l) { return (int)l->spec->val[KEY_LORA_RANK].i; }
static float td_scale(const ml_layer *l)
{
    return (float)(l->spec->val[KEY_LORA_ALPHA].f / (double)td_rank(l));
}

static int td_shape(ml_layer *l, pst_err *err)
{
    int t = (int)l->spec->val[KEY_TOKENS].i, units = (int)l->spec->val[KEY_UNITS].i, c = 0;
    if (ml_seq_channels(l->in[0], t, &c, err))
        return PST_ERR_CONFIG;
    if (units < 1 || (size_t)t * (size_t)units > ((size_t)1 << 31))
        return pst_err_set(err, PST_ERR_CONFIG, "units: %d per token x %d tokens is out of range",
                           units, t);
    l->out = t * units;
    l->ntensors = 2;
    l->tensor[T_WEIGHT] = (ml_tensor){"weight", c, units};
    l->tensor[T_BIAS] = (ml_tensor){"bias", units, 1};
    if (td_rank(l) > 0)
        return ml_lora_shape(l, "lora_a", "lora_b", c, units, td_rank(l), err);
    return PST_OK;
}

static void td_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he;
    ml_seq_normal(t[T_WEIGHT], (size_t)l->tensor[0].rows * l->tensor[0].cols, ML_SEQ_INIT_SD, r);
    memset(t[T_BIAS], 0, (size_t)l->tensor[1].rows * sizeof(float));
}

static void td_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                       int n)
{
    int tok = (int)l->spec->val[KEY_TOKENS].i;
    ml_linear_forward(y, x[0], t[T_WEIGHT], t[T_BIAS], n * tok, l->tensor[0].rows,
                      l->tensor[0].cols);
    if (td_rank(l) > 0)
        ml_lora_forward(y, l->ws, x[0], t[T_LORA_A], t[T_LORA_B], n * tok, l->tensor[0].rows,
                        td_rank(l), l->tensor[0].cols, td_scale(l));
}

static void td_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                        const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y;
    int tok = (int)l->spec->val[KEY_TOKENS].i;
    ml_linear_backward(dx[0], dt[T_WEIGHT], dt[T_BIAS], dy, x[0], t[T_WEIGHT], n * tok,
                       l->tensor[0].rows, l->tensor[0].cols);
    int r = td_rank(l);
    if (r > 0)
        ml_lora_backward(dx[0], dt[T_LORA_A], dt[T_LORA_B], l->ws + (size_t)n * tok * r, dy, x[0],
                         l->ws, t[T_LORA_A], t[T_LORA_B], n * tok, l->tensor[0].rows, r,
                         l->tensor[0].cols, td_scale(l));
}

/* LoRA keeps x A (N*T, r) from forward and needs d(x A) of the same size. */
static size_t td_workspace(const ml_layer *l, int n)
{
    return 2 * (size_t)n * (size_t)l->spec->val[KEY_TOKENS].i * (size_t)td_rank(l);
}

static double td_flops(const ml_layer *l, int n)
{
    double tok = (double)l->spec->val[KEY_TOKENS].i;
    return 6.0 * n * l->in[0] * l->tensor[0].cols +
           6.0 * n * tok * td_rank(l) * (l->tensor[0].rows + l->tensor[0].cols);
}

const ml_layer_ops ml_layer_token_dense = {
    .name = "token_dense",
    .summary = "y_t = f(x_t W + b) per token of (N, T*C); weight (C, units) as GPT-2's Conv1D",
    .prefix = "tdense",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .post_activation = 1,
    .has_params = 1,
    .shape = td_shape,
    .init = td_init,
    .forward = td_forward,
    .backward = td_backward,
    .flops = td_flops,
    .workspace = td_workspace,
};
