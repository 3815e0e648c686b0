/* core/layers/dot_interaction.c -- the `dot_interaction` layer type of DLRM (Naumov et al.
 * 2019, "Deep Learning Recommendation Model for Personalization and Recommendation
 * Systems", sec. 2.3): the pairwise dot products of a row's feature vectors.
 *
 *   x_j: (N, IN_j)   the inputs, cut into M vectors v_1..v_M of width D per row: each
 *                    input one vector (key dim 0: all IN_j equal, D = IN_1), or each
 *                    input IN_j / D vectors (dim D > 0: e.g. an `embedding` over F
 *                    fields, (N, F*D), is F vectors)
 *   y: (N, OUT)      [x_1 (keep_first), z_12, z_13, ..., z_1M, z_23, ..., z_(M-1)M]
 *                    with z_ab = <v_a, v_b>: the M(M-1)/2 pairs a < b in row-major
 *                    order (torch.triu_indices(M, M, 1)); OUT = [IN_1] + M(M-1)/2
 *
 * DLRM feeds the bottom MLP's output as x_1 and keeps it next to the interactions, the
 * input of its top MLP. Backward: dv_a = sum_{b != a} dz_ab v_b (+ dy's x_1 part for
 * x_1). No parameters. */
#include <string.h>

#include "core/layer.h"

#define MAX_VECTORS 256 /* per row: 32640 pairs */

enum { KEY_DIM, KEY_KEEP_FIRST };

static const ml_layer_key keys[] = {
    [KEY_DIM] = {.name = "dim",
                 .kind = ML_KEY_INT,
                 .def = 0,
                 .min = 0,
                 .max = -1,
                 .doc = "vector width D: every input is IN_j / D vectors (0: each input "
                        "is one vector, all of one width)"},
    [KEY_KEEP_FIRST] = {.name = "keep_first",
                        .kind = ML_KEY_BOOL,
                        .def = 1,
                        .doc = "the output starts with the first input (DLRM's dense "
                               "features), then the dot products"},
};

/* Vector width and count from the spec and the inputs' widths. */
static int vectors(const ml_layer *l, int *d)
{
    int dim = (int)l->spec->val[KEY_DIM].i;
    *d = dim > 0 ? dim : l->in[0];
    int m = 0;
    for (int k = 0; k < l->nin; k++)
        m += l->in[k] / *d;
    return m;
}

static int dot_shape(ml_layer *l, pst_err *err)
{
    int dim = (int)l->spec->val[KEY_DIM].i, d;
    for (int k = 0; k < l->nin; k++)
        if (dim > 0 ? l->in[k] % dim != 0 : l->in[k] != l->in[0])
            return pst_err_set(err, PST_ERR_CONFIG,
                               dim > 0 ? "dim: input %d's width %d is no multiple of %d"
                                       : "dim: 0 needs inputs of one width (input %d: %d, "
                                         "input 0: %d)",
                               k, l->in[k], dim > 0 ? dim : l->in[0]);
    int m = vectors(l, &d);
    if (m < 2 || m > MAX_VECTORS)
        return pst_err_set(err, PST_ERR_CONFIG, "inputs: %d vectors of width %d (need 2 to %d)", m,
                           d, MAX_VECTORS);
    l->out = m * (m - 1) / 2 + (l->spec->val[KEY_KEEP_FIRST].i ? l->in[0] : 0);
    l->ntensors = 0;
    return PST_OK;
}

/* Row i's vectors: v[a] points at its D floats in the inputs. */
static void row_vectors(const ml_layer *l, const float *const *x, int i, int d, const float **v)
{
    int a = 0;
    for (int k = 0; k < l->nin; k++)
        for (int o = 0; o + d <= l->in[k]; o += d)
            v[a++] = x[k] + (size_t)i * l->in[k] + o;
}

static void dot_forward(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                        int n)
{
    (void)t;
    int d, m = vectors(l, &d);
    int keep = l->spec->val[KEY_KEEP_FIRST].i ? l->in[0] : 0;
    const float *v[MAX_VECTORS];
    for (int i = 0; i < n; i++) {
        float *yr = y + (size_t)i * l->out;
        row_vectors(l, x, i, d, v);
        if (keep)
            memcpy(yr, x[0] + (size_t)i * l->in[0], (size_t)keep * sizeof *yr);
        float *z = yr + keep;
        for (int a = 0; a < m; a++)
            for (int b = a + 1; b < m; b++) {
                float s = 0.0f;
                for (int j = 0; j < d; j++)
                    s += v[a][j] * v[b][j];
                *z++ = s;
            }
    }
}

static void dot_backward(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                         const float *y, const float *const *x, const float *const *t, int n)
{
    (void)dt, (void)y, (void)t;
    int d, m = vectors(l, &d);
    int keep = l->spec->val[KEY_KEEP_FIRST].i ? l->in[0] : 0;
    const float *v[MAX_VECTORS];
    float *dv[MAX_VECTORS];
    for (int k = 0; k < l->nin; k++)
        if (dx[k])
            memset(dx[k], 0, (size_t)n * l->in[k] * sizeof(float));
    for (int i = 0; i < n; i++) {
        const float *gr = dy + (size_t)i * l->out;
        row_vectors(l, x, i, d, v);
        int a = 0;
        for (int k = 0; k < l->nin; k++)
            for (int o = 0; o + d <= l->in[k]; o += d)
                dv[a++] = dx[k] ? dx[k] + (size_t)i * l->in[k] + o : NULL;
        if (keep && dx[0]) {
            float *d0 = dx[0] + (size_t)i * l->in[0];
            for (int j = 0; j < keep; j++)
                d0[j] += gr[j];
        }
        const float *dz = gr + keep;
        for (a = 0; a < m; a++)
            for (int b = a + 1; b < m; b++) {
                float g = *dz++;
                if (dv[a])
                    for (int j = 0; j < d; j++)
                        dv[a][j] += g * v[b][j];
                if (dv[b])
                    for (int j = 0; j < d; j++)
                        dv[b][j] += g * v[a][j];
            }
    }
}

/* 2 D per pair forward, 4 D backward. */
static double dot_flops(const ml_layer *l, int n)
{
    int d, m = vectors(l, &d);
    return 6.0 * n * d * (m * (m - 1) / 2.0);
}

const ml_layer_ops ml_layer_dot_interaction = {
    .name = "dot_interaction",
    .summary = "DLRM's pairwise dot products z_ab = <v_a, v_b>, a < b, of the inputs' "
               "vectors, after the first input if keep_first",
    .prefix = "dot",
    .keys = keys,
    .nkeys = (int)(sizeof keys / sizeof keys[0]),
    .min_inputs = 1,
    .max_inputs = ML_MAX_INPUTS,
    .shape = dot_shape,
    .forward = dot_forward,
    .backward = dot_backward,
    .flops = dot_flops,
};
