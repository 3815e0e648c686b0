/* core/layers/pool2d.c -- the `max_pool2d`, `avg_pool2d` and `global_avg_pool` types.
 *
 *   x: (N, C, H, W)   y: (N, C, OH, OW),  OH = (H - P) / S + 1 (floor: windows that
 *   would run past the edge are dropped, Keras' `valid` and PyTorch's default), OW alike
 *   (P pool, S stride; stride 0 = pool). global_avg_pool: y (N, C), the mean of each
 *   plane.
 *
 * max: y = the window's largest x; backward sends dy to the window's first largest
 * element (found again from x: nothing is kept between forward and backward), adding
 * where windows overlap (S < P). avg: y = the window's mean; dx = dy / P^2 spread over the
 * window. No parameters. */
#include <string.h>

#include "core/layer.h"

enum { KEY_POOL, KEY_STRIDE };

static const ml_layer_key keys[] = {
    [KEY_POOL] = {.name = "pool",
                  .kind = ML_KEY_INT,
                  .def = 2,
                  .min = 1,
                  .max = 255,
                  .doc = "window height and width P"},
    [KEY_STRIDE] = {.name = "stride",
                    .kind = ML_KEY_INT,
                    .def = 0,
                    .min = 0,
                    .max = 255,
                    .doc = "step between windows; 0: the pool size"},
};

typedef struct {
    int c, h, w, p, s, oh, ow;
} geom;

static int need_image(const ml_layer *l, const char *type, pst_err *err)
{
    if (l->in_shape[0].rank == 3)
        return PST_OK;
    char sh[64];
    ml_shape_text(&l->in_shape[0], sh, sizeof sh);
    return pst_err_set(err, PST_ERR_CONFIG,
                       "inputs: %s needs an image input (C, H, W), got shape %s (no height "
                       "and width)",
                       type, sh);
}

static int pool_geom(const ml_layer *l, geom *g, pst_err *err)
{
    if (need_image(l, l->spec->ops->name, err))
        return PST_ERR_CONFIG;
    const ml_shape *in = &l->in_shape[0];
    int p = (int)l->spec->val[KEY_POOL].i, s = (int)l->spec->val[KEY_STRIDE].i;
    *g = (geom){.c = in->d[0], .h = in->d[1], .w = in->d[2], .p = p, .s = s ? s : p};
    if (p < 1 || p > g->h || p > g->w) {
        char sh[64];
        ml_shape_text(in, sh, sizeof sh);
        return pst_err_set(err, PST_ERR_CONFIG, "pool: %d is larger than the input %s", p, sh);
    }
    g->oh = (g->h - p) / g->s + 1;
    g->ow = (g->w - p) / g->s + 1;
    return PST_OK;
}

static int pool_shape(ml_layer *l, pst_err *err)
{
    geom g;
    if (pool_geom(l, &g, err))
        return PST_ERR_CONFIG;
    l->out_shape = ml_shape_image(g.c, g.oh, g.ow);
    l->out = ml_shape_width(&l->out_shape);
    l->ntensors = 0;
    return PST_OK;
}

/* One plane (H, W) -> (OH, OW). */
static void max_plane(const geom *g, const float *restrict x, float *restrict y)
{
    for (int oh = 0; oh < g->oh; oh++)
        for (int ow = 0; ow < g->ow; ow++) {
            const float *win = x + (size_t)oh * g->s * g->w + (size_t)ow * g->s;
            float m = win[0];
            for (int i = 0; i < g->p; i++)
                for (int j = 0; j < g->p; j++)
                    m = win[i * g->w + j] > m ? win[i * g->w + j] : m;
            y[oh * g->ow + ow] = m;
        }
}

static void max_plane_back(const geom *g, const float *restrict x, const float *restrict dy,
                           float *restrict dx)
{
    for (int oh = 0; oh < g->oh; oh++)
        for (int ow = 0; ow < g->ow; ow++) {
            size_t base = (size_t)oh * g->s * g->w + (size_t)ow * g->s, arg = base;
            float m = x[base];
            for (int i = 0; i < g->p; i++)
                for (int j = 0; j < g->p; j++) {
                    size_t k = base + (size_t)i * g->w + j;
                    if (x[k] > m) {
                        m = x[k];
                        arg = k;
                    }
                }
            dx[arg] += dy[oh * g->ow + ow];
        }
}

static void avg_plane(const geom *g, const float *restrict x, float *restrict y)
{
    float inv = 1.0f / (float)(g->p * g->p);
    for (int oh = 0; oh < g->oh; oh++)
        for (int ow = 0; ow < g->ow; ow++) {
            const float *win = x + (size_t)oh * g->s * g->w + (size_t)ow * g->s;
            float sum = 0.0f;
            for (int i = 0; i < g->p; i++)
                for (int j = 0; j < g->p; j++)
                    sum += win[i * g->w + j];
            y[oh * g->ow + ow] = sum * inv;
        }
}

static void avg_plane_back(const geom *g, const float *restrict dy, float *restrict dx)
{
    float inv = 1.0f / (float)(g->p * g->p);
    for (int oh = 0; oh < g->oh; oh++)
        for (int ow = 0; ow < g->ow; ow++) {
            float *win = dx + (size_t)oh * g->s * g->w + (size_t)ow * g->s;
            float d = dy[oh * g->ow + ow] * inv;
            for (int i = 0; i < g->p; i++)
                for (int j = 0; j < g->p; j++)
                    win[i * g->w + j] += d;
        }
}

static void pool_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                         int n)
{
    (void)t;
    geom g;
    pool_geom(l, &g, NULL);
    int is_max = l->spec->ops == &ml_layer_max_pool2d;
    size_t in_plane = (size_t)g.h * g.w, out_plane = (size_t)g.oh * g.ow;
    for (size_t q = 0; q < (size_t)n * g.c; q++) {
        if (is_max)
            max_plane(&g, x[0] + q * in_plane, y + q * out_plane);
        else
            avg_plane(&g, x[0] + q * in_plane, y + q * out_plane);
    }
}

static void pool_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                          const float *y, const float *const *x, const float *const *t, int n)
{
    (void)dt, (void)y, (void)t;
    if (!dx[0])
        return;
    geom g;
    pool_geom(l, &g, NULL);
    int is_max = l->spec->ops == &ml_layer_max_pool2d;
    size_t in_plane = (size_t)g.h * g.w, out_plane = (size_t)g.oh * g.ow;
    memset(dx[0], 0, sizeof(float) * (size_t)n * l->in[0]);
    for (size_t q = 0; q < (size_t)n * g.c; q++) {
        if (is_max)
            max_plane_back(&g, x[0] + q * in_plane, dy + q * out_plane, dx[0] + q * in_plane);
        else
            avg_plane_back(&g, dy + q * out_plane, dx[0] + q * in_plane);
    }
}

static double pool_flops(const ml_layer *l, int n)
{
    geom g;
    if (pool_geom(l, &g, NULL))
        return 0.0;
    return 2.0 * n * l->out * g.p * g.p;
}

const ml_layer_ops ml_layer_max_pool2d = {
    .name = "max_pool2d",
    .summary = "largest value of each pool x pool window of an image (C, H, W)",
    .prefix = "max_pool2d",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .shape = pool_shape,
    .forward = pool_forward,
    .backward = pool_backward,
    .flops = pool_flops,
};

const ml_layer_ops ml_layer_avg_pool2d = {
    .name = "avg_pool2d",
    .summary = "mean of each pool x pool window of an image (C, H, W)",
    .prefix = "avg_pool2d",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .shape = pool_shape,
    .forward = pool_forward,
    .backward = pool_backward,
    .flops = pool_flops,
};

/* ---- global_avg_pool: (C, H, W) -> (C) -------------------------------------------- */

static int gap_shape(ml_layer *l, pst_err *err)
{
    if (need_image(l, "global_avg_pool", err))
        return PST_ERR_CONFIG;
    l->out = l->in_shape[0].d[0];
    l->out_shape = ml_shape_flat(l->out);
    l->ntensors = 0;
    return PST_OK;
}

static void gap_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                        int n)
{
    (void)t;
    size_t plane = (size_t)l->in_shape[0].d[1] * l->in_shape[0].d[2];
    float inv = 1.0f / (float)plane;
    for (size_t q = 0; q < (size_t)n * l->out; q++) {
        const float *p = x[0] + q * plane;
        float s = 0.0f;
        for (size_t i = 0; i < plane; i++)
            s += p[i];
        y[q] = s * inv;
    }
}

static void gap_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                         const float *y, const float *const *x, const float *const *t, int n)
{
    (void)dt, (void)y, (void)x, (void)t;
    if (!dx[0])
        return;
    size_t plane = (size_t)l->in_shape[0].d[1] * l->in_shape[0].d[2];
    float inv = 1.0f / (float)plane;
    for (size_t q = 0; q < (size_t)n * l->out; q++) {
        float d = dy[q] * inv, *p = dx[0] + q * plane;
        for (size_t i = 0; i < plane; i++)
            p[i] = d;
    }
}

static double gap_flops(const ml_layer *l, int n) { return 2.0 * n * l->in[0]; }

const ml_layer_ops ml_layer_global_avg_pool = {
    .name = "global_avg_pool",
    .summary = "mean of each channel's plane: image (C, H, W) to features (C)",
    .prefix = "global_avg_pool",
    .min_inputs = 1,
    .max_inputs = 1,
    .shape = gap_shape,
    .forward = gap_forward,
    .backward = gap_backward,
    .flops = gap_flops,
};
