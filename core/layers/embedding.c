/* core/layers/embedding.c -- the `embedding` layer type: one id per field -> its vector.
 *
 *   reads the batch's sparse entries in fields [field_offset, field_offset + F)
 *   table rows R: (K, d)      y: (N, F*d),  y[i, f*d : (f+1)*d] = field f's vector
 *
 * Per row and field f:  y_f = sum_{e in row, field(e) = f} v_e R[key(e)]
 * -- the plain lookup R[id] for the usual one id of value 1 per field. A field with no
 * entry gives zeros; several ids in one field are summed (weighted by their values, as
 * an `embedding_bag` with combiner sum would), not refused: hashed categorical columns
 * and multi-valued fields need no special case. Entries of other fields are skipped.
 * Backward: dR[key(e)] += v_e dy_f (summed over every entry of a key). */
#include <assert.h>
#include <string.h>

#include "core/layer.h"

enum { KEY_DIM, KEY_FIELDS, KEY_FIELD_OFFSET, KEY_TABLE, KEY_INIT_SCALE };

static const ml_layer_key keys[] = {
    [KEY_DIM] = {.name = "dim",
                 .kind = ML_KEY_INT,
                 .def = 0,
                 .min = 1,
                 .max = 65536,
                 .doc = "d, the width of a table row (one field's vector)",
                 .flags = ML_KEY_REQUIRED},
    [KEY_FIELDS] = {.name = "fields",
                    .kind = ML_KEY_INT,
                    .def = 1,
                    .min = 1,
                    .max = 65536,
                    .doc = "F, the fields read: output (N, F*d); several ids in one field "
                           "are summed, weighted by value; a missing field gives zeros"},
    [KEY_FIELD_OFFSET] = {.name = "field_offset",
                          .kind = ML_KEY_INT,
                          .def = 0,
                          .min = 0,
                          .max = 1000000000,
                          .doc = "the first field read (entries of other fields are skipped)"},
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
};

static int emb_shape(ml_layer *l, pst_err *err)
{
    int d = (int)l->spec->val[KEY_DIM].i, f = (int)l->spec->val[KEY_FIELDS].i;
    if (d < 1)
        return pst_err_set(err, PST_ERR_CONFIG, "dim: must be >= 1, got %d", d);
    if ((size_t)d * (size_t)f > ((size_t)1 << 24))
        return pst_err_set(err, PST_ERR_CONFIG, "fields: %d fields x dim %d are too wide", f, d);
    l->out = d * f;
    l->ntensors = 0;
    l->dim = d;
    l->field_lo = (uint32_t)l->spec->val[KEY_FIELD_OFFSET].i;
    l->field_hi = l->field_lo + (uint32_t)f - 1;
    l->table = l->spec->val[KEY_TABLE].s;
    l->init_scale = (float)l->spec->val[KEY_INIT_SCALE].f;
    return PST_OK;
}

static void emb_init(const ml_layer *l, float *const *t, int he, rng_state *r)
{
    (void)l, (void)t, (void)he, (void)r; /* no dense tensors: the table initialises rows */
}

static void emb_forward(const ml_layer *l, float *y, const ml_sparse_in *s, const float *const *t,
                        int n)
{
    (void)t;
    const int d = l->dim;
    memset(y, 0, (size_t)n * l->out * sizeof *y);
    for (int i = 0; i < n; i++) {
        float *yr = y + (size_t)i * l->out;
        for (int64_t e = s->row_ptr[i]; e < s->row_ptr[i + 1]; e++) {
            uint32_t f = ml_sparse_field(s, e);
            if (f < l->field_lo || f > l->field_hi)
                continue;
            int32_t k = s->idx[e - s->e0];
            assert(k >= 0);
            const float *rk = s->rows + (size_t)k * d;
            float v = s->vals[e], *yf = yr + (size_t)(f - l->field_lo) * d;
            for (int j = 0; j < d; j++)
                yf[j] += v * rk[j];
        }
    }
}

static void emb_backward(const ml_layer *l, float *drows, float *const *dt, const float *dy,
                         const float *y, const ml_sparse_in *s, const float *const *t, int n)
{
    (void)dt, (void)y, (void)t;
    const int d = l->dim;
    if (!drows)
        return;
    for (int i = 0; i < n; i++) {
        const float *gr = dy + (size_t)i * l->out;
        for (int64_t e = s->row_ptr[i]; e < s->row_ptr[i + 1]; e++) {
            uint32_t f = ml_sparse_field(s, e);
            if (f < l->field_lo || f > l->field_hi)
                continue;
            float *dk = drows + (size_t)s->idx[e - s->e0] * d;
            const float v = s->vals[e], *gf = gr + (size_t)(f - l->field_lo) * d;
            for (int j = 0; j < d; j++)
                dk[j] += v * gf[j];
        }
    }
}

/* Per entry read: 2 d forward, 2 d backward. */
static double emb_flops(const ml_layer *l, int n) { return 4.0 * n * l->dim; }

const ml_layer_ops ml_layer_embedding = {
    .name = "embedding",
    .summary = "sparse: one id per field -> its table row; output (N, fields*dim)",
    .prefix = "emb",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = 1,
    .has_params = 1,
    .sparse = 1,
    .shape = emb_shape,
    .init = emb_init,
    .sforward = emb_forward,
    .sbackward = emb_backward,
    .flops = emb_flops,
};
