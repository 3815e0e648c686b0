/* core/layers/dense.c -- the `dense` layer type: y = f(x W^T + b).
 *
 *   x: (N, IN)   W "weight": (OUT, IN)   b "bias": (OUT)   y: (N, OUT),  OUT = units
 *
 * The kernels are ml_dense_forward/backward (core/nn.c, one sgemm each way). f, the
 * `activation` key, is applied by the model as a step of its own (post_activation), so the
 * softmax/sigmoid of an output layer can be fused with its loss. */
#include <math.h>
#include <string.h>

#include "core/layer.h"
#include "core/nn.h"

enum { KEY_UNITS, KEY_ACTIVATION };
enum { T_WEIGHT, T_BIAS };

static const ml_layer_key keys[] = {
    [KEY_UNITS] = {.name = "units",
                   .kind = ML_KEY_INT,
                   .def = 0,
                   .min = 1,
                   .max = -1,
                   .doc = "output width",
                   .flags = ML_KEY_REQUIRED},
    [KEY_ACTIVATION] = {.name = "activation",
                        .kind = ML_KEY_ENUM,
                        .def = 0,
                        .enum_name = ml_activation_name,
                        .doc = "applied after the affine map"},
};

static int dense_shape(ml_layer *l, pst_err *err)
{
    int units = (int)l->spec->val[KEY_UNITS].i;
    if (units < 1)
        return pst_err_set(err, PST_ERR_CONFIG, "units: must be >= 1, got %d", units);
    if ((size_t)l->in[0] * (size_t)units > ((size_t)1 << 40))
        return pst_err_set(err, PST_ERR_CONFIG, "units: %d x %d weights are too many", units,
                           l->in[0]);
    l->out = units;
    l->ntensors = 2;
    l->tensor[T_WEIGHT] = (ml_tensor){"weight", units, l->in[0]};
    l->tensor[T_BIAS] = (ml_tensor){"bias", units, 1};
    return PST_OK;
}

/* He normal, Var(w) = 2/IN (He et al. 2015), for ReLU; else Glorot uniform U(-a, a),
 * a = sqrt(6 / (IN + OUT)) (Glorot & Bengio 2010), Keras' default. Zero biases. */
static void dense_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    int in = l->in[0], out = l->out;
    float *w = t[T_WEIGHT];
    size_t len = (size_t)in * out;
    if (he) {
        float sd = sqrtf(2.0f / (float)in);
        for (size_t k = 0; k < len; k++)
            w[k] = sd * rng_normal(r);
    } else {
        float a = sqrtf(6.0f / (float)(in + out));
        for (size_t k = 0; k < len; k++)
            w[k] = a * (2.0f * rng_uniform(r) - 1.0f);
    }
    memset(t[T_BIAS], 0, (size_t)out * sizeof(float));
}

static void dense_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                          int n)
{
    ml_dense_forward(y, x[0], t[T_WEIGHT], t[T_BIAS], n, l->in[0], l->out);
}

static void dense_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                           const float *y, const float *const *x, const float *const *t, int n)
{
    (void)y;
    ml_dense_backward(dx[0], dt[T_WEIGHT], dt[T_BIAS], dy, x[0], t[T_WEIGHT], n, l->in[0], l->out,
                      0);
}

/* 2 N IN OUT each for forward, dW and dX (bias and activation not counted). */
static double dense_flops(const ml_layer *l, int n) { return 6.0 * n * l->in[0] * l->out; }

const ml_layer_ops ml_layer_dense = {
    .name = "dense",
    .summary = "y = f(x W^T + b); weight (units, IN), bias (units)",
    .prefix = "dense",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .post_activation = 1,
    .has_params = 1,
    .width_key = "units",
    .shape = dense_shape,
    .init = dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
    .flops = dense_flops,
};
