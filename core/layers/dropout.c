/* core/layers/dropout.c -- the `dropout` layer type (Srivastava et al. 2014, inverted).
 *
 *   x: (N, any shape)   y: the same shape
 *   training:   y = x * m / (1 - rate), m_i = [u_i >= rate], u_i uniform in [0, 1)
 *   evaluation: y = x
 *   backward:   dx = dy * m / (1 - rate) (training), dy (evaluation)
 *
 * u_i is a counter-based hash of (the step's seed, the layer's index, i): backward
 * regenerates the forward's mask instead of keeping it, and a step's mask depends on the
 * seed the trainer gave ml_model_set_mode alone (reproducible, different every step and
 * for every dropout layer of a model). */
#include <string.h>

#include "base/rng.h"
#include "core/layer.h"
#include "core/layers/drop.h"

enum { KEY_RATE };

static const ml_layer_key keys[] = {
    [KEY_RATE] = {.name = "rate",
                  .kind = ML_KEY_FLOAT,
                  .def = 0.5,
                  .min = 0.0,
                  .max = 0.95,
                  .doc = "share of the inputs zeroed in training (kept ones scaled by "
                         "1/(1 - rate)); none at evaluation"},
};

static int dropout_shape(ml_layer *l, pst_err *err)
{
    (void)err;
    l->out = l->in[0];
    l->out_shape = l->in_shape[0].rank ? l->in_shape[0] : ml_shape_flat(l->out);
    l->ntensors = 0;
    return PST_OK;
}

void ml_drop_mask(const ml_layer *l, double rate, float *y, const float *x, size_t first,
                  size_t len)
{
    if (!l->training || rate <= 0.0) {
        if (y != x)
            memcpy(y, x, sizeof *y * len);
        return;
    }
    /* keep when the top 32 bits of the hash are >= rate * 2^32 */
    uint64_t cut = (uint64_t)(rate * 4294967296.0);
    float scale = (float)(1.0 / (1.0 - rate));
    uint64_t key = rng_mix64(l->seed ^ rng_mix64(0x9e3779b97f4a7c15ull * (uint64_t)(l->index + 1)));
    for (size_t j = 0, i = first; j < len; j++, i++)
        y[j] = (rng_mix64(key + 0x9e3779b97f4a7c15ull * i) >> 32) >= cut ? x[j] * scale : 0.0f;
}

/* y = x * mask * scale over len elements; y may be x (in place). */
static void apply_mask(const ml_layer *l, float *y, const float *x, size_t len)
{
    ml_drop_mask(l, l->spec->val[KEY_RATE].f, y, x, 0, len);
}

static void dropout_forward(const ml_layer *l, float *y, const float *const *x,
                            const float *const *t, int n)
{
    (void)t;
    apply_mask(l, y, x[0], (size_t)n * l->out);
}

static void dropout_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                             const float *y, const float *const *x, const float *const *t, int n)
{
    (void)dt, (void)y, (void)x, (void)t;
    if (dx[0])
        apply_mask(l, dx[0], dy, (size_t)n * l->out);
}

static double dropout_flops(const ml_layer *l, int n) { return 2.0 * n * l->out; }

const ml_layer_ops ml_layer_dropout = {
    .name = "dropout",
    .summary = "zeroes a random share `rate` of its inputs in training (seeded per step); the "
               "identity at evaluation",
    .prefix = "dropout",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .inplace = 1,
    .shape = dropout_shape,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .flops = dropout_flops,
};
