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

ds_dataset *ds_load_libsvm(const char *path, int dim, ds_task task, int nclasses, pst_err *err)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t bufcap = 0;
    /* Sparse rows as read: row i holds entries [rowend[i-1], rowend[i]). */
    int32_t *col = NULL;  /* (nnz) 0-based */
    float *val = NULL;    /* (nnz) */
    size_t *rowend = NULL; /* (n) */
    int32_t *ilab = NULL; /* (n) classification labels as written */
    float *flab = NULL;   /* (n) regression targets */
    size_t nnz = 0, nnz_cap = 0, cap = 0;
    int64_t n = 0;
    int32_t maxidx = 0, maxlab = 0;
    long long line_m1 = 0, line_other = 0; /* first lines with label -1 and with not +-1 */
    int32_t other = 0;
    ds_dataset *ds = NULL;

    if (!path || dim < 0 || nclasses < 0 ||
        (task != DS_TASK_CLASSIFY && task != DS_TASK_REGRESS)) {
        pst_err_set(err, PST_ERR_ARG, "ds_load_libsvm: bad arguments (dim %d, nclasses %d)", dim,
                    nclasses);
        return NULL;
    }
    if (!(f = fopen(path, "r"))) {
        pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    long long line = 0;
    for (;;) {
        errno = 0;
        ssize_t len = getline(&buf, &bufcap, f);
        if (len < 0) {
            if (ferror(f)) {
                pst_err_set(err, errno == ENOMEM ? PST_ERR_NOMEM : PST_ERR_IO, "%s:%lld: %s", path,
                            line + 1, strerror(errno));
                goto cleanup;
            }
            break;
        }
        line++;
        if (memchr(buf, '\0', (size_t)len)) {
            pst_err_set(err, PST_ERR_DATA, "%s:%lld: NUL byte (not a text file?)", path, line);
            goto cleanup;
        }
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *p = buf;
        while (is_ws(*p))
            p++;
        if (*p == '\0')
            continue;

        if ((size_t)n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            size_t *re = ds_realloc_rows(rowend, ncap, sizeof *re);
            if (re)
                rowend = re;
            void *l = task == DS_TASK_CLASSIFY ? ds_realloc_rows(ilab, ncap, sizeof *ilab)
                                               : ds_realloc_rows(flab, ncap, sizeof *flab);
            if (l && task == DS_TASK_CLASSIFY)
                ilab = l;
            else if (l)
                flab = l;
            if (!re || !l) {
                pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", path, line);
                goto cleanup;
            }
            cap = ncap;
        }

        char *tok = p;
        while (*p && !is_ws(*p))
            p++;
        if (*p)
            *p++ = '\0';
        if (task == DS_TASK_REGRESS) {
            num_status ns = ds_parse_float(tok, &flab[n]);
            if (ns) {
                pst_err_set(err, ns == NUM_NONFINITE ? PST_ERR_NUMERIC : PST_ERR_DATA,
                            "%s:%lld: label '%.64s' is not a %snumber", path, line, tok,
                            ns == NUM_NONFINITE ? "finite " : "");
                goto cleanup;
            }
        } else {
            int32_t v;
            num_status ns = ds_parse_int(tok, &v);
            if (ns) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: label '%.64s' is not an integer", path,
                            line, tok);
                goto cleanup;
            }
            /* -1 is only valid as half of the svmlight {-1, +1} pair; decided at the end. */
            if (v < -1 || (nclasses > 0 && v >= nclasses) || v == INT32_MAX) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: label %d out of range [0, %d)", path,
                            line, (int)v, nclasses > 0 ? nclasses : INT32_MAX);
                goto cleanup;
            }
            if (v == -1 && !line_m1)
                line_m1 = line;
            if (v != -1 && v != 1 && !line_other) {
                line_other = line;
                other = v;
            }
            maxlab = v > maxlab ? v : maxlab;
            ilab[n] = v;
        }

        int32_t prev = 0;
        for (;;) {
            while (is_ws(*p))
                p++;
            if (*p == '\0')
                break;
            tok = p;
            while (*p && !is_ws(*p))
                p++;
            if (*p)
                *p++ = '\0';
            if (strncmp(tok, "qid:", 4) == 0)
                continue; /* svmlight ranking query id: groups rows, is not a feature */
            char *colon = strchr(tok, ':');
            if (!colon) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: '%.64s' is not index:value", path, line,
                            tok);
                goto cleanup;
            }
            *colon = '\0';
            char *end;
            errno = 0;
            long idx = strtol(tok, &end, 10);
            if (end == tok || *end != '\0') {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: bad feature index '%.64s'", path, line,
                            tok);
                goto cleanup;
            }
            if (idx < 1) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %ld (indices start at 1)",
                            path, line, idx);
                goto cleanup;
            }
            if (errno == ERANGE || idx > INT_MAX) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %.64s is too large", path,
                            line, tok);
                goto cleanup;
            }
            if (idx <= prev) {
                pst_err_set(err, PST_ERR_DATA,
                            "%s:%lld: feature index %ld after %d (indices must increase)", path,
                            line, idx, (int)prev);
                goto cleanup;
            }
            if (dim > 0 && idx > dim) {
                pst_err_set(err, PST_ERR_DATA, "%s:%lld: feature index %ld exceeds dim %d", path,
                            line, idx, dim);
                goto cleanup;
            }
            float v;
            num_status ns = ds_parse_float(colon + 1, &v);
            if (ns) {
                pst_err_set(err, ns == NUM_NONFINITE ? PST_ERR_NUMERIC : PST_ERR_DATA,
                            "%s:%lld: feature %ld: '%.64s' is not a %snumber", path, line, idx,
                            colon + 1, ns == NUM_NONFINITE ? "finite " : "");
                goto cleanup;
            }
            if (nnz == nnz_cap) {
                size_t ncap = nnz_cap ? nnz_cap * 2 : 1024;
                int32_t *c2 = ds_realloc_rows(col, ncap, sizeof *c2);
                if (c2)
                    col = c2;
                float *v2 = ds_realloc_rows(val, ncap, sizeof *v2);
                if (v2)
                    val = v2;
                if (!c2 || !v2) {
                    pst_err_set(err, PST_ERR_NOMEM, "%s:%lld: out of memory", path, line);
                    goto cleanup;
                }
                nnz_cap = ncap;
            }
            col[nnz] = (int32_t)idx - 1;
            val[nnz] = v;
            nnz++;
            prev = (int32_t)idx;
        }
        maxidx = prev > maxidx ? prev : maxidx;
        rowend[n++] = nnz;
    }
    if (n == 0) {
        pst_err_set(err, PST_ERR_DATA, "%s: no data rows", path);
        goto cleanup;
    }
    int d = dim > 0 ? dim : maxidx;
    if (d == 0) {
        pst_err_set(err, PST_ERR_DATA, "%s: no features in any row (pass dim)", path);
        goto cleanup;
    }
    int k = 0;
    int pm1 = 0; /* labels are the svmlight {-1, +1} pair */
    if (task == DS_TASK_CLASSIFY) {
        if (line_m1 && line_other) {
            pst_err_set(err, PST_ERR_DATA,
                        "%s:%lld: label -1 out of range (allowed only with +1 labels, but line "
                        "%lld has label %d)", path, line_m1, line_other, (int)other);
            goto cleanup;
        }
        pm1 = line_m1 != 0;
        if (pm1 && nclasses == 1) {
            pst_err_set(err, PST_ERR_DATA, "%s: -1/+1 labels need nclasses >= 2", path);
            goto cleanup;
        }
        k = nclasses > 0 ? nclasses : pm1 ? 2 : maxlab + 1;
    }
    if (!(ds = ds_create(n, d, task, k, 1, err)))
        goto cleanup;
    for (int64_t i = 0; i < n; i++) {
        float *xr = ds->x + (size_t)i * (size_t)d;
        for (size_t e = i ? rowend[i - 1] : 0; e < rowend[i]; e++)
            xr[col[e]] = val[e];
        if (task == DS_TASK_CLASSIFY)
            ds->label[i] = pm1 ? (ilab[i] + 1) / 2 : ilab[i];
        else
            ds->target[i] = flab[i];
    }
cleanup:
    if (f)
        fclose(f);
    free(buf);
    free(col);
    free(val);
    free(rowend);
    free(ilab);
    free(flab);
    return ds;
}
