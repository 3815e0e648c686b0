/* core/metrics.c -- confusion matrix, classification figures and regression sums; see
 * metrics.h. */
#include "metrics.h"

#include <assert.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct met_confusion {
    int c;      /* classes */
    int64_t *m; /* (C, C): m[truth * C + pred] */
};

met_confusion *met_confusion_create(int nclasses, pst_err *err)
{
    if (nclasses < 1) {
        pst_err_set(err, PST_ERR_ARG, "met_confusion_create: need at least 1 class, got %d",
                    nclasses);
        return NULL;
    }
    size_t c = (size_t)nclasses;
    met_confusion *cm = calloc(1, sizeof *cm);
    if (!cm || c > SIZE_MAX / sizeof(int64_t) / c)
        goto nomem;
    cm->c = nclasses;
    cm->m = calloc(c * c, sizeof(int64_t));
    if (!cm->m)
        goto nomem;
    return cm;

nomem:
    met_confusion_destroy(cm);
    pst_err_set(err, PST_ERR_NOMEM, "met_confusion_create: no memory for %d x %d counts", nclasses,
                nclasses);
    return NULL;
}

void met_confusion_destroy(met_confusion *cm)
{
    if (!cm)
        return;
    free(cm->m);
    free(cm);
}

void met_confusion_reset(met_confusion *cm)
{
    memset(cm->m, 0, (size_t)cm->c * (size_t)cm->c * sizeof(int64_t));
}

int met_confusion_nclasses(const met_confusion *cm) { return cm->c; }

void met_confusion_add(met_confusion *cm, const int32_t *truth, const int32_t *pred, int64_t n)
{
    assert(n >= 0);
    const int32_t c = cm->c;
    for (int64_t i = 0; i < n; i++) {
        assert(truth[i] >= 0 && truth[i] < c);
        assert(pred[i] >= 0 && pred[i] < c);
        cm->m[(size_t)truth[i] * (size_t)c + (size_t)pred[i]]++;
    }
}

int64_t met_confusion_count(const met_confusion *cm, int truth, int pred)
{
    assert(truth >= 0 && truth < cm->c && pred >= 0 && pred < cm->c);
    return cm->m[(size_t)truth * (size_t)cm->c + (size_t)pred];
}

int64_t met_confusion_total(const met_confusion *cm)
{
    int64_t total = 0;
    for (size_t i = 0; i < (size_t)cm->c * (size_t)cm->c; i++)
        total += cm->m[i];
    return total;
}

/* precision = TP / (TP + FP) = TP / column sum, recall = TP / (TP + FN) = TP / row sum,
 * F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (row sum + column sum), the harmonic mean of the
 * two; each is 0 where its denominator is 0 (scikit-learn's zero_division=0). */
void met_confusion_class(const met_confusion *cm, int c, double *precision, double *recall,
                         double *f1)
{
    assert(c >= 0 && c < cm->c);
    const size_t nc = (size_t)cm->c;
    int64_t tp = cm->m[(size_t)c * nc + (size_t)c];
    int64_t row = 0, col = 0;
    for (size_t j = 0; j < nc; j++) {
        row += cm->m[(size_t)c * nc + j];
        col += cm->m[j * nc + (size_t)c];
    }
    if (precision)
        *precision = col > 0 ? (double)tp / (double)col : 0.0;
    if (recall)
        *recall = row > 0 ? (double)tp / (double)row : 0.0;
    if (f1)
        *f1 = row + col > 0 ? 2.0 * (double)tp / (double)(row + col) : 0.0;
}

/* Macro averages are plain means over all C classes, also those absent from the data. */
void met_confusion_summary(const met_confusion *cm, met_summary *out)
{
    const size_t nc = (size_t)cm->c;
    int64_t correct = 0, total = met_confusion_total(cm);
    double p_sum = 0.0, r_sum = 0.0, f_sum = 0.0;
    for (int c = 0; c < cm->c; c++) {
        double p, r, f;
        met_confusion_class(cm, c, &p, &r, &f);
        p_sum += p;
        r_sum += r;
        f_sum += f;
        correct += cm->m[(size_t)c * nc + (size_t)c];
    }
    out->accuracy = total > 0 ? (double)correct / (double)total : 0.0;
    out->precision_macro = p_sum / (double)cm->c;
    out->recall_macro = r_sum / (double)cm->c;
    out->f1_macro = f_sum / (double)cm->c;
}

/* Class c's label: its name, or its index when there are no names. */
static const char *class_label(const char *const *names, int c, char *buf, size_t size)
{
    if (names && names[c])
        return names[c];
    snprintf(buf, size, "%d", c);
    return buf;
}

void met_confusion_print(const met_confusion *cm, const char *const *names, FILE *f)
{
    const int nc = cm->c;
    char buf[24], num[24];
    /* Row labels share one width; count columns share another, wide enough for every
     * label and count. */
    int lw = (int)strlen("macro avg");
    int cw = 0;
    for (int c = 0; c < nc; c++) {
        int len = (int)strlen(class_label(names, c, buf, sizeof buf));
        if (len > lw)
            lw = len;
        if (len > cw)
            cw = len;
    }
    for (size_t i = 0; i < (size_t)nc * (size_t)nc; i++) {
        int len = snprintf(num, sizeof num, "%" PRId64, cm->m[i]);
        if (len > cw)
            cw = len;
    }
    int64_t total = met_confusion_total(cm);

    fprintf(f, "confusion matrix (rows: true class, columns: predicted), %" PRId64 " samples\n",
            total);
    fprintf(f, "%*s", lw, "true\\pred");
    for (int c = 0; c < nc; c++)
        fprintf(f, "  %*s", cw, class_label(names, c, buf, sizeof buf));
    fputc('\n', f);
    for (int t = 0; t < nc; t++) {
        fprintf(f, "%*s", lw, class_label(names, t, buf, sizeof buf));
        for (int p = 0; p < nc; p++)
            fprintf(f, "  %*" PRId64, cw, cm->m[(size_t)t * (size_t)nc + (size_t)p]);
        fputc('\n', f);
    }

    fprintf(f, "\n%*s  %9s  %9s  %9s  %9s\n", lw, "class", "precision", "recall", "f1", "support");
    for (int c = 0; c < nc; c++) {
        double p, r, f1;
        met_confusion_class(cm, c, &p, &r, &f1);
        int64_t support = 0;
        for (int j = 0; j < nc; j++)
            support += cm->m[(size_t)c * (size_t)nc + (size_t)j];
        fprintf(f, "%*s  %9.4f  %9.4f  %9.4f  %9" PRId64 "\n", lw,
                class_label(names, c, buf, sizeof buf), p, r, f1, support);
    }
    met_summary s;
    met_confusion_summary(cm, &s);
    fprintf(f, "%*s  %9.4f  %9.4f  %9.4f  %9" PRId64 "\n", lw, "macro avg", s.precision_macro,
            s.recall_macro, s.f1_macro, total);
    fprintf(f, "%*s  %9s  %9s  %9.4f  %9" PRId64 "\n", lw, "accuracy", "", "", s.accuracy, total);
}

/* out: (N, K) row-major. Ties go to the lowest index (strict >), as numpy's argmax. */
void met_predict_classes(int32_t *pred, const float *out, int64_t n, int k)
{
    assert(n >= 0 && k >= 1);
    if (k == 1) {
        for (int64_t i = 0; i < n; i++)
            pred[i] = out[i] > 0.5f ? 1 : 0;
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        const float *row = out + (size_t)i * (size_t)k;
        int32_t best = 0;
        float best_v = row[0];
        for (int j = 1; j < k; j++) {
            if (row[j] > best_v) {
                best_v = row[j];
                best = j;
            }
        }
        pred[i] = best;
    }
}

void met_regression_reset(met_regression *r) { memset(r, 0, sizeof *r); }

/* y: predictions, t: targets, n values each. */
void met_regression_add(met_regression *r, const float *y, const float *t, int64_t n)
{
    assert(n >= 0);
    double sq = 0.0, ab = 0.0, st = 0.0, st2 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - (double)t[i];
        double ti = t[i];
        sq += d * d;
        ab += d < 0 ? -d : d;
        st += ti;
        st2 += ti * ti;
    }
    r->n += n;
    r->sum_sq += sq;
    r->sum_abs += ab;
    r->sum_t += st;
    r->sum_t2 += st2;
}

double met_regression_mse(const met_regression *r)
{
    return r->n > 0 ? r->sum_sq / (double)r->n : 0.0;
}

double met_regression_mae(const met_regression *r)
{
    return r->n > 0 ? r->sum_abs / (double)r->n : 0.0;
}

/* R^2 = 1 - SS_res / SS_tot with SS_tot = sum t^2 - (sum t)^2 / n. That difference cancels:
 * for equal targets rounding leaves a residue of order n * eps * sum t^2 rather than 0, so
 * anything below that bound counts as "all targets equal" and gives 0. */
double met_regression_r2(const met_regression *r)
{
    if (r->n <= 0)
        return 0.0;
    double n = (double)r->n;
    double ss_tot = r->sum_t2 - r->sum_t * r->sum_t / n;
    if (ss_tot <= 4.0 * n * DBL_EPSILON * r->sum_t2)
        return 0.0;
    return 1.0 - r->sum_sq / ss_tot;
}

void met_hist_reset(met_hist *h) { memset(h, 0, sizeof *h); }

void met_hist_add(met_hist *h, double seconds)
{
    double us = seconds * 1e6;
    int b = 0;
    if (us >= 1.0) /* also false for NaN: a bad clock reading lands in bucket 0 */
        b = (int)floor(log2(us) * MET_HIST_PER_DOUBLING);
    if (b >= MET_HIST_BUCKETS)
        b = MET_HIST_BUCKETS - 1;
    h->count[b]++;
    h->n++;
}

void met_hist_sub(met_hist *d, const met_hist *a, const met_hist *b)
{
    assert(a->n >= b->n);
    d->n = a->n - b->n;
    for (int i = 0; i < MET_HIST_BUCKETS; i++) {
        assert(a->count[i] >= b->count[i]);
        d->count[i] = a->count[i] - b->count[i];
    }
}

double met_hist_quantile(const met_hist *h, double q)
{
    if (h->n == 0)
        return NAN;
    uint64_t want = (uint64_t)ceil(q * (double)h->n);
    if (want < 1)
        want = 1;
    if (want > h->n)
        want = h->n;
    uint64_t seen = 0;
    int b = 0;
    for (; b < MET_HIST_BUCKETS - 1; b++) {
        seen += h->count[b];
        if (seen >= want)
            break;
    }
    /* Geometric middle of [2^(b/4), 2^((b+1)/4)) us. */
    return exp2(((double)b + 0.5) / MET_HIST_PER_DOUBLING) * 1e-6;
}
