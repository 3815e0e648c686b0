/* data/scale.c -- per-feature scalers: fitted on the training split, applied unchanged
 * to every other split. */
#include "data_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Names ------------------------------------------------------------------------------- */

#define DS_NAME(v, name) name,
static const char *const scale_names[] = {DS_SCALE_NAMES(DS_NAME)};

const char *ds_scale_name(int kind)
{
    return kind >= 0 && kind < DS_SCALE_COUNT ? scale_names[kind] : NULL;
}

int ds_scale_find(const char *name)
{
    for (int i = 0; name && i < DS_SCALE_COUNT; i++)
        if (strcmp(scale_names[i], name) == 0)
            return i;
    return -1;
}

/* ---- Scaling ----------------------------------------------------------------------------- */

/* What a fit computes, and its scratch: every array is (D). */
typedef struct {
    float *shift, *mul; /* the result: x' = (x - shift) * mul */
    double *acc, *acc2; /* sums (zeroed) */
    float *lo, *hi;     /* running minima and maxima */
} scaler_work;

/* x' = (x - min) / (max - min) per feature over the N rows of ds; the double sums only
 * detect NaN/Inf, which the comparisons would skip silently. A constant feature gets mul 0. */
static int fit_minmax(scaler_work *w, const ds_dataset *ds, pst_err *err)
{
    int d = ds->d;
    int64_t n = ds->n;
    const float *x = ds->x;
    memcpy(w->lo, x, (size_t)d * sizeof *w->lo);
    memcpy(w->hi, x, (size_t)d * sizeof *w->hi);
    for (int64_t i = 0; i < n; i++) {
        const float *restrict row = x + (size_t)i * (size_t)d;
        float *restrict l = w->lo, *restrict h = w->hi;
        double *restrict a = w->acc;
        for (int j = 0; j < d; j++) {
            l[j] = row[j] < l[j] ? row[j] : l[j];
            h[j] = row[j] > h[j] ? row[j] : h[j];
            a[j] += row[j];
        }
    }
    for (int j = 0; j < d; j++) {
        if (!isfinite(w->acc[j]))
            return pst_err_set(err, PST_ERR_NUMERIC, "scaler: feature %d has non-finite values", j);
        double range = (double)w->hi[j] - w->lo[j];
        w->shift[j] = w->lo[j];
        w->mul[j] = range > 0 ? (float)(1.0 / range) : 0.0f; /* constant feature -> 0 */
        if (!isfinite(w->mul[j]))
            return pst_err_set(err, PST_ERR_NUMERIC,
                               "scaler: feature %d: range %g too small to "
                               "scale",
                               j, range);
    }
    return PST_OK;
}

/* Two-pass mean and population variance in double (ddof = 0, as sklearn's StandardScaler):
 * var = sum (x - mean)^2 / N. Exact for constant features, whose std 0 gets mul 1. */
static int fit_standardize(scaler_work *w, const ds_dataset *ds, pst_err *err)
{
    int d = ds->d;
    int64_t n = ds->n;
    const float *x = ds->x;
    for (int64_t i = 0; i < n; i++) {
        const float *restrict row = x + (size_t)i * (size_t)d;
        double *restrict a = w->acc;
        for (int j = 0; j < d; j++)
            a[j] += row[j];
    }
    for (int j = 0; j < d; j++)
        w->acc[j] /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        const float *restrict row = x + (size_t)i * (size_t)d;
        const double *restrict mean = w->acc;
        double *restrict a2 = w->acc2;
        for (int j = 0; j < d; j++) {
            double dv = row[j] - mean[j];
            a2[j] += dv * dv;
        }
    }
    for (int j = 0; j < d; j++) {
        double sd = sqrt(w->acc2[j] / (double)n);
        w->shift[j] = (float)w->acc[j];
        w->mul[j] = sd > 0 ? (float)(1.0 / sd) : 1.0f;
        if (!isfinite(w->acc[j]) || !isfinite(sd) || !isfinite(w->mul[j]))
            return pst_err_set(err, PST_ERR_NUMERIC,
                               "scaler: feature %d: mean %g, std %g cannot be scaled", j, w->acc[j],
                               sd);
    }
    return PST_OK;
}

/* s is output storage, like an _init: whatever it held is overwritten, not freed (call
 * ds_scaler_fini before refitting). On failure s is left empty (NULL arrays). */
int ds_scaler_fit(ds_scaler *s, ds_scale_kind kind, const ds_dataset *ds, pst_err *err)
{
    if (!s)
        return pst_err_set(err, PST_ERR_ARG, "ds_scaler_fit: NULL scaler");
    memset(s, 0, sizeof *s);
    if (!ds || (kind != DS_SCALE_NONE && kind != DS_SCALE_MINMAX && kind != DS_SCALE_STANDARDIZE))
        return pst_err_set(err, PST_ERR_ARG, "ds_scaler_fit: NULL dataset or unknown kind %d",
                           (int)kind);
    int d = ds->d;
    int per_feature = kind == DS_SCALE_STANDARDIZE || (kind == DS_SCALE_MINMAX && !ds->has_range);
    if (per_feature && ds->n == 0)
        return pst_err_set(err, PST_ERR_ARG, "scaler: cannot fit on an empty dataset");
    size_t nd = d > 0 ? (size_t)d : 1; /* D = 0: only sparse features, nothing to scale */
    scaler_work w = {
        .shift = malloc(nd * sizeof *w.shift),
        .mul = malloc(nd * sizeof *w.mul),
        .acc = calloc(nd, sizeof *w.acc),
        .acc2 = calloc(nd, sizeof *w.acc2),
        .lo = malloc(nd * sizeof *w.lo),
        .hi = malloc(nd * sizeof *w.hi),
    };
    int rc = PST_OK;
    if (!w.shift || !w.mul || !w.acc || !w.acc2 || !w.lo || !w.hi) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "scaler of %d features: out of memory", d);
        goto cleanup;
    }
    if (kind == DS_SCALE_NONE) {
        for (int j = 0; j < d; j++) {
            w.shift[j] = 0.0f;
            w.mul[j] = 1.0f;
        }
    } else if (kind == DS_SCALE_MINMAX && ds->has_range) {
        /* The format's fixed range (IDX: 0..255), so that every split scales alike. */
        float m = (float)(1.0 / ((double)ds->raw_hi - ds->raw_lo));
        for (int j = 0; j < d; j++) {
            w.shift[j] = ds->raw_lo;
            w.mul[j] = m;
        }
    } else if (kind == DS_SCALE_MINMAX) {
        rc = fit_minmax(&w, ds, err);
    } else {
        rc = fit_standardize(&w, ds, err);
    }
    if (rc == PST_OK) {
        s->d = d;
        s->kind = kind;
        s->shift = w.shift;
        s->mul = w.mul;
        w.shift = w.mul = NULL;
    }
cleanup:
    free(w.shift);
    free(w.mul);
    free(w.acc);
    free(w.acc2);
    free(w.lo);
    free(w.hi);
    return rc;
}

/* x'[i, j] = (x[i, j] - shift[j]) * mul[j]; restrict lets gcc vectorise the inner loop. */
static void scale_rows(float *restrict x, const float *restrict shift, const float *restrict mul,
                       int64_t n, int d)
{
    for (int64_t i = 0; i < n; i++) {
        float *restrict row = x + (size_t)i * (size_t)d;
        for (int j = 0; j < d; j++)
            row[j] = (row[j] - shift[j]) * mul[j];
    }
}

int ds_scaler_apply(const ds_scaler *s, ds_dataset *ds, pst_err *err)
{
    if (!s || !ds)
        return pst_err_set(err, PST_ERR_ARG, "ds_scaler_apply: NULL scaler or dataset");
    if (!s->shift || !s->mul)
        return pst_err_set(err, PST_ERR_STATE, "ds_scaler_apply: scaler is not fitted");
    if (s->d != ds->d)
        return pst_err_set(err, PST_ERR_ARG, "scaler fitted on %d features, dataset has %d", s->d,
                           ds->d);
    scale_rows(ds->x, s->shift, s->mul, ds->n, ds->d);
    /* The features are no longer raw, so a later min-max fit must look at the data. */
    if (s->kind != DS_SCALE_NONE)
        ds->has_range = 0;
    return PST_OK;
}

void ds_scaler_fini(ds_scaler *s)
{
    if (!s)
        return;
    free(s->shift);
    free(s->mul);
    s->shift = s->mul = NULL;
    s->d = 0;
}
