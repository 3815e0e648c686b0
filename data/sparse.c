/* data/sparse.c -- see sparse.h. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getline; the build also passes it */
#endif
#include "sparse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "data_internal.h"

uint64_t ds_hash64(const void *bytes, size_t len, uint64_t seed)
{
    return (uint64_t)XXH3_64bits_withSeed(bytes, len, (XXH64_hash_t)seed);
}

uint64_t ds_hash_id(const void *bytes, size_t len, uint64_t seed, int hash_bits)
{
    uint64_t h = ds_hash64(bytes, len, seed);
    return hash_bits > 0 && hash_bits < 64 ? h & ((UINT64_C(1) << hash_bits) - 1) : h;
}

void ds_sparse_destroy(ds_sparse *s)
{
    if (!s)
        return;
    free(s->row_ptr);
    free(s->ids);
    free(s->vals);
    free(s->fields);
    free(s->labels);
    free(s->targets);
    free(s);
}

int64_t ds_sparse_rows(const ds_sparse *s) { return s->n; }
int64_t ds_sparse_nnz(const ds_sparse *s) { return s->nnz; }
ds_task ds_sparse_task(const ds_sparse *s) { return s->task; }
int ds_sparse_nclasses(const ds_sparse *s) { return s->nclasses; }
int ds_sparse_has_fields(const ds_sparse *s) { return s->fields != NULL; }
uint32_t ds_sparse_nfields(const ds_sparse *s) { return s->nfields; }
const int32_t *ds_sparse_labels(const ds_sparse *s) { return s->labels; }
const float *ds_sparse_targets(const ds_sparse *s) { return s->targets; }

int64_t ds_sparse_row(const ds_sparse *s, int64_t r, const uint64_t **ids, const float **vals,
                      const uint32_t **fields)
{
    int64_t lo = s->row_ptr[r];
    *ids = s->ids + lo;
    *vals = s->vals + lo;
    if (fields)
        *fields = s->fields ? s->fields + lo : NULL;
    return s->row_ptr[r + 1] - lo;
}

/* Room for one more row (its label and its end in row_ptr). */
static int grow_rows(ds_sparse *s)
{
    if ((size_t)s->n + 2 <= s->row_cap)
        return 0;
    size_t cap = s->row_cap ? 2 * s->row_cap : 1024;
    int64_t *rp = ds_realloc_rows(s->row_ptr, cap, sizeof *rp);
    if (rp)
        s->row_ptr = rp;
    void *l = NULL;
    if (s->with_labels) {
        l = s->task == DS_TASK_CLASSIFY ? ds_realloc_rows(s->labels, cap, sizeof(int32_t))
                                        : ds_realloc_rows(s->targets, cap, sizeof(float));
        if (l && s->task == DS_TASK_CLASSIFY)
            s->labels = l;
        else if (l)
            s->targets = l;
    }
    if (!rp || (s->with_labels && !l))
        return -1;
    s->row_cap = cap;
    return 0;
}

/* Room for one more entry; with_fields: the fields array too. */
static int grow_entries(ds_sparse *s, int with_fields)
{
    if ((size_t)s->nnz < s->nnz_cap && (!with_fields || s->fields))
        return 0;
    size_t cap = s->nnz_cap ? 2 * s->nnz_cap : 4096;
    uint64_t *ids = ds_realloc_rows(s->ids, cap, sizeof *ids);
    if (ids)
        s->ids = ids;
    float *vals = ds_realloc_rows(s->vals, cap, sizeof *vals);
    if (vals)
        s->vals = vals;
    if ((size_t)s->nnz < s->nnz_cap)
        cap = s->nnz_cap; /* only the fields array is missing */
    uint32_t *f = with_fields ? ds_realloc_rows(s->fields, cap, sizeof *f) : NULL;
    if (f)
        s->fields = f;
    if (!ids || !vals || (with_fields && !f))
        return -1;
    s->nnz_cap = cap;
    return 0;
}

/* A decimal uint64 that is all of [s, end); 0 on success. */
static int parse_u64(const char *s, const char *end, uint64_t *out)
{
    if (s == end)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* What reading one file needs besides the dataset. */
typedef struct {
    const char *path;
    const ds_sparse_options *o;
    long long line;
    int form;        /* 0: not seen yet, 2: id:value, 3: field:id:value */
    int seen_minus1; /* a -1 label (svmlight's negative class) */
    int seen_other;  /* a label other than -1 and 1 */
    long long other_line;
    int32_t other, maxlab;
} reader;

/* One "id:value" or "field:id:value" token of the current row. */
static int parse_entry(ds_sparse *s, reader *rd, char *tok, int k, pst_err *err)
{
    char *c1 = strchr(tok, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    int form = !c1 ? 0 : c2 ? 3 : 2;
    if (form == 0 || (c2 && strchr(c2 + 1, ':')))
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: entry %d '%.64s' is not id:value or "
                           "field:id:value",
                           rd->path, rd->line, k, tok);
    if (rd->form && form != rd->form)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: entry %d '%.64s' mixes id:value and "
                           "field:id:value entries in one file",
                           rd->path, rd->line, k, tok);
    rd->form = form;
    if (grow_entries(s, form == 3))
        return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", rd->path, rd->line);
    const char *id_at = tok, *id_end = c1, *val_at = c1 + 1;
    if (form == 3) {
        uint64_t f;
        if (parse_u64(tok, c1, &f) || f >= UINT32_MAX)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: entry %d '%.64s': field '%.*s' is "
                               "not a number below 2^32 - 1",
                               rd->path, rd->line, k, tok, (int)(c1 - tok), tok);
        s->fields[s->nnz] = (uint32_t)f;
        if ((uint32_t)f + 1 > s->nfields)
            s->nfields = (uint32_t)f + 1;
        id_at = c1 + 1;
        id_end = c2;
        val_at = c2 + 1;
    }
    uint64_t id;
    if (parse_u64(id_at, id_end, &id))
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: entry %d '%.64s': feature id '%.*s' is "
                           "not a number below 2^64",
                           rd->path, rd->line, k, tok, (int)(id_end - id_at), id_at);
    if (rd->o->id_space && id >= rd->o->id_space)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: entry %d: feature id %llu is beyond "
                           "the id space of %llu",
                           rd->path, rd->line, k, (unsigned long long)id,
                           (unsigned long long)rd->o->id_space);
    float v;
    num_status ns = ds_parse_float(val_at, &v);
    if (ns)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: entry %d '%.64s': value is not a %s"
                           "number",
                           rd->path, rd->line, k, tok, ns == NUM_NONFINITE ? "finite " : "");
    s->ids[s->nnz] = id;
    s->vals[s->nnz] = v;
    s->nnz++;
    return PST_OK;
}

static int parse_label(ds_sparse *s, reader *rd, const char *tok, pst_err *err)
{
    if (s->task == DS_TASK_REGRESS) {
        num_status ns = ds_parse_float(tok, &s->targets[s->n]);
        return ns ? pst_err_set(err, PST_ERR_DATA, "%s:%lld: label '%.64s' is not a %snumber",
                                rd->path, rd->line, tok, ns == NUM_NONFINITE ? "finite " : "")
                  : PST_OK;
    }
    int32_t v;
    int k = rd->o->nclasses;
    if (ds_parse_int(tok, &v) || v < -1 || (k > 0 && v >= k)) {
        if (k > 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: label '%.64s' is not a class id "
                               "0..%d (or svmlight's -1/+1)",
                               rd->path, rd->line, tok, k - 1);
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: label '%.64s' is not a class id >= 0 "
                           "(or svmlight's -1/+1)",
                           rd->path, rd->line, tok);
    }
    rd->seen_minus1 |= v == -1;
    if (v != -1 && v != 1 && !rd->seen_other) {
        rd->seen_other = 1;
        rd->other = v;
        rd->other_line = rd->line;
    }
    if (v > rd->maxlab)
        rd->maxlab = v;
    s->labels[s->n] = v;
    return PST_OK;
}

/* One non-blank line: the label, then at least one entry. */
static int parse_line(ds_sparse *s, reader *rd, char *buf, pst_err *err)
{
    char *save = NULL;
    char *tok = strtok_r(buf, " \t\r\n", &save);
    if (grow_rows(s))
        return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", rd->path, rd->line);
    int rc = parse_label(s, rd, tok, err);
    int k = 0;
    while (!rc && (tok = strtok_r(NULL, " \t\r\n", &save)))
        rc = parse_entry(s, rd, tok, ++k, err);
    if (rc)
        return rc;
    if (k == 0)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: a row with a label and no features",
                           rd->path, rd->line);
    s->n++;
    s->row_ptr[s->n] = s->nnz;
    return PST_OK;
}

/* svmlight's {-1, +1} labels become {0, 1}; a -1 beside other labels is refused. */
static int finish_labels(ds_sparse *s, reader *rd, pst_err *err)
{
    if (s->task != DS_TASK_CLASSIFY)
        return PST_OK;
    if (rd->seen_minus1) {
        if (rd->seen_other)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s:%lld: label %d beside svmlight's -1 "
                               "(labels are class ids 0..K-1, or -1/+1)",
                               rd->path, rd->other_line, rd->other);
        for (int64_t i = 0; i < s->n; i++)
            s->labels[i] = s->labels[i] == 1;
        rd->maxlab = 1;
    }
    s->nclasses = rd->o->nclasses > 0 ? rd->o->nclasses : rd->maxlab + 1;
    if (s->nclasses < 2)
        s->nclasses = 2;
    return PST_OK;
}

ds_sparse *ds_sparse_load_libsvm(const char *path, const ds_sparse_options *o, pst_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        pst_err_set(err, PST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    ds_sparse *s = calloc(1, sizeof *s);
    reader rd = {.path = path, .o = o, .maxlab = 0};
    char *buf = NULL;
    size_t cap = 0;
    int rc = PST_OK;
    if (!s) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    s->task = o->task;
    s->with_labels = 1;
    if (grow_rows(s)) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    s->row_ptr[0] = 0;
    for (ssize_t len; !rc && (len = getline(&buf, &cap, f)) >= 0;) {
        rd.line++;
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        if (strspn(buf, " \t\r\n") == strlen(buf))
            continue;
        rc = parse_line(s, &rd, buf, err);
    }
    if (!rc && ferror(f))
        rc = pst_err_set(err, PST_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    if (!rc && s->n == 0)
        rc = pst_err_set(err, PST_ERR_DATA, "%s: no rows", path);
    if (!rc)
        rc = finish_labels(s, &rd, err);
    if (!rc && rd.form != 3) {
        free(s->fields);
        s->fields = NULL;
    }
cleanup:
    free(buf);
    fclose(f);
    if (rc) {
        ds_sparse_destroy(s);
        return NULL;
    }
    return s;
}

/* ---- Building CSR rows (the CSV and text loaders) -------------------------------------- */

ds_sparse *ds_sparse_part_new(int with_fields)
{
    ds_sparse *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->with_fields = with_fields;
    if (grow_rows(s)) {
        ds_sparse_destroy(s);
        return NULL;
    }
    s->row_ptr[0] = 0;
    return s;
}

int ds_sparse_push(ds_sparse *s, uint64_t id, float val, uint32_t field)
{
    if (grow_entries(s, s->with_fields))
        return -1;
    s->ids[s->nnz] = id;
    s->vals[s->nnz] = val;
    if (s->with_fields) {
        s->fields[s->nnz] = field;
        if (field + 1 > s->nfields)
            s->nfields = field + 1;
    }
    s->nnz++;
    return 0;
}

int ds_sparse_end_row(ds_sparse *s)
{
    if (grow_rows(s))
        return -1;
    s->n++;
    s->row_ptr[s->n] = s->nnz;
    return 0;
}

typedef struct {
    uint32_t field;
    uint64_t id;
    float val;
} sp_entry;

static int entry_cmp(const void *a, const void *b)
{
    const sp_entry *x = a, *y = b;
    if (x->field != y->field)
        return x->field < y->field ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* qsort of a copy of the row: a mail's row holds up to tens of thousands of n-grams. */
int ds_sparse_merge_row(ds_sparse *s)
{
    int64_t lo = s->row_ptr[s->n], m = s->nnz - lo;
    if (m < 2)
        return 0;
    sp_entry *e = malloc((size_t)m * sizeof *e);
    if (!e)
        return -1;
    for (int64_t i = 0; i < m; i++)
        e[i] = (sp_entry){s->fields ? s->fields[lo + i] : 0, s->ids[lo + i], s->vals[lo + i]};
    qsort(e, (size_t)m, sizeof *e, entry_cmp);
    int64_t w = lo;
    for (int64_t i = 0; i < m; i++) {
        if (w > lo && s->ids[w - 1] == e[i].id && (!s->fields || s->fields[w - 1] == e[i].field)) {
            s->vals[w - 1] += e[i].val;
            continue;
        }
        s->ids[w] = e[i].id;
        s->vals[w] = e[i].val;
        if (s->fields)
            s->fields[w] = e[i].field;
        w++;
    }
    s->nnz = w;
    free(e);
    return 0;
}
