/* data/sparse_rows.c -- the sparse part of a dataset: taking rows (for data.h's row
 * operations), batches gathered for a trainer, and libsvm kept sparse as a dataset. */
#include "data_internal.h"

#include <stdlib.h>
#include <string.h>

const ds_sparse *ds_sparse_of(const ds_dataset *ds) { return ds ? ds->sp : NULL; }

int64_t ds_sparse_max_row(const ds_sparse *s)
{
    int64_t m = 0;
    for (int64_t r = 0; r < s->n; r++)
        if (s->row_ptr[r + 1] - s->row_ptr[r] > m)
            m = s->row_ptr[r + 1] - s->row_ptr[r];
    return m;
}

int64_t ds_sparse_count(const ds_sparse *s, const uint32_t *rows, int64_t n)
{
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows ? (int64_t)rows[i] : i;
        total += s->row_ptr[r + 1] - s->row_ptr[r];
    }
    return total;
}

int64_t ds_sparse_gather(const ds_sparse *s, const uint32_t *rows, int64_t n, int64_t *row_ptr,
                         uint64_t *ids, float *vals, uint32_t *fields, int64_t cap, pst_err *err)
{
    int64_t k = 0;
    row_ptr[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows ? (int64_t)rows[i] : i;
        if (r >= s->n) {
            pst_err_set(err, PST_ERR_ARG, "sparse batch: row %lld of %lld rows", (long long)r,
                        (long long)s->n);
            return -1;
        }
        int64_t lo = s->row_ptr[r], m = s->row_ptr[r + 1] - lo;
        if (m > cap - k) {
            pst_err_set(err, PST_ERR_ARG, "sparse batch: %lld entries do not fit in %lld",
                        (long long)ds_sparse_count(s, rows, n), (long long)cap);
            return -1;
        }
        memcpy(ids + k, s->ids + lo, (size_t)m * sizeof *ids);
        memcpy(vals + k, s->vals + lo, (size_t)m * sizeof *vals);
        if (fields && s->fields)
            memcpy(fields + k, s->fields + lo, (size_t)m * sizeof *fields);
        else if (fields)
            memset(fields + k, 0, (size_t)m * sizeof *fields);
        k += m;
        row_ptr[i + 1] = k;
    }
    return k;
}

ds_sparse *ds_sparse_take(const ds_sparse *s, const int64_t *r64, const uint32_t *r32, int64_t n)
{
    ds_sparse *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    int64_t nnz = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = r64 ? r64[i] : (int64_t)r32[i];
        nnz += s->row_ptr[r + 1] - s->row_ptr[r];
    }
    o->with_fields = s->fields != NULL;
    o->nfields = s->nfields;
    o->row_ptr = ds_realloc_rows(NULL, (size_t)n + 1, sizeof *o->row_ptr);
    o->ids = ds_realloc_rows(NULL, (size_t)nnz, sizeof *o->ids);
    o->vals = ds_realloc_rows(NULL, (size_t)nnz, sizeof *o->vals);
    if (o->with_fields)
        o->fields = ds_realloc_rows(NULL, (size_t)nnz, sizeof *o->fields);
    if (!o->row_ptr || !o->ids || !o->vals || (o->with_fields && !o->fields)) {
        ds_sparse_destroy(o);
        return NULL;
    }
    o->row_cap = (size_t)n + 1;
    o->nnz_cap = (size_t)nnz;
    o->row_ptr[0] = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = r64 ? r64[i] : (int64_t)r32[i];
        int64_t lo = s->row_ptr[r], m = s->row_ptr[r + 1] - lo;
        memcpy(o->ids + k, s->ids + lo, (size_t)m * sizeof *o->ids);
        memcpy(o->vals + k, s->vals + lo, (size_t)m * sizeof *o->vals);
        if (o->fields)
            memcpy(o->fields + k, s->fields + lo, (size_t)m * sizeof *o->fields);
        k += m;
        o->row_ptr[i + 1] = k;
    }
    o->n = n;
    o->nnz = k;
    return o;
}

ds_dataset *ds_load_libsvm_sparse(const char *path, const ds_sparse_options *o, pst_err *err)
{
    ds_sparse *s = ds_sparse_load_libsvm(path, o, err);
    if (!s)
        return NULL;
    /* The labels move to the dataset; the rows stay as its sparse part. */
    float *x = malloc(1);
    ds_dataset *ds =
        x ? ds_adopt_d0(s->n, 0, s->task, s->nclasses, 1, x, s->labels, s->targets, err) : NULL;
    if (!ds) {
        if (!x)
            pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        free(x);
        ds_sparse_destroy(s);
        return NULL;
    }
    s->labels = NULL;
    s->targets = NULL;
    s->with_labels = 0;
    ds->sp = s;
    return ds;
}
