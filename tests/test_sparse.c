/* tests/test_sparse.c -- sparse datasets (data/sparse.h): libsvm and libffm rows kept
 * sparse with 64-bit ids, svmlight labels, the id space, every refusal naming file, line
 * and entry, and the feature hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tmp_files.h"

#include "data/sparse.h"

static char dir[TMP_DIR_MAX];

static int setup(void **state)
{
    (void)state;
    return tmp_dir_make(dir, "/tmp/test-sparse");
}

static int teardown(void **state)
{
    (void)state;
    return tmp_dir_remove(dir);
}

/* Writes text to dir/name (folders made as needed); returns the path (static buffer). */
static const char *file_of(const char *name, const char *text)
{
    const char *path = tmp_file(dir, name, text);
    assert_non_null(path);
    return path;
}

static void test_libsvm_rows(void **state)
{
    (void)state;
    /* Ids past 2^32 and near 2^64, in any order; comments and blank lines skipped. */
    const char *p = file_of("a.svm", "1 3:0.5 4294967296:2 18446744073709551615:-1\n"
                                     "\n"
                                     "0 7:1   # a comment\n"
                                     "2 5:1e-3 5:2\n");
    ds_sparse_options o = {.task = DS_TASK_CLASSIFY};
    pst_err err = {0};
    ds_sparse *s = ds_sparse_load_libsvm(p, &o, &err);
    assert_non_null(s);
    assert_int_equal(ds_sparse_rows(s), 3);
    assert_int_equal(ds_sparse_nnz(s), 6);
    assert_int_equal(ds_sparse_nclasses(s), 3);
    assert_false(ds_sparse_has_fields(s));
    const uint64_t *ids;
    const float *vals;
    const uint32_t *fields;
    assert_int_equal(ds_sparse_row(s, 0, &ids, &vals, &fields), 3);
    assert_null(fields);
    assert_true(ids[0] == 3 && ids[1] == 4294967296ULL && ids[2] == UINT64_MAX);
    assert_true(vals[0] == 0.5f && vals[1] == 2.0f && vals[2] == -1.0f);
    assert_int_equal(ds_sparse_row(s, 1, &ids, &vals, NULL), 1);
    assert_true(ids[0] == 7 && vals[0] == 1.0f);
    assert_int_equal(ds_sparse_row(s, 2, &ids, &vals, NULL), 2); /* a repeated id is kept */
    const int32_t *y = ds_sparse_labels(s);
    assert_true(y[0] == 1 && y[1] == 0 && y[2] == 2);
    ds_sparse_destroy(s);
}

static void test_libffm_and_svmlight_labels(void **state)
{
    (void)state;
    const char *p = file_of("b.ffm", "+1 0:12:1 2:99:0.25\n-1 1:5:1\n");
    ds_sparse_options o = {.task = DS_TASK_CLASSIFY};
    pst_err err = {0};
    ds_sparse *s = ds_sparse_load_libsvm(p, &o, &err);
    assert_non_null(s);
    assert_true(ds_sparse_has_fields(s));
    assert_int_equal(ds_sparse_nfields(s), 3);
    const uint64_t *ids;
    const float *vals;
    const uint32_t *fields;
    assert_int_equal(ds_sparse_row(s, 0, &ids, &vals, &fields), 2);
    assert_true(fields[0] == 0 && ids[0] == 12 && fields[1] == 2 && ids[1] == 99);
    assert_true(vals[1] == 0.25f);
    assert_true(ds_sparse_labels(s)[0] == 1 && ds_sparse_labels(s)[1] == 0); /* -1 -> 0 */
    assert_int_equal(ds_sparse_nclasses(s), 2);
    ds_sparse_destroy(s);
    /* Regression: real targets. */
    p = file_of("c.svm", "0.75 1:1\n-2.5 2:1\n");
    o.task = DS_TASK_REGRESS;
    assert_non_null(s = ds_sparse_load_libsvm(p, &o, &err));
    assert_null(ds_sparse_labels(s));
    assert_true(ds_sparse_targets(s)[0] == 0.75f && ds_sparse_targets(s)[1] == -2.5f);
    ds_sparse_destroy(s);
}

/* Each bad file is refused with one line naming what and where. */
static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t id_space;
        const char *want;
    } cases[] = {
        {"1 3:1\n0\n", 0, "x.svm:2: a row with a label and no features"},
        {"1 5:1 9:1\n", 8, "x.svm:1: entry 2: feature id 9 is beyond the id space of 8"},
        {"1 18446744073709551616:1\n", 0, "feature id '18446744073709551616' is not a number"},
        {"1 3:nan\n", 0, "x.svm:1: entry 1 '3:nan': value is not a finite number"},
        {"1 3:x\n", 0, "value is not a number"},
        {"1 3\n", 0, "x.svm:1: entry 1 '3' is not id:value or field:id:value"},
        {"1 1:2:3:4\n", 0, "is not id:value or field:id:value"},
        {"1 3:1\n0 1:3:1\n", 0, "x.svm:2: entry 1 '1:3:1' mixes id:value and field:id:value"},
        {"a 3:1\n", 0, "x.svm:1: label 'a' is not a class id"},
        {"-1 3:1\n2 4:1\n", 0, "x.svm:2: label 2 beside svmlight's -1"},
        {"# only a comment\n\n", 0, "x.svm: no rows"},
        {"1 x:3:1\n", 0, "field 'x' is not a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = file_of("x.svm", cases[i].text);
        ds_sparse_options o = {.task = DS_TASK_CLASSIFY, .id_space = cases[i].id_space};
        pst_err err = {0};
        ds_sparse *s = ds_sparse_load_libsvm(p, &o, &err);
        if (s || !strstr(err.msg, cases[i].want))
            fail_msg("case %zu: got '%s', want '%s'", i, s ? "(loaded)" : err.msg, cases[i].want);
        assert_int_equal(err.code, PST_ERR_DATA);
        assert_null(strchr(err.msg, '\n'));
    }
    pst_err err = {0};
    ds_sparse_options o = {.task = DS_TASK_CLASSIFY, .nclasses = 2};
    const char *p = file_of("y.svm", "2 1:1\n");
    assert_null(ds_sparse_load_libsvm(p, &o, &err));
    assert_non_null(strstr(err.msg, "y.svm:1: label '2' is not a class id 0..1"));
    assert_null(ds_sparse_load_libsvm("/nonexistent/z.svm", &o, &err));
    assert_int_equal(err.code, PST_ERR_IO);
}

/* The hash is XXH3-64 (its published value for the empty input, seed 0), seeded, and
 * depends on every byte. */
static void test_hash(void **state)
{
    (void)state;
    assert_true(ds_hash64("", 0, 0) == 0x2D06800538D394C2ULL);
    uint64_t a = ds_hash64("user=42", 7, 1), b = ds_hash64("user=42", 7, 2);
    assert_true(a != b);
    assert_true(a == ds_hash64("user=42", 7, 1));
    assert_true(ds_hash64("user=43", 7, 1) != a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libsvm_rows),
        cmocka_unit_test(test_libffm_and_svmlight_labels),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_hash),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
