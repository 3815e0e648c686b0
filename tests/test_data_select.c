/* tests/test_data_select.c -- the data options a new user reaches for first (issue 16):
 * data.limit's seeded, stratified subset (ds_sample), integer class ids a test file has
 * beyond the training file's (ds_widen_classes, ds_class_counts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

/* n rows, feature 0 the row id; sorted by class: the first n0 rows are class 0, the next
 * n1 class 1, the rest class 2 (K = 3), as a file sorted by label would be. */
static ds_dataset *make_sorted(int64_t n0, int64_t n1, int64_t n2)
{
    pst_err err = {0};
    int64_t n = n0 + n1 + n2;
    ds_dataset *ds = ds_create(n, 1, DS_TASK_CLASSIFY, 3, 0, &err);
    assert_non_null(ds);
    for (int64_t i = 0; i < n; i++) {
        ds_x(ds)[i] = (float)i;
        ds_labels(ds)[i] = i < n0 ? 0 : i < n0 + n1 ? 1 : 2;
    }
    return ds;
}

/* data.limit on a file sorted by class: every class keeps its share (round(n * N_c / N)),
 * rows are distinct rows of the file in random order, and the same seed draws the same. */
static void test_sample_stratified(void **state)
{
    (void)state;
    pst_err err = {0};
    ds_dataset *ds = make_sorted(600, 300, 100);
    ds_dataset *a = ds_sample(ds, 100, 7, &err), *b = ds_sample(ds, 100, 7, &err);
    ds_dataset *c = ds_sample(ds, 100, 8, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(ds_count(a), 100);
    int64_t k[3];
    ds_class_counts(a, k);
    assert_int_equal(k[0], 60);
    assert_int_equal(k[1], 30);
    assert_int_equal(k[2], 10);
    assert_memory_equal(ds_x(a), ds_x(b), 100 * sizeof(float));
    assert_true(memcmp(ds_x(a), ds_x(c), 100 * sizeof(float)) != 0);
    /* Distinct rows, labels intact, not in file order. */
    unsigned char seen[1000] = {0};
    int ascending = 1;
    for (int i = 0; i < 100; i++) {
        int id = (int)ds_x(a)[i];
        assert_true(id >= 0 && id < 1000);
        assert_int_equal(seen[id], 0);
        seen[id] = 1;
        assert_int_equal(ds_labels(a)[i], id < 600 ? 0 : id < 900 ? 1 : 2);
        if (i && id < (int)ds_x(a)[i - 1])
            ascending = 0;
    }
    assert_false(ascending);
    ds_destroy(a);
    ds_destroy(b);
    ds_destroy(c);
    ds_destroy(ds);
}

/* Shares that do not divide evenly sum to n by largest remainders; a rare class keeps
 * one sample while n allows; n beyond the data takes all of it. */
static void test_sample_rounding(void **state)
{
    (void)state;
    pst_err err = {0};
    ds_dataset *ds = make_sorted(500, 499, 1);
    ds_dataset *s = ds_sample(ds, 10, 1, &err);
    assert_non_null(s);
    int64_t k[3];
    ds_class_counts(s, k);
    assert_int_equal(k[0] + k[1] + k[2], 10);
    assert_int_equal(k[2], 1); /* 10 * 1/1000 rounds to 0, but the class is present */
    assert_true(k[0] >= 4 && k[0] <= 5 && k[1] >= 4 && k[1] <= 5);
    ds_destroy(s);
    s = ds_sample(ds, 5000, 1, &err);
    assert_non_null(s);
    assert_int_equal(ds_count(s), 1000);
    ds_destroy(s);
    s = ds_sample(ds, 0, 1, &err);
    assert_non_null(s);
    assert_int_equal(ds_count(s), 0);
    ds_destroy(s);
    assert_null(ds_sample(ds, -1, 1, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
    ds_destroy(ds);
}

/* Regression: a plain seeded random subset. */
static void test_sample_regression(void **state)
{
    (void)state;
    pst_err err = {0};
    ds_dataset *ds = ds_create(50, 1, DS_TASK_REGRESS, 0, 1, &err);
    assert_non_null(ds);
    for (int i = 0; i < 50; i++)
        ds_x(ds)[i] = ds_targets(ds)[i] = (float)i;
    ds_dataset *s = ds_sample(ds, 10, 3, &err);
    assert_non_null(s);
    assert_int_equal(ds_count(s), 10);
    int below10 = 0;
    for (int i = 0; i < 10; i++) {
        assert_true(ds_x(s)[i] == ds_targets(s)[i]);
        below10 += ds_x(s)[i] < 10.0f;
    }
    assert_true(below10 < 10); /* not the first 10 rows */
    ds_destroy(s);
    ds_destroy(ds);
}

/* Integer ids: a class only the test file has becomes a class of the training data with
 * no samples; named classes and narrowing are refused. */
static void test_widen_classes(void **state)
{
    (void)state;
    pst_err err = {0};
    ds_dataset *ds = make_sorted(2, 2, 0);
    int64_t k[4];
    ds_class_counts(ds, k);
    assert_int_equal(k[2], 0);
    assert_int_equal(ds_widen_classes(ds, 4, &err), PST_OK);
    assert_int_equal(ds_nclasses(ds), 4);
    ds_class_counts(ds, k);
    assert_true(k[0] == 2 && k[1] == 2 && k[2] == 0 && k[3] == 0);
    assert_int_equal(ds_widen_classes(ds, 3, &err), PST_ERR_ARG);
    ds_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_stratified),
        cmocka_unit_test(test_sample_rounding),
        cmocka_unit_test(test_sample_regression),
        cmocka_unit_test(test_widen_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
