/* tests/test_emb.c -- the sparse layers (embedding, embedding_bag, fm) and the dense
 * helpers the sparse example models use (concat, add, dot_interaction): every backward
 * against central finite differences, the per-batch key gathering, and whole models
 * (embedding_bag -> dense -> loss, logistic regression, Wide & Deep, DLRM, an FM
 * classifier) whose table gradients must come out summed per key.
 *
 * `test_emb --dump FILE` writes the layer cases (inputs, and the forward outputs and
 * gradients this code computes) as JSON for tests/ref/emb_ref.py, which recomputes them
 * with PyTorch (ctest emb_torch_ref).
 *
 * Legend: N rows, NNZ entries, K unique keys of a table, d its row width. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/rng.h"
#include "core/model.h"
#include "core/tables.h"
#include "job/job.h"
#include "spec_helpers.h"

/* ---- Specs and batches ---------------------------------------------------------------- */

static void setk(ml_layer_spec *s, const char *key, double v)
{
    int k = ml_layer_key_find(s->ops, key);
    assert_true(k >= 0);
    if (s->ops->keys[k].kind == ML_KEY_FLOAT)
        s->val[k].f = v;
    else
        s->val[k].i = (int64_t)v;
}

static void sets(ml_layer_spec *s, const char *key, const char *v)
{
    int k = ml_layer_key_find(s->ops, key);
    assert_true(k >= 0 && s->ops->keys[k].kind == ML_KEY_STRING);
    s->val[k].s = (char *)v; /* a literal; the spec is never fini'd */
}

static ml_layer_spec layer(const ml_layer_ops *ops, const char *name)
{
    ml_layer_spec s;
    ml_layer_spec_init(&s, ops);
    s.name = (char *)name;
    return s;
}

static ml_layer_spec with_inputs(ml_layer_spec s, char **inputs, unsigned n)
{
    s.inputs = inputs;
    s.ninputs = n;
    return s;
}

/* A batch that owns its arrays. */
typedef struct {
    ml_sparse_batch b;
    int64_t *row_ptr;
    uint64_t *ids;
    float *vals;
    uint32_t *fields;
} batch;

/* Row i has len[i] entries (0: an empty row); ids from a pool of `pool` values (small:
 * repeats within and across rows), fields in [0, nfields) (nfields 0: no fields array),
 * values random in [0.5, 1.5] with some negative, or 1 when unit. */
static batch make_batch(int n, const int *len, uint64_t pool, int nfields, int unit, rng_state *r)
{
    batch bt;
    memset(&bt, 0, sizeof bt);
    int64_t nnz = 0;
    for (int i = 0; i < n; i++)
        nnz += len[i];
    bt.row_ptr = malloc(sizeof(int64_t) * (size_t)(n + 1));
    bt.ids = malloc(sizeof(uint64_t) * (size_t)(nnz + 1));
    bt.vals = malloc(sizeof(float) * (size_t)(nnz + 1));
    bt.fields = nfields ? malloc(sizeof(uint32_t) * (size_t)(nnz + 1)) : NULL;
    bt.row_ptr[0] = 0;
    int64_t e = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < len[i]; j++, e++) {
            /* large ids: keys are 64-bit, not indices */
            bt.ids[e] = 0x9e3779b97f4a7c15ULL * (1 + rng_below(r, pool));
            bt.vals[e] = unit ? 1.0f : (0.5f + rng_uniform(r)) * (rng_below(r, 5) ? 1.f : -1.f);
            if (nfields)
                bt.fields[e] = (uint32_t)rng_below(r, (uint64_t)nfields);
        }
        bt.row_ptr[i + 1] = e;
    }
    bt.b = (ml_sparse_batch){
        .n = n, .row_ptr = bt.row_ptr, .ids = bt.ids, .vals = bt.vals, .fields = bt.fields};
    return bt;
}

static void free_batch(batch *bt)
{
    free(bt->row_ptr), free(bt->ids), free(bt->vals), free(bt->fields);
}

static void fill(float *p, size_t n, float scale, rng_state *r)
{
    for (size_t i = 0; i < n; i++)
        p[i] = scale * (2.0f * rng_uniform(r) - 1.0f);
}

/* ||g - fd|| <= 2e-3 ||fd|| + 1e-4 over a whole vector (test_model.c's criterion). */
static void expect_close(const char *what, const double *g, const double *fd, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (g[i] - fd[i]) * (g[i] - fd[i]);
        den += fd[i] * fd[i];
    }
    if (sqrt(num) > 2e-3 * sqrt(den) + 1e-4)
        fail_msg("%s: gradient mismatch: |g - fd| = %g, |fd| = %g", what, sqrt(num), sqrt(den));
}

/* ---- JSON for the PyTorch reference ---------------------------------------------------- */

static void json_floats(FILE *f, const char *name, const float *p, size_t n)
{
    fprintf(f, "\"%s\": [", name);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%.9g", i ? ", " : "", (double)p[i]);
    fputs("], ", f);
}

static void json_batch(FILE *f, const ml_sparse_batch *b)
{
    int64_t nnz = b->row_ptr[b->n];
    fputs("\"row_ptr\": [", f);
    for (int i = 0; i <= b->n; i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)b->row_ptr[i]);
    fputs("], \"ids\": [", f);
    for (int64_t e = 0; e < nnz; e++)
        fprintf(f, "%s\"%llu\"", e ? ", " : "", (unsigned long long)b->ids[e]);
    fputs("], ", f);
    json_floats(f, "vals", b->vals, (size_t)nnz);
    fputs("\"fields\": ", f);
    if (!b->fields)
        fputs("null, ", f);
    else {
        fputc('[', f);
        for (int64_t e = 0; e < nnz; e++)
            fprintf(f, "%s%u", e ? ", " : "", b->fields[e]);
        fputs("], ", f);
    }
}

static void json_keys(FILE *f, const char *spec_keys) { fprintf(f, "\"keys\": {%s}, ", spec_keys); }

/* ---- Sparse layers against finite differences ---------------------------------------- */

/* L = sum(c * y) for a fixed random c (N, OUT), so dL/dy = c: checks the layer's
 * backward for dR (K, d) and its dense tensors. Writes the case to dump when given. */
static void check_sparse_layer(const ml_layer_spec *spec, const batch *bt, uint64_t seed,
                               FILE *dump, const char *keys_json)
{
    pst_err err = {0};
    ml_layer l = {.spec = spec, .nin = 1};
    assert_int_equal(spec->ops->shape(&l, &err), PST_OK);
    ml_tables *tb = ml_tables_create(&err);
    assert_non_null(tb);
    assert_int_equal(
        ml_tables_add_reader(tb, "t", l.dim, l.init_scale, l.field_lo, l.field_hi, &err), 0);
    const ml_sparse_batch *b = &bt->b;
    int n = b->n, d = l.dim, out = l.out;
    assert_int_equal(ml_tables_gather(tb, b, n, &err), PST_OK);
    size_t K = ml_tables_nkeys(tb, 0);
    rng_state r;
    rng_seed(&r, seed);
    float *rows = ml_tables_rows(tb, 0), *drows = ml_tables_grads(tb, 0);
    fill(rows, K * d, 0.8f, &r);
    float *tens[ML_MAX_TENSORS] = {NULL}, *dt[ML_MAX_TENSORS] = {NULL};
    size_t tlen[ML_MAX_TENSORS] = {0};
    for (int k = 0; k < l.ntensors; k++) {
        tlen[k] = (size_t)l.tensor[k].rows * l.tensor[k].cols;
        tens[k] = malloc(sizeof(float) * tlen[k]);
        dt[k] = malloc(sizeof(float) * tlen[k]);
        fill(tens[k], tlen[k], 0.5f, &r);
    }
    float *y = malloc(sizeof(float) * (size_t)n * out), *c = malloc(sizeof(float) * n * out);
    fill(c, (size_t)n * out, 1.0f, &r);
    ml_sparse_in s = {.row_ptr = b->row_ptr,
                      .vals = b->vals,
                      .fields = b->fields,
                      .idx = ml_tables_index(tb, 0),
                      .e0 = 0,
                      .rows = rows};
    const float *const *ct = (const float *const *)tens;
    l.spec->ops->sforward(&l, y, &s, ct, n);
    if (K)
        memset(drows, 0, sizeof(float) * K * d);
    l.spec->ops->sbackward(&l, drows, dt, c, y, &s, ct, n);
    if (dump) {
        fprintf(dump, "{\"type\": \"%s\", ", spec->ops->name);
        json_keys(dump, keys_json);
        json_batch(dump, b);
        fprintf(dump, "\"d\": %d, \"out\": %d, \"table_keys\": [", d, out);
        for (size_t k = 0; k < K; k++)
            fprintf(dump, "%s\"%llu\"", k ? ", " : "",
                    (unsigned long long)ml_tables_keys(tb, 0)[k]);
        fputs("], ", dump);
        json_floats(dump, "rows", rows, K * d);
        json_floats(dump, "bias", l.ntensors ? tens[0] : NULL, l.ntensors ? tlen[0] : 0);
        json_floats(dump, "dy", c, (size_t)n * out);
        json_floats(dump, "y", y, (size_t)n * out);
        json_floats(dump, "drows", drows, K * d);
        json_floats(dump, "dbias", l.ntensors ? dt[0] : NULL, l.ntensors ? tlen[0] : 0);
        fputs("\"n\": 0}", dump);
    }
    /* the finite differences: L is linear in y */
    size_t P = K * d;
    for (int k = 0; k < l.ntensors; k++)
        P += tlen[k];
    double *g = malloc(sizeof(double) * (P + 1)), *fd = malloc(sizeof(double) * (P + 1));
    size_t at = 0;
    const float h = 1e-2f;
    for (int which = -1; which < l.ntensors; which++) {
        float *p = which < 0 ? rows : tens[which];
        const float *gp = which < 0 ? drows : dt[which];
        size_t len = which < 0 ? K * d : tlen[which];
        for (size_t j = 0; j < len; j++, at++) {
            float keep = p[j];
            double lp = 0, lm = 0;
            p[j] = keep + h;
            l.spec->ops->sforward(&l, y, &s, ct, n);
            for (int i = 0; i < n * out; i++)
                lp += (double)c[i] * y[i];
            p[j] = keep - h;
            l.spec->ops->sforward(&l, y, &s, ct, n);
            for (int i = 0; i < n * out; i++)
                lm += (double)c[i] * y[i];
            p[j] = keep;
            fd[at] = (lp - lm) / (2.0 * h);
            g[at] = gp[j];
        }
    }
    expect_close(spec->ops->name, g, fd, P);
    free(g), free(fd), free(y), free(c);
    for (int k = 0; k < l.ntensors; k++)
        free(tens[k]), free(dt[k]);
    ml_tables_destroy(tb);
}

/* The batch shapes every sparse layer is checked on: batch 1; rows of several entries
 * with repeated ids (pool 3); an empty row; many fields, some missing in a row. */
static void sparse_cases(const ml_layer_spec *spec, int nfields, uint64_t seed, FILE *dump,
                         const char *keys_json, int unit)
{
    rng_state r;
    rng_seed(&r, seed);
    static const int one[] = {3};
    static const int several[] = {4, 0, 1, 6, 2};
    static const int wide[] = {7, 3, 5, 9, 0, 2, 8};
    struct {
        int n;
        const int *len;
        uint64_t pool;
    } cs[] = {{1, one, 2}, {5, several, 3}, {7, wide, 40}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        batch bt = make_batch(cs[i].n, cs[i].len, cs[i].pool, nfields, unit, &r);
        if (dump && i)
            fputs(",\n", dump);
        check_sparse_layer(spec, &bt, seed + i, dump, keys_json);
        free_batch(&bt);
    }
}

static void run_sparse_layer_cases(FILE *dump)
{
    struct {
        const ml_layer_ops *ops;
        double dim;
        const char *combiner;
        int bias, fields, field, unit;
        const char *json;
    } cases[] = {
        {&ml_layer_embedding_bag, 3, "sum", 0, 0, -1, 0, "\"combiner\": \"sum\""},
        {&ml_layer_embedding_bag, 5, "sum", 1, 3, -1, 0, "\"combiner\": \"sum\", \"bias\": 1"},
        {&ml_layer_embedding_bag, 4, "mean", 0, 0, -1, 1, "\"combiner\": \"mean\""},
        {&ml_layer_embedding_bag, 3, "mean", 1, 4, 2, 0,
         "\"combiner\": \"mean\", \"bias\": 1, \"field\": 2"},
        {&ml_layer_embedding_bag, 1, "sum", 1, 0, -1, 0, "\"combiner\": \"sum\", \"bias\": 1"},
        {&ml_layer_embedding, 3, NULL, 0, 1, 0, 1, "\"fields\": 1, \"field_offset\": 0"},
        {&ml_layer_embedding, 5, NULL, 0, 4, 1, 0, "\"fields\": 3, \"field_offset\": 1"},
        {&ml_layer_fm, 3, NULL, 0, 0, -1, 0, "\"field\": -1"},
        {&ml_layer_fm, 4, NULL, 0, 3, 1, 0, "\"field\": 1"},
        {&ml_layer_fm, 1, NULL, 0, 0, -1, 1, "\"field\": -1"},
    };
    int first = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ml_layer_spec s = layer(cases[i].ops, "l");
        setk(&s, "dim", cases[i].dim);
        if (cases[i].ops == &ml_layer_embedding_bag) {
            setk(&s, "combiner", strcmp(cases[i].combiner, "mean") == 0);
            setk(&s, "bias", cases[i].bias);
            setk(&s, "field", cases[i].field);
        } else if (cases[i].ops == &ml_layer_embedding) {
            setk(&s, "fields", cases[i].fields > 1 ? 3 : 1);
            setk(&s, "field_offset", cases[i].field < 0 ? 0 : cases[i].field);
        } else {
            setk(&s, "field", cases[i].field);
        }
        char json[256];
        snprintf(json, sizeof json, "\"dim\": %g, %s", cases[i].dim, cases[i].json);
        if (dump && !first)
            fputs(",\n", dump);
        first = 0;
        sparse_cases(&s, cases[i].fields, 100 + 10 * i, dump, json, cases[i].unit);
    }
}

static void test_sparse_layers_fd(void **state)
{
    (void)state;
    run_sparse_layer_cases(NULL);
}

/* ---- Dense helpers against finite differences ------------------------------------------ */

/* L = sum(c * y) over inputs x_k (N, IN_k): checks dx_k. */
static void check_dense_layer(const ml_layer_spec *spec, int nin, const int *in, int n,
                              uint64_t seed, FILE *dump, const char *keys_json)
{
    pst_err err = {0};
    ml_layer l = {.spec = spec, .nin = nin};
    for (int k = 0; k < nin; k++)
        l.in[k] = in[k];
    assert_int_equal(spec->ops->shape(&l, &err), PST_OK);
    rng_state r;
    rng_seed(&r, seed);
    float *x[ML_MAX_INPUTS], *dx[ML_MAX_INPUTS];
    size_t tot = 0;
    for (int k = 0; k < nin; k++) {
        x[k] = malloc(sizeof(float) * (size_t)n * in[k]);
        dx[k] = malloc(sizeof(float) * (size_t)n * in[k]);
        fill(x[k], (size_t)n * in[k], 1.0f, &r);
        tot += (size_t)n * in[k];
    }
    float *y = malloc(sizeof(float) * (size_t)n * l.out), *c = malloc(sizeof(float) * n * l.out);
    fill(c, (size_t)n * l.out, 1.0f, &r);
    const float *const *cx = (const float *const *)x;
    spec->ops->forward(&l, y, cx, NULL, n);
    float *none[ML_MAX_TENSORS] = {NULL};
    spec->ops->backward(&l, dx, none, c, y, cx, NULL, n);
    if (dump) {
        fprintf(dump, "{\"type\": \"%s\", ", spec->ops->name);
        json_keys(dump, keys_json);
        fprintf(dump, "\"n\": %d, \"out\": %d, \"in\": [", n, l.out);
        for (int k = 0; k < nin; k++)
            fprintf(dump, "%s%d", k ? ", " : "", in[k]);
        fputs("], ", dump);
        for (int k = 0; k < nin; k++) {
            char nm[16];
            snprintf(nm, sizeof nm, "x%d", k);
            json_floats(dump, nm, x[k], (size_t)n * in[k]);
            snprintf(nm, sizeof nm, "dx%d", k);
            json_floats(dump, nm, dx[k], (size_t)n * in[k]);
        }
        json_floats(dump, "dy", c, (size_t)n * l.out);
        json_floats(dump, "y", y, (size_t)n * l.out);
        fputs("\"nin\": ", dump);
        fprintf(dump, "%d}", nin);
    }
    double *g = malloc(sizeof(double) * tot), *fd = malloc(sizeof(double) * tot);
    size_t at = 0;
    const float h = 1e-2f;
    for (int k = 0; k < nin; k++)
        for (size_t j = 0; j < (size_t)n * in[k]; j++, at++) {
            float keep = x[k][j];
            double lp = 0, lm = 0;
            x[k][j] = keep + h;
            spec->ops->forward(&l, y, cx, NULL, n);
            for (int i = 0; i < n * l.out; i++)
                lp += (double)c[i] * y[i];
            x[k][j] = keep - h;
            spec->ops->forward(&l, y, cx, NULL, n);
            for (int i = 0; i < n * l.out; i++)
                lm += (double)c[i] * y[i];
            x[k][j] = keep;
            fd[at] = (lp - lm) / (2.0 * h);
            g[at] = dx[k][j];
        }
    expect_close(spec->ops->name, g, fd, tot);
    free(g), free(fd), free(y), free(c);
    for (int k = 0; k < nin; k++)
        free(x[k]), free(dx[k]);
}

static void run_dense_layer_cases(FILE *dump)
{
    ml_layer_spec dot = layer(&ml_layer_dot_interaction, "d");
    static const int two[] = {3, 3}, four[] = {5, 5, 5, 5}, split[] = {4, 12, 8};
    check_dense_layer(&dot, 2, two, 1, 1, dump, "\"dim\": 0, \"keep_first\": 1");
    if (dump)
        fputs(",\n", dump);
    check_dense_layer(&dot, 4, four, 6, 2, dump, "\"dim\": 0, \"keep_first\": 1");
    if (dump)
        fputs(",\n", dump);
    setk(&dot, "dim", 4);
    setk(&dot, "keep_first", 0);
    check_dense_layer(&dot, 3, split, 3, 3, dump, "\"dim\": 4, \"keep_first\": 0");
    if (dump)
        fputs(",\n", dump);
    setk(&dot, "dim", 1);
    setk(&dot, "keep_first", 1);
    static const int odd[] = {3, 2};
    check_dense_layer(&dot, 2, odd, 5, 4, dump, "\"dim\": 1, \"keep_first\": 1");
    ml_layer_spec cat = layer(&ml_layer_concat, "c"), add = layer(&ml_layer_add, "a");
    static const int mixed[] = {2, 5, 1};
    check_dense_layer(&cat, 3, mixed, 4, 5, NULL, "");
    check_dense_layer(&cat, 1, mixed, 1, 6, NULL, "");
    check_dense_layer(&add, 2, two, 3, 7, NULL, "");
    check_dense_layer(&add, 4, four, 1, 8, NULL, "");
}

static void test_dense_helpers_fd(void **state)
{
    (void)state;
    run_dense_layer_cases(NULL);
}

/* ---- Gathering --------------------------------------------------------------------------- */

static void test_gather_dedups_in_first_appearance_order(void **state)
{
    (void)state;
    pst_err err = {0};
    ml_tables *tb = ml_tables_create(&err);
    /* table 0 reads fields 0 and 2 (two readers); table 1 every field */
    assert_int_equal(ml_tables_add_reader(tb, "a", 2, 0.1f, 0, 0, &err), 0);
    assert_int_equal(ml_tables_add_reader(tb, "b", 3, 0.1f, 0, UINT32_MAX, &err), 1);
    assert_int_equal(ml_tables_add_reader(tb, "a", 2, 0.1f, 2, 2, &err), 0);
    assert_int_equal(ml_tables_add_reader(tb, "a", 4, 0.1f, 1, 1, &err), -1);
    assert_non_null(strstr(err.msg, "'a'"));
    int64_t rp[] = {0, 3, 3, 6};
    uint64_t ids[] = {7, 1ULL << 62, 7, 5, 7, 1ULL << 62};
    float vals[] = {1, 1, 1, 1, 1, 1};
    uint32_t fields[] = {0, 1, 2, 0, 0, 2};
    ml_sparse_batch b = {.n = 3, .row_ptr = rp, .ids = ids, .vals = vals, .fields = fields};
    assert_int_equal(ml_tables_gather(tb, &b, 3, &err), PST_OK);
    assert_int_equal(ml_tables_nkeys(tb, 0), 3); /* 7, 5, 2^62 */
    const uint64_t *k0 = ml_tables_keys(tb, 0);
    assert_true(k0[0] == 7 && k0[1] == 5 && k0[2] == 1ULL << 62);
    const int32_t *i0 = ml_tables_index(tb, 0);
    int32_t want0[] = {0, -1, 0, 1, 0, 2};
    assert_memory_equal(i0, want0, sizeof want0);
    assert_int_equal(ml_tables_nkeys(tb, 1), 3); /* 7, 2^62, 5 */
    assert_true(ml_tables_keys(tb, 1)[1] == 1ULL << 62);
    /* bad batches */
    assert_int_equal(ml_tables_gather(tb, &b, 2, &err), PST_ERR_ARG);
    int64_t bad[] = {0, 3, 2, 6};
    b.row_ptr = bad;
    assert_int_equal(ml_tables_gather(tb, &b, 3, &err), PST_ERR_ARG);
    assert_non_null(strstr(err.msg, "row 1"));
    /* an offset view: rows 1..2 of the batch above */
    b.row_ptr = rp + 1;
    b.n = 2;
    assert_int_equal(ml_tables_gather(tb, &b, 3, &err), PST_OK);
    assert_int_equal(ml_tables_batch_nnz(tb), 3);
    assert_int_equal(ml_tables_nkeys(tb, 0), 3);
    assert_true(ml_tables_keys(tb, 0)[0] == 5);
    ml_tables_destroy(tb);
}

/* ---- Whole models --------------------------------------------------------------------- */

static double model_loss(ml_model *m, const float *x, const batch *bt, const float *t, int n)
{
    ml_model_forward_sparse(m, x, &bt->b, n);
    return ml_model_loss(m, NULL, t, n);
}

/* Builds the model, gathers bt, fills rows and params, and checks every table row's and
 * flat parameter's gradient against finite differences of the loss. */
static void check_model(ml_layer_spec *L, unsigned nl, ml_loss loss, int in, const batch *bt,
                        uint64_t seed)
{
    ml_model_spec spec = {.layers = L, .nlayers = nl, .loss = loss, .init = ML_INIT_GLOROT};
    pst_err err = {0};
    int n = bt->b.n;
    ml_model *m = ml_model_create(&spec, in, n, &err);
    if (!m)
        fail_msg("ml_model_create: %s", err.msg);
    ml_model_init(m, seed);
    assert_int_equal(ml_model_gather(m, &bt->b, &err), PST_OK);
    rng_state r;
    rng_seed(&r, seed + 1);
    size_t P = ml_model_nparams(m), tot = P;
    int nt = ml_model_ntables(m);
    for (int t = 0; t < nt; t++) {
        size_t len = ml_model_table_nkeys(m, t) * (size_t)ml_model_table_info(m, t).dim;
        fill(ml_model_table_rows(m, t), len, 0.5f, &r);
        tot += len;
    }
    int out = ml_model_out_dim(m);
    float *x = in ? malloc(sizeof(float) * (size_t)n * in) : NULL;
    float *tg = malloc(sizeof(float) * (size_t)n * out);
    if (x)
        fill(x, (size_t)n * in, 1.0f, &r);
    for (int i = 0; i < n * out; i++)
        tg[i] = loss == ML_LOSS_BCE ? (float)(rng_uniform(&r) > 0.5f) : rng_normal(&r);
    model_loss(m, x, bt, tg, n);
    ml_model_backward_sparse(m, x, &bt->b, n);
    double *g = malloc(sizeof(double) * tot), *fd = malloc(sizeof(double) * tot);
    size_t at = 0;
    const float h = 1e-3f;
    for (int t = -1; t < nt; t++) {
        float *p = t < 0 ? ml_model_params(m) : ml_model_table_rows(m, t);
        const float *gp = t < 0 ? ml_model_grads(m) : ml_model_table_grads(m, t);
        size_t len = t < 0 ? P : ml_model_table_nkeys(m, t) * (size_t)ml_model_table_info(m, t).dim;
        for (size_t j = 0; j < len; j++, at++) {
            g[at] = gp[j];
            float keep = p[j];
            p[j] = keep + h;
            double lp = model_loss(m, x, bt, tg, n);
            p[j] = keep - h;
            double lm = model_loss(m, x, bt, tg, n);
            p[j] = keep;
            fd[at] = (lp - lm) / (2.0 * h);
        }
    }
    expect_close("model", g, fd, tot);
    free(g), free(fd), free(x), free(tg);
    ml_model_destroy(m);
}

static void test_model_bag_dense_loss(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 5);
    static const int len[] = {3, 0, 5, 1, 4, 2};
    batch bt = make_batch(6, len, 4, 0, 0, &r); /* 4 ids: every key repeats */
    ml_layer_spec L[] = {layer(&ml_layer_embedding_bag, "bag"), DENSE(4, ACT_TANH),
                         DENSE(1, ACT_SIGMOID)};
    setk(&L[0], "dim", 3);
    setk(&L[0], "combiner", 1);
    check_model(L, 3, ML_LOSS_BCE, 0, &bt, 50);
    setk(&L[0], "combiner", 0);
    setk(&L[0], "bias", 1);
    check_model(L, 3, ML_LOSS_BCE, 0, &bt, 51);
    free_batch(&bt);
    /* batch 1 */
    static const int one[] = {4};
    bt = make_batch(1, one, 2, 0, 1, &r);
    check_model(L, 3, ML_LOSS_BCE, 0, &bt, 52);
    free_batch(&bt);
}

/* Sparse logistic regression: embedding_bag d=1 + bias + sigmoid, BCE. */
static void test_model_logistic_regression(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 6);
    static const int len[] = {5, 2, 7, 1};
    batch bt = make_batch(4, len, 6, 0, 0, &r);
    ml_layer_spec L[] = {layer(&ml_layer_embedding_bag, "lr")};
    setk(&L[0], "dim", 1);
    setk(&L[0], "bias", 1);
    setk(&L[0], "activation", ACT_SIGMOID);
    check_model(L, 1, ML_LOSS_BCE, 0, &bt, 60);
    /* the table: one, named by the layer, d 1, init_scale the key's */
    ml_model_spec spec = {.layers = L, .nlayers = 1, .loss = ML_LOSS_BCE};
    pst_err err = {0};
    setk(&L[0], "init_scale", 0);
    ml_model *m = ml_model_create(&spec, 0, 4, &err);
    assert_non_null(m);
    assert_int_equal(ml_model_ntables(m), 1);
    ml_table_info ti = ml_model_table_info(m, 0);
    assert_string_equal(ti.name, "lr");
    assert_int_equal(ti.dim, 1);
    assert_true(ti.init_scale == 0.0f);
    assert_int_equal(ml_model_nparams(m), 1); /* the intercept */
    ml_model_destroy(m);
    free_batch(&bt);
}

/* An FM classifier: fm -> sigmoid, BCE. */
static void test_model_fm(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 7);
    static const int len[] = {4, 3, 0, 6, 2};
    batch bt = make_batch(5, len, 5, 0, 0, &r);
    ml_layer_spec L[] = {layer(&ml_layer_fm, NULL)};
    setk(&L[0], "dim", 3);
    setk(&L[0], "activation", ACT_SIGMOID);
    check_model(L, 1, ML_LOSS_BCE, 0, &bt, 70);
    free_batch(&bt);
}

/* Wide & Deep (Cheng et al. 2016): a wide embedding_bag logit plus a deep MLP over a
 * 3-field embedding and the dense input, added, then sigmoid. The embedding and a second
 * bag share a table (`table: shared`). */
static void test_model_wide_and_deep(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 8);
    static const int len[] = {3, 4, 2, 5};
    batch bt = make_batch(4, len, 5, 3, 1, &r);
    char *in_deep[] = {"emb", "side", ML_INPUT_NAME};
    char *in_add[] = {"wide", "deep_out"};
    ml_layer_spec L[] = {
        layer(&ml_layer_embedding_bag, "wide"),
        layer(&ml_layer_embedding, "emb"),
        layer(&ml_layer_embedding_bag, "side"),
        with_inputs(layer(&ml_layer_concat, "cat"), in_deep, 3),
        DENSE_N(5, ACT_RELU, "hidden"),
        DENSE_N(1, ACT_LINEAR, "deep_out"),
        with_inputs(layer(&ml_layer_add, "sum"), in_add, 2),
        ACT(ACT_SIGMOID),
    };
    setk(&L[0], "dim", 1);
    setk(&L[0], "bias", 1);
    setk(&L[1], "dim", 2);
    setk(&L[1], "fields", 3);
    sets(&L[1], "table", "shared");
    setk(&L[2], "dim", 2);
    setk(&L[2], "combiner", 1);
    sets(&L[2], "table", "shared");
    check_model(L, 8, ML_LOSS_BCE, 2, &bt, 80);
    ml_model_spec spec = {.layers = L, .nlayers = 8, .loss = ML_LOSS_BCE};
    pst_err err = {0};
    ml_model *m = ml_model_create(&spec, 2, 4, &err);
    assert_non_null(m);
    assert_int_equal(ml_model_ntables(m), 2);
    assert_string_equal(ml_model_table_info(m, 1).name, "shared");
    assert_int_equal(ml_model_table_info(m, 1).layer, 1);
    assert_int_equal(ml_model_table_info(m, 0).layer, 0);
    ml_model_destroy(m);
    /* sharing with another width is refused */
    setk(&L[2], "dim", 3);
    assert_null(ml_model_create(&spec, 2, 4, &err));
    assert_non_null(strstr(err.msg, "model.layers.2.table: 'shared'"));
    free_batch(&bt);
}

/* DLRM (Naumov et al. 2019): bottom MLP over the dense input, 3 categorical fields
 * embedded, dot interaction keeping the bottom output, top MLP. */
static void test_model_dlrm(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 9);
    static const int len[] = {3, 2, 3};
    batch bt = make_batch(3, len, 4, 3, 1, &r);
    char *in_dot[] = {"bottom", "emb"};
    ml_layer_spec L[] = {
        with_inputs(DENSE_N(3, ACT_RELU, "bottom"), (char *[]){ML_INPUT_NAME}, 1),
        layer(&ml_layer_embedding, "emb"),
        with_inputs(layer(&ml_layer_dot_interaction, "dot"), in_dot, 2),
        DENSE(4, ACT_RELU),
        DENSE(1, ACT_SIGMOID),
    };
    setk(&L[1], "dim", 3);
    setk(&L[1], "fields", 3);
    setk(&L[2], "dim", 3);
    check_model(L, 5, ML_LOSS_BCE, 4, &bt, 90);
    free_batch(&bt);
}

static void test_spec_checks(void **state)
{
    (void)state;
    pst_err err = {0};
    /* a dense layer cannot read the sparse features; a sparse one reads them alone */
    ml_layer_spec a[] = {with_inputs(DENSE(2, ACT_LINEAR), (char *[]){ML_SPARSE_NAME}, 1)};
    ml_model_spec s = {.layers = a, .nlayers = 1, .loss = ML_LOSS_MSE};
    assert_int_not_equal(ml_model_spec_check(&s, &err), PST_OK);
    assert_non_null(strstr(err.msg, "cannot read 'sparse'"));
    ml_layer_spec b[] = {
        with_inputs(layer(&ml_layer_embedding_bag, NULL), (char *[]){ML_INPUT_NAME}, 1)};
    setk(&b[0], "dim", 2);
    s.layers = b;
    assert_int_not_equal(ml_model_spec_check(&s, &err), PST_OK);
    assert_non_null(strstr(err.msg, "reads 'sparse' alone"));
    ml_layer_spec c[] = {layer(&ml_layer_embedding_bag, ML_SPARSE_NAME)};
    setk(&c[0], "dim", 2);
    s.layers = c;
    assert_int_not_equal(ml_model_spec_check(&s, &err), PST_OK);
    assert_non_null(strstr(err.msg, "names the model's sparse features"));
    /* no `inputs:`: a sparse layer reads the sparse features; in_dim 0 is then fine, but
     * not for a model reading the dense input */
    c[0].name = NULL;
    assert_int_equal(ml_model_spec_check(&s, &err), PST_OK);
    ml_model *m = ml_model_create(&s, 0, 2, &err);
    assert_non_null(m);
    assert_string_equal(ml_model_table_info(m, 0).name, "bag_0");
    ml_model_destroy(m);
    ml_layer_spec d[] = {DENSE(1, ACT_LINEAR)};
    s.layers = d;
    assert_null(ml_model_create(&s, 0, 2, &err));
    /* a dense-only model has no tables and gathers nothing */
    m = ml_model_create(&s, 3, 2, &err);
    assert_non_null(m);
    assert_int_equal(ml_model_ntables(m), 0);
    assert_int_equal(ml_model_gather(m, NULL, &err), PST_OK);
    ml_model_destroy(m);
}

/* A frozen sparse layer writes no row gradients; its table's grads are zeros. */
static void test_frozen_sparse_layer(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 11);
    static const int len[] = {2, 3};
    batch bt = make_batch(2, len, 3, 0, 1, &r);
    ml_layer_spec L[] = {layer(&ml_layer_embedding_bag, "bag"), DENSE(1, ACT_LINEAR)};
    setk(&L[0], "dim", 2);
    ml_model_spec spec = {.layers = L, .nlayers = 2, .loss = ML_LOSS_MSE};
    pst_err err = {0};
    ml_model *m = ml_model_create(&spec, 0, 2, &err);
    assert_non_null(m);
    ml_model_init(m, 1);
    ml_model_set_trainable(m, 0, 0);
    assert_int_equal(ml_model_gather(m, &bt.b, &err), PST_OK);
    size_t K = ml_model_table_nkeys(m, 0);
    fill(ml_model_table_rows(m, 0), K * 2, 1.0f, &r);
    float t[2] = {1, -1};
    ml_model_forward_sparse(m, NULL, &bt.b, 2);
    ml_model_loss(m, NULL, t, 2);
    ml_model_backward_sparse(m, NULL, &bt.b, 2);
    for (size_t k = 0; k < K * 2; k++)
        assert_true(ml_model_table_grads(m, 0)[k] == 0.0f);
    assert_true(ml_model_grads(m)[0] != 0.0f); /* the dense layer still trains */
    ml_model_destroy(m);
    free_batch(&bt);
}

/* The example models as job files: sparse logistic regression, Wide & Deep, DLRM and an
 * FM classifier parse, pass the job checks, print and re-parse to the same job, and build. */
static void test_job_files(void **state)
{
    (void)state;
    static const char *const jobs[] = {
        /* sparse logistic regression over hashed features */
        "model:\n"
        "  loss: binary_crossentropy\n"
        "  layers:\n"
        "    - {type: embedding_bag, name: lr, dim: 1, bias: true, activation: sigmoid,\n"
        "       init_scale: 0}\n",
        /* Wide & Deep: wide logit + deep MLP over 3 embedded fields and dense features */
        "model:\n"
        "  loss: binary_crossentropy\n"
        "  layers:\n"
        "    - {type: embedding_bag, name: wide, dim: 1, bias: true, inputs: [sparse]}\n"
        "    - {type: embedding, name: emb, dim: 8, fields: 3, table: cats}\n"
        "    - {type: concat, inputs: [emb, input]}\n"
        "    - {units: 16, activation: relu}\n"
        "    - {units: 1, name: deep}\n"
        "    - {type: add, inputs: [wide, deep]}\n"
        "    - {type: activation, activation: sigmoid}\n",
        /* DLRM: bottom MLP, 3 embedded fields, dot interaction, top MLP */
        "model:\n"
        "  loss: binary_crossentropy\n"
        "  layers:\n"
        "    - {units: 8, activation: relu, name: bottom, inputs: [input]}\n"
        "    - {type: embedding, name: emb, dim: 8, fields: 3}\n"
        "    - {type: dot_interaction, dim: 8, inputs: [bottom, emb]}\n"
        "    - {units: 16, activation: relu}\n"
        "    - {units: 1, activation: sigmoid}\n",
        /* the FM classifier */
        "model:\n"
        "  loss: binary_crossentropy\n"
        "  layers:\n"
        "    - {type: fm, dim: 4, activation: sigmoid}\n",
    };
    static const int ntables[] = {1, 2, 1, 1};
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        char text[2048];
        snprintf(text, sizeof text, "data: {format: csv, train: a.csv, categorical: [a, b, c]}\n%s",
                 jobs[i]);
        cfg_job *j = NULL, *k = NULL;
        pst_err err = {0};
        if (cfg_job_load_string(&j, text, strlen(text), "<sparse job>", &err))
            fail_msg("job %zu: %s", i, err.msg);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        assert_int_equal(cfg_job_print(j, f, NULL), PST_OK);
        fclose(f);
        if (cfg_job_load_string(&k, buf, len, "<printed>", &err))
            fail_msg("job %zu printed: %s\n%s", i, err.msg, buf);
        assert_true(ml_model_spec_same(&j->model.spec, &k->model.spec));
        assert_true(cfg_job_hash(j) == cfg_job_hash(k));
        ml_model *m = ml_model_create(&j->model.spec, 4, 8, &err);
        if (!m)
            fail_msg("job %zu: %s", i, err.msg);
        assert_int_equal(ml_model_ntables(m), ntables[i]);
        ml_model_destroy(m);
        free(buf);
        cfg_job_free(j);
        cfg_job_free(k);
    }
}

/* The whole-model case for the PyTorch reference: bag (mean, bias) -> dense tanh ->
 * dense sigmoid, BCE; writes the inputs, the parameters, the loss and every gradient. */
static void dump_model_case(FILE *f)
{
    rng_state r;
    rng_seed(&r, 12);
    static const int len[] = {3, 0, 5, 1, 4, 2};
    batch bt = make_batch(6, len, 4, 0, 0, &r);
    ml_layer_spec L[] = {layer(&ml_layer_embedding_bag, "bag"), DENSE(4, ACT_TANH),
                         DENSE(1, ACT_SIGMOID)};
    setk(&L[0], "dim", 3);
    setk(&L[0], "combiner", 1);
    setk(&L[0], "bias", 1);
    ml_model_spec spec = {.layers = L, .nlayers = 3, .loss = ML_LOSS_BCE};
    pst_err err = {0};
    ml_model *m = ml_model_create(&spec, 0, 6, &err);
    assert_non_null(m);
    ml_model_init(m, 3);
    fill(ml_model_params(m), ml_model_nparams(m), 0.7f, &r); /* biases too */
    assert_int_equal(ml_model_gather(m, &bt.b, &err), PST_OK);
    size_t K = ml_model_table_nkeys(m, 0);
    fill(ml_model_table_rows(m, 0), K * 3, 0.8f, &r);
    float t[6];
    for (int i = 0; i < 6; i++)
        t[i] = (float)(rng_uniform(&r) > 0.5f);
    ml_model_forward_sparse(m, NULL, &bt.b, 6);
    double loss = ml_model_loss(m, NULL, t, 6);
    ml_model_backward_sparse(m, NULL, &bt.b, 6);
    fputs("{", f);
    json_batch(f, &bt.b);
    fputs("\"table_keys\": [", f);
    for (size_t k = 0; k < K; k++)
        fprintf(f, "%s\"%llu\"", k ? ", " : "", (unsigned long long)ml_model_table_keys(m, 0)[k]);
    fputs("], ", f);
    json_floats(f, "rows", ml_model_table_rows(m, 0), K * 3);
    json_floats(f, "drows", ml_model_table_grads(m, 0), K * 3);
    json_floats(f, "target", t, 6);
    fputs("\"segments\": [", f);
    for (int i = 0; i < ml_model_nsegments(m); i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        fprintf(f, "%s{\"name\": \"%s\", \"rows\": %d, \"cols\": %d, ", i ? ", " : "", sg->name,
                sg->rows, sg->cols);
        json_floats(f, "value", ml_model_params(m) + sg->offset, sg->len);
        json_floats(f, "grad", ml_model_grads(m) + sg->offset, sg->len);
        fputs("\"n\": 0}", f);
    }
    fprintf(f, "], \"loss\": %.9g}", loss);
    ml_model_destroy(m);
    free_batch(&bt);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) {
        FILE *f = fopen(argv[2], "w");
        if (!f) {
            perror(argv[2]);
            return 1;
        }
        fputs("{\"sparse\": [\n", f);
        run_sparse_layer_cases(f);
        fputs("\n], \"dense\": [\n", f);
        run_dense_layer_cases(f);
        fputs("\n], \"model\": ", f);
        dump_model_case(f);
        fputs("}\n", f);
        return fclose(f) ? 1 : 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sparse_layers_fd),
        cmocka_unit_test(test_dense_helpers_fd),
        cmocka_unit_test(test_gather_dedups_in_first_appearance_order),
        cmocka_unit_test(test_model_bag_dense_loss),
        cmocka_unit_test(test_model_logistic_regression),
        cmocka_unit_test(test_model_fm),
        cmocka_unit_test(test_model_wide_and_deep),
        cmocka_unit_test(test_model_dlrm),
        cmocka_unit_test(test_spec_checks),
        cmocka_unit_test(test_frozen_sparse_layer),
        cmocka_unit_test(test_job_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
