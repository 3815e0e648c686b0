/* core/layers/embedding_bag.c -- the `embedding_bag` layer type: many ids per row -> one
 * vector, their weighted sum or mean (torch.nn.EmbeddingBag with per_sample_weights).
 *
 *   reads the batch's sparse entries (all fields, or the one `field`)
 *   table rows R: (K, d)   b "bias": (d) when bias   y: (N, d)
 *
 *   sum:   y_i = sum_{e in row i} v_e R[key(e)]            (+ b)
 *   mean:  y_i = sum_{e in row i} v_e R[key(e)] / sum_e |v_e|  (+ b)
 *
 * mean is TensorFlow's weighted mean (embedding_lookup_sparse, combiner "mean"), and for
 * unit values PyTorch's mode='mean'; |v| keeps signed values from dividing by ~0. An
 * empty row gives zeros (then b). With d = 1, bias and `activation: sigmoid` this is
 * logistic regression over sparse features (the weights in the table, the intercept in
 * the flat vector); `activation` is applied as its own step, as for dense. Repeated ids
 * (in a row or across rows) are separate entries whose gradients add:
 *   dR[key(e)] += (v_e / den_i) dy_i,  den_i = 1 (sum) or sum_e |v_e| (mean);
 *   db = sum_i dy_i. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "core/layer.h"

enum { KEY_DIM, KEY_COMBINER, KEY_FIELD, KEY_BIAS, KEY_TABLE, KEY_INIT_SCALE, KEY_ACTIVATION };
enum { COMB_SUM, COMB_MEAN };

static const char *combiner_name(int i)
{
    static const char *const names[] = {"sum", "mean"};
    return i >= 0 && i < 2 ? names[i] : NULL;
}

static const ml_layer_key keys[] = {
    [KEY_DIM] = {.name = "dim",
                 .kind = ML_KEY_INT,
                 .def = 0,
                 .min = 1,
                 .max = 65536,
                 .doc = "d, the width of a table row and of the output",
                 .flags = ML_KEY_REQUIRED},
    [KEY_COMBINER] = {.name = "combiner",
                      .kind = ML_KEY_ENUM,
                      .def = COMB_SUM,
                      .enum_name = combiner_name,
                      .doc = "sum: sum_e v_e R[id_e]; mean: that over sum_e abs(v_e) (empty row: "
                             "zeros)"},
    [KEY_FIELD] = {.name = "field",
                   .kind = ML_KEY_INT,
                   .def = -1,
                   .min = -1,
                   .max = 1000000000,
                   .doc = "the one field read (-1: every entry of the row)"},
    [KEY_BIAS] = {.name = "bias",
                  .kind = ML_KEY_BOOL,
                  .def = 0,
                  .doc = "adds a dense bias (d) in the flat vector (d = 1, sigmoid: logistic "
                         "regression)"},
    [KEY_TABLE] = {.name = "table",
                   .kind = ML_KEY_STRING,
                   .doc = "the embedding table (unset: the layer's own, named by the layer); "
                          "layers naming one table share its rows"},
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
                        .doc = "applied after the bag (and bias)"},
};

static int bag_shape(ml_layer *l, pst_err *err)
{
    int d = (int)l->spec->val[KEY_DIM].i;
    int64_t field = l->spec->val[KEY_FIELD].i;
    if (d < 1)
        return pst_err_set(err, PST_ERR_CONFIG, "dim: must be >= 1, got %d", d);
    l->out = d;
    l->ntensors = 0;
    if (l->spec->val[KEY_BIAS].i) {
        l->ntensors = 1;
        l->tensor[0] = (ml_tensor){"bias", d, 1};
    }
    l->dim = d;
    l->field_lo = field < 0 ? 0 : (uint32_t)field;
    l->field_hi = field < 0 ? UINT32_MAX : (uint32_t)field;
    l->table = l->spec->val[KEY_TABLE].s;
    l->init_scale = (float)l->spec->val[KEY_INIT_SCALE].f;
    return PST_OK;
}

static void bag_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)he, (void)r;
    if (l->ntensors)
        memset(t[0], 0, (size_t)l->dim * sizeof(float));
}

/* 1 / den_i of row i: 1 for sum, 1 / sum |v_e| for mean (0 for an empty row). */
static float row_scale(const ml_layer *l, const ml_sparse_in *s, int i)
{
    if (l->spec->val[KEY_COMBINER].i != COMB_MEAN)
        return 1.0f;
    double den = 0;
    for (int64_t e = s->row_ptr[i]; e < s->row_ptr[i + 1]; e++) {
        uint32_t f = ml_sparse_field(s, e);
        if (f >= l->field_lo && f <= l->field_hi)
            den += fabsf(s->vals[e]);
    }
    return den > 0 ? (float)(1.0 / den) : 0.0f;
}

static void bag_forward(const ml_layer *l, float *y, const ml_sparse_in *s, const float *const *t,
                        int n)
{
    const int d = l->dim;
    for (int i = 0; i < n; i++) {
        float *yr = y + (size_t)i * d, sc = row_scale(l, s, i);
        memset(yr, 0, (size_t)d * sizeof *yr);
        for (int64_t e = s->row_ptr[i]; e < s->row_ptr[i + 1]; e++) {
            uint32_t f = ml_sparse_field(s, e);
            if (f < l->field_lo || f > l->field_hi)
                continue;
            int32_t k = s->idx[e - s->e0];
            assert(k >= 0);
            const float *rk = s->rows + (size_t)k * d, v = s->vals[e] * sc;
            for (int j = 0; j < d; j++)
                yr[j] += v * rk[j];
        }
        if (l->ntensors)
            for (int j = 0; j < d; j++)
                yr[j] += t[0][j];
    }
}

static void bag_backward(const ml_layer *l, float *drows, float *const *dt, const float *dy,
                         const float *y, const ml_sparse_in *s, const float *const *t, int n)
{
    (void)y, (void)t;
    const int d = l->dim;
    if (l->ntensors && dt[0]) {
        memset(dt[0], 0, (size_t)d * sizeof(float));
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++)
                dt[0][j] += dy[(size_t)i * d + j];
    }
    if (!drows)
        return;
    for (int i = 0; i < n; i++) {
        const float *gr = dy + (size_t)i * d, sc = row_scale(l, s, i);
        for (int64_t e = s->row_ptr[i]; e < s->row_ptr[i + 1]; e++) {
            uint32_t f = ml_sparse_field(s, e);
            if (f < l->field_lo || f > l->field_hi)
                continue;
            float *dk = drows + (size_t)s->idx[e - s->e0] * d, v = s->vals[e] * sc;
            for (int j = 0; j < d; j++)
                dk[j] += v * gr[j];
        }
    }
}

/* Per entry read: 2 d forward, 2 d backward. */
static double bag_flops(const ml_layer *l, int n) { return 4.0 * n * l->dim; }

const ml_layer_ops ml_layer_embedding_bag = {
    .name = "embedding_bag",
    .summary = "sparse: y = f(sum or mean of v_e R[id_e] over a row's entries [+ b]); "
               "output (N, dim)",
    .prefix = "bag",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .post_activation = 1,
    .has_params = 1,
    .sparse = 1,
    .shape = bag_shape,
    .init = bag_init,
    .sforward = bag_forward,
    .sbackward = bag_backward,
    .flops = bag_flops,
};
