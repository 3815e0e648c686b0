/* core/layers/add.c -- the `add` layer type: y = x_1 + x_2 + ... + x_k elementwise.
 *
 *   x_j: (N, OUT) each   y: (N, OUT)
 *
 * Wide & Deep (Cheng et al. 2016) adds the wide part's logit to the deep part's before
 * the sigmoid: add -> activation sigmoid. No parameters; dx_j = dy for every input. */
#include <string.h>

#include "core/layer.h"

static int add_shape(ml_layer *l, pst_err *err)
{
    for (int k = 1; k < l->nin; k++)
        if (l->in[k] != l->in[0])
            return pst_err_set(err, PST_ERR_CONFIG,
                               "inputs: add needs inputs of one width, got %d and %d", l->in[0],
                               l->in[k]);
    l->out = l->in[0];
    l->ntensors = 0;
    return PST_OK;
}

static void add_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                        int n)
{
    (void)t;
    size_t len = (size_t)n * l->out;
    memcpy(y, x[0], len * sizeof *y);
    for (int k = 1; k < l->nin; k++) {
        const float *xk = x[k];
        for (size_t i = 0; i < len; i++)
            y[i] += xk[i];
    }
}

static void add_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                         const float *y, const float *const *x, const float *const *t, int n)
{
    (void)dt, (void)y, (void)x, (void)t;
    for (int k = 0; k < l->nin; k++)
        if (dx[k])
            memcpy(dx[k], dy, (size_t)n * l->out * sizeof *dy);
}

static double add_flops(const ml_layer *l, int n) { return (double)n * l->out * l->nin; }

const ml_layer_ops ml_layer_add = {
    .name = "add",
    .summary = "y = x_1 + ... + x_k elementwise (inputs of one width)",
    .prefix = "add",
    .min_inputs = 2,
    .max_inputs = ML_MAX_INPUTS,
    .shape = add_shape,
    .forward = add_forward,
    .backward = add_backward,
    .flops = add_flops,
};
