/* tests/test_metrics.c -- core/metrics.c against hand-worked examples. */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

/* The 3-class example, 18 samples (rows true, columns predicted):
 *
 *            pred 0  pred 1  pred 2   row (support)
 *   true 0      4       1       1        6
 *   true 1      2       3       0        5
 *   true 2      1       2       4        7
 *   column      7       6       5       18
 *
 * accuracy = (4 + 3 + 4) / 18 = 11/18 = 0.611111
 * class 0: P = 4/7 = 0.571429  R = 4/6 = 0.666667  F1 = 2*4/(6+7) = 8/13 = 0.615385
 * class 1: P = 3/6 = 0.5       R = 3/5 = 0.6       F1 = 2*3/(5+6) = 6/11 = 0.545455
 * class 2: P = 4/5 = 0.8       R = 4/7 = 0.571429  F1 = 2*4/(7+5) = 8/12 = 0.666667
 * (F1 = 2PR/(P+R): class 0: 2 (4/7)(2/3) / (4/7 + 2/3) = (16/21) / (26/21) = 8/13.)
 * macro P  = (4/7 + 1/2 + 4/5) / 3   = 131/210  = 0.623810
 * macro R  = (2/3 + 3/5 + 4/7) / 3   = 193/315  = 0.612698
 * macro F1 = (8/13 + 6/11 + 2/3) / 3 = 784/1287 = 0.609169 */
/* cmocka 1.1.5 has no assert_double_equal. */
#define assert_near(a, b, tol) assert_near_at((a), (b), (tol), __FILE__, __LINE__)
static void assert_near_at(double a, double b, double tol, const char *file, int line)
{
    if (!(a - b <= tol && b - a <= tol))
        fail_msg("%s:%d: %.17g != %.17g (tolerance %g)", file, line, a, b, tol);
}

static const int32_t ex_truth[18] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2};
static const int32_t ex_pred[18] = {0, 0, 0, 0, 1, 2, 0, 0, 1, 1, 1, 0, 1, 1, 2, 2, 2, 2};

static met_confusion *example(void)
{
    met_confusion *cm = met_confusion_create(3, NULL);
    assert_non_null(cm);
    /* In two batches: counts accumulate. */
    met_confusion_add(cm, ex_truth, ex_pred, 7);
    met_confusion_add(cm, ex_truth + 7, ex_pred + 7, 11);
    return cm;
}

static void test_three_class_example(void **state)
{
    (void)state;
    met_confusion *cm = example();
    static const int64_t want[3][3] = {{4, 1, 1}, {2, 3, 0}, {1, 2, 4}};
    assert_int_equal(met_confusion_nclasses(cm), 3);
    for (int t = 0; t < 3; t++)
        for (int p = 0; p < 3; p++)
            assert_int_equal(met_confusion_count(cm, t, p), want[t][p]);
    assert_int_equal(met_confusion_total(cm), 18);

    static const double P[3] = {4.0 / 7, 3.0 / 6, 4.0 / 5};
    static const double R[3] = {4.0 / 6, 3.0 / 5, 4.0 / 7};
    static const double F[3] = {8.0 / 13, 6.0 / 11, 8.0 / 12};
    for (int c = 0; c < 3; c++) {
        double p, r, f;
        met_confusion_class(cm, c, &p, &r, &f);
        assert_near(p, P[c], 1e-12);
        assert_near(r, R[c], 1e-12);
        assert_near(f, F[c], 1e-12);
    }
    met_summary s;
    met_confusion_summary(cm, &s);
    assert_near(s.accuracy, 11.0 / 18, 1e-12);
    assert_near(s.precision_macro, 131.0 / 210, 1e-12);
    assert_near(s.recall_macro, 193.0 / 315, 1e-12);
    assert_near(s.f1_macro, 784.0 / 1287, 1e-12);

    met_confusion_reset(cm);
    assert_int_equal(met_confusion_total(cm), 0);
    assert_int_equal(met_confusion_count(cm, 0, 0), 0);
    met_confusion_destroy(cm);
}

/* Four classes; class 2 never occurs, class 3 occurs once and is never predicted:
 *   truth: 0 0 0 1 1 3
 *   pred:  0 0 1 1 0 1
 * class 0: TP 2, column 3, row 3: P = 2/3, R = 2/3, F1 = 4/6 = 2/3
 * class 1: TP 1, column 3, row 2: P = 1/3, R = 1/2, F1 = 2/5
 * class 2: no predictions, no samples: P = R = F1 = 0 (zero_division = 0)
 * class 3: no predictions, row 1:       P = 0, R = 0/1 = 0, F1 = 0
 * macro over all 4: P = (2/3 + 1/3) / 4 = 1/4, R = (2/3 + 1/2) / 4 = 7/24,
 *                   F1 = (2/3 + 2/5) / 4 = 4/15;  accuracy 3/6 */
static void test_zero_division(void **state)
{
    (void)state;
    const int32_t truth[6] = {0, 0, 0, 1, 1, 3};
    const int32_t pred[6] = {0, 0, 1, 1, 0, 1};
    met_confusion *cm = met_confusion_create(4, NULL);
    met_confusion_add(cm, truth, pred, 6);
    double p, r, f;
    met_confusion_class(cm, 1, &p, &r, &f);
    assert_near(p, 1.0 / 3, 1e-12);
    assert_near(r, 0.5, 1e-12);
    assert_near(f, 0.4, 1e-12);
    met_confusion_class(cm, 2, &p, &r, &f);
    assert_near(p, 0.0, 0.0);
    assert_near(r, 0.0, 0.0);
    assert_near(f, 0.0, 0.0);
    met_confusion_class(cm, 3, &p, &r, &f);
    assert_near(p, 0.0, 0.0);
    assert_near(r, 0.0, 0.0);
    assert_near(f, 0.0, 0.0);
    met_summary s;
    met_confusion_summary(cm, &s);
    assert_near(s.accuracy, 0.5, 1e-12);
    assert_near(s.precision_macro, 0.25, 1e-12);
    assert_near(s.recall_macro, 7.0 / 24, 1e-12);
    assert_near(s.f1_macro, 4.0 / 15, 1e-12);

    /* Predicted but never true: class 1 of a 2-class matrix with truth all 0.
     * P = 0/1 = 0, R = 0 (no samples), F1 = 0/(0 + 1) = 0. */
    met_confusion *cm2 = met_confusion_create(2, NULL);
    const int32_t t2[2] = {0, 0}, p2[2] = {0, 1};
    met_confusion_add(cm2, t2, p2, 2);
    met_confusion_class(cm2, 1, &p, &r, &f);
    assert_near(p, 0.0, 0.0);
    assert_near(r, 0.0, 0.0);
    assert_near(f, 0.0, 0.0);
    met_confusion_class(cm2, 0, &p, &r, &f); /* P = 1/1, R = 1/2, F1 = 2/3 */
    assert_near(p, 1.0, 1e-12);
    assert_near(r, 0.5, 1e-12);
    assert_near(f, 2.0 / 3, 1e-12);
    /* NULL outputs are allowed. */
    met_confusion_class(cm2, 0, NULL, &r, NULL);
    assert_near(r, 0.5, 1e-12);

    /* Nothing seen yet: every figure is 0, nothing divides by zero. */
    met_confusion_reset(cm);
    met_confusion_summary(cm, &s);
    assert_near(s.accuracy, 0.0, 0.0);
    assert_near(s.precision_macro, 0.0, 0.0);
    assert_near(s.recall_macro, 0.0, 0.0);
    assert_near(s.f1_macro, 0.0, 0.0);
    met_confusion_destroy(cm2);
    met_confusion_destroy(cm);
}

static void test_create_errors(void **state)
{
    (void)state;
    pst_err err = {0};
    assert_null(met_confusion_create(0, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
    assert_non_null(strstr(err.msg, "0"));
    assert_null(met_confusion_create(-3, NULL));
    met_confusion_destroy(NULL);
    met_confusion *one = met_confusion_create(1, &err);
    assert_non_null(one);
    met_confusion_destroy(one);
}

static void test_predict_binary(void **state)
{
    (void)state;
    /* K == 1: one sigmoid unit, class 1 iff p > 0.5 (0.5 itself is class 0). */
    const float out[6] = {0.2f, 0.5f, 0.5001f, 0.9f, -1.0f, 1.0f};
    const int32_t want[6] = {0, 0, 1, 1, 0, 1};
    int32_t pred[6];
    met_predict_classes(pred, out, 6, 1);
    for (int i = 0; i < 6; i++)
        assert_int_equal(pred[i], want[i]);
}

static void test_predict_argmax(void **state)
{
    (void)state;
    /* K == 3; ties go to the lowest index. */
    const float out[5][3] = {
        {1.0f, 1.0f, 0.0f},    /* tie 0/1 -> 0 */
        {0.0f, 2.0f, 2.0f},    /* tie 1/2 -> 1 */
        {3.0f, 3.0f, 3.0f},    /* all equal -> 0 */
        {-1.0f, -2.0f, -0.5f}, /* negative logits -> 2 */
        {0.1f, 0.7f, 0.2f},    /* plain -> 1 */
    };
    const int32_t want[5] = {0, 1, 0, 2, 1};
    int32_t pred[5];
    met_predict_classes(pred, &out[0][0], 5, 3);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pred[i], want[i]);
    /* K == 2 is argmax too, not a threshold. */
    const float two[2][2] = {{0.4f, 0.6f}, {0.7f, 0.3f}};
    met_predict_classes(pred, &two[0][0], 2, 2);
    assert_int_equal(pred[0], 1);
    assert_int_equal(pred[1], 0);
}

/* y = (1, 2, 3, 4), t = (1.5, 2, 2, 5): y - t = (-0.5, 0, 1, -1)
 *   MSE = (0.25 + 0 + 1 + 1) / 4 = 0.5625,  MAE = (0.5 + 0 + 1 + 1) / 4 = 0.625
 *   mean t = 10.5 / 4 = 2.625,  SS_tot = 1.125^2 + 2 * 0.625^2 + 2.375^2 = 7.6875
 *   R^2 = 1 - 2.25 / 7.6875 = 29/41 = 0.707317 */
static void test_regression(void **state)
{
    (void)state;
    const float y[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    const float t[4] = {1.5f, 2.0f, 2.0f, 5.0f};
    met_regression r;
    met_regression_reset(&r);
    met_regression_add(&r, y, t, 1); /* two batches */
    met_regression_add(&r, y + 1, t + 1, 3);
    assert_int_equal(r.n, 4);
    assert_near(met_regression_mse(&r), 0.5625, 1e-12);
    assert_near(met_regression_mae(&r), 0.625, 1e-12);
    assert_near(met_regression_r2(&r), 29.0 / 41, 1e-12);

    /* A perfect fit has R^2 = 1, predicting the mean R^2 = 0. */
    met_regression_reset(&r);
    met_regression_add(&r, t, t, 4);
    assert_near(met_regression_mse(&r), 0.0, 0.0);
    assert_near(met_regression_r2(&r), 1.0, 1e-12);
    const float mean[4] = {2.625f, 2.625f, 2.625f, 2.625f};
    met_regression_reset(&r);
    met_regression_add(&r, mean, t, 4);
    assert_near(met_regression_r2(&r), 0.0, 1e-12);

    /* All targets equal (0.1, not exact in binary): SS_tot is rounding residue, R^2 is 0. */
    enum { N = 1000 };
    float ty[N], tt[N];
    for (int i = 0; i < N; i++) {
        tt[i] = 0.1f;
        ty[i] = 0.1f + (i % 2 ? 0.01f : -0.02f);
    }
    met_regression_reset(&r);
    met_regression_add(&r, ty, tt, N);
    assert_near(met_regression_r2(&r), 0.0, 0.0);
    assert_true(met_regression_mse(&r) > 0.0);

    /* Nothing seen: zeros, not NaN. */
    met_regression_reset(&r);
    assert_near(met_regression_mse(&r), 0.0, 0.0);
    assert_near(met_regression_mae(&r), 0.0, 0.0);
    assert_near(met_regression_r2(&r), 0.0, 0.0);
}

/* Prints through a temporary file; returns the text (caller frees). */
static char *print_to_string(const met_confusion *cm, const char *const *names)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    met_confusion_print(cm, names, f);
    long len = ftell(f);
    assert_true(len > 0);
    rewind(f);
    char *text = malloc((size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
    text[len] = '\0';
    fclose(f);
    return text;
}

/* Finds the line that starts (after padding) with label followed by blanks, and reads
 * three counts from it. */
static void row_counts(const char *text, const char *label, int64_t out[3])
{
    const char *line = text;
    while (line && *line) {
        const char *s = line;
        while (*s == ' ')
            s++;
        size_t n = strlen(label);
        if (strncmp(s, label, n) == 0 && s[n] == ' ') {
            int got = sscanf(s + n, "%" SCNd64 " %" SCNd64 " %" SCNd64, &out[0], &out[1], &out[2]);
            assert_int_equal(got, 3);
            return;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    fail_msg("no row '%s' in:\n%s", label, text);
}

static void test_print(void **state)
{
    (void)state;
    met_confusion *cm = example();
    static const int64_t want[3][3] = {{4, 1, 1}, {2, 3, 0}, {1, 2, 4}};

    const char *const names[3] = {"cat", "dog", "hamster"};
    char *text = print_to_string(cm, names);
    assert_non_null(strstr(text, "18 samples"));
    assert_non_null(strstr(text, "precision"));
    assert_non_null(strstr(text, "hamster"));
    for (int c = 0; c < 3; c++) {
        int64_t got[3];
        row_counts(text, names[c], got); /* the first row with that label is the matrix */
        for (int p = 0; p < 3; p++)
            assert_int_equal(got[p], want[c][p]);
    }
    /* per-class table: class 0 P 0.5714 R 0.6667 F1 0.6154 support 6 */
    assert_non_null(strstr(text, "0.5714     0.6667     0.6154          6"));
    free(text);

    /* Without names the classes are their indices. */
    text = print_to_string(cm, NULL);
    int64_t got[3];
    row_counts(text, "2", got);
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 2);
    assert_int_equal(got[2], 4);
    free(text);

    /* Columns stay aligned when a count is wider than every name. */
    int32_t t[1000], p[1000];
    for (int i = 0; i < 1000; i++)
        t[i] = p[i] = 1;
    met_confusion_add(cm, t, p, 1000);
    text = print_to_string(cm, names);
    row_counts(text, "dog", got);
    assert_int_equal(got[1], 1003);
    /* Every matrix line (header + 3 rows) has the same length. */
    char *line = strchr(text, '\n') + 1;
    size_t first = (size_t)(strchr(line, '\n') - line);
    for (int r = 0; r < 4; r++) {
        char *end = strchr(line, '\n');
        assert_int_equal((size_t)(end - line), first);
        line = end + 1;
    }
    free(text);
    met_confusion_destroy(cm);
}

/* 1000 values 1..1000 ms: the quantiles are within a bucket (19% wide) of 500, 900 and
 * 990 ms, ordered, and an interval's histogram is the difference of two snapshots. */
static void test_hist(void **state)
{
    (void)state;
    met_hist h, early, d;
    met_hist_reset(&h);
    assert_true(isnan(met_hist_quantile(&h, 0.5)));
    for (int i = 1; i <= 1000; i++) {
        met_hist_add(&h, i * 1e-3);
        if (i == 500)
            early = h;
    }
    assert_int_equal(h.n, 1000);
    double p50 = met_hist_quantile(&h, 0.5), p90 = met_hist_quantile(&h, 0.9),
           p99 = met_hist_quantile(&h, 0.99);
    assert_near(p50, 0.5, 0.5 * 0.1);
    assert_near(p90, 0.9, 0.9 * 0.1);
    assert_near(p99, 0.99, 0.99 * 0.1);
    assert_true(p50 <= p90 && p90 <= p99);
    assert_true(met_hist_quantile(&h, 1.0) >= p99);
    met_hist_sub(&d, &h, &early); /* 501..1000 ms */
    assert_int_equal(d.n, 500);
    assert_near(met_hist_quantile(&d, 0.5), 0.75, 0.75 * 0.1);
    assert_true(met_hist_quantile(&d, 0.01) > 0.45);
    /* Out of range: below 1 us and beyond the last bucket are clamped, not lost. */
    met_hist_reset(&h);
    met_hist_add(&h, 0.0);
    met_hist_add(&h, 1e-9);
    met_hist_add(&h, 1e9);
    assert_int_equal(h.n, 3);
    assert_true(met_hist_quantile(&h, 0.5) < 2e-6);
    assert_true(met_hist_quantile(&h, 1.0) > 3600.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_class_example),
        cmocka_unit_test(test_zero_division),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_predict_binary),
        cmocka_unit_test(test_predict_argmax),
        cmocka_unit_test(test_regression),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_hist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
