/* core/layers/flatten.c -- the `flatten` layer type: any shape to features (width).
 *
 *   x: (N, C, H, W) or (N, F)   y: (N, C*H*W), the same numbers in the same order
 *
 * Only the shape changes; dense flattens its input by itself (core/layer.h "Shapes"), so
 * flatten is for readability and for layers that would otherwise keep an image shape
 * (dropout, batchnorm: over features instead of channels after a flatten). Backward may
 * run in place (inplace), which makes it a copy-free step in a sequential stack. */
#include <string.h>

#include "core/layer.h"

static int flatten_shape(ml_layer *l, pst_err *err)
{
    (void)err;
    l->out = l->in[0];
    l->out_shape = ml_shape_flat(l->out);
    l->ntensors = 0;
    return PST_OK;
}

static void flatten_forward(const ml_layer *l, float *y, const float *const *x,
                            const float *const *t, int n)
{
    (void)t;
    memcpy(y, x[0], sizeof *y * (size_t)n * l->out);
}

static void flatten_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                             const float *y, const float *const *x, const float *const *t, int n)
{
    (void)dt, (void)y, (void)x, (void)t;
    if (dx[0] && dx[0] != dy)
        memcpy(dx[0], dy, sizeof *dy * (size_t)n * l->out);
}

static double flatten_flops(const ml_layer *l, int n)
{
    (void)l, (void)n;
    return 0.0;
}

const ml_layer_ops ml_layer_flatten = {
    .name = "flatten",
    .summary = "the input as features: shape (C, H, W) to (C*H*W), values unchanged",
    .prefix = "flatten",
    .min_inputs = 1,
    .max_inputs = 1,
    .inplace = 1,
    .shape = flatten_shape,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .flops = flatten_flops,
};
