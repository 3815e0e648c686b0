/* worker/sparse.c -- see sparse.h. */
#include "sparse.h"

#include <stdlib.h>
#include <string.h>

#include "ckpt/sparse.h"
#include "data/sparse.h"

struct wk_sparse {
    const cfg_job *job;
    int ntables;
    spt_table **own; /* (ntables) this process's tables; NULL once a source is set */
    char **names;    /* (ntables) the tables' names, owned (the model's may outlive us) */
    float *lr;       /* (ntables) sparse.lr times the first reading layer's lr_mult; 0: frozen */
    wk_rows_source src;
    int64_t *row_ptr; /* (B + 1) */
    uint64_t *ids;    /* (cap) */
    float *vals;      /* (cap) */
    uint32_t *fields; /* (cap) */
    int64_t cap;
    ml_sparse_batch sb;
};

/* The process's own tables: spt_peek for an evaluation, spt_pull (rows on first touch)
 * for a training step. */
static int own_pull(void *ctx, int table, const uint64_t *keys, size_t n, float *rows, int train,
                    pst_err *err)
{
    wk_sparse *s = ctx;
    if (!train) {
        spt_peek(s->own[table], keys, n, rows);
        return PST_OK;
    }
    int rc = spt_pull(s->own[table], keys, n, rows, err);
    return rc ? pst_err_prefix(err, "table '%s'", s->names[table]) : PST_OK;
}

wk_sparse *wk_sparse_create(const cfg_job *job, ml_model *m, const ds_dataset *like, int batch,
                            pst_err *err)
{
    const ds_sparse *sp = ds_sparse_of(like);
    if (!sp) {
        pst_err_set(err, PST_ERR_CONFIG,
                    "model.layers: '%s' reads sparse features, but the data has none "
                    "(data.sparse: true for libsvm, data.categorical for csv, or data.format: "
                    "text_dir)",
                    ml_model_table_info(m, 0).name);
        return NULL;
    }
    wk_sparse *s = calloc(1, sizeof *s);
    if (!s)
        goto nomem;
    s->job = job;
    s->ntables = ml_model_ntables(m);
    s->cap = (int64_t)batch * (ds_sparse_max_row(sp) > 0 ? ds_sparse_max_row(sp) : 1);
    s->own = calloc((size_t)s->ntables, sizeof *s->own);
    s->names = calloc((size_t)s->ntables, sizeof *s->names);
    s->lr = calloc((size_t)s->ntables, sizeof *s->lr);
    s->row_ptr = malloc(sizeof *s->row_ptr * ((size_t)batch + 1));
    s->ids = malloc(sizeof *s->ids * (size_t)s->cap);
    s->vals = malloc(sizeof *s->vals * (size_t)s->cap);
    s->fields = malloc(sizeof *s->fields * (size_t)s->cap);
    if (!s->own || !s->names || !s->lr || !s->row_ptr || !s->ids || !s->vals || !s->fields)
        goto nomem;
    const ml_model_spec *spec = ml_model_get_spec(m);
    for (int t = 0; t < s->ntables; t++) {
        ml_table_info ti = ml_model_table_info(m, t);
        /* Checkpoints name a table's tensors by it (ckpt/sparse.h): refused now, not at the
         * first checkpoint. */
        if (!ckpt_sparse_name_ok(ti.name)) {
            pst_err_set(err, PST_ERR_CONFIG,
                        "model.layers.%d: table name '%s' must be 1 to 31 of A-Z a-z 0-9 _ -",
                        ti.layer, ti.name);
            wk_sparse_destroy(s);
            return NULL;
        }
        if (!(s->names[t] = strdup(ti.name)))
            goto nomem;
        const ml_layer_spec *L = &spec->layers[ti.layer];
        s->lr[t] = L->trainable ? job->sparse.opt.lr * L->lr_mult : 0.0f;
        spt_config c;
        cfg_sparse_table(job, ti.name, ti.dim, ti.init_scale, &c);
        if (!(s->own[t] = spt_create(&c, err))) {
            pst_err_prefix(err, "sparse table '%s'", ti.name);
            wk_sparse_destroy(s);
            return NULL;
        }
    }
    s->src = (wk_rows_source){.pull = own_pull, .ctx = s};
    return s;
nomem:
    wk_sparse_destroy(s);
    pst_err_set(err, PST_ERR_NOMEM, "sparse batches: out of memory");
    return NULL;
}

static void drop_own(wk_sparse *s)
{
    if (!s->own)
        return;
    for (int t = 0; t < s->ntables; t++)
        spt_destroy(s->own[t]);
    free(s->own);
    s->own = NULL;
}

void wk_sparse_destroy(wk_sparse *s)
{
    if (!s)
        return;
    drop_own(s);
    if (s->names)
        for (int t = 0; t < s->ntables; t++)
            free(s->names[t]);
    free(s->names);
    free(s->lr);
    free(s->row_ptr);
    free(s->ids);
    free(s->vals);
    free(s->fields);
    free(s);
}

void wk_sparse_set_source(wk_sparse *s, const wk_rows_source *src)
{
    drop_own(s);
    s->src = *src;
}

int wk_sparse_batch(wk_sparse *s, ml_model *m, const ds_dataset *ds, const uint32_t *idx, int n,
                    int train, pst_err *err)
{
    const ds_sparse *sp = ds_sparse_of(ds);
    if (!sp)
        return pst_err_set(err, PST_ERR_DATA, "sparse batch: the data has no sparse features");
    int64_t nnz = ds_sparse_gather(sp, idx, n, s->row_ptr, s->ids, s->vals, s->fields, s->cap, err);
    if (nnz < 0)
        return err ? err->code : PST_ERR_ARG;
    s->sb = (ml_sparse_batch){.n = n,
                              .row_ptr = s->row_ptr,
                              .ids = s->ids,
                              .vals = s->vals,
                              .fields = ds_sparse_has_fields(sp) ? s->fields : NULL};
    int rc = ml_model_gather(m, &s->sb, err);
    for (int t = 0; t < s->ntables && !rc; t++) {
        size_t k = ml_model_table_nkeys(m, t);
        if (k)
            rc = s->src.pull(s->src.ctx, t, ml_model_table_keys(m, t), k, ml_model_table_rows(m, t),
                             train, err);
    }
    return rc;
}

const ml_sparse_batch *wk_sparse_batch_of(const wk_sparse *s) { return &s->sb; }

double wk_sparse_grad_sumsq(ml_model *m)
{
    double ss = 0.0;
    for (int t = 0; t < ml_model_ntables(m); t++) {
        size_t n = ml_model_table_nkeys(m, t) * (size_t)ml_model_table_info(m, t).dim;
        const float *g = ml_model_table_grads(m, t);
        for (size_t i = 0; i < n; i++)
            ss += (double)g[i] * g[i];
    }
    return ss;
}

void wk_sparse_grad_scale(ml_model *m, float f)
{
    for (int t = 0; t < ml_model_ntables(m); t++) {
        size_t n = ml_model_table_nkeys(m, t) * (size_t)ml_model_table_info(m, t).dim;
        float *g = ml_model_table_grads(m, t);
        for (size_t i = 0; i < n; i++)
            g[i] *= f;
    }
}

int wk_sparse_apply_local(wk_sparse *s, ml_model *m, pst_err *err)
{
    if (!s->own)
        return pst_err_set(err, PST_ERR_STATE, "sparse tables: this process holds none");
    for (int t = 0; t < s->ntables; t++) {
        size_t k = ml_model_table_nkeys(m, t);
        if (k && s->lr[t] > 0.0f) {
            int rc = spt_push(s->own[t], ml_model_table_keys(m, t), k, ml_model_table_grads(m, t),
                              s->lr[t], err);
            if (rc)
                return pst_err_prefix(err, "table '%s'", s->names[t]);
        }
        spt_tick(s->own[t]);
    }
    return PST_OK;
}

/* ckpt_sparse_table views of the own tables, in tabs (ntables). */
static int views(const wk_sparse *s, ckpt_sparse_table **tabs, pst_err *err)
{
    *tabs = calloc((size_t)s->ntables, sizeof **tabs);
    if (!*tabs)
        return pst_err_set(err, PST_ERR_NOMEM, "sparse tables: out of memory");
    for (int t = 0; t < s->ntables; t++)
        (*tabs)[t] = (ckpt_sparse_table){.name = s->names[t], .table = s->own[t]};
    return PST_OK;
}

int wk_sparse_save(const wk_sparse *s, const char *path, pst_err *err)
{
    ckpt_sparse_table *tabs;
    if (!s->own)
        return PST_OK;
    int rc = views(s, &tabs, err);
    if (!rc)
        rc = ckpt_sparse_save(path, tabs, s->ntables, err);
    free(tabs);
    return rc;
}

int wk_sparse_load(wk_sparse *s, const char *path, pst_err *err)
{
    ckpt_sparse_table *tabs;
    if (!s->own)
        return PST_OK;
    int rc = views(s, &tabs, err);
    if (!rc)
        rc = ckpt_sparse_load(path, tabs, s->ntables, err);
    free(tabs);
    return rc;
}

void wk_sparse_describe(const wk_sparse *s, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int t = 0; t < s->ntables && at < n; t++) {
        int k;
        if (s->own) {
            spt_stats st;
            spt_stats_get(s->own[t], &st);
            k = snprintf(buf + at, n - at,
                         "%stable '%s' (dim %d): %llu rows, %llu refused over the budget, "
                         "%llu expired, %.1f MiB",
                         t ? "; " : "", s->names[t], spt_dim(s->own[t]),
                         (unsigned long long)st.rows, (unsigned long long)st.refused,
                         (unsigned long long)st.evicted, (double)st.bytes / 1048576.0);
        } else {
            k = snprintf(buf + at, n - at, "%stable '%s' on the servers", t ? "; " : "",
                         s->names[t]);
        }
        if (k < 0)
            break;
        at += (size_t)k;
    }
}
