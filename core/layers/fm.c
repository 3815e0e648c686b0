/* core/layers/fm.c -- the `fm` layer type: a factorization machine over the sparse
 * features (Rendle 2010, "Factorization Machines", ICDM, eq. 1 and lemma 3.1):
 *
 *   y_i = w0 + sum_e w_e x_e + 1/2 sum_{f<k} [ (sum_e V_ef x_e)^2 - sum_e V_ef^2 x_e^2 ]
 *
 * over row i's entries e (all fields, or the one `field`), x_e = v_e their values. The
 * pairwise term sum_{a<b} <V_a, V_b> x_a x_b is computed in O(NNZ k) by the lemma.
 *
 *   table rows R: (K, 1 + k): R[key] = [w, V_1 .. V_k]  (one table holds both, so the
 *                             table's dim is k + 1)
 *   w0 "bias": (1) in the flat vector          y: (N, 1)
 *
 * Entries are the features: an id repeated in a row is two features sharing one row,
 * so it also interacts with itself (<V, V> x_a x_b); merge repeats upstream if that is
 * not wanted. With `activation: sigmoid` and binary_crossentropy it is the FM
 * classifier. Backward, with s_f = sum_e V_ef x_e of the row and g = dy_i:
 *   dw0 = sum_i g,  dw_e += g x_e,  dV_ef += g (x_e s_f - V_ef x_e^2)  (Rendle eq. 4). */
#include <assert.h>
#include <string.h>

#include "core/layer.h"

#define FM_MAX_K 1024 /* s (k) lives on the stack */

enum { KEY_DIM, KEY_FIELD, KEY_TABLE, KEY_INIT_SCALE, KEY_ACTIVATION };

static const ml_layer_key keys[] = {
    [KEY_DIM] = {.name = "dim",
                 .kind = ML_KEY_INT,
                 .def = 0,
                 .min = 1,
                 .max = FM_MAX_K,
                 .doc = "k, the factors per feature (table rows hold [w, V]: k + 1 floats)",
                 .flags = ML_KEY_REQUIRED},
    [KEY_FIELD] = {.name = "field",
                   .kind = ML_KEY_INT,
                   .def = -1,
                   .min = -1,
                   .max = 1000000000,
                   .doc = "the one field read (-1: every entry of the row)"},
    [KEY_TABLE] = {.name = "table",
                   .kind = ML_KEY_STRING,
                   .doc = "the embedding table (unset: the layer's own, named by the layer)"},
    [KEY_INIT_SCALE] = {.name = "init_scale",
                        .kind = ML_KEY_FLOAT,
                        .def = 0.01,
                        .min = 0,
                        .max = -1,
                        .doc = "the scale the table draws new rows with (0: zeros)"},
    [KEY_ACTIVATION] = {.name = "activation",
                        .kind = ML_KEY_ENUM,
                        .def = 0,
                        .enum_name = ml_activation_name,
                        .doc = "applied after the FM (sigmoid: the FM classifier)"},
};

static int fm_shape(ml_layer *l, pst_err *err)
{
    int k = (int)l->spec->val[KEY_DIM].i;
    int64_t field = l->spec->val[KEY_FIELD].i;
    if (k < 1 || k > FM_MAX_K)
        return pst_err_set(err, PST_ERR_CONFIG, "dim: must be in [1, %d], got %d", FM_MAX_K, k);
    l->out = 1;
    l->ntensors = 1;
    l->tensor[0] = (ml_tensor){"bias", 1, 1};
    l->dim = k + 1;
    l->field_lo = field < 0 ? 0 : (uint32_t)field;
    l->field_hi = field < 0 ? UINT32_MAX : (uint32_t)field;
    l->table = l->spec->val[KEY_TABLE].s;
    l->init_scale = (float)l->spec->val[KEY_INIT_SCALE].f;
    return PST_OK;
}

static void fm_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)l, (void)he, (void)r;
    t[0][0] = 0.0f;
}

static int reads(const ml_layer *l, const ml_sparse_in *s, int64_t e)
{
    uint32_t f = ml_sparse_field(s, e);
    return f >= l->field_lo && f <= l->field_hi;
}

/* Row i: s_f = sum_e V_ef x_e into s (k); returns the rest of y_i:
 * sum_e w_e x_e - 1/2 sum_e sum_f V_ef^2 x_e^2. */
static double fm_row(const ml_layer *l, const ml_sparse_in *s, int i, float *sf)
{
    const int d = l->dim, k = d - 1;
    double rest = 0;
    memset(sf, 0, (size_t)k * sizeof *sf);
    for (int64_t e = s->row_ptr[i]; e < s->row_ptr[i + 1]; e++) {
        if (!reads(l, s, e))
            continue;
        int32_t key = s->idx[e - s->e0];
        assert(key >= 0);
        const float *r = s->rows + (size_t)key * d, x = s->vals[e];
        float sq = 0.0f;
        for (int f = 0; f < k; f++) {
            sf[f] += r[1 + f] * x;
            sq += r[1 + f] * r[1 + f];
        }
        rest += (double)r[0] * x - 0.5 * (double)sq * x * x;
    }
    return rest;
}

static void fm_forward(const ml_layer *l, float *y, const ml_sparse_in *s, const float *const *t,
                       int n)
{
    const int k = l->dim - 1;
    float sf[FM_MAX_K];
    for (int i = 0; i < n; i++) {
        double v = t[0][0] + fm_row(l, s, i, sf);
        for (int f = 0; f < k; f++)
            v += 0.5 * (double)sf[f] * sf[f];
        y[i] = (float)v;
    }
}

static void fm_backward(const ml_layer *l, float *drows, float *const *dt, const float *dy,
                        const float *y, const ml_sparse_in *s, const float *const *t, int n)
{
    (void)y, (void)t;
    const int d = l->dim, k = d - 1;
    float sf[FM_MAX_K];
    if (dt[0]) {
        double g0 = 0;
        for (int i = 0; i < n; i++)
            g0 += dy[i];
        dt[0][0] = (float)g0;
    }
    if (!drows)
        return;
    for (int i = 0; i < n; i++) {
        const float g = dy[i];
        fm_row(l, s, i, sf);
        for (int64_t e = s->row_ptr[i]; e < s->row_ptr[i + 1]; e++) {
            if (!reads(l, s, e))
                continue;
            int32_t key = s->idx[e - s->e0];
            const float *r = s->rows + (size_t)key * d, x = s->vals[e];
            float *dr = drows + (size_t)key * d;
            dr[0] += g * x;
            for (int f = 0; f < k; f++)
                dr[1 + f] += g * (x * sf[f] - r[1 + f] * x * x);
        }
    }
}

/* Per entry read: ~4 (k + 1) forward, ~8 (k + 1) backward (s recomputed). */
static double fm_flops(const ml_layer *l, int n) { return 12.0 * n * l->dim; }

const ml_layer_ops ml_layer_fm = {
    .name = "fm",
    .summary = "sparse: factorization machine (Rendle 2010), y = f(w0 + sum w x + pairwise "
               "<V_a, V_b> x_a x_b); output (N, 1), table dim = dim + 1",
    .prefix = "fm",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .post_activation = 1,
    .has_params = 1,
    .sparse = 1,
    .shape = fm_shape,
    .init = fm_init,
    .sforward = fm_forward,
    .sbackward = fm_backward,
    .flops = fm_flops,
};
