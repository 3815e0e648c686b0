/* core/layers/attention.c -- `attention`: GPT-2's causal multi-head self-attention.
 *
 * Legend: N = batch, T = tokens (context), C = channels, H = heads, hs = C / H.
 *   x: (N, T*C)
 *   "attn_w": (C, 3C)  "attn_b": (3C)   GPT-2's h.L.attn.c_attn (Conv1D: stored (in, out))
 *   "proj_w": (C, C)   "proj_b": (C)    GPT-2's h.L.attn.c_proj
 *   y: (N, T*C)
 *
 *   qkv = x Wa + ba                     (N*T, 3C): columns [q | k | v], head h at h*hs
 *   S_h = q_h k_h^T / sqrt(hs)          (T, T) per sample and head, sgemm
 *   P_h = softmax(S_h + causal mask)    row t over s <= t (max-subtracted), 0 above
 *   D_h = dropout(P_h)                  key `dropout` (GPT-2's attn_pdrop), training only
 *   a_h = D_h v_h                       (T, hs) into columns h*hs of a (N*T, C)
 *   y   = a Wp + bp
 * The layout is Hugging Face's as stored, so a GPT-2 checkpoint's c_attn/c_proj tensors
 * copy in unchanged (a Linear (out, in) layout would be their transpose).
 *
 * The workspace keeps qkv, P and a from forward for backward, plus backward's dqkv, da
 * and one (T, T) dP: N*T*8C + N*H*T*T + T*T floats, and with dropout one (T, T) D
 * (core/layers/drop.h's mask is regenerated from its counter, (b*H + h)*T*T + i, not kept). Upper-triangle entries of S are
 * computed by the sgemm and then masked (a plain batched product; at T = 1024 the
 * wasted half is the price of not writing a triangular kernel). */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "core/layers/drop.h"
#include "core/layers/lora.h"
#include "core/layers/seq.h"
#include "core/nn.h"

enum { KEY_TOKENS, KEY_HEADS, KEY_DROPOUT, KEY_LORA_RANK, KEY_LORA_ALPHA };
/* LoRA (core/layers/lora.h): adapters on c_attn (A_a, B_a) and c_proj (A_p, B_p). */
enum { T_AW, T_AB, T_PW, T_PB, T_AA, T_AB_LORA, T_PA, T_PB_LORA };

static const ml_layer_key keys[] = {
    [KEY_TOKENS] = {.name = "tokens",
                    .kind = ML_KEY_INT,
                    .def = 0,
                    .min = 1,
                    .max = 1 << 16,
                    .doc = "context length T",
                    .flags = ML_KEY_REQUIRED},
    [KEY_HEADS] = {.name = "heads",
                   .kind = ML_KEY_INT,
                   .def = 0,
                   .min = 1,
                   .max = 1 << 12,
                   .doc = "heads H (C % H == 0)",
                   .flags = ML_KEY_REQUIRED},
    [KEY_DROPOUT] = {.name = "dropout",
                     .kind = ML_KEY_FLOAT,
                     .def = 0.0,
                     .min = 0.0,
                     .max = 0.95,
                     .doc = "share of the attention probabilities zeroed in training "
                            "(GPT-2's attn_pdrop); none at evaluation"},
    ML_LORA_KEYS(KEY_LORA_RANK, KEY_LORA_ALPHA),
};

static int lora_rank(const ml_layer *l) { return (int)l->spec->val[KEY_LORA_RANK].i; }
static float lora_scale(const ml_layer *l)
{
    return (float)(l->spec->val[KEY_LORA_ALPHA].f / (double)lora_rank(l));
}

typedef struct {
    int t, c, h, hs;
} dims;

static dims dims_of(const ml_layer *l)
{
    dims d = {.t = (int)l->spec->val[KEY_TOKENS].i, .h = (int)l->spec->val[KEY_HEADS].i};
    d.c = l->in[0] / d.t;
    d.hs = d.c / d.h;
    return d;
}

static int attn_shape(ml_layer *l, pst_err *err)
{
    int t = (int)l->spec->val[KEY_TOKENS].i, h = (int)l->spec->val[KEY_HEADS].i, c = 0;
    if (ml_seq_channels(l->in[0], t, &c, err))
        return PST_ERR_CONFIG;
    if (h < 1 || c % h != 0)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "heads: %d channels do not split into %d heads (n_embd %% n_head "
                           "must be 0)",
                           c, h);
    l->out = l->in[0];
    l->ntensors = 4;
    l->tensor[T_AW] = (ml_tensor){"attn_w", c, 3 * c};
    l->tensor[T_AB] = (ml_tensor){"attn_b", 3 * c, 1};
    l->tensor[T_PW] = (ml_tensor){"proj_w", c, c};
    l->tensor[T_PB] = (ml_tensor){"proj_b", c, 1};
    int r = lora_rank(l);
    if (r > 0 && (ml_lora_shape(l, "attn_lora_a", "attn_lora_b", c, 3 * c, r, err) ||
                  ml_lora_shape(l, "proj_lora_a", "proj_lora_b", c, c, r, err)))
        return PST_ERR_CONFIG;
    return PST_OK;
}

/* LoRA's part, at the end of the workspace: x Aa, d(x Aa), a Ap, d(a Ap), each (N*T, r). */
static size_t lora_ws(const ml_layer *l, int n)
{
    return 4 * (size_t)n * (size_t)l->spec->val[KEY_TOKENS].i * (size_t)lora_rank(l);
}

static size_t attn_workspace(const ml_layer *l, int n)
{
    dims d = dims_of(l);
    size_t nt = (size_t)n * d.t;
    size_t tt = (size_t)d.t * d.t;
    return nt * 8 * d.c + (size_t)n * d.h * tt + tt + (l->spec->val[KEY_DROPOUT].f > 0 ? tt : 0) +
           lora_ws(l, n);
}

/* Pointers into the workspace for n rows (the layout does not depend on n but the
 * offsets do; forward and backward see the same n). */
typedef struct {
    float *qkv, *att, *a, *dqkv, *da, *dp, *pd;
    float *lora; /* lora_ws floats */
} ws_parts;

static ws_parts ws_of(const ml_layer *l, dims d, int n)
{
    size_t nt = (size_t)n * d.t;
    ws_parts w;
    w.qkv = l->ws;
    w.a = w.qkv + nt * 3 * d.c;
    w.dqkv = w.a + nt * d.c;
    w.da = w.dqkv + nt * 3 * d.c;
    w.att = w.da + nt * d.c;
    w.dp = w.att + (size_t)n * d.h * d.t * d.t;
    w.pd = w.dp + (size_t)d.t * d.t;
    w.lora = w.pd + (l->spec->val[KEY_DROPOUT].f > 0 ? (size_t)d.t * d.t : 0);
    return w;
}

static void attn_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he;
    for (int k = 0; k < 4; k++) { /* the base tensors; the model initialises adapters */
        size_t len = (size_t)l->tensor[k].rows * l->tensor[k].cols;
        if (k == T_AW || k == T_PW)
            ml_seq_normal(t[k], len, ML_SEQ_INIT_SD, r);
        else
            memset(t[k], 0, len * sizeof(float));
    }
}

/* P = softmax over s <= t of S[t, s] (already scaled), zero above the diagonal. */
static void causal_softmax(float *restrict p, int t)
{
    for (int i = 0; i < t; i++) {
        float *restrict row = p + (size_t)i * t;
        float mx = row[0];
        for (int j = 1; j <= i; j++)
            mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j <= i; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j <= i; j++)
            row[j] *= inv;
        for (int j = i + 1; j < t; j++)
            row[j] = 0.0f;
    }
}

/* D = dropout(P) of block `blk` (sample * H + head) into w.pd in training with a rate,
 * else P itself. */
static const float *dropped(const ml_layer *l, ws_parts w, const float *p, int blk, int t)
{
    double rate = l->spec->val[KEY_DROPOUT].f;
    if (!l->training || rate <= 0.0)
        return p;
    size_t tt = (size_t)t * t;
    ml_drop_mask(l, rate, w.pd, p, (size_t)blk * tt, tt);
    return w.pd;
}

static void attn_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                         int n)
{
    dims d = dims_of(l);
    ws_parts w = ws_of(l, d, n);
    int nt = n * d.t, c3 = 3 * d.c;
    float scale = 1.0f / sqrtf((float)d.hs);
    int r = lora_rank(l);
    size_t rs = (size_t)nt * r;
    ml_linear_forward(w.qkv, x[0], t[T_AW], t[T_AB], nt, d.c, c3);
    if (r > 0)
        ml_lora_forward(w.qkv, w.lora, x[0], t[T_AA], t[T_AB_LORA], nt, d.c, r, c3, lora_scale(l));
    for (int b = 0; b < n; b++)
        for (int h = 0; h < d.h; h++) {
            const float *q = w.qkv + (size_t)b * d.t * c3 + h * d.hs;
            const float *k = q + d.c, *v = q + 2 * d.c;
            float *p = w.att + ((size_t)b * d.h + h) * d.t * d.t;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d.t, d.t, d.hs, scale, q, c3, k,
                        c3, 0.0f, p, d.t);
            causal_softmax(p, d.t);
            const float *pv = dropped(l, w, p, b * d.h + h, d.t);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d.t, d.hs, d.t, 1.0f, pv, d.t, v,
                        c3, 0.0f, w.a + (size_t)b * d.t * d.c + h * d.hs, d.c);
        }
    ml_linear_forward(y, w.a, t[T_PW], t[T_PB], nt, d.c, d.c);
    if (r > 0)
        ml_lora_forward(y, w.lora + 2 * rs, w.a, t[T_PA], t[T_PB_LORA], nt, d.c, r, d.c,
                        lora_scale(l));
}

/* dS = P * (dP - rowsum(P * dP)), in place over dp (zero above the diagonal, as P). */
static void softmax_bwd(float *restrict dp, const float *restrict p, int t)
{
    for (int i = 0; i < t; i++) {
        float *restrict g = dp + (size_t)i * t;
        const float *restrict pr = p + (size_t)i * t;
        float dot = 0.0f;
        for (int j = 0; j <= i; j++)
            dot += g[j] * pr[j];
        for (int j = 0; j < t; j++)
            g[j] = pr[j] * (g[j] - dot);
    }
}

static void attn_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                          const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y;
    dims d = dims_of(l);
    ws_parts w = ws_of(l, d, n);
    int nt = n * d.t, c3 = 3 * d.c;
    float scale = 1.0f / sqrtf((float)d.hs);
    int r = lora_rank(l);
    size_t rs = (size_t)nt * r;
    ml_linear_backward(w.da, dt[T_PW], dt[T_PB], dy, w.a, t[T_PW], nt, d.c, d.c);
    if (r > 0)
        ml_lora_backward(w.da, dt[T_PA], dt[T_PB_LORA], w.lora + 3 * rs, dy, w.a, w.lora + 2 * rs,
                         t[T_PA], t[T_PB_LORA], nt, d.c, r, d.c, lora_scale(l));
    for (int b = 0; b < n; b++)
        for (int h = 0; h < d.h; h++) {
            size_t off = (size_t)b * d.t * c3 + h * d.hs;
            const float *q = w.qkv + off, *k = q + d.c, *v = q + 2 * d.c;
            float *dq = w.dqkv + off, *dk = dq + d.c, *dv = dq + 2 * d.c;
            const float *p = w.att + ((size_t)b * d.h + h) * d.t * d.t;
            const float *da = w.da + (size_t)b * d.t * d.c + h * d.hs;
            /* dD = da v^T (T, T);  dv = D^T da (T, hs);  dP = dD * mask / (1 - rate) */
            int blk = b * d.h + h;
            const float *pv = dropped(l, w, p, blk, d.t);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d.t, d.t, d.hs, 1.0f, da, d.c, v,
                        c3, 0.0f, w.dp, d.t);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d.t, d.hs, d.t, 1.0f, pv, d.t, da,
                        d.c, 0.0f, dv, c3);
            if (pv != p)
                ml_drop_mask(l, l->spec->val[KEY_DROPOUT].f, w.dp, w.dp, (size_t)blk * d.t * d.t,
                             (size_t)d.t * d.t);
            softmax_bwd(w.dp, p, d.t);
            /* dq = scale dS k;  dk = scale dS^T q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d.t, d.hs, d.t, scale, w.dp, d.t,
                        k, c3, 0.0f, dq, c3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d.t, d.hs, d.t, scale, w.dp, d.t,
                        q, c3, 0.0f, dk, c3);
        }
    ml_linear_backward(dx[0], dt[T_AW], dt[T_AB], w.dqkv, x[0], t[T_AW], nt, d.c, c3);
    if (r > 0)
        ml_lora_backward(dx[0], dt[T_AA], dt[T_AB_LORA], w.lora + rs, w.dqkv, x[0], w.lora, t[T_AA],
                         t[T_AB_LORA], nt, d.c, r, c3, lora_scale(l));
}

/* The two projections (2 N T C 4C each way, 3 ways) and the two batched products
 * (2 N H T T hs each, 3 ways). */
static double attn_flops(const ml_layer *l, int n)
{
    dims d = dims_of(l);
    double nt = (double)n * d.t;
    return 3.0 * (2.0 * nt * d.c * 4.0 * d.c + 4.0 * nt * d.t * d.c) +
           6.0 * nt * lora_rank(l) * (d.c + 3.0 * d.c + d.c + d.c);
}

const ml_layer_ops ml_layer_attention = {
    .name = "attention",
    .summary = "causal multi-head self-attention on (N, T*C), GPT-2's fused c_attn and c_proj",
    .prefix = "attn",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .has_params = 1,
    .shape = attn_shape,
    .init = attn_init,
    .forward = attn_forward,
    .backward = attn_backward,
    .flops = attn_flops,
    .workspace = attn_workspace,
};
