/* core/layers/conv2d.c -- the `conv2d` layer type: a 2-D convolution by im2col + sgemm.
 *
 *   x: (N, C, H, W)   W "weight": (F, C*K*K)   b "bias": (F)   y: (N, F, OH, OW)
 *   OH = (H + pad_lo + pad_hi - D*(K-1) - 1) / S + 1 (floor), OW likewise
 *   (K kernel, S stride, D dilation, F filters; square kernels, one stride and padding
 *   for both axes).
 *
 * padding: `valid` (none, the default), `same` (OH = ceil(H / S), as Keras and TensorFlow:
 * the total pad max((OH-1) S + D(K-1) + 1 - H, 0) split with the odd one at the bottom and
 * right), or an integer p (p on every side, as PyTorch's padding=p).
 *
 * Per image n: col = im2col(x_n) (C*K*K, OH*OW), row (c, kh, kw) holding
 * x_n[c, oh*S - pad + kh*D, ow*S - pad + kw*D] (0 outside the image);
 *   forward   y_n = W col + b 1^T                      one sgemm (F x CKK x OHOW)
 *   backward  dW += dy_n col^T, db += dy_n 1            one sgemm (F x OHOW x CKK)
 *             dcol = W^T dy_n, dx_n = col2im(dcol)     one sgemm (CKK x F x OHOW)
 * col lives in the layer's workspace (l->ws, CKK * OHOW floats, one image at a time). The `activation`
 * key is applied by the model after it, as for dense. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/layer.h"

enum { KEY_FILTERS, KEY_KERNEL, KEY_STRIDE, KEY_PADDING, KEY_DILATION, KEY_ACTIVATION };
enum { T_WEIGHT, T_BIAS };

static const ml_layer_key keys[] = {
    [KEY_FILTERS] = {.name = "filters",
                     .kind = ML_KEY_INT,
                     .def = 0,
                     .min = 1,
                     .max = -1,
                     .doc = "output channels F",
                     .flags = ML_KEY_REQUIRED},
    [KEY_KERNEL] = {.name = "kernel",
                    .kind = ML_KEY_INT,
                    .def = 3,
                    .min = 1,
                    .max = 255,
                    .doc = "kernel height and width K"},
    [KEY_STRIDE] = {.name = "stride",
                    .kind = ML_KEY_INT,
                    .def = 1,
                    .min = 1,
                    .max = 255,
                    .doc = "step between windows, both axes"},
    [KEY_PADDING] = {.name = "padding",
                     .kind = ML_KEY_STRING,
                     .doc = "`valid` (none; unset), `same` (OH = ceil(H / stride)) or an "
                            "integer p (p zeros on every side)"},
    [KEY_DILATION] = {.name = "dilation",
                      .kind = ML_KEY_INT,
                      .def = 1,
                      .min = 1,
                      .max = 255,
                      .doc = "spacing of the kernel's taps"},
    [KEY_ACTIVATION] = {.name = "activation",
                        .kind = ML_KEY_ENUM,
                        .def = 0,
                        .enum_name = ml_activation_name,
                        .doc = "applied after the convolution"},
};

/* The geometry of one conv layer, from its spec and input shape. */
typedef struct {
    int c, h, w;      /* input */
    int f, k, s, dil; /* filters, kernel, stride, dilation */
    int pt, pl;       /* top and left padding */
    int oh, ow;       /* output */
} geom;

/* Output size along one axis and the low-side pad; -1 when the window does not fit. */
static int axis_out(int in, int k, int s, int dil, const char *pad, int *lo, int *bad_pad)
{
    int span = dil * (k - 1) + 1;
    *bad_pad = 0;
    if (!pad || strcmp(pad, "valid") == 0) {
        *lo = 0;
        return in >= span ? (in - span) / s + 1 : -1;
    }
    if (strcmp(pad, "same") == 0) {
        int out = (in + s - 1) / s;
        int total = (out - 1) * s + span - in;
        *lo = total > 0 ? total / 2 : 0;
        return out;
    }
    char *end = NULL;
    long p = strtol(pad, &end, 10);
    if (end == pad || *end != '\0' || p < 0 || p > 1024) {
        *bad_pad = 1;
        return -1;
    }
    *lo = (int)p;
    return in + 2 * (int)p >= span ? (in + 2 * (int)p - span) / s + 1 : -1;
}

static int conv_geom(const ml_layer *l, geom *g, pst_err *err)
{
    const ml_shape *in = &l->in_shape[0];
    const ml_value *v = l->spec->val;
    char sh[64];
    ml_shape_text(in, sh, sizeof sh);
    if (in->rank != 3)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "inputs: conv2d needs an image input (C, H, W), got shape %s (no "
                           "height and width: use images, e.g. data.format idx)",
                           sh);
    *g = (geom){.c = in->d[0],
                .h = in->d[1],
                .w = in->d[2],
                .f = (int)v[KEY_FILTERS].i,
                .k = (int)v[KEY_KERNEL].i,
                .s = (int)v[KEY_STRIDE].i,
                .dil = (int)v[KEY_DILATION].i};
    if (g->f < 1)
        return pst_err_set(err, PST_ERR_CONFIG, "filters: must be >= 1, got %d", g->f);
    const char *pad = v[KEY_PADDING].s;
    int bad;
    g->oh = axis_out(g->h, g->k, g->s, g->dil, pad, &g->pt, &bad);
    if (!bad)
        g->ow = axis_out(g->w, g->k, g->s, g->dil, pad, &g->pl, &bad);
    if (bad)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "padding: '%s' is not valid, same or an integer in [0, 1024]", pad);
    if (g->oh < 1 || g->ow < 1)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "kernel: %d (dilation %d) is larger than the input %s with padding %s",
                           g->k, g->dil, sh, pad ? pad : "valid");
    return PST_OK;
}

static int conv_shape(ml_layer *l, pst_err *err)
{
    geom g;
    if (conv_geom(l, &g, err))
        return err ? err->code : PST_ERR_CONFIG;
    size_t ckk = (size_t)g.c * g.k * g.k, plane = (size_t)g.oh * g.ow;
    if (ckk * g.f > ((size_t)1 << 40) || plane * g.f > ((size_t)1 << 30) ||
        ckk * plane > ((size_t)1 << 34))
        return pst_err_set(err, PST_ERR_CONFIG, "filters: %d x %zu weights are too many", g.f, ckk);
    l->out = (int)(g.f * plane);
    l->out_shape = ml_shape_image(g.f, g.oh, g.ow);
    l->ntensors = 2;
    l->tensor[T_WEIGHT] = (ml_tensor){"weight", g.f, (int)ckk};
    l->tensor[T_BIAS] = (ml_tensor){"bias", g.f, 1};
    return PST_OK;
}

/* col of one image: (C*K*K, OH*OW) floats, whatever the batch. */
static size_t conv_workspace(const ml_layer *l, int n)
{
    (void)n;
    return (size_t)l->tensor[T_WEIGHT].cols * (size_t)(l->out / l->tensor[T_WEIGHT].rows);
}

/* He normal, Var(w) = 2 / (C K K) (fan-in), for ReLU; else Glorot uniform with fan-in C K K
 * and fan-out F K K (Keras' default for Conv2D). Zero biases. */
static void conv_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    int ckk = l->tensor[T_WEIGHT].cols, f = l->tensor[T_WEIGHT].rows;
    int kk = ckk / l->in_shape[0].d[0];
    size_t len = (size_t)ckk * f;
    if (he) {
        float sd = sqrtf(2.0f / (float)ckk);
        for (size_t i = 0; i < len; i++)
            t[T_WEIGHT][i] = sd * rng_normal(r);
    } else {
        float a = sqrtf(6.0f / (float)(ckk + f * kk));
        for (size_t i = 0; i < len; i++)
            t[T_WEIGHT][i] = a * (2.0f * rng_uniform(r) - 1.0f);
    }
    memset(t[T_BIAS], 0, (size_t)f * sizeof(float));
}

/* col (C*K*K, OH*OW) from one image x (C, H, W). */
static void im2col(const geom *g, const float *restrict x, float *restrict col)
{
    for (int c = 0; c < g->c; c++)
        for (int kh = 0; kh < g->k; kh++)
            for (int kw = 0; kw < g->k; kw++) {
                float *row = col + ((size_t)(c * g->k + kh) * g->k + kw) * g->oh * g->ow;
                const float *plane = x + (size_t)c * g->h * g->w;
                int dw = kw * g->dil - g->pl;
                /* ow range with iw = ow*S + dw inside [0, W) */
                int lo = dw >= 0 ? 0 : (-dw + g->s - 1) / g->s;
                int hi = g->w - dw > 0 ? (g->w - dw - 1) / g->s + 1 : 0;
                hi = hi < g->ow ? hi : g->ow;
                lo = lo < hi ? lo : hi;
                for (int oh = 0; oh < g->oh; oh++, row += g->ow) {
                    int ih = oh * g->s - g->pt + kh * g->dil;
                    if (ih < 0 || ih >= g->h) {
                        memset(row, 0, sizeof *row * (size_t)g->ow);
                        continue;
                    }
                    /* offsets, not pointers: dw may be negative */
                    const float *src = plane + (size_t)ih * g->w;
                    for (int ow = 0; ow < lo; ow++)
                        row[ow] = 0.0f;
                    if (g->s == 1 && hi > lo)
                        memcpy(row + lo, src + (lo + dw), sizeof *row * (size_t)(hi - lo));
                    else
                        for (int ow = lo; ow < hi; ow++)
                            row[ow] = src[ow * g->s + dw];
                    for (int ow = hi; ow < g->ow; ow++)
                        row[ow] = 0.0f;
                }
            }
}

/* dx (C, H, W) = col2im(dcol): each entry of dcol added back where im2col read it. dx is
 * zeroed first. */
static void col2im(const geom *g, const float *restrict dcol, float *restrict dx)
{
    memset(dx, 0, sizeof *dx * (size_t)g->c * g->h * g->w);
    for (int c = 0; c < g->c; c++)
        for (int kh = 0; kh < g->k; kh++)
            for (int kw = 0; kw < g->k; kw++) {
                const float *row = dcol + ((size_t)(c * g->k + kh) * g->k + kw) * g->oh * g->ow;
                float *plane = dx + (size_t)c * g->h * g->w;
                int dw = kw * g->dil - g->pl;
                int lo = dw >= 0 ? 0 : (-dw + g->s - 1) / g->s;
                int hi = g->w - dw > 0 ? (g->w - dw - 1) / g->s + 1 : 0;
                hi = hi < g->ow ? hi : g->ow;
                for (int oh = 0; oh < g->oh; oh++, row += g->ow) {
                    int ih = oh * g->s - g->pt + kh * g->dil;
                    if (ih < 0 || ih >= g->h)
                        continue;
                    float *dst = plane + (size_t)ih * g->w;
                    for (int ow = lo; ow < hi; ow++)
                        dst[ow * g->s + dw] += row[ow];
                }
            }
}

static void conv_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                         int n)
{
    geom g;
    conv_geom(l, &g, NULL); /* shape accepted it */
    int ckk = l->tensor[T_WEIGHT].cols, plane = g.oh * g.ow;
    const float *b = t[T_BIAS];
    for (int i = 0; i < n; i++) {
        float *yi = y + (size_t)i * l->out;
        im2col(&g, x[0] + (size_t)i * l->in[0], l->ws);
        for (int f = 0; f < g.f; f++) {
            float *yf = yi + (size_t)f * plane;
            for (int p = 0; p < plane; p++)
                yf[p] = b[f];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.f, plane, ckk, 1.0f, t[T_WEIGHT],
                    ckk, l->ws, plane, 1.0f, yi, plane);
    }
}

static void conv_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                          const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y;
    geom g;
    conv_geom(l, &g, NULL);
    int ckk = l->tensor[T_WEIGHT].cols, plane = g.oh * g.ow;
    float *dw = dt[T_WEIGHT], *db = dt[T_BIAS];
    if (db)
        memset(db, 0, sizeof *db * (size_t)g.f);
    for (int i = 0; i < n; i++) {
        const float *dyi = dy + (size_t)i * l->out;
        if (dw) {
            im2col(&g, x[0] + (size_t)i * l->in[0], l->ws);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.f, ckk, plane, 1.0f, dyi, plane,
                        l->ws, plane, i ? 1.0f : 0.0f, dw, ckk);
        }
        if (db)
            for (int f = 0; f < g.f; f++) {
                const float *r = dyi + (size_t)f * plane;
                float s = 0.0f;
                for (int p = 0; p < plane; p++)
                    s += r[p];
                db[f] += s;
            }
        if (dx[0]) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, plane, g.f, 1.0f, t[T_WEIGHT],
                        ckk, dyi, plane, 0.0f, l->ws, plane);
            col2im(&g, l->ws, dx[0] + (size_t)i * l->in[0]);
        }
    }
}

/* 2 F CKK OHOW each for forward, dW and dX. */
static double conv_flops(const ml_layer *l, int n)
{
    return 6.0 * n * l->out * (double)l->tensor[T_WEIGHT].cols;
}

const ml_layer_ops ml_layer_conv2d = {
    .name = "conv2d",
    .summary = "2-D convolution of an image (C, H, W) to (filters, OH, OW); weight "
               "(filters, C*kernel^2), bias (filters)",
    .prefix = "conv2d",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .post_activation = 1,
    .has_params = 1,
    .width_key = NULL,
    .shape = conv_shape,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .flops = conv_flops,
    .workspace = conv_workspace,
};
