/* tests/test_data_select.c -- the data options a new user reaches for first (issue 16):
 * data.limit's seeded, stratified subset (ds_sample), integer class ids a test file has
 * beyond the training file's (ds_widen_classes, ds_class_counts), gzipped CSV and libsvm
 * files, the delimiter hint, IDX images padded or resized (data.image). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

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

/* Writes text to path, gzipped when gz (cut to its first `cut` compressed bytes when > 0). */
static void write_file(const char *path, const char *text, int gz, size_t cut)
{
    if (!gz) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        return;
    }
    uLongf cap = compressBound((uLong)strlen(text)) + 64;
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    gzFile g = gzopen(tmp, "wb");
    assert_non_null(g);
    assert_int_equal(gzputs(g, text), (int)strlen(text));
    gzclose(g);
    FILE *f = fopen(tmp, "rb");
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    unlink(tmp);
    f = fopen(path, "wb");
    fwrite(buf, 1, cut > 0 && cut < n ? cut : n, f);
    fclose(f);
    free(buf);
}

/* A gzipped CSV or libsvm file loads as the plain one does; a truncated one is an error
 * naming the file. */
static void test_gzip_text(void **state)
{
    (void)state;
    char dir[] = "/tmp/pst_test_select_XXXXXX", a[600], b[600], c[600];
    assert_non_null(mkdtemp(dir));
    char text[40000];
    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof text - n, "x,y,label\n");
    for (int i = 0; i < 1500; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%d.5,%d,%d\n", i, -i, i % 3);
    snprintf(a, sizeof a, "%s/d.csv", dir);
    snprintf(b, sizeof b, "%s/d.csv.gz", dir);
    snprintf(c, sizeof c, "%s/cut.csv.gz", dir);
    write_file(a, text, 0, 0);
    write_file(b, text, 1, 0);
    write_file(c, text, 1, 2000);
    ds_csv_options o = {.header = -1, .label_name = "label", .task = DS_TASK_CLASSIFY};
    pst_err err = {0};
    ds_dataset *plain = ds_load_csv(a, &o, &err), *gz = ds_load_csv(b, &o, &err);
    assert_non_null(plain);
    assert_non_null(gz);
    assert_int_equal(ds_count(gz), 1500);
    assert_int_equal(ds_nclasses(gz), 3);
    assert_memory_equal(ds_x(plain), ds_x(gz), 1500 * 2 * sizeof(float));
    assert_memory_equal(ds_labels(plain), ds_labels(gz), 1500 * sizeof(int32_t));
    assert_null(ds_load_csv(c, &o, &err));
    assert_int_not_equal(err.code, PST_OK);
    assert_non_null(strstr(err.msg, "cut.csv.gz:"));
    ds_destroy(plain);
    ds_destroy(gz);
    /* libsvm */
    snprintf(b, sizeof b, "%s/d.svm.gz", dir);
    write_file(b, "1 1:0.5 3:2\n0 2:1\n", 1, 0);
    ds_dataset *sv = ds_load_libsvm(b, 0, DS_TASK_CLASSIFY, 0, &err);
    assert_non_null(sv);
    assert_int_equal(ds_count(sv), 2);
    assert_int_equal(ds_dim(sv), 3);
    assert_true(ds_x(sv)[0] == 0.5f && ds_x(sv)[2] == 2.0f && ds_x(sv)[4] == 1.0f);
    ds_destroy(sv);
    unlink(a);
    unlink(b);
    unlink(c);
    snprintf(b, sizeof b, "%s/d.csv.gz", dir);
    unlink(b);
    rmdir(dir);
}

/* A CSV of another separator reads as one field a line: the error names the likely one. */
static void test_delimiter_hint(void **state)
{
    (void)state;
    char dir[] = "/tmp/pst_test_select_XXXXXX", a[600];
    assert_non_null(mkdtemp(dir));
    ds_csv_options o = {.header = -1, .label_index = -1, .task = DS_TASK_CLASSIFY};
    pst_err err = {0};
    const char *text[] = {"a;b;c\n1;2;0\n", "a\tb\tc\n1\t2\t0\n", "a b\n"};
    const char *hint[] = {"set data.delimiter ';'", "the line has tabs: set data.delimiter",
                          "label column"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/f%d.csv", dir, i);
        write_file(a, text[i], i == 1, 0); /* the tab one gzipped: the hint comes through */
        assert_null(ds_load_csv(a, &o, &err));
        assert_int_equal(err.code, PST_ERR_DATA);
        assert_non_null(strstr(err.msg, hint[i]));
        if (i == 2)
            assert_null(strstr(err.msg, "delimiter"));
        unlink(a);
    }
    rmdir(dir);
}

/* data.image: pad centres the image on zeros (the odd row/column after), and crops a
 * larger one the same way; resize is PyTorch's bilinear, align_corners=False. */
static void test_image_fit(void **state)
{
    (void)state;
    const float a[4] = {1, 2, 3, 4}; /* (2, 2) */
    float out[16];
    ds_image_fit(out, 4, 4, a, 2, 2, DS_FIT_RESIZE);
    /* torch.nn.Upsample(scale_factor=2, mode="bilinear") of [[1, 2], [3, 4]] (its docs). */
    const float up[16] = {1.00f, 1.25f, 1.75f, 2.00f, 1.50f, 1.75f, 2.25f, 2.50f,
                          2.50f, 2.75f, 3.25f, 3.50f, 3.00f, 3.25f, 3.75f, 4.00f};
    for (int i = 0; i < 16; i++)
        assert_float_equal(out[i], up[i], 1e-6);
    float b[16], d[4];
    for (int i = 0; i < 16; i++)
        b[i] = (float)i;
    ds_image_fit(d, 2, 2, b, 4, 4, DS_FIT_RESIZE); /* halving: means of 2 x 2 blocks */
    assert_float_equal(d[0], 2.5, 1e-6);
    assert_float_equal(d[1], 4.5, 1e-6);
    assert_float_equal(d[2], 10.5, 1e-6);
    assert_float_equal(d[3], 12.5, 1e-6);
    float p[15];
    ds_image_fit(p, 3, 5, a, 2, 2, DS_FIT_PAD); /* 1 row after; 1 column before, 2 after */
    const float pad[15] = {0, 1, 2, 0, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(p, pad, sizeof pad);
    ds_image_fit(d, 2, 2, b, 4, 4, DS_FIT_PAD); /* the centre of a larger one */
    assert_true(d[0] == 5 && d[1] == 6 && d[2] == 9 && d[3] == 10);
    float c[6];
    ds_image_fit(c, 2, 3, b, 4, 4, DS_FIT_PAD); /* 3 of 4 columns: the last one cut */
    assert_true(c[0] == 4 && c[1] == 5 && c[2] == 6 && c[3] == 8 && c[4] == 9 && c[5] == 10);
}

/* IDX images of 3 x 2 loaded as 4 x 4, padded or resized; labels and range kept. */
static void test_idx_fit(void **state)
{
    (void)state;
    char dir[] = "/tmp/pst_test_select_XXXXXX", im[600], lb[600];
    assert_non_null(mkdtemp(dir));
    snprintf(im, sizeof im, "%s/i.idx", dir);
    snprintf(lb, sizeof lb, "%s/l.idx", dir);
    const unsigned char ih[] = {0, 0, 8,  3,  0,  0,  0,  2,  0, 0, 0, 3, 0, 0,
                                0, 2, 10, 20, 30, 40, 50, 60, 1, 2, 3, 4, 5, 6};
    const unsigned char lh[] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 0};
    FILE *f = fopen(im, "wb");
    fwrite(ih, 1, sizeof ih, f);
    fclose(f);
    f = fopen(lb, "wb");
    fwrite(lh, 1, sizeof lh, f);
    fclose(f);
    pst_err err = {0};
    ds_dataset *ds = ds_load_idx_fit(im, lb, 0, 4, 4, DS_FIT_PAD, &err);
    assert_non_null(ds);
    assert_int_equal(ds_dim(ds), 16);
    assert_int_equal(ds_labels(ds)[0], 1);
    /* 1 row more: after; 2 columns more: one each side. */
    const float want[16] = {0, 10, 20, 0, 0, 30, 40, 0, 0, 50, 60, 0, 0, 0, 0, 0};
    assert_memory_equal(ds_x(ds), want, sizeof want);
    float lo, hi;
    assert_int_equal(ds_raw_range(ds, &lo, &hi), 0);
    assert_true(lo == 0 && hi == 255);
    int chw[3];
    assert_int_equal(ds_image_shape(ds, chw), 1); /* the fitted size, as conv layers see it */
    assert_true(chw[0] == 1 && chw[1] == 4 && chw[2] == 4);
    ds_destroy(ds);
    ds = ds_load_idx_fit(im, lb, 0, 4, 4, DS_FIT_RESIZE, &err);
    assert_non_null(ds);
    assert_int_equal(ds_image_shape(ds, chw), 1);
    assert_true(chw[0] == 1 && chw[1] == 4 && chw[2] == 4);
    assert_float_equal(ds_x(ds)[16 + 0], 1.0, 1e-6);  /* image 1's corner */
    assert_float_equal(ds_x(ds)[16 + 15], 6.0, 1e-6); /* and the opposite one */
    ds_destroy(ds);
    ds = ds_load_idx_fit(im, lb, 0, 0, 0, DS_FIT_PAD, &err); /* as in the file */
    assert_non_null(ds);
    assert_int_equal(ds_dim(ds), 6);
    assert_int_equal(ds_image_shape(ds, chw), 1);
    assert_true(chw[0] == 1 && chw[1] == 3 && chw[2] == 2); /* 3 rows of 2 */
    ds_destroy(ds);
    ds = ds_load_idx_fit(im, lb, 0, 5, 2, DS_FIT_RESIZE, &err); /* not square */
    assert_non_null(ds);
    assert_int_equal(ds_image_shape(ds, chw), 1);
    assert_true(chw[0] == 1 && chw[1] == 5 && chw[2] == 2 && ds_dim(ds) == 10);
    ds_destroy(ds);
    assert_null(ds_load_idx_fit(im, lb, 0, 4, 0, DS_FIT_PAD, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
    unlink(im);
    unlink(lb);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_stratified), cmocka_unit_test(test_sample_rounding),
        cmocka_unit_test(test_sample_regression), cmocka_unit_test(test_widen_classes),
        cmocka_unit_test(test_gzip_text),         cmocka_unit_test(test_delimiter_hint),
        cmocka_unit_test(test_image_fit),         cmocka_unit_test(test_idx_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
