/* core/layers/activation.c -- the activation table (names and kernels) and the
 * `activation` layer type, y = f(x).
 *
 * This table is the one list of activation names: the `activation:` key of dense (and
 * of every type with post_activation) and of this layer type, the checkpoint metadata and
 * the docs read it. Adding an activation is one line in `table` plus its two kernels here;
 * tests/test_nn.c checks every entry's backward against finite differences.
 *
 * Every backward is written from the forward *output* y: relu' = [y > 0],
 * sigmoid' = y (1 - y), tanh' = 1 - y^2, softmax: dx = y * (dy - <dy, y>) per row;
 * except GELU, whose derivative is no function of y: its backward_x reads the input. */
#include <math.h>
#include <string.h>

#include "core/layer.h"
#include "core/simd.h"

/* ---- Kernels ------------------------------------------------------------------------ */

static void linear_forward(float *y, const float *x, int rows, int cols)
{
    if (y != x)
        memmove(y, x, (size_t)rows * cols * sizeof *y);
}

static void linear_backward(float *dx, const float *dy, const float *y, int rows, int cols)
{
    (void)y;
    if (dx != dy)
        memmove(dx, dy, (size_t)rows * cols * sizeof *dx);
}

/* ReLU out of place and in place: see relu_backward for why two versions. */
ML_SIMD_CLONES static void relu_out(float *restrict y, const float *restrict x, size_t len)
{
    for (size_t i = 0; i < len; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

ML_SIMD_CLONES static void relu_in(float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

static void relu_forward(float *y, const float *x, int rows, int cols)
{
    size_t len = (size_t)rows * cols;
    if (y == x)
        relu_in(y, len);
    else
        relu_out(y, x, len);
}

/* The elementwise derivatives, out of place and in place. Two versions because a training
 * step runs backward with dx == dy: one loop over possibly equal pointers makes gcc's
 * runtime alias check fail on exactly that call and fall back to its scalar loop (for ReLU
 * a data-dependent branch per element, ~6x slower than the vector loop), while
 * restrict-qualified loops over distinct arrays vectorise. */
ML_SIMD_CLONES static void relu_bwd_out(float *restrict dx, const float *restrict dy,
                                        const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

ML_SIMD_CLONES static void relu_bwd_in(float *restrict g, const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        g[i] = y[i] > 0.0f ? g[i] : 0.0f;
}

static void relu_backward(float *dx, const float *dy, const float *y, int rows, int cols)
{
    size_t len = (size_t)rows * cols;
    if (dx == dy)
        relu_bwd_in(dx, y, len);
    else
        relu_bwd_out(dx, dy, y, len);
}

static void sigmoid_forward(float *y, const float *x, int rows, int cols)
{
    size_t len = (size_t)rows * cols;
    for (size_t i = 0; i < len; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
}

ML_SIMD_CLONES static void sigmoid_bwd_out(float *restrict dx, const float *restrict dy,
                                           const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

ML_SIMD_CLONES static void sigmoid_bwd_in(float *restrict g, const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        g[i] *= y[i] * (1.0f - y[i]);
}

static void sigmoid_backward(float *dx, const float *dy, const float *y, int rows, int cols)
{
    size_t len = (size_t)rows * cols;
    if (dx == dy)
        sigmoid_bwd_in(dx, y, len);
    else
        sigmoid_bwd_out(dx, dy, y, len);
}

static void tanh_forward(float *y, const float *x, int rows, int cols)
{
    size_t len = (size_t)rows * cols;
    for (size_t i = 0; i < len; i++)
        y[i] = tanhf(x[i]);
}

ML_SIMD_CLONES static void tanh_bwd_out(float *restrict dx, const float *restrict dy,
                                        const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

ML_SIMD_CLONES static void tanh_bwd_in(float *restrict g, const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        g[i] *= 1.0f - y[i] * y[i];
}

static void tanh_backward(float *dx, const float *dy, const float *y, int rows, int cols)
{
    size_t len = (size_t)rows * cols;
    if (dx == dy)
        tanh_bwd_in(dx, y, len);
    else
        tanh_bwd_out(dx, dy, y, len);
}

/* Stable row softmax: subtract the row max before exp. In place is fine: x[j] is read
 * before y[j] is written. */
static void softmax_forward(float *y, const float *x, int rows, int cols)
{
    for (int i = 0; i < rows; i++) {
        const float *xr = x + (size_t)i * cols;
        float *yr = y + (size_t)i * cols;
        float mx = xr[0];
        for (int j = 1; j < cols; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < cols; j++) {
            yr[j] = expf(xr[j] - mx);
            sum += yr[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < cols; j++)
            yr[j] *= inv;
    }
}

/* Jacobian-vector product of softmax: dx_j = y_j (dy_j - sum_k dy_k y_k). */
static void softmax_backward(float *dx, const float *dy, const float *y, int rows, int cols)
{
    for (int i = 0; i < rows; i++) {
        const float *yr = y + (size_t)i * cols;
        const float *gr = dy + (size_t)i * cols;
        float *dr = dx + (size_t)i * cols;
        double dot = 0.0;
        for (int j = 0; j < cols; j++)
            dot += (double)gr[j] * yr[j];
        for (int j = 0; j < cols; j++)
            dr[j] = yr[j] * (gr[j] - (float)dot);
    }
}

/* GELU, the tanh approximation GPT-2 uses (Hendrycks & Gimpel 2016):
 *   y = x/2 (1 + tanh u),  u = sqrt(2/pi) (x + 0.044715 x^3)
 *   y' = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
 * (llm.c's gelu_forward/gelu_backward). In place is fine: x[i] is read before y[i].
 * tanh is fast_tanh below: libm's tanhf is a call per element that does not vectorise
 * (a fifth of a small GPT's training step went there). */
#define GELU_S 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_K 0.044715f

/* tanh(x) as the rational p(x)/q(x) of degrees 13/6 on [-7.905, 7.905] (clamped outside,
 * where tanh is 1 to float precision): Eigen's generic_fast_tanh_float coefficients; max
 * absolute error 3.4e-7 against tanh in double over [-12, 12]. Branch-free, so the loops
 * that call it vectorise. */
static inline float fast_tanh(float x)
{
    const float c = 7.90531110763549805f;
    x = x > c ? c : (x < -c ? -c : x);
    float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}

/* GELU at v and its derivative. */
static inline float gelu_of(float v)
{
    return 0.5f * v * (1.0f + fast_tanh(GELU_S * (v + GELU_K * v * v * v)));
}

static inline float gelu_grad(float v)
{
    float th = fast_tanh(GELU_S * (v + GELU_K * v * v * v));
    return 0.5f * (1.0f + th) +
           0.5f * v * (1.0f - th * th) * GELU_S * (1.0f + 3.0f * GELU_K * v * v);
}

/* Out of place and in place, restrict-qualified so both vectorise (see relu_backward). */
ML_SIMD_CLONES static void gelu_out(float *restrict y, const float *restrict x, size_t len)
{
    for (size_t i = 0; i < len; i++)
        y[i] = gelu_of(x[i]);
}

ML_SIMD_CLONES static void gelu_in(float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        y[i] = gelu_of(y[i]);
}

static void gelu_forward(float *y, const float *x, int rows, int cols)
{
    size_t len = (size_t)rows * cols;
    if (y == x)
        gelu_in(y, len);
    else
        gelu_out(y, x, len);
}

ML_SIMD_CLONES static void gelu_bwd_out(float *restrict dx, const float *restrict dy,
                                        const float *restrict x, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dx[i] = dy[i] * gelu_grad(x[i]);
}

ML_SIMD_CLONES static void gelu_bwd_in(float *restrict g, const float *restrict x, size_t len)
{
    for (size_t i = 0; i < len; i++)
        g[i] *= gelu_grad(x[i]);
}

static void gelu_backward_x(float *dx, const float *dy, const float *x, int rows, int cols)
{
    size_t len = (size_t)rows * cols;
    if (dx == dy)
        gelu_bwd_in(dx, x, len);
    else
        gelu_bwd_out(dx, dy, x, len);
}

/* ---- The table ---------------------------------------------------------------------- */

static const ml_activation table[] = {
    {.name = "linear",
     .doc = "y = x",
     .forward = linear_forward,
     .backward = linear_backward,
     .fused_loss = -1},
    {.name = "relu",
     .doc = "y = max(x, 0)",
     .forward = relu_forward,
     .backward = relu_backward,
     .he_init = 1,
     .fused_loss = -1},
    {.name = "sigmoid",
     .doc = "y = 1 / (1 + exp(-x))",
     .forward = sigmoid_forward,
     .backward = sigmoid_backward,
     .fused_loss = ML_LOSS_BCE},
    {.name = "tanh",
     .doc = "y = tanh(x)",
     .forward = tanh_forward,
     .backward = tanh_backward,
     .fused_loss = -1},
    {.name = "softmax",
     .doc = "y = exp(x) / sum exp(x), per row",
     .forward = softmax_forward,
     .backward = softmax_backward,
     .fused_loss = ML_LOSS_CCE},
    {.name = "gelu",
     .doc = "y = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's",
     .forward = gelu_forward,
     .backward_x = gelu_backward_x,
     .fused_loss = -1},
};
#define NACT ((int)(sizeof table / sizeof table[0]))

int ml_activation_count(void) { return NACT; }

const ml_activation *ml_activation_at(int i) { return i >= 0 && i < NACT ? &table[i] : NULL; }

const char *ml_activation_name(int i) { return i >= 0 && i < NACT ? table[i].name : NULL; }

int ml_activation_find(const char *name)
{
    for (int i = 0; name && i < NACT; i++)
        if (strcmp(table[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- The activation layer type ------------------------------------------------------ */

enum { KEY_UNITS, KEY_ACTIVATION };

static const ml_layer_key keys[] = {
    /* pstrain 0.1 accepted (and printed) units on every layer; kept so its job files and
     * job fingerprints stay valid. */
    [KEY_UNITS] = {.name = "units",
                   .kind = ML_KEY_INT,
                   .def = 0,
                   .min = 0,
                   .max = -1,
                   .doc = "ignored",
                   .flags = ML_KEY_COMPAT},
    [KEY_ACTIVATION] = {.name = "activation",
                        .kind = ML_KEY_ENUM,
                        .def = 0,
                        .enum_name = ml_activation_name,
                        .doc = "the function"},
};

static int act_shape(ml_layer *l, pst_err *err)
{
    (void)err;
    l->out = l->in[0];
    l->ntensors = 0;
    return PST_OK;
}

static void act_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                        int n)
{
    (void)t;
    table[l->spec->val[KEY_ACTIVATION].i].forward(y, x[0], n, l->out);
}

static void act_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                         const float *y, const float *const *x, const float *const *t, int n)
{
    (void)dt, (void)t;
    const ml_activation *a = &table[l->spec->val[KEY_ACTIVATION].i];
    if (!dx[0])
        return;
    if (a->backward_x)
        a->backward_x(dx[0], dy, x[0], n, l->out);
    else
        a->backward(dx[0], dy, y, n, l->out);
}

/* A few operations per element each way (softmax ~4); a count, not a measurement. */
static double act_flops(const ml_layer *l, int n) { return 4.0 * n * l->out; }

const ml_layer_ops ml_layer_activation = {
    .name = "activation",
    .summary = "y = f(x) elementwise (softmax: per row), f from the activation table",
    .prefix = "act",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .inplace = 1,
    .shape = act_shape,
    .forward = act_forward,
    .backward = act_backward,
    .flops = act_flops,
};
