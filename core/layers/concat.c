/* core/layers/concat.c -- the `concat` layer type: y = [x_1, x_2, ..., x_k] per row.
 *
 *   x_j: (N, IN_j)   y: (N, OUT),  OUT = sum_j IN_j
 *
 * Dense layers read one input, so a model that feeds several (embeddings and dense
 * features, say) into a dense layer concatenates them first. No parameters. */
#include <string.h>

#include "core/layer.h"

static int concat_shape(ml_layer *l, pst_err *err)
{
    size_t out = 0;
    for (int k = 0; k < l->nin; k++)
        out += (size_t)l->in[k];
    if (out > ((size_t)1 << 30))
        return pst_err_set(err, PST_ERR_CONFIG, "inputs: %zu features in all are too many", out);
    l->out = (int)out;
    l->ntensors = 0;
    return PST_OK;
}

static void concat_forward(const ml_layer *l, float *y, const float *const *x,
                           const float *const *t, int n)
{
    (void)t;
    for (int i = 0; i < n; i++) {
        float *yr = y + (size_t)i * l->out;
        for (int k = 0; k < l->nin; k++) {
            memcpy(yr, x[k] + (size_t)i * l->in[k], (size_t)l->in[k] * sizeof *yr);
            yr += l->in[k];
        }
    }
}

static void concat_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                            const float *y, const float *const *x, const float *const *t, int n)
{
    (void)dt, (void)y, (void)x, (void)t;
    for (int i = 0; i < n; i++) {
        const float *gr = dy + (size_t)i * l->out;
        for (int k = 0; k < l->nin; k++) {
            if (dx[k])
                memcpy(dx[k] + (size_t)i * l->in[k], gr, (size_t)l->in[k] * sizeof *gr);
            gr += l->in[k];
        }
    }
}

/* Copies only; counted as one operation per element each way. */
static double concat_flops(const ml_layer *l, int n) { return 2.0 * n * l->out; }

const ml_layer_ops ml_layer_concat = {
    .name = "concat",
    .summary = "y = [x_1, ..., x_k] per row; width the sum of the inputs'",
    .prefix = "concat",
    .min_inputs = 1,
    .max_inputs = ML_MAX_INPUTS,
    .shape = concat_shape,
    .forward = concat_forward,
    .backward = concat_backward,
    .flops = concat_flops,
};
