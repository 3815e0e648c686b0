/* data/split.c -- row selection: subsets, the seeded split and partitions, in-place
 * shuffles, class filtering and class alignment between files. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* strdup; the build also passes it */
#endif
#include "data_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

/* ---- Row selection -------------------------------------------------------------------- */

/* *dst = copies of src[pick[c]] (src[c] when pick is NULL) for c < k; NULL entries stay
 * NULL, and a NULL src gives a NULL *dst. */
static int names_copy(char ***dst, char *const *src, const int *pick, int k)
{
    *dst = NULL;
    if (!src)
        return PST_OK;
    char **out = calloc((size_t)k, sizeof *out);
    if (!out)
        return PST_ERR_NOMEM;
    for (int c = 0; c < k; c++) {
        const char *s = src[pick ? pick[c] : c];
        if (s && !(out[c] = strdup(s))) {
            ds_names_free(out, k);
            return PST_ERR_NOMEM;
        }
    }
    *dst = out;
    return PST_OK;
}

/* New dataset of rows r64[i] (or r32[i] when r64 is NULL), i < n, already range-checked;
 * class names and the raw range carry over. */
static ds_dataset *gather(const ds_dataset *ds, const int64_t *r64, const uint32_t *r32, int64_t n,
                          pst_err *err)
{
    ds_dataset *out = ds_create_d0(n, ds->d, ds->sp ? 0 : 1, ds->task, ds->nclasses, ds->tdim, err);
    if (!out)
        return NULL;
    if (ds->sp && !(out->sp = ds_sparse_take(ds->sp, r64, r32, n))) {
        ds_destroy(out);
        pst_err_set(err, PST_ERR_NOMEM, "dataset: out of memory copying sparse rows");
        return NULL;
    }
    size_t d = (size_t)ds->d, t = (size_t)ds->tdim;
    for (int64_t i = 0; i < n; i++) {
        size_t r = r64 ? (size_t)r64[i] : (size_t)r32[i];
        memcpy(out->x + (size_t)i * d, ds->x + r * d, d * sizeof *out->x);
        if (ds->label)
            out->label[i] = ds->label[r];
        else
            memcpy(out->target + (size_t)i * t, ds->target + r * t, t * sizeof *out->target);
    }
    if (names_copy(&out->class_names, ds->class_names, NULL, ds->nclasses)) {
        ds_destroy(out);
        pst_err_set(err, PST_ERR_NOMEM, "dataset: out of memory copying class names");
        return NULL;
    }
    out->has_range = ds->has_range;
    out->raw_lo = ds->raw_lo;
    out->raw_hi = ds->raw_hi;
    memcpy(out->image, ds->image, sizeof out->image);
    return out;
}

ds_dataset *ds_subset(const ds_dataset *ds, const int64_t *rows, int64_t n, pst_err *err)
{
    if (!ds || n < 0 || (n > 0 && !rows)) {
        pst_err_set(err, PST_ERR_ARG, "ds_subset: bad arguments");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= ds->n) {
            pst_err_set(err, PST_ERR_ARG, "ds_subset: rows[%lld] = %lld out of range [0, %lld)",
                        (long long)i, (long long)rows[i], (long long)ds->n);
            return NULL;
        }
    }
    return gather(ds, rows, NULL, n, err);
}

/* *perm = the seeded permutation of 0..n-1 that ds_split and ds_partition share: it
 * depends only on n and seed, so every worker computes the same one. */
static int shuffled_rows(int64_t n, uint64_t seed, uint32_t **perm, pst_err *err)
{
    *perm = NULL;
    if (n > (int64_t)UINT32_MAX)
        return pst_err_set(err, PST_ERR_ARG, "cannot shuffle %lld rows (at most 2^32 - 1)",
                           (long long)n);
    uint32_t *p = malloc((n ? (size_t)n : 1) * sizeof *p);
    if (!p)
        return pst_err_set(err, PST_ERR_NOMEM, "shuffle of %lld rows: out of memory", (long long)n);
    for (int64_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    rng_state r;
    rng_seed(&r, seed);
    rng_shuffle_u32(&r, p, (size_t)n);
    *perm = p;
    return PST_OK;
}

int ds_split(const ds_dataset *ds, double frac, uint64_t seed, ds_dataset **train, ds_dataset **val,
             pst_err *err)
{
    if (train)
        *train = NULL;
    if (val)
        *val = NULL;
    if (!ds || !train || !val)
        return pst_err_set(err, PST_ERR_ARG, "ds_split: NULL argument");
    if (!(frac >= 0.0 && frac < 1.0))
        return pst_err_set(err, PST_ERR_ARG, "ds_split: validation fraction %g not in [0, 1)",
                           frac);
    uint32_t *perm;
    int rc = shuffled_rows(ds->n, seed, &perm, err);
    if (rc)
        return rc;
    int64_t nval = (int64_t)llround(frac * (double)ds->n);
    /* perm[0, nval) is the validation set, perm[nval, n) the training set; gather fails
     * only for want of memory. */
    if (!(*val = gather(ds, NULL, perm, nval, err)) ||
        !(*train = gather(ds, NULL, perm + nval, ds->n - nval, err))) {
        rc = PST_ERR_NOMEM;
        ds_destroy(*val);
        *val = NULL;
    }
    free(perm);
    return rc;
}

ds_dataset *ds_partition(const ds_dataset *ds, int nparts, int k, uint64_t seed, pst_err *err)
{
    if (!ds || nparts < 1 || k < 0 || k >= nparts) {
        pst_err_set(err, PST_ERR_ARG, "ds_partition: part %d of %d", k, nparts);
        return NULL;
    }
    uint32_t *perm;
    if (shuffled_rows(ds->n, seed, &perm, err))
        return NULL;
    /* k * N < 2^31 * 2^32: no overflow in int64. */
    int64_t lo = (int64_t)k * ds->n / nparts, hi = ((int64_t)k + 1) * ds->n / nparts;
    ds_dataset *out = gather(ds, NULL, perm + lo, hi - lo, err);
    free(perm);
    return out;
}

/* Moves row perm[j] to row j for every j, following the permutation's cycles with one
 * spare row, so the data is never held twice. */
static void permute_rows(void *base, size_t rowb, const uint32_t *perm, int64_t n,
                         unsigned char *seen, void *tmp)
{
    char *b = base;
    for (int64_t i = 0; i < n; i++) {
        if (seen[i])
            continue;
        memcpy(tmp, b + (size_t)i * rowb, rowb);
        int64_t j = i;
        for (;;) {
            seen[j] = 1;
            int64_t src = perm[j];
            if (src == i) {
                memcpy(b + (size_t)j * rowb, tmp, rowb);
                break;
            }
            memcpy(b + (size_t)j * rowb, b + (size_t)src * rowb, rowb);
            j = src;
        }
    }
}

int ds_shuffle_inplace(ds_dataset *ds, uint64_t seed, pst_err *err)
{
    uint32_t *perm = NULL;
    unsigned char *seen = NULL;
    void *tmp = NULL;
    int rc = shuffled_rows(ds->n, seed, &perm, err);
    if (rc)
        return rc;
    size_t xrow = (size_t)ds->d * sizeof(float);
    size_t trow = ds->target ? (size_t)ds->tdim * sizeof(float) : 0;
    size_t nseen = ds->n > 0 ? (size_t)ds->n : 1; /* n >= 0, checked by shuffled_rows */
    seen = malloc(nseen);
    size_t tmpb = xrow > trow ? xrow : trow;
    tmp = malloc(tmpb > sizeof(int32_t) ? tmpb : sizeof(int32_t)); /* D may be 0 */
    if (!seen || !tmp) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "shuffle of %lld rows: out of memory",
                         (long long)ds->n);
        goto cleanup;
    }
    memset(seen, 0, nseen);
    permute_rows(ds->x, xrow, perm, ds->n, seen, tmp);
    if (ds->label) {
        memset(seen, 0, nseen);
        permute_rows(ds->label, sizeof(int32_t), perm, ds->n, seen, tmp);
    }
    if (ds->target) {
        memset(seen, 0, nseen);
        permute_rows(ds->target, trow, perm, ds->n, seen, tmp);
    }
    if (ds->sp) {
        /* CSR rows differ in length: the sparse part is rebuilt in the new order (it is held
         * twice for a moment, the dense x never is). */
        ds_sparse *sp = ds_sparse_take(ds->sp, NULL, perm, ds->n);
        if (!sp) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "shuffle of %lld sparse rows: out of memory",
                             (long long)ds->n);
            goto cleanup;
        }
        ds_sparse_destroy(ds->sp);
        ds->sp = sp;
    }
cleanup:
    free(perm);
    free(seen);
    free(tmp);
    return rc;
}

ds_dataset *ds_filter_classes(const ds_dataset *ds, const int *keep, int nkeep, pst_err *err)
{
    int *map = NULL;
    int64_t *rows = NULL;
    ds_dataset *out = NULL;
    if (!ds || !keep || nkeep < 1) {
        pst_err_set(err, PST_ERR_ARG, "ds_filter_classes: need a dataset and nkeep >= 1");
        return NULL;
    }
    if (ds->task != DS_TASK_CLASSIFY) {
        pst_err_set(err, PST_ERR_ARG, "ds_filter_classes: dataset has no class labels");
        return NULL;
    }
    int k = ds->nclasses;
    map = malloc((size_t)k * sizeof *map); /* old class -> new class, or -1 */
    rows = calloc(ds->n ? (size_t)ds->n : 1, sizeof *rows);
    if (!map || !rows) {
        pst_err_set(err, PST_ERR_NOMEM, "ds_filter_classes: out of memory");
        goto cleanup;
    }
    for (int c = 0; c < k; c++)
        map[c] = -1;
    for (int i = 0; i < nkeep; i++) {
        if (keep[i] < 0 || keep[i] >= k) {
            pst_err_set(err, PST_ERR_ARG, "ds_filter_classes: keep[%d] = %d out of range [0, %d)",
                        i, keep[i], k);
            goto cleanup;
        }
        if (map[keep[i]] >= 0) {
            pst_err_set(err, PST_ERR_ARG, "ds_filter_classes: class %d listed twice", keep[i]);
            goto cleanup;
        }
        map[keep[i]] = i;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        int32_t c = ds->label[i];
        if (c < 0 || c >= k) {
            pst_err_set(err, PST_ERR_DATA,
                        "ds_filter_classes: row %lld: label %d out of range "
                        "[0, %d)",
                        (long long)i, (int)c, k);
            goto cleanup;
        }
        if (map[c] >= 0)
            rows[m++] = i;
    }
    if (!(out = gather(ds, rows, NULL, m, err)))
        goto cleanup;
    for (int64_t i = 0; i < m; i++)
        out->label[i] = map[out->label[i]];
    char **names;
    if (names_copy(&names, ds->class_names, keep, nkeep)) {
        pst_err_set(err, PST_ERR_NOMEM, "ds_filter_classes: out of memory");
        ds_destroy(out);
        out = NULL;
        goto cleanup;
    }
    ds_names_free(out->class_names, out->nclasses);
    out->class_names = names;
    out->nclasses = nkeep;
cleanup:
    free(map);
    free(rows);
    return out;
}

int ds_align_classes(ds_dataset *ds, const ds_dataset *ref, const char *what, pst_err *err)
{
    if (ds->task != DS_TASK_CLASSIFY || ref->task != DS_TASK_CLASSIFY)
        return PST_OK;
    if (!ds->class_names && !ref->class_names)
        return PST_OK;
    if (!ds->class_names || !ref->class_names)
        return pst_err_set(
            err, PST_ERR_DATA, "%s: class labels are %s, but the training data's are %s", what,
            ds->class_names ? "names" : "numbers", ref->class_names ? "names" : "numbers");
    int *map = malloc(sizeof(int) * (size_t)(ds->nclasses ? ds->nclasses : 1));
    char **names = NULL;
    int rc = PST_OK;
    if (!map)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", what);
    for (int c = 0; c < ds->nclasses; c++) {
        map[c] = -1;
        for (int r = 0; r < ref->nclasses && map[c] < 0; r++)
            if (ds->class_names[c] && ref->class_names[r] &&
                strcmp(ds->class_names[c], ref->class_names[r]) == 0)
                map[c] = r;
        if (map[c] < 0) {
            rc =
                pst_err_set(err, PST_ERR_DATA, "%s: class '%s' does not occur in the training data",
                            what, ds->class_names[c] ? ds->class_names[c] : "?");
            goto cleanup;
        }
    }
    if (names_copy(&names, ref->class_names, NULL, ref->nclasses)) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", what);
        goto cleanup;
    }
    for (int64_t i = 0; i < ds->n; i++)
        ds->label[i] = map[ds->label[i]];
    ds_names_free(ds->class_names, ds->nclasses);
    ds->class_names = names;
    ds->nclasses = ref->nclasses;
cleanup:
    free(map);
    return rc;
}

void ds_class_counts(const ds_dataset *ds, int64_t *counts)
{
    for (int c = 0; c < ds->nclasses; c++)
        counts[c] = 0;
    for (int64_t i = 0; ds->label && i < ds->n; i++)
        if (ds->label[i] >= 0 && ds->label[i] < ds->nclasses)
            counts[ds->label[i]]++;
}

int ds_widen_classes(ds_dataset *ds, int k, pst_err *err)
{
    if (ds->task != DS_TASK_CLASSIFY || ds->class_names || k < ds->nclasses)
        return pst_err_set(err, PST_ERR_ARG, "ds_widen_classes: %d classes to %d", ds->nclasses, k);
    ds->nclasses = k;
    return PST_OK;
}

/* take[c] = class c's share of n rows: n * count[c] / N rounded by largest remainders (ties
 * to the lower class), then one for every class that has samples but got none, taken from
 * the class holding the most (n >= the classes present). */
static void stratify(const int64_t *count, int k, int64_t total, int64_t n, int64_t *take)
{
    int64_t given = 0;
    for (int c = 0; c < k; c++) {
        take[c] = (int64_t)((double)n * (double)count[c] / (double)total);
        if (take[c] > count[c])
            take[c] = count[c];
        given += take[c];
    }
    while (given < n) { /* at most k rounds: each adds one to a class with room */
        int best = -1;
        double best_rem = -1.0;
        for (int c = 0; c < k; c++) {
            double rem = (double)n * (double)count[c] / (double)total - (double)take[c];
            if (take[c] < count[c] && rem > best_rem) {
                best_rem = rem;
                best = c;
            }
        }
        take[best]++;
        given++;
    }
    for (int c = 0; c < k; c++) {
        if (count[c] == 0 || take[c] > 0)
            continue;
        int big = 0;
        for (int b = 1; b < k; b++)
            if (take[b] > take[big])
                big = b;
        if (take[big] <= 1)
            break; /* n < the classes present: some get none */
        take[big]--;
        take[c]++;
    }
}

ds_dataset *ds_sample(const ds_dataset *ds, int64_t n, uint64_t seed, pst_err *err)
{
    uint32_t *perm = NULL;
    int64_t *count = NULL, *take = NULL, *rows = NULL;
    ds_dataset *out = NULL;
    if (!ds || n < 0) {
        pst_err_set(err, PST_ERR_ARG, "ds_sample: bad arguments");
        return NULL;
    }
    if (n > ds->n)
        n = ds->n;
    if (shuffled_rows(ds->n, seed, &perm, err))
        return NULL;
    int k = ds->task == DS_TASK_CLASSIFY ? ds->nclasses : 0;
    count = calloc((size_t)k + 1, sizeof *count);
    take = calloc((size_t)k + 1, sizeof *take);
    rows = malloc((n ? (size_t)n : 1) * sizeof *rows);
    if (!count || !take || !rows) {
        pst_err_set(err, PST_ERR_NOMEM, "ds_sample: out of memory");
        goto cleanup;
    }
    int64_t m = 0;
    if (k > 0 && n > 0) {
        ds_class_counts(ds, count);
        stratify(count, k, ds->n, n, take);
        /* In shuffled order, each class's first take[c] rows. */
        for (int64_t i = 0; i < ds->n && m < n; i++) {
            int32_t c = ds->label[perm[i]];
            if (c >= 0 && c < k && take[c] > 0) {
                take[c]--;
                rows[m++] = perm[i];
            }
        }
    } else {
        for (; m < n; m++)
            rows[m] = perm[m];
    }
    out = gather(ds, rows, NULL, m, err);
cleanup:
    free(perm);
    free(count);
    free(take);
    free(rows);
    return out;
}
