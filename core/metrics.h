/* core/metrics.h -- evaluation figures accumulated over batches.
 *
 * Classification: a C x C confusion matrix (rows = true class, columns = predicted), from
 * which accuracy, per-class precision/recall/F1 and their macro averages follow. A class
 * with no predictions has precision 0, no true samples recall 0 (scikit-learn's
 * zero_division=0), and macro averages run over all C classes.
 * Regression: sums for MSE, MAE and R^2 = 1 - SS_res / SS_tot, in double precision. */
#ifndef PSTRAIN_CORE_METRICS_H
#define PSTRAIN_CORE_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

typedef struct met_confusion met_confusion;

met_confusion *met_confusion_create(int nclasses, pst_err *err);
void met_confusion_destroy(met_confusion *cm);
void met_confusion_reset(met_confusion *cm);
int met_confusion_nclasses(const met_confusion *cm);
/* Adds n (true, predicted) pairs; out-of-range values are a bug (assert). */
void met_confusion_add(met_confusion *cm, const int32_t *truth, const int32_t *pred, int64_t n);
int64_t met_confusion_count(const met_confusion *cm, int truth, int pred);
int64_t met_confusion_total(const met_confusion *cm);

typedef struct {
    double accuracy;
    double precision_macro, recall_macro, f1_macro;
} met_summary;

void met_confusion_summary(const met_confusion *cm, met_summary *out);
/* Per-class figures for class c. */
void met_confusion_class(const met_confusion *cm, int c, double *precision, double *recall,
                         double *f1);
/* Prints the matrix with row/column headers (class names when names != NULL) and a
 * per-class precision/recall/F1 table. */
void met_confusion_print(const met_confusion *cm, const char *const *names, FILE *f);

/* Predicted classes from model outputs (N, K): argmax per row for K > 1, [p > 0.5] for
 * K == 1 (a single sigmoid unit). */
void met_predict_classes(int32_t *pred, const float *out, int64_t n, int k);

typedef struct {
    int64_t n;            /* values seen (rows x target dims) */
    double sum_sq;        /* sum (y - t)^2 */
    double sum_abs;       /* sum |y - t| */
    double sum_t, sum_t2; /* for SS_tot = sum t^2 - (sum t)^2 / n */
} met_regression;

void met_regression_reset(met_regression *r);
void met_regression_add(met_regression *r, const float *y, const float *t, int64_t n);
double met_regression_mse(const met_regression *r);
double met_regression_mae(const met_regression *r);
double met_regression_r2(const met_regression *r); /* 0 when all targets are equal */

/* Latency histogram: counts of durations in fixed log-spaced buckets, 4 per doubling
 * (bucket b holds [2^(b/4), 2^((b+1)/4)) microseconds; below 1 us goes to bucket 0, beyond
 * the last bucket, ~72 min, to the last). A quantile is the geometric middle of its
 * bucket, within 9% of the true value, and quantiles never decrease with q. Counts only,
 * so the histogram of an interval is the difference of two snapshots (met_hist_sub), and
 * the struct is plain caller-owned storage that copies by value. */
enum { MET_HIST_BUCKETS = 128, MET_HIST_PER_DOUBLING = 4 };
typedef struct {
    uint64_t n;
    uint64_t count[MET_HIST_BUCKETS];
} met_hist;

void met_hist_reset(met_hist *h);
void met_hist_add(met_hist *h, double seconds);
/* d = a - b, bucket by bucket; b must be an earlier snapshot of a (assert). */
void met_hist_sub(met_hist *d, const met_hist *a, const met_hist *b);
/* The q-quantile (0 < q <= 1) in seconds: the smallest bucket holding at least ceil(q n)
 * of the values; NAN for an empty histogram. */
double met_hist_quantile(const met_hist *h, double q);

#endif
