/* ckpt/sparse_merge.c -- one table file (sparse.h) from the table files of a job's servers.
 *
 * Server s of S holds the rows of the keys k with spt_owner(k, S) = s, so the servers' files
 * of one clock hold disjoint key sets of the same tables, and the union of their rows is
 * the job's tables, as one process holding them all would have them. The merge works on
 * the files alone (no table is built): every tensor of a table that has one entry per row
 * -- N.keys (R), N.rows and N.opt.* (R, d), N.touched (R) -- goes row by row into the
 * output, in ascending key order (a k-way merge of the inputs' ascending keys: R x S key
 * comparisons); the metadata dim, optimizer, init and seed must agree; the output's step
 * is the largest input's (stamps stay <= step) and its rows the sum. The admission sketch
 * (N.filter, C one-byte counters) becomes the cell-wise maximum: every counter of a key on
 * its own server is at least that key's count there, which is its whole count, so the
 * maximum still only over-counts (core/sptable.h), as each server's sketch did.
 *
 * Memory: every input file whole, and the output's tensors (about the inputs' size). */
#include "sparse.h"

#include "ckpt_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TNAME_MAX 64
#define MAX_TABLES 256
#define MAX_ROW_TENSORS 8 /* keys, rows, 2 optimizer buffers, touched; room to spare */
#define META_KEYS 6       /* dim, optimizer, init, seed (agree); step, rows (combined) */

/* One table as the files hold it: its per-row tensors' suffixes (file 0's order). */
typedef struct {
    char name[32];
    int nsfx;
    char sfx[MAX_ROW_TENSORS][24];
    size_t row_bytes[MAX_ROW_TENSORS]; /* bytes of one row of each */
    ckpt_dtype dtype[MAX_ROW_TENSORS];
    int ndim[MAX_ROW_TENSORS];
    int64_t width[MAX_ROW_TENSORS]; /* shape[1], or 1 for a vector */
} tdesc;

static int fail(pst_err *err, int rc) { return ckpt_one_line(err, rc); }

/* The table names of f (its tensors "N.keys") into names (n), in file order. */
static int table_names(const st_file *f, char (*names)[32], int *n, pst_err *err)
{
    *n = 0;
    for (int i = 0; i < f->nt; i++) {
        const char *dot = strchr(f->t[i].name, '.');
        if (!dot || strcmp(dot, ".keys") != 0)
            continue;
        int len = (int)(dot - f->t[i].name);
        if (len < 1 || len > 31 || *n == MAX_TABLES)
            return fail(err, pst_err_set(err, PST_ERR_DATA,
                                         "%s: tensor '%.60s' names no table (or over %d tables)",
                                         f->path, f->t[i].name, MAX_TABLES));
        snprintf(names[(*n)++], 32, "%.*s", len, f->t[i].name);
    }
    return PST_OK;
}

/* The per-row tensors of table d->name in f (file 0): every "N.x" but N.filter. */
static int describe_table(const st_file *f, tdesc *d, pst_err *err)
{
    size_t nl = strlen(d->name);
    d->nsfx = 0;
    for (int i = 0; i < f->nt; i++) {
        const st_tensor *t = &f->t[i];
        if (strncmp(t->name, d->name, nl) != 0 || t->name[nl] != '.' ||
            strcmp(t->name + nl + 1, "filter") == 0)
            continue;
        if (d->nsfx == MAX_ROW_TENSORS || strlen(t->name + nl + 1) >= sizeof d->sfx[0] ||
            t->ndim < 1 || t->ndim > 2)
            return fail(err, pst_err_set(err, PST_ERR_DATA,
                                         "%s: table '%s': tensor '%.60s' is not a table's", f->path,
                                         d->name, t->name));
        int k = d->nsfx++;
        snprintf(d->sfx[k], sizeof d->sfx[k], "%s", t->name + nl + 1);
        d->dtype[k] = t->dtype;
        d->ndim[k] = t->ndim;
        d->width[k] = t->ndim == 2 ? t->shape[1] : 1;
        d->row_bytes[k] = (size_t)d->width[k] * ckpt_dtype_size(t->dtype);
    }
    return PST_OK;
}

/* Table d's tensor sfx[k] in f, checked to be shaped (rows[, width]) as in file 0; data
 * into *p. rows: < 0 on the first call (N.keys), which sets it. */
static int row_tensor(st_file *f, const tdesc *d, int k, int64_t *rows, const unsigned char **p,
                      pst_err *err)
{
    char tn[TNAME_MAX];
    snprintf(tn, sizeof tn, "%s.%s", d->name, d->sfx[k]);
    st_tensor *t = ckpt_st_find_tensor(f, tn);
    if (!t)
        return fail(err, pst_err_set(err, PST_ERR_DATA,
                                     "%s: table '%s' has no tensor '%s', which the other "
                                     "servers' tables have",
                                     f->path, d->name, tn));
    if (*rows < 0)
        *rows = t->shape[0];
    if (t->dtype != d->dtype[k] || t->ndim != d->ndim[k] || t->shape[0] != *rows ||
        (t->ndim == 2 && t->shape[1] != d->width[k]))
        return fail(err,
                    pst_err_set(err, PST_ERR_DATA,
                                "%s: tensor '%s' is not shaped or typed as the other "
                                "servers' (%s, %" PRId64 " rows of %" PRId64 ")",
                                f->path, tn, ckpt_dtype_name(d->dtype[k]), *rows, d->width[k]));
    *p = f->data + t->begin;
    return PST_OK;
}

/* The metadata sparse.<N>.<key> of f; an error when missing. */
static int meta(const st_file *f, const char *name, const char *key, const char **out, pst_err *err)
{
    char k[TNAME_MAX];
    snprintf(k, sizeof k, "sparse.%s.%s", name, key);
    if (!(*out = ckpt_st_meta_str(f, k)))
        return fail(err, pst_err_set(err, PST_ERR_DATA, "%s: table '%s': metadata %s is missing",
                                     f->path, name, k));
    return PST_OK;
}

/* What the output's table d gets from the inputs: the metadata values, the rows of each
 * file (rows[i]), the largest step, the sketch's cell-wise maximum (NULL: none). */
typedef struct {
    const char *same[4]; /* dim, optimizer, init, seed: file 0's, the others' equal */
    int64_t step, total;
    int64_t *rows;            /* (n) */
    const unsigned char **in; /* (n * nsfx) each file's data of each per-row tensor */
    uint8_t *filter;
    uint64_t cells;
} tplan;

static const char *const SAME_KEYS[4] = {"dim", "optimizer", "init", "seed"};

/* Checks table d in every file against file 0's and fills p. */
static int plan_table(st_file *fs, int n, const tdesc *d, tplan *p, pst_err *err)
{
    int rc;
    p->step = 0;
    p->total = 0;
    for (int i = 0; i < n; i++) {
        st_file *f = &fs[i];
        const char *v, *st;
        for (int j = 0; j < 4; j++) {
            if ((rc = meta(f, d->name, SAME_KEYS[j], &v, err)))
                return rc;
            if (i == 0)
                p->same[j] = v;
            else if (strcmp(v, p->same[j]) != 0)
                return fail(err, pst_err_set(err, PST_ERR_DATA,
                                             "%s: table '%s': %s %.40s, but %s has %.40s", f->path,
                                             d->name, SAME_KEYS[j], v, fs[0].path, p->same[j]));
        }
        if ((rc = meta(f, d->name, "step", &st, err)))
            return rc;
        char *end;
        long long step = strtoll(st, &end, 10);
        if (!st[0] || *end || step < 0)
            return fail(err, pst_err_set(err, PST_ERR_DATA,
                                         "%s: table '%s': metadata step '%.40s' is not a count",
                                         f->path, d->name, st));
        p->step = step > p->step ? step : p->step;
        p->rows[i] = -1;
        for (int k = 0; k < d->nsfx; k++)
            if ((rc = row_tensor(f, d, k, &p->rows[i], &p->in[(size_t)i * d->nsfx + k], err)))
                return rc;
        p->total += p->rows[i];
        /* No tensor of the table beyond file 0's (and the sketch). */
        size_t nl = strlen(d->name);
        int mine = 0;
        for (int t = 0; t < f->nt; t++)
            mine += strncmp(f->t[t].name, d->name, nl) == 0 && f->t[t].name[nl] == '.';
        char fn[TNAME_MAX];
        snprintf(fn, sizeof fn, "%s.filter", d->name);
        st_tensor *ft = ckpt_st_find_tensor(f, fn);
        if (mine != d->nsfx + (ft != NULL) || (i > 0 && (ft != NULL) != (p->cells > 0)) ||
            (ft && (ft->dtype != CKPT_U8 || ft->ndim != 1 ||
                    (i > 0 && (uint64_t)ft->shape[0] != p->cells))))
            return fail(err, pst_err_set(err, PST_ERR_DATA,
                                         "%s: table '%s' has other tensors than %s's (optimizer "
                                         "state, admission sketch)",
                                         f->path, d->name, fs[0].path));
        if (ft && i == 0) {
            p->cells = (uint64_t)ft->shape[0];
            if (!(p->filter = calloc(p->cells ? p->cells : 1, 1)))
                return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        }
        for (uint64_t c = 0; ft && c < p->cells; c++) {
            uint8_t x = f->data[ft->begin + c];
            p->filter[c] = x > p->filter[c] ? x : p->filter[c];
        }
    }
    return PST_OK;
}

static uint64_t key_at(const unsigned char *keys, int64_t r)
{
    uint64_t k;
    memcpy(&k, keys + (size_t)r * sizeof k, sizeof k);
    return k;
}

/* The rows of every file into out[k] (total rows each), ascending by key; keys 0 is
 * "keys" (sfx index kk). */
static int merge_rows(st_file *fs, int n, const tdesc *d, const tplan *p, int kk,
                      unsigned char **out, pst_err *err)
{
    int64_t *at = calloc((size_t)n, sizeof *at);
    if (!at)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    int rc = PST_OK;
    for (int64_t r = 0; r < p->total && !rc; r++) {
        int best = -1;
        uint64_t bk = 0;
        for (int i = 0; i < n; i++) {
            if (at[i] == p->rows[i])
                continue;
            uint64_t k = key_at(p->in[(size_t)i * d->nsfx + kk], at[i]);
            if (best >= 0 && k == bk)
                rc = pst_err_set(err, PST_ERR_DATA,
                                 "%s: table '%s': key %" PRIu64 " is also in %s (each server "
                                 "holds only the keys it owns: are the files of one job "
                                 "and one server count?)",
                                 fs[i].path, d->name, k, fs[best].path);
            else if (best < 0 || k < bk)
                best = i, bk = k;
        }
        if (rc)
            break;
        const unsigned char *const *src = &p->in[(size_t)best * d->nsfx];
        for (int k = 0; k < d->nsfx; k++)
            memcpy(out[k] + (size_t)r * d->row_bytes[k],
                   src[k] + (size_t)at[best] * d->row_bytes[k], d->row_bytes[k]);
        at[best]++;
        if (at[best] < p->rows[best] && key_at(src[kk], at[best]) <= bk)
            rc = pst_err_set(err, PST_ERR_DATA,
                             "%s: table '%s': keys not strictly ascending at row %" PRId64,
                             fs[best].path, d->name, at[best]);
    }
    free(at);
    return fail(err, rc);
}

/* The output of all tables: their tensors, metadata and the text they name. */
typedef struct {
    out_tensor *ts;
    int nt;
    meta_pair *mp;
    int nm;
    char (*text)[TNAME_MAX];
    int ntext;
    void **bufs; /* everything allocated for the output */
    int nbufs;
} outset;

static char *text(outset *o, const char *fmt, const char *a, const char *b)
{
    snprintf(o->text[o->ntext], TNAME_MAX, fmt, a, b);
    return o->text[o->ntext++];
}

/* Table d's merged tensors and metadata appended to o. */
static int add_table(st_file *fs, int n, const tdesc *d, tplan *p, outset *o, pst_err *err)
{
    int kk = -1;
    unsigned char *out[MAX_ROW_TENSORS] = {0};
    for (int k = 0; k < d->nsfx; k++) {
        if (strcmp(d->sfx[k], "keys") == 0)
            kk = k;
        size_t bytes = (size_t)p->total * d->row_bytes[k];
        if (!(out[k] = malloc(bytes ? bytes : 1)))
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        o->bufs[o->nbufs++] = out[k];
    }
    if (kk < 0 || d->dtype[kk] != CKPT_U64 || d->ndim[kk] != 1)
        return fail(err, pst_err_set(err, PST_ERR_DATA, "%s: table '%s': '%s.keys' is not U64 (R)",
                                     fs[0].path, d->name, d->name));
    int rc = merge_rows(fs, n, d, p, kk, out, err);
    if (rc)
        return rc;
    for (int k = 0; k < d->nsfx; k++)
        o->ts[o->nt++] = (out_tensor){text(o, "%s.%s", d->name, d->sfx[k]),    d->ndim[k],
                                      {(double)p->total, (double)d->width[k]}, out[k],
                                      (size_t)(p->total * d->width[k]),        d->dtype[k]};
    if (p->filter) {
        o->bufs[o->nbufs++] = p->filter;
        o->ts[o->nt++] = (out_tensor){text(o, "%s.%s", d->name, "filter"),
                                      1,
                                      {(double)p->cells, 0},
                                      p->filter,
                                      (size_t)p->cells,
                                      CKPT_U8};
        p->filter = NULL;
    }
    char num[32];
    for (int j = 0; j < 4; j++) { /* the values: file 0's header, alive until the write */
        o->mp[o->nm].key = text(o, "sparse.%s.%s", d->name, SAME_KEYS[j]);
        o->mp[o->nm++].val = p->same[j];
    }
    snprintf(num, sizeof num, "%" PRId64, p->step);
    o->mp[o->nm].key = text(o, "sparse.%s.%s", d->name, "step");
    o->mp[o->nm++].val = text(o, "%s%s", num, "");
    snprintf(num, sizeof num, "%" PRId64, p->total);
    o->mp[o->nm].key = text(o, "sparse.%s.%s", d->name, "rows");
    o->mp[o->nm++].val = text(o, "%s%s", num, "");
    return PST_OK;
}

/* Every file holds the tables of file 0, and no other. */
static int same_tables(st_file *fs, int n, char (*names)[32], int nt, pst_err *err)
{
    for (int i = 1; i < n; i++) {
        char(*mine)[32] = calloc(MAX_TABLES, sizeof *mine);
        int m = 0, rc;
        if (!mine)
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        rc = table_names(&fs[i], mine, &m, err);
        for (int a = 0; !rc && a < nt + m; a++) {
            const char *want = a < nt ? names[a] : mine[a - nt];
            char(*in)[32] = a < nt ? mine : names;
            int nin = a < nt ? m : nt, found = 0;
            for (int b = 0; b < nin && !found; b++)
                found = strcmp(in[b], want) == 0;
            if (!found)
                rc = fail(err, pst_err_set(err, PST_ERR_DATA, "%s holds table '%s', %s does not",
                                           a < nt ? fs[0].path : fs[i].path, want,
                                           a < nt ? fs[i].path : fs[0].path));
        }
        free(mine);
        if (rc)
            return rc;
    }
    return PST_OK;
}

int ckpt_sparse_merge(const char *out, const char *const *in, int n, pst_err *err)
{
    if (n < 1)
        return pst_err_set(err, PST_ERR_ARG, "%s: no table files to merge", out);
    int rc = PST_OK, nt = 0;
    st_file *fs = calloc((size_t)n, sizeof *fs);
    char(*names)[32] = calloc(MAX_TABLES, sizeof *names);
    tdesc *d = calloc(1, sizeof *d);
    tplan p = {.rows = calloc((size_t)n, sizeof(int64_t)),
               .in = calloc((size_t)n * MAX_ROW_TENSORS, sizeof(void *))};
    outset o = {0};
    char *json = NULL;
    int opened = 0;
    if (!fs || !names || !d || !p.rows || !p.in) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (; opened < n; opened++)
        if ((rc = ckpt_st_open_any(&fs[opened], in[opened], err)))
            goto cleanup;
    if ((rc = table_names(&fs[0], names, &nt, err)) || (rc = same_tables(fs, n, names, nt, err)))
        goto cleanup;
    int m = nt > 0 ? nt : 1;
    o.ts = calloc((size_t)m * (MAX_ROW_TENSORS + 1), sizeof *o.ts);
    o.mp = calloc((size_t)m * META_KEYS, sizeof *o.mp);
    o.text = calloc((size_t)m * (MAX_ROW_TENSORS + 1 + 2 * META_KEYS), sizeof *o.text);
    o.bufs = calloc((size_t)m * (MAX_ROW_TENSORS + 1), sizeof *o.bufs);
    if (!o.ts || !o.mp || !o.text || !o.bufs) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (int t = 0; t < nt && !rc; t++) {
        snprintf(d->name, sizeof d->name, "%s", names[t]);
        p.cells = 0;
        if (!(rc = describe_table(&fs[0], d, err)) && !(rc = plan_table(fs, n, d, &p, err)))
            rc = add_table(fs, n, d, &p, &o, err);
        free(p.filter);
        p.filter = NULL;
    }
    if (rc)
        goto cleanup;
    if (!(json = ckpt_st_header_json(o.ts, o.nt, NULL, NULL, o.mp, o.nm))) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", out);
        goto cleanup;
    }
    rc = ckpt_st_write(out, json, o.ts, o.nt, err);
cleanup:
    cJSON_free(json);
    for (int i = 0; i < o.nbufs; i++)
        free(o.bufs[i]);
    free(o.bufs), free(o.ts), free(o.mp), free(o.text);
    for (int i = 0; fs && i < opened; i++)
        ckpt_st_fini(&fs[i]);
    free(fs), free(names), free(d), free(p.rows), free(p.in);
    return fail(err, rc);
}
