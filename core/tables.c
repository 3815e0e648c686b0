/* core/tables.c -- per-batch key de-duplication for the sparse layers' tables.
 *
 * One open-addressing hash per table (key -> index + 1, 0 empty; linear probing, load
 * <= 1/2), cleared per batch: a gather is O(NNZ) per table with no per-key allocation.
 * Buffers only grow, so a steady batch size allocates nothing after the first steps. */
#include "tables.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

typedef struct {
    char name[ML_NAME_MAX + 1];
    int dim;
    float init_scale;
    int nranges;
    uint32_t (*range)[2]; /* (nranges, 2) the fields its readers read, [lo, hi] */
    size_t nkeys, cap_keys;
    uint64_t *keys; /* (cap_keys) */
    float *rows;    /* (cap_keys, d) */
    float *grads;   /* (cap_keys, d) */
    int32_t *idx;   /* (cap_idx) */
    size_t cap_idx;
    uint32_t *hash; /* (hcap) key index + 1; 0 empty */
    size_t hcap;
} table;

struct ml_tables {
    int n;
    table *t;
    int rows;
    int64_t nnz;
};

ml_tables *ml_tables_create(pst_err *err)
{
    ml_tables *t = calloc(1, sizeof *t);
    if (!t)
        pst_err_set(err, PST_ERR_NOMEM, "model: out of memory");
    return t;
}

void ml_tables_destroy(ml_tables *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n; i++) {
        table *tb = &t->t[i];
        free(tb->range), free(tb->keys), free(tb->rows), free(tb->grads);
        free(tb->idx), free(tb->hash);
    }
    free(t->t);
    free(t);
}

int ml_tables_add_reader(ml_tables *t, const char *name, int dim, float init_scale, uint32_t lo,
                         uint32_t hi, pst_err *err)
{
    int i = 0;
    while (i < t->n && strcmp(t->t[i].name, name) != 0)
        i++;
    if (i == t->n) {
        table *p = realloc(t->t, (size_t)(t->n + 1) * sizeof *p);
        if (!p)
            return pst_err_set(err, PST_ERR_NOMEM, "model: out of memory"), -1;
        t->t = p;
        memset(&p[i], 0, sizeof p[i]);
        snprintf(p[i].name, sizeof p[i].name, "%s", name);
        p[i].dim = dim;
        p[i].init_scale = init_scale;
        t->n++;
    }
    table *tb = &t->t[i];
    if (tb->dim != dim || tb->init_scale != init_scale)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "table: '%s' is read with row width %d and init_scale %g, but an "
                           "earlier layer gave %d and %g (layers sharing a table agree)",
                           name, dim, (double)init_scale, tb->dim, (double)tb->init_scale),
               -1;
    uint32_t(*r)[2] = realloc(tb->range, (size_t)(tb->nranges + 1) * sizeof *r);
    if (!r)
        return pst_err_set(err, PST_ERR_NOMEM, "model: out of memory"), -1;
    tb->range = r;
    r[tb->nranges][0] = lo;
    r[tb->nranges][1] = hi;
    tb->nranges++;
    return i;
}

int ml_tables_count(const ml_tables *t) { return t ? t->n : 0; }
const char *ml_tables_name(const ml_tables *t, int i) { return t->t[i].name; }
int ml_tables_dim(const ml_tables *t, int i) { return t->t[i].dim; }
float ml_tables_init_scale(const ml_tables *t, int i) { return t->t[i].init_scale; }
size_t ml_tables_nkeys(const ml_tables *t, int i) { return t->t[i].nkeys; }
const uint64_t *ml_tables_keys(const ml_tables *t, int i) { return t->t[i].keys; }
const int32_t *ml_tables_index(const ml_tables *t, int i) { return t->t[i].idx; }
float *ml_tables_rows(ml_tables *t, int i) { return t->t[i].rows; }
float *ml_tables_grads(ml_tables *t, int i) { return t->t[i].grads; }
int ml_tables_batch_rows(const ml_tables *t) { return t->rows; }
int64_t ml_tables_batch_nnz(const ml_tables *t) { return t->nnz; }

static int reads(const table *tb, uint32_t f)
{
    for (int r = 0; r < tb->nranges; r++)
        if (f >= tb->range[r][0] && f <= tb->range[r][1])
            return 1;
    return 0;
}

/* Grows tb's buffers to nnz entries (and as many keys, the most a batch can have). */
static int reserve(table *tb, size_t nnz)
{
    if (nnz > tb->cap_idx) {
        size_t cap = nnz + nnz / 2 + 16;
        int32_t *idx = realloc(tb->idx, cap * sizeof *idx);
        if (!idx)
            return PST_ERR_NOMEM;
        tb->idx = idx;
        tb->cap_idx = cap;
        uint64_t *k = realloc(tb->keys, cap * sizeof *k);
        if (!k)
            return PST_ERR_NOMEM;
        tb->keys = k;
        free(tb->rows), free(tb->grads);
        tb->rows = malloc(cap * (size_t)tb->dim * sizeof(float));
        tb->grads = malloc(cap * (size_t)tb->dim * sizeof(float));
        tb->cap_keys = cap;
        if (!tb->rows || !tb->grads)
            return PST_ERR_NOMEM;
    }
    size_t h = 64;
    while (h < 2 * nnz)
        h *= 2;
    if (h > tb->hcap) {
        free(tb->hash);
        if (!(tb->hash = malloc(h * sizeof *tb->hash)))
            return tb->hcap = 0, PST_ERR_NOMEM;
        tb->hcap = h;
    }
    return PST_OK;
}

static void gather_table(table *tb, const ml_sparse_batch *b, int64_t e0, int64_t nnz)
{
    const size_t mask = tb->hcap - 1;
    memset(tb->hash, 0, tb->hcap * sizeof *tb->hash);
    tb->nkeys = 0;
    for (int64_t e = e0; e < e0 + nnz; e++) {
        if (!reads(tb, b->fields ? b->fields[e] : 0u)) {
            tb->idx[e - e0] = -1;
            continue;
        }
        uint64_t key = b->ids[e];
        size_t h = (size_t)rng_mix64(key) & mask;
        while (tb->hash[h] && tb->keys[tb->hash[h] - 1] != key)
            h = (h + 1) & mask;
        if (!tb->hash[h]) {
            tb->keys[tb->nkeys] = key;
            tb->hash[h] = (uint32_t)++tb->nkeys;
        }
        tb->idx[e - e0] = (int32_t)(tb->hash[h] - 1);
    }
}

int ml_tables_gather(ml_tables *t, const ml_sparse_batch *b, int max_rows, pst_err *err)
{
    if (!b || b->n < 0 || b->n > max_rows || !b->row_ptr)
        return pst_err_set(err, PST_ERR_ARG, "sparse batch: %d rows (the model takes 0 to %d)",
                           b ? b->n : -1, max_rows);
    int64_t e0 = b->row_ptr[0];
    for (int i = 0; i < b->n; i++)
        if (b->row_ptr[i + 1] < b->row_ptr[i])
            return pst_err_set(err, PST_ERR_ARG,
                               "sparse batch: row %d ends before it starts (row_ptr %lld > %lld)",
                               i, (long long)b->row_ptr[i], (long long)b->row_ptr[i + 1]);
    int64_t nnz = b->row_ptr[b->n] - e0;
    if (e0 < 0 || nnz >= INT32_MAX || (nnz > 0 && (!b->ids || !b->vals)))
        return pst_err_set(err, PST_ERR_ARG, "sparse batch: %lld entries from %lld", (long long)nnz,
                           (long long)e0);
    for (int i = 0; i < t->n; i++) {
        if (reserve(&t->t[i], (size_t)nnz))
            return pst_err_set(err, PST_ERR_NOMEM, "model: out of memory (%lld sparse entries)",
                               (long long)nnz);
        gather_table(&t->t[i], b, e0, nnz);
    }
    t->rows = b->n;
    t->nnz = nnz;
    return PST_OK;
}

int ml_tables_of_spec(ml_tables *t, const ml_model_spec *spec, pst_err *err)
{
    for (unsigned i = 0; i < spec->nlayers; i++) {
        const ml_layer_spec *L = &spec->layers[i];
        if (!L->ops->sparse)
            continue;
        /* A sparse layer reads the sparse features alone (width 0), as model.c builds it. */
        ml_layer l = {.spec = L, .nin = 1};
        if (L->ops->shape(&l, err))
            return ml_layer_err_path(err, i);
        char base[ML_NAME_MAX + 1];
        ml_layer_spec_name(spec, i, base, sizeof base);
        const char *name = l.table && l.table[0] ? l.table : base;
        if (ml_tables_add_reader(t, name, l.dim, l.init_scale, l.field_lo, l.field_hi, err) < 0)
            return ml_layer_err_path(err, i);
    }
    return PST_OK;
}
