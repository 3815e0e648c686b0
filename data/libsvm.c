/* data/libsvm.c -- the libsvm / svmlight loader: sparse rows densified. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* getline; the build also passes it */
#endif
#include "data_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* ---- libsvm / svmlight ------------------------------------------------------------------ */

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The file as read, before densifying: row i holds entries [rowend[i-1], rowend[i]). */
typedef struct {
    const char *path;
    int dim, nclasses; /* as passed: 0 = from the data */
    ds_task task;
    int32_t *col;   /* (nnz) 0-based */
    float *val;     /* (nnz) */
    size_t *rowend; /* (n) */
    int32_t *ilab;  /* (n) classification labels as written */
    float *flab;    /* (n) regression targets */
    size_t nnz, nnz_cap, cap;
    int64_t n;
    int32_t maxidx, maxlab;
    long long line_m1, line_other; /* first lines with label -1 and with not +-1 */
    int32_t other;                 /* the label on line_other */
} libsvm_rows;

static void libsvm_rows_fini(libsvm_rows *r)
{
    free(r->col);
    free(r->val);
    free(r->rowend);
    free(r->ilab);
    free(r->flab);
}

/* Makes room for row r->n (rowend and the label array of the task). */
static int libsvm_grow_rows(libsvm_rows *r, long long line, pst_err *err)
{
    if ((size_t)r->n < r->cap)
        return PST_OK;
    size_t ncap = r->cap ? r->cap * 2 : 256;
    size_t *re = ds_realloc_rows(r->rowend, ncap, sizeof *re);
    if (re)
        r->rowend = re;
    void *l = r->task == DS_TASK_CLASSIFY ? ds_realloc_rows(r->ilab, ncap, sizeof *r->ilab)
                                          : ds_realloc_rows(r->flab, ncap, sizeof *r->flab);
    if (l && r->task == DS_TASK_CLASSIFY)
        r->ilab = l;
    else if (l)
        r->flab = l;
    if (!re || !l)
        return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", r->path, line);
    r->cap = ncap;
    return PST_OK;
}

/* Parses the label token of row r->n. A -1 is kept as written: it is valid only as half of
 * the svmlight {-1, +1} pair, which libsvm_dense decides once the whole file is read. */
static int libsvm_label(libsvm_rows *r, const char *tok, long long line, pst_err *err)
{
    const char *path = r->path;
    if (r->task == DS_TASK_REGRESS) {
        num_status ns = ds_parse_float(tok, &r->flab[r->n]);
        if (ns)
            return pst_err_set(err, ns == NUM_NONFINITE ? PST_ERR_NUMERIC : PST_ERR_DATA,
                               "%s:%lld: label '%.64s' is not a %snumber", path, line, tok,
                               ns == NUM_NONFINITE ? "finite " : "");
        return PST_OK;
    }
    int32_t v;
    num_status ns = ds_parse_int(tok, &v);
    if (ns)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: label '%.64s' is not an integer", path,
                           line, tok);
    if (v < -1 || (r->nclasses > 0 && v >= r->nclasses) || v == INT32_MAX)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: label %d out of range [0, %d)", path, line,
                           (int)v, r->nclasses > 0 ? r->nclasses : INT32_MAX);
    if (v == -1 && !r->line_m1)
        r->line_m1 = line;
    if (v != -1 && v != 1 && !r->line_other) {
        r->line_other = line;
        r->other = v;
    }
    r->maxlab = v > r->maxlab ? v : r->maxlab;
    r->ilab[r->n] = v;
    return PST_OK;
}

/* Appends entry (col, v) to the current row. */
static int libsvm_push(libsvm_rows *r, int32_t col, float v, long long line, pst_err *err)
{
    if (r->nnz == r->nnz_cap) {
        size_t ncap = r->nnz_cap ? r->nnz_cap * 2 : 1024;
        int32_t *c2 = ds_realloc_rows(r->col, ncap, sizeof *c2);
        if (c2)
            r->col = c2;
        float *v2 = ds_realloc_rows(r->val, ncap, sizeof *v2);
        if (v2)
            r->val = v2;
        if (!c2 || !v2)
            return pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", r->path, line);
        r->nnz_cap = ncap;
    }
    r->col[r->nnz] = col;
    r->val[r->nnz] = v;
    r->nnz++;
    return PST_OK;
}

/* Parses one "index:value" token (tok is modified); indices are 1-based and must increase
 * past *prev, which is updated. */
static int libsvm_feature(libsvm_rows *r, char *tok, int32_t *prev, long long line, pst_err *err)
{
    const char *path = r->path;
    char *colon = strchr(tok, ':');
    if (!colon)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: '%.64s' is not index:value", path, line,
                           tok);
    *colon = '\0';
    char *end;
    errno = 0;
    long idx = strtol(tok, &end, 10);
    if (end == tok || *end != '\0')
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: bad feature index '%.64s'", path, line,
                           tok);
    if (idx < 1)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %ld (indices start at 1)",
                           path, line, idx);
    if (errno == ERANGE || idx > INT_MAX)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %.64s is too large", path,
                           line, tok);
    if (idx <= *prev)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s:%lld: feature index %ld after %d (indices must increase)", path,
                           line, idx, (int)*prev);
    if (r->dim > 0 && idx > r->dim)
        return pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %ld exceeds dim %d", path,
                           line, idx, r->dim);
    float v;
    num_status ns = ds_parse_float(colon + 1, &v);
    if (ns)
        return pst_err_set(err, ns == NUM_NONFINITE ? PST_ERR_NUMERIC : PST_ERR_DATA,
                           "%s:%lld: feature %ld: '%.64s' is not a %snumber", path, line, idx,
                           colon + 1, ns == NUM_NONFINITE ? "finite " : "");
    int rc = libsvm_push(r, (int32_t)idx - 1, v, line, err);
    if (rc)
        return rc;
    *prev = (int32_t)idx;
    return PST_OK;
}

/* Cuts the next blank-separated token out of *p (NUL-terminating it); NULL at the end. */
static char *next_token(char **p)
{
    char *s = *p;
    while (is_ws(*s))
        s++;
    if (*s == '\0') {
        *p = s;
        return NULL;
    }
    char *tok = s;
    while (*s && !is_ws(*s))
        s++;
    if (*s)
        *s++ = '\0';
    *p = s;
    return tok;
}

/* Parses one data line, comments already cut and not blank: "label [qid:q] i:v i:v ...". */
static int libsvm_line(libsvm_rows *r, char *p, long long line, pst_err *err)
{
    int rc = libsvm_grow_rows(r, line, err);
    if (rc)
        return rc;
    if ((rc = libsvm_label(r, next_token(&p), line, err)))
        return rc;
    int32_t prev = 0;
    for (char *tok; (tok = next_token(&p));) {
        if (strncmp(tok, "qid:", 4) == 0)
            continue; /* svmlight ranking query id: groups rows, is not a feature */
        if ((rc = libsvm_feature(r, tok, &prev, line, err)))
            return rc;
    }
    r->maxidx = prev > r->maxidx ? prev : r->maxidx;
    r->rowend[r->n++] = r->nnz;
    return PST_OK;
}

/* Reads every line of f into r. */
static int libsvm_read(libsvm_rows *r, FILE *f, pst_err *err)
{
    char *buf = NULL;
    size_t bufcap = 0;
    long long line = 0;
    int rc = PST_OK;
    for (;;) {
        errno = 0;
        ssize_t len = getline(&buf, &bufcap, f);
        if (len < 0) {
            if (ferror(f))
                rc = pst_err_set(err, errno == ENOMEM ? PST_ERR_NOMEM : PST_ERR_IO, "%s:%lld: %s",
                                 r->path, line + 1, strerror(errno));
            break;
        }
        line++;
        if (memchr(buf, '\0', (size_t)len)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s:%lld: NUL byte (not a text file?)", r->path,
                             line);
            break;
        }
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *p = buf;
        while (is_ws(*p))
            p++;
        if (*p == '\0')
            continue;
        if ((rc = libsvm_line(r, p, line, err)))
            break;
    }
    free(buf);
    return rc;
}

/* The dataset of the rows read: D from dim or the largest index, K from nclasses, the
 * {-1, +1} pair (mapped to 0, 1) or the largest label. */
static ds_dataset *libsvm_dense(const libsvm_rows *r, pst_err *err)
{
    const char *path = r->path;
    if (r->n == 0) {
        pst_err_set(err, PST_ERR_DATA, "%s: no data rows", path);
        return NULL;
    }
    int d = r->dim > 0 ? r->dim : r->maxidx;
    if (d == 0) {
        pst_err_set(err, PST_ERR_DATA, "%s: no features in any row (pass dim)", path);
        return NULL;
    }
    int k = 0;
    int pm1 = 0; /* labels are the svmlight {-1, +1} pair */
    if (r->task == DS_TASK_CLASSIFY) {
        if (r->line_m1 && r->line_other) {
            pst_err_set(err, PST_ERR_DATA,
                        "%s:%lld: label -1 out of range (allowed only with +1 labels, but line "
                        "%lld has label %d)",
                        path, r->line_m1, r->line_other, (int)r->other);
            return NULL;
        }
        pm1 = r->line_m1 != 0;
        if (pm1 && r->nclasses == 1) {
            pst_err_set(err, PST_ERR_DATA, "%s: -1/+1 labels need nclasses >= 2", path);
            return NULL;
        }
        k = r->nclasses > 0 ? r->nclasses : pm1 ? 2 : r->maxlab + 1;
    }
    ds_dataset *ds = ds_create(r->n, d, r->task, k, 1, err);
    if (!ds)
        return NULL;
    for (int64_t i = 0; i < r->n; i++) {
        float *xr = ds->x + (size_t)i * (size_t)d;
        for (size_t e = i ? r->rowend[i - 1] : 0; e < r->rowend[i]; e++)
            xr[r->col[e]] = r->val[e];
        if (r->task == DS_TASK_CLASSIFY)
            ds->label[i] = pm1 ? (r->ilab[i] + 1) / 2 : r->ilab[i];
        else
            ds->target[i] = r->flab[i];
    }
    return ds;
}

ds_dataset *ds_load_libsvm(const char *path, int dim, ds_task task, int nclasses, pst_err *err)
{
    if (!path || dim < 0 || nclasses < 0 || (task != DS_TASK_CLASSIFY && task != DS_TASK_REGRESS)) {
        pst_err_set(err, PST_ERR_ARG, "ds_load_libsvm: bad arguments (dim %d, nclasses %d)", dim,
                    nclasses);
        return NULL;
    }
    FILE *f = ds_fopen_text(path, err); /* plain or gzipped */
    if (!f)
        return NULL;
    libsvm_rows r = {.path = path, .dim = dim, .nclasses = nclasses, .task = task};
    ds_dataset *ds = NULL;
    if (libsvm_read(&r, f, err) == PST_OK)
        ds = libsvm_dense(&r, err);
    fclose(f);
    libsvm_rows_fini(&r);
    return ds;
}
