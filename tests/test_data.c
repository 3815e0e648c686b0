/* tests/test_data.c -- dataset loaders on fixture files written here into a temporary
 * directory (IDX plain and gzip, CSV, libsvm), their error messages, and preprocessing:
 * scalers, subset, split, partition, class filtering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "data/data.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* ---- Fixtures ------------------------------------------------------------------------ */

typedef struct {
    char dir[64];
    char path[64][512]; /* rotating: a returned path stays valid for 63 more puts */
    int next;
} fixture;

static int group_setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    strcpy(fx->dir, "/tmp/pst_test_data_XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *fx = *state;
    DIR *d = opendir(fx->dir);
    if (d) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Writes len bytes to dir/name, gzip-compressed when gz; returns the path. */
static const char *put(void **state, const char *name, const void *buf, size_t len, int gz)
{
    fixture *fx = *state;
    char *path = fx->path[fx->next++ % 64], tmp[sizeof fx->path[0]];
    snprintf(tmp, sizeof tmp, "%s/%s", fx->dir, name);
    memcpy(path, tmp, sizeof tmp);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, buf, (unsigned)len), (int)len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
    }
    return path;
}

static const char *put_text(void **state, const char *name, const char *text)
{
    return put(state, name, text, strlen(text), 0);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX images file: header for n x rows x cols, then npix bytes of pix (npix may be less
 * than the header promises, to make truncated files). Returns its length; buf >= 16 + npix. */
static size_t idx_images(unsigned char *buf, uint32_t magic, uint32_t n, uint32_t rows,
                         uint32_t cols, const unsigned char *pix, size_t npix)
{
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    memcpy(buf + 16, pix, npix);
    return 16 + npix;
}

static size_t idx_labels(unsigned char *buf, uint32_t n, const unsigned char *lab, size_t nlab)
{
    put_be32(buf, 0x00000801u);
    put_be32(buf + 4, n);
    memcpy(buf + 8, lab, nlab);
    return 8 + nlab;
}

/* Asserts a loader failed with code and a message containing want. */
static void expect_fail(ds_dataset *ds, const pst_err *err, int code, const char *want)
{
    if (ds) {
        ds_destroy(ds);
        fail_msg("loader succeeded; expected '%s'", want);
    }
    if (err->code != code || !strstr(err->msg, want))
        fail_msg("got code %d '%s'; expected code %d with '%s'", err->code, err->msg, code, want);
}

/* ---- IDX ----------------------------------------------------------------------------- */

static const unsigned char k_pix[12] = {0, 20, 40, 60, 80, 100, 120, 140, 160, 180, 200, 255};
static const unsigned char k_lab[3] = {2, 0, 1};

static void check_idx_set(ds_dataset *ds, int nclasses)
{
    assert_non_null(ds);
    assert_int_equal(ds_count(ds), 3);
    assert_int_equal(ds_dim(ds), 4);
    assert_int_equal(ds_task_of(ds), DS_TASK_CLASSIFY);
    assert_int_equal(ds_nclasses(ds), nclasses);
    assert_int_equal(ds_target_dim(ds), 0);
    assert_null(ds_targets(ds));
    const float *x = ds_x_const(ds);
    for (int i = 0; i < 12; i++)
        assert_true(x[i] == (float)k_pix[i]);
    const int32_t *y = ds_labels_const(ds);
    for (int i = 0; i < 3; i++)
        assert_int_equal(y[i], k_lab[i]);
    float lo = -1, hi = -1;
    assert_int_equal(ds_raw_range(ds, &lo, &hi), 0);
    assert_true(lo == 0.0f && hi == 255.0f);
    assert_null(ds_class_name(ds, 0));
}

static void test_idx_plain(void **state)
{
    unsigned char ib[64], lb[16];
    size_t il = idx_images(ib, 0x00000803u, 3, 2, 2, k_pix, 12);
    size_t ll = idx_labels(lb, 3, k_lab, 3);
    const char *ip = put(state, "plain-images.idx", ib, il, 0);
    const char *lp = put(state, "plain-labels.idx", lb, ll, 0);
    pst_err err = {0};
    ds_dataset *ds = ds_load_idx(ip, lp, 0, &err); /* 0: max label + 1 = 3 */
    check_idx_set(ds, 3);
    ds_destroy(ds);
    ds = ds_load_idx(ip, lp, 10, &err);
    check_idx_set(ds, 10);
    ds_destroy(ds);
}

static void test_idx_gzip(void **state)
{
    unsigned char ib[64], lb[16];
    size_t il = idx_images(ib, 0x00000803u, 3, 2, 2, k_pix, 12);
    size_t ll = idx_labels(lb, 3, k_lab, 3);
    const char *ip = put(state, "gz-images.gz", ib, il, 1);
    const char *lp = put(state, "gz-labels.gz", lb, ll, 1);
    const char *lplain = put(state, "gz-labels-plain.idx", lb, ll, 0);
    pst_err err = {0};
    ds_dataset *ds = ds_load_idx(ip, lp, 0, &err);
    check_idx_set(ds, 3);
    ds_destroy(ds);
    ds = ds_load_idx(ip, lplain, 0, &err); /* either file may be compressed */
    check_idx_set(ds, 3);
    ds_destroy(ds);
}

static void test_idx_errors(void **state)
{
    unsigned char ib[64], lb[16];
    pst_err err = {0};
    size_t ll = idx_labels(lb, 3, k_lab, 3);
    const char *lp = put(state, "e-labels.idx", lb, ll, 0);
    size_t il = idx_images(ib, 0x00000803u, 3, 2, 2, k_pix, 12);
    const char *ip = put(state, "e-images.idx", ib, il, 0);

    /* Wrong magic: the labels file where the images belong. */
    expect_fail(ds_load_idx(lp, lp, 0, &err), &err, PST_ERR_DATA,
                "e-labels.idx: bad magic 0x00000801, expected 0x00000803");
    expect_fail(ds_load_idx(ip, ip, 0, &err), &err, PST_ERR_DATA,
                "e-images.idx: bad magic 0x00000803, expected 0x00000801");

    /* The header promises 12 bytes of pixels, 5 follow. */
    il = idx_images(ib, 0x00000803u, 3, 2, 2, k_pix, 5);
    const char *tp = put(state, "e-trunc.idx", ib, il, 0);
    expect_fail(ds_load_idx(tp, lp, 0, &err), &err, PST_ERR_DATA,
                "e-trunc.idx: truncated: expected 12 bytes of pixels, got 5");
    tp = put(state, "e-trunc.gz", ib, il, 1);
    expect_fail(ds_load_idx(tp, lp, 0, &err), &err, PST_ERR_DATA,
                "e-trunc.gz: truncated: expected 12 bytes of pixels, got 5");
    ll = idx_labels(lb, 3, k_lab, 2);
    tp = put(state, "e-trunc-labels.idx", lb, ll, 0);
    expect_fail(ds_load_idx(ip, tp, 0, &err), &err, PST_ERR_DATA,
                "e-trunc-labels.idx: truncated: expected 3 bytes of labels, got 2");
    tp = put(state, "e-short-header.idx", ib, 9, 0);
    expect_fail(ds_load_idx(tp, lp, 0, &err), &err, PST_ERR_DATA,
                "e-short-header.idx: truncated header: 9 of 16 bytes");

    /* A gzip stream cut in half reads as a truncated file, not a crash. */
    {
        unsigned char big[16 + 4096], *pix = big + 16;
        for (int i = 0; i < 4096; i++)
            pix[i] = (unsigned char)(i * 7919 % 251);
        size_t bl = idx_images(big, 0x00000803u, 1, 64, 64, pix, 4096);
        const char *full = put(state, "e-full.gz", big, bl, 1);
        FILE *f = fopen(full, "rb");
        assert_non_null(f);
        unsigned char comp[8192];
        size_t cl = fread(comp, 1, sizeof comp, f);
        fclose(f);
        assert_true(cl > 64);
        unsigned char one = 3;
        size_t l1 = idx_labels(lb, 1, &one, 1);
        const char *l1p = put(state, "e-one-label.idx", lb, l1, 0);
        const char *cut = put(state, "e-cut.gz", comp, cl / 2, 0);
        expect_fail(ds_load_idx(cut, l1p, 0, &err), &err, PST_ERR_DATA,
                    "e-cut.gz: truncated: expected 4096 bytes of pixels, got");
        ds_dataset *ok = ds_load_idx(full, l1p, 0, &err);
        assert_non_null(ok);
        assert_true(ds_x(ok)[4095] == (float)pix[4095]);
        ds_destroy(ok);
    }

    /* Found by fuzz/fuzz_idx.c: a few header bytes announcing billions of samples made the
     * loader allocate gigabytes before it read far enough to see the file end. The sizes
     * are now checked against what the file can hold first (plain: its size; gzip: 1032
     * times it, deflate's largest ratio). */
    {
        unsigned char hb[16 + 3], lhb[8 + 3];
        size_t hl = idx_images(hb, 0x00000803u, 0xfffffff0u, 1, 1, k_pix, 3);
        size_t lhl = idx_labels(lhb, 0xfffffff0u, k_lab, 3);
        const char *hi = put(state, "e-huge-images.idx", hb, hl, 0);
        const char *hlp = put(state, "e-huge-labels.idx", lhb, lhl, 0);
        const char *hlz = put(state, "e-huge-labels.gz", lhb, lhl, 1);
        expect_fail(ds_load_idx(hi, hlp, 0, &err), &err, PST_ERR_DATA,
                    "e-huge-labels.idx: truncated: expected 4294967280 bytes of labels, got 3");
        expect_fail(ds_load_idx(hi, hlz, 0, &err), &err, PST_ERR_DATA,
                    "e-huge-labels.gz: truncated: expected 4294967280 bytes of labels, the file "
                    "holds at most");
        /* Labels that are there, pixels that cannot be. */
        ll = idx_labels(lb, 3, k_lab, 3);
        tp = put(state, "e-3-labels.idx", lb, ll, 0);
        hl = idx_images(hb, 0x00000803u, 3, 46340, 46340, k_pix, 3);
        hi = put(state, "e-huge-images.gz", hb, hl, 1);
        expect_fail(ds_load_idx(hi, tp, 0, &err), &err, PST_ERR_DATA,
                    "e-huge-images.gz: truncated: expected 6442186800 bytes of pixels, the file "
                    "holds at most");
    }

    /* Counts differ. */
    ll = idx_labels(lb, 2, k_lab, 2);
    tp = put(state, "e-two-labels.idx", lb, ll, 0);
    expect_fail(ds_load_idx(ip, tp, 0, &err), &err, PST_ERR_DATA,
                "e-two-labels.idx: 2 labels, but");

    /* Label out of range, named by record (0-based sample index). */
    unsigned char bad[3] = {2, 12, 1};
    ll = idx_labels(lb, 3, bad, 3);
    tp = put(state, "e-range.idx", lb, ll, 0);
    expect_fail(ds_load_idx(ip, tp, 10, &err), &err, PST_ERR_DATA,
                "e-range.idx: record 1: label 12 out of range [0, 10)");

    /* Empty file, zero dimension, missing file, bad arguments. */
    tp = put(state, "e-empty.idx", "", 0, 0);
    expect_fail(ds_load_idx(tp, lp, 0, &err), &err, PST_ERR_DATA, "e-empty.idx: empty file");
    tp = put(state, "e-empty.gz", "", 0, 1);
    expect_fail(ds_load_idx(tp, lp, 0, &err), &err, PST_ERR_DATA, "e-empty.gz: empty file");
    il = idx_images(ib, 0x00000803u, 3, 0, 2, k_pix, 0);
    tp = put(state, "e-zero.idx", ib, il, 0);
    expect_fail(ds_load_idx(tp, lp, 0, &err), &err, PST_ERR_DATA,
                "e-zero.idx: dimension 1 of the header is 0");
    expect_fail(ds_load_idx("/nonexistent/x.idx", lp, 0, &err), &err, PST_ERR_IO,
                "/nonexistent/x.idx: No such file");
    expect_fail(ds_load_idx(ip, lp, -1, &err), &err, PST_ERR_ARG, "nclasses");
}

/* ---- CSV ------------------------------------------------------------------------------ */

static ds_csv_options csv_opts(int header, int label_index, ds_task task)
{
    ds_csv_options o = {0};
    o.header = header;
    o.label_index = label_index;
    o.task = task;
    return o;
}

static void test_csv_header_string_labels(void **state)
{
    const char *p = put_text(state, "iris.csv",
                             "sepal_length,sepal_width,species\n"
                             "5.1,3.5,setosa\n"
                             "4.9, 3.0 ,versicolor\n"
                             "\"6.25\",2.5,\"setosa\"\n"
                             "7.0,3.2,virginica\n");
    pst_err err = {0};
    for (int header = -1; header <= 1; header += 2) { /* guessed and declared */
        ds_csv_options o = csv_opts(header, -1, DS_TASK_CLASSIFY);
        ds_dataset *ds = ds_load_csv(p, &o, &err);
        assert_non_null(ds);
        assert_int_equal(ds_count(ds), 4);
        assert_int_equal(ds_dim(ds), 2);
        assert_int_equal(ds_nclasses(ds), 3);
        const int32_t *y = ds_labels_const(ds);
        assert_int_equal(y[0], 0);
        assert_int_equal(y[1], 1);
        assert_int_equal(y[2], 0);
        assert_int_equal(y[3], 2);
        assert_string_equal(ds_class_name(ds, 0), "setosa");
        assert_string_equal(ds_class_name(ds, 1), "versicolor");
        assert_string_equal(ds_class_name(ds, 2), "virginica");
        assert_null(ds_class_name(ds, 3));
        const float *x = ds_x_const(ds);
        assert_true(x[0] == 5.1f && x[1] == 3.5f && x[2] == 4.9f && x[3] == 3.0f);
        assert_true(x[4] == 6.25f && x[5] == 2.5f && x[6] == 7.0f && x[7] == 3.2f);
        assert_int_equal(ds_raw_range(ds, NULL, NULL), -1);
        ds_destroy(ds);
    }
    /* nclasses larger than the names seen: the extra classes have no name. */
    ds_csv_options o = csv_opts(1, 2, DS_TASK_CLASSIFY);
    o.nclasses = 5;
    ds_dataset *ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_nclasses(ds), 5);
    assert_string_equal(ds_class_name(ds, 2), "virginica");
    assert_null(ds_class_name(ds, 3));
    ds_destroy(ds);
}

static void test_csv_no_header(void **state)
{
    /* ';' delimiter, label first, integer ids, no trailing newline. */
    const char *p = put_text(state, "nohdr.csv", "1;0.5;2\n0;1.5;-3\n\n2; 2.5;4");
    pst_err err = {0};
    for (int header = -1; header <= 0; header++) {
        ds_csv_options o = csv_opts(header, 0, DS_TASK_CLASSIFY);
        o.delimiter = ';';
        ds_dataset *ds = ds_load_csv(p, &o, &err);
        assert_non_null(ds);
        assert_int_equal(ds_count(ds), 3);
        assert_int_equal(ds_dim(ds), 2);
        assert_int_equal(ds_nclasses(ds), 3);
        const int32_t *y = ds_labels_const(ds);
        assert_int_equal(y[0], 1);
        assert_int_equal(y[1], 0);
        assert_int_equal(y[2], 2);
        const float *x = ds_x_const(ds);
        assert_true(x[0] == 0.5f && x[1] == 2.0f && x[2] == 1.5f && x[3] == -3.0f);
        assert_true(x[4] == 2.5f && x[5] == 4.0f);
        assert_null(ds_class_name(ds, 0));
        ds_destroy(ds);
    }
    /* The same file with the label taken from the last column as regression target. */
    ds_csv_options o = csv_opts(0, -1, DS_TASK_REGRESS);
    o.delimiter = ';';
    ds_dataset *ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_task_of(ds), DS_TASK_REGRESS);
    assert_int_equal(ds_nclasses(ds), 0);
    assert_int_equal(ds_target_dim(ds), 1);
    assert_null(ds_labels(ds));
    const float *t = ds_targets_const(ds);
    assert_true(t[0] == 2.0f && t[1] == -3.0f && t[2] == 4.0f);
    assert_true(ds_x(ds)[0] == 1.0f && ds_x(ds)[1] == 0.5f);
    ds_destroy(ds);
}

static void test_csv_label_by_name_and_index(void **state)
{
    const char *p = put_text(state, "named.csv", "a,y,b\n1,0.5,2\n3,-1.25,4\n");
    pst_err err = {0};
    ds_csv_options o = csv_opts(-1, 0, DS_TASK_REGRESS);
    o.label_name = "y";
    ds_dataset *ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_dim(ds), 2);
    const float *x = ds_x_const(ds), *t = ds_targets_const(ds);
    assert_true(x[0] == 1.0f && x[1] == 2.0f && x[2] == 3.0f && x[3] == 4.0f);
    assert_true(t[0] == 0.5f && t[1] == -1.25f);
    ds_destroy(ds);

    o = csv_opts(1, 1, DS_TASK_REGRESS); /* the same column by index */
    ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_true(ds_targets(ds)[1] == -1.25f && ds_x(ds)[3] == 4.0f);
    ds_destroy(ds);

    /* Guessing in regression: every column must be numeric, so "y" marks a header. */
    o = csv_opts(-1, 1, DS_TASK_REGRESS);
    ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_count(ds), 2);
    ds_destroy(ds);
}

static void test_csv_crlf_and_long_lines(void **state)
{
    const char *p =
        put_text(state, "crlf.csv", "\xEF\xBB\xBFx1,x2,label\r\n1,2,0\r\n\r\n  \r\n3,4,1\r\n");
    pst_err err = {0};
    ds_csv_options o = csv_opts(-1, -1, DS_TASK_CLASSIFY);
    ds_dataset *ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_count(ds), 2);
    assert_int_equal(ds_labels(ds)[1], 1);
    assert_true(ds_x(ds)[3] == 4.0f);
    ds_destroy(ds);

    /* 3000 columns: lines far longer than any fixed buffer. */
    enum { COLS = 3000, ROWS = 3 };
    size_t cap = (size_t)COLS * 8 * ROWS + 16, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int r = 0; r < ROWS; r++) {
        for (int c = 0; c < COLS - 1; c++)
            len += (size_t)snprintf(text + len, cap - len, "%d.25,", (c + r) % 100);
        len += (size_t)snprintf(text + len, cap - len, "%d\r\n", r);
    }
    p = put(state, "wide.csv", text, len, 0);
    free(text);
    o = csv_opts(0, -1, DS_TASK_CLASSIFY);
    ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_count(ds), ROWS);
    assert_int_equal(ds_dim(ds), COLS - 1);
    assert_true(ds_x(ds)[(size_t)2 * (COLS - 1) + 2998] == (float)((2998 + 2) % 100) + 0.25f);
    assert_int_equal(ds_labels(ds)[2], 2);
    ds_destroy(ds);
}

static void test_csv_errors(void **state)
{
    static const struct {
        const char *name, *text;
        int header, label_index, nclasses;
        const char *label_name;
        ds_task task;
        int code;
        const char *want;
    } cases[] = {
        {"c-ragged.csv", "a,b,c\n1,2,0\n1,2\n", 1, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-ragged.csv:3: 2 fields, expected 3"},
        {"c-nan-text.csv", "sepal_length,petal_width,species\n1,2,x\n1,abc,x\n", 1, -1, 0, NULL,
         DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-nan-text.csv:3: column 2 ('petal_width'): 'abc' is not a number"},
        {"c-nohdr-text.csv", "1,2,0\n1,2x,0\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-nohdr-text.csv:2: column 2: '2x' is not a number"},
        {"c-range.csv", "1,0\n2,5\n", 0, -1, 2, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-range.csv:2: label 5 out of range [0, 2)"},
        {"c-negative.csv", "1,0\n2,-1\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-negative.csv:2: label -1 out of range"},
        {"c-frac-label.csv", "1,0\n2,1.5\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-frac-label.csv:2: column 2: label '1.5' is not an integer class id"},
        {"c-mixed-label.csv", "1,0\n2,cat\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-mixed-label.csv:2: column 2: label 'cat' is not an integer class id"},
        {"c-too-many.csv", "1,a\n2,b\n3,c\n", 0, -1, 2, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-too-many.csv:3: label 'c' would be class 2, but nclasses is 2"},
        {"c-noname.csv", "a,b,c\n1,2,3\n", 1, 0, 0, "species", DS_TASK_CLASSIFY, PST_ERR_ARG,
         "c-noname.csv:1: no column named 'species' in the header"},
        {"c-index.csv", "1,2,3\n", 0, 3, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_ARG,
         "c-index.csv:1: label_index 3 out of range for 3 columns"},
        {"c-empty.csv", "", -1, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-empty.csv: empty file"},
        {"c-blank.csv", "\n \r\n\n", -1, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-blank.csv: empty file"},
        {"c-hdronly.csv", "a,b,label\n", 1, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-hdronly.csv: no data rows"},
        {"c-nan.csv", "1,2,0\n1,nan,0\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_NUMERIC,
         "c-nan.csv:2: column 2: 'nan' is not a finite number"},
        {"c-inf.csv", "-inf,2,0\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_NUMERIC,
         "c-inf.csv:1: column 1: '-inf' is not a finite number"},
        {"c-overflow.csv", "1e39,2,0\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_NUMERIC,
         "c-overflow.csv:1: column 1: '1e39' is not a finite number"},
        {"c-target-nan.csv", "1,2,NaN\n", 0, -1, 0, NULL, DS_TASK_REGRESS, PST_ERR_NUMERIC,
         "c-target-nan.csv:1: column 3: 'NaN' is not a finite number"},
        {"c-emptyfield.csv", "1,,0\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-emptyfield.csv:1: column 2: empty field"},
        {"c-emptylabel.csv", "1,2,\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-emptylabel.csv:1: column 3: empty label"},
        {"c-quote.csv", "1,\"2,0\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-quote.csv:1: unterminated quoted field"},
        {"c-onecol.csv", "1\n2\n", 0, -1, 0, NULL, DS_TASK_CLASSIFY, PST_ERR_DATA,
         "c-onecol.csv:1: 1 field"},
    };
    pst_err err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = put_text(state, cases[i].name, cases[i].text);
        ds_csv_options o = csv_opts(cases[i].header, cases[i].label_index, cases[i].task);
        o.nclasses = cases[i].nclasses;
        o.label_name = cases[i].label_name;
        expect_fail(ds_load_csv(p, &o, &err), &err, cases[i].code, cases[i].want);
    }
    ds_csv_options o = csv_opts(0, -1, DS_TASK_CLASSIFY);
    expect_fail(ds_load_csv("/nonexistent/d.csv", &o, &err), &err, PST_ERR_IO,
                "/nonexistent/d.csv: No such file");
    o.label_name = "y"; /* a name needs a header */
    expect_fail(ds_load_csv("/nonexistent/d.csv", &o, &err), &err, PST_ERR_ARG, "needs a header");
    /* A NUL byte (a binary file read as CSV) is an error, not a silently shortened line. */
    const char *p = put(state, "c-nul.csv", "1,2,0\n1,\0,0\n", 12, 0);
    o = csv_opts(0, -1, DS_TASK_CLASSIFY);
    expect_fail(ds_load_csv(p, &o, &err), &err, PST_ERR_DATA, "c-nul.csv:2: NUL byte");
}

/* ---- libsvm ----------------------------------------------------------------------------- */

static void test_libsvm_valid(void **state)
{
    const char *p = put_text(state, "a.svm",
                             "# a comment line\n"
                             "+1 1:0.5 3:2 # trailing comment\n"
                             "-1\t2:-1.5\r\n"
                             "\n"
                             "+1\n"
                             "-1 qid:3 1:1 2:2 3:3");
    pst_err err = {0};
    ds_dataset *ds = ds_load_libsvm(p, 0, DS_TASK_CLASSIFY, 0, &err);
    assert_non_null(ds);
    assert_int_equal(ds_count(ds), 4);
    assert_int_equal(ds_dim(ds), 3);
    assert_int_equal(ds_nclasses(ds), 2);
    static const float want[12] = {0.5f, 0, 2, 0, -1.5f, 0, 0, 0, 0, 1, 2, 3};
    for (int i = 0; i < 12; i++)
        assert_true(ds_x(ds)[i] == want[i]);
    static const int32_t wy[4] = {1, 0, 1, 0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(ds_labels(ds)[i], wy[i]);
    ds_destroy(ds);

    ds = ds_load_libsvm(p, 5, DS_TASK_CLASSIFY, 0, &err); /* dim pads with zero columns */
    assert_non_null(ds);
    assert_int_equal(ds_dim(ds), 5);
    assert_true(ds_x(ds)[2] == 2.0f && ds_x(ds)[3] == 0.0f && ds_x(ds)[17] == 3.0f);
    ds_destroy(ds);

    p = put_text(state, "multi.svm", "0 1:1\n2 2:1\n1 3:1\n");
    ds = ds_load_libsvm(p, 0, DS_TASK_CLASSIFY, 0, &err);
    assert_non_null(ds);
    assert_int_equal(ds_nclasses(ds), 3);
    assert_int_equal(ds_labels(ds)[1], 2);
    ds_destroy(ds);
    ds = ds_load_libsvm(p, 0, DS_TASK_CLASSIFY, 4, &err);
    assert_non_null(ds);
    assert_int_equal(ds_nclasses(ds), 4);
    ds_destroy(ds);

    p = put_text(state, "reg.svm", "0.5 1:1\n-2.25 2:3\n");
    ds = ds_load_libsvm(p, 0, DS_TASK_REGRESS, 0, &err);
    assert_non_null(ds);
    assert_int_equal(ds_target_dim(ds), 1);
    assert_null(ds_labels(ds));
    assert_true(ds_targets(ds)[0] == 0.5f && ds_targets(ds)[1] == -2.25f);
    assert_true(ds_x(ds)[3] == 3.0f);
    ds_destroy(ds);
}

static void test_libsvm_errors(void **state)
{
    static const struct {
        const char *name, *text;
        int dim, nclasses;
        int code;
        const char *want;
    } cases[] = {
        {"s-zero.svm", "1 1:1\n0 0:1\n", 0, 0, PST_ERR_DATA,
         "s-zero.svm:2: feature index 0 (indices start at 1)"},
        {"s-order.svm", "1 3:1 2:1\n", 0, 0, PST_ERR_DATA,
         "s-order.svm:1: feature index 2 after 3 (indices must increase)"},
        {"s-dup.svm", "1 3:1 3:1\n", 0, 0, PST_ERR_DATA, "s-dup.svm:1: feature index 3 after 3"},
        {"s-index.svm", "1 a:1\n", 0, 0, PST_ERR_DATA, "s-index.svm:1: bad feature index 'a'"},
        {"s-value.svm", "1 1:x\n", 0, 0, PST_ERR_DATA,
         "s-value.svm:1: feature 1: 'x' is not a number"},
        {"s-value-nan.svm", "1 2:nan\n", 0, 0, PST_ERR_NUMERIC,
         "s-value-nan.svm:1: feature 2: 'nan' is not a finite number"},
        {"s-colon.svm", "1 5\n", 0, 0, PST_ERR_DATA, "s-colon.svm:1: '5' is not index:value"},
        {"s-dim.svm", "1 1:1\n\n0 3:1\n", 2, 0, PST_ERR_DATA,
         "s-dim.svm:3: feature index 3 exceeds dim 2"},
        {"s-label.svm", "x 1:1\n", 0, 0, PST_ERR_DATA,
         "s-label.svm:1: label 'x' is not an integer"},
        {"s-label-frac.svm", "1.5 1:1\n", 0, 0, PST_ERR_DATA,
         "s-label-frac.svm:1: label '1.5' is not an integer"},
        {"s-range.svm", "0 1:1\n2 1:1\n", 0, 2, PST_ERR_DATA,
         "s-range.svm:2: label 2 out of range [0, 2)"},
        {"s-neg.svm", "0 1:1\n-2 1:1\n", 0, 0, PST_ERR_DATA, "s-neg.svm:2: label -2 out of range"},
        {"s-mixed.svm", "1 1:1\n-1 1:1\n0 1:1\n", 0, 0, PST_ERR_DATA,
         "s-mixed.svm:2: label -1 out of range (allowed only with +1 labels, but line 3 has "
         "label 0)"},
        {"s-empty.svm", "# nothing\n\n", 0, 0, PST_ERR_DATA, "s-empty.svm: no data rows"},
        {"s-nofeat.svm", "1\n0\n", 0, 0, PST_ERR_DATA, "s-nofeat.svm: no features"},
    };
    pst_err err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = put_text(state, cases[i].name, cases[i].text);
        expect_fail(ds_load_libsvm(p, cases[i].dim, DS_TASK_CLASSIFY, cases[i].nclasses, &err),
                    &err, cases[i].code, cases[i].want);
    }
    const char *p = put_text(state, "s-reg.svm", "abc 1:1\n");
    expect_fail(ds_load_libsvm(p, 0, DS_TASK_REGRESS, 0, &err), &err, PST_ERR_DATA,
                "s-reg.svm:1: label 'abc' is not a number");
    expect_fail(ds_load_libsvm("/nonexistent/s.svm", 0, DS_TASK_CLASSIFY, 0, &err), &err,
                PST_ERR_IO, "/nonexistent/s.svm: No such file");
}

/* ---- Scalers ---------------------------------------------------------------------------- */

/* A classification set from a row-major table. */
static ds_dataset *make_set(int64_t n, int d, const float *x)
{
    pst_err err = {0};
    ds_dataset *ds = ds_create(n, d, DS_TASK_CLASSIFY, 2, 0, &err);
    assert_non_null(ds);
    memcpy(ds_x(ds), x, (size_t)n * (size_t)d * sizeof(float));
    return ds;
}

static void test_scaler_minmax(void **state)
{
    (void)state;
    /* Features: ranges [0, 4], constant -1, [10, 18]. */
    static const float tr[9] = {0, -1, 10, 2, -1, 14, 4, -1, 18};
    static const float te[6] = {2, 5, 22, -4, -1, 10};
    ds_dataset *train = make_set(3, 3, tr), *test = make_set(2, 3, te);
    pst_err err = {0};
    ds_scaler s;
    assert_int_equal(ds_scaler_fit(&s, DS_SCALE_MINMAX, train, &err), PST_OK);
    assert_int_equal(s.d, 3);
    assert_int_equal(s.kind, DS_SCALE_MINMAX);
    assert_true(s.shift[0] == 0 && s.shift[1] == -1 && s.shift[2] == 10);
    assert_true(s.mul[0] == 0.25f && s.mul[1] == 0.0f && s.mul[2] == 0.125f);
    assert_int_equal(ds_scaler_apply(&s, train, &err), PST_OK);
    assert_int_equal(ds_scaler_apply(&s, test, &err), PST_OK);
    static const float wtr[9] = {0, 0, 0, 0.5f, 0, 0.5f, 1, 0, 1};
    static const float wte[6] = {0.5f, 0, 1.5f, -1, 0, 0}; /* unseen values are not clipped */
    for (int i = 0; i < 9; i++)
        assert_true(ds_x(train)[i] == wtr[i]);
    for (int i = 0; i < 6; i++)
        assert_true(ds_x(test)[i] == wte[i]);

    /* Dimension mismatch and an unfitted scaler. */
    ds_dataset *other = make_set(1, 2, te);
    assert_int_equal(ds_scaler_apply(&s, other, &err), PST_ERR_ARG);
    assert_non_null(strstr(err.msg, "scaler fitted on 3 features, dataset has 2"));
    ds_scaler_fini(&s);
    assert_null(s.shift);
    assert_int_equal(ds_scaler_apply(&s, test, &err), PST_ERR_STATE);
    ds_scaler_fini(&s); /* twice is harmless */

    /* NONE is the identity. */
    assert_int_equal(ds_scaler_fit(&s, DS_SCALE_NONE, other, &err), PST_OK);
    assert_int_equal(ds_scaler_apply(&s, other, &err), PST_OK);
    assert_true(ds_x(other)[0] == 2.0f && ds_x(other)[1] == 5.0f);
    ds_scaler_fini(&s);

    /* Non-finite inputs and an empty set cannot be fitted. */
    ds_x(other)[1] = NAN;
    assert_int_equal(ds_scaler_fit(&s, DS_SCALE_MINMAX, other, &err), PST_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "feature 1"));
    assert_null(s.shift);
    assert_int_equal(ds_scaler_fit(&s, DS_SCALE_STANDARDIZE, other, &err), PST_ERR_NUMERIC);
    ds_dataset *empty = ds_create(0, 3, DS_TASK_CLASSIFY, 2, 0, &err);
    assert_non_null(empty);
    assert_int_equal(ds_scaler_fit(&s, DS_SCALE_MINMAX, empty, &err), PST_ERR_ARG);
    ds_destroy(empty);
    ds_destroy(other);
    ds_destroy(train);
    ds_destroy(test);
}

static void test_scaler_minmax_raw_range(void **state)
{
    unsigned char ib[64], lb[16];
    size_t il = idx_images(ib, 0x00000803u, 3, 2, 2, k_pix, 12);
    size_t ll = idx_labels(lb, 3, k_lab, 3);
    const char *ip = put(state, "r-images.idx", ib, il, 0);
    const char *lp = put(state, "r-labels.idx", lb, ll, 0);
    pst_err err = {0};
    ds_dataset *ds = ds_load_idx(ip, lp, 0, &err);
    assert_non_null(ds);
    /* A split whose pixels span only [20, 60] still scales by the format's 0..255. */
    int64_t rows[1] = {0};
    ds_dataset *first = ds_subset(ds, rows, 1, &err);
    assert_non_null(first);
    ds_scaler s;
    assert_int_equal(ds_scaler_fit(&s, DS_SCALE_MINMAX, first, &err), PST_OK);
    for (int j = 0; j < 4; j++)
        assert_true(s.shift[j] == 0.0f && s.mul[j] == (float)(1.0 / 255.0));
    assert_int_equal(ds_scaler_apply(&s, ds, &err), PST_OK);
    assert_float_equal(ds_x(ds)[11], 1.0f, 1e-7f);
    assert_float_equal(ds_x(ds)[5], 100.0f / 255.0f, 1e-7f);
    /* Scaled features are no longer raw: the range is gone, a new fit uses the data. */
    assert_int_equal(ds_raw_range(ds, NULL, NULL), -1);
    assert_int_equal(ds_raw_range(first, NULL, NULL), 0);
    ds_scaler_fini(&s);
    ds_destroy(first);
    ds_destroy(ds);
}

static void test_scaler_standardize(void **state)
{
    (void)state;
    /* Feature 0: mean 2, std 1; feature 1: mean 2, std 2; feature 2: constant 7 (std 0). */
    static const float tr[12] = {1, 0, 7, 3, 0, 7, 1, 4, 7, 3, 4, 7};
    static const float te[3] = {4, 6, 8};
    ds_dataset *train = make_set(4, 3, tr), *test = make_set(1, 3, te);
    pst_err err = {0};
    ds_scaler s;
    assert_int_equal(ds_scaler_fit(&s, DS_SCALE_STANDARDIZE, train, &err), PST_OK);
    assert_true(s.shift[0] == 2 && s.shift[1] == 2 && s.shift[2] == 7);
    assert_true(s.mul[0] == 1 && s.mul[1] == 0.5f && s.mul[2] == 1);
    assert_int_equal(ds_scaler_apply(&s, test, &err), PST_OK);
    assert_true(ds_x(test)[0] == 2.0f && ds_x(test)[1] == 2.0f && ds_x(test)[2] == 1.0f);
    assert_int_equal(ds_scaler_apply(&s, train, &err), PST_OK);
    double sum = 0, sq = 0;
    for (int i = 0; i < 4; i++) {
        sum += ds_x(train)[i * 3 + 1];
        sq += (double)ds_x(train)[i * 3 + 1] * ds_x(train)[i * 3 + 1];
        assert_true(ds_x(train)[i * 3 + 2] == 0.0f);
    }
    assert_true(sum == 0.0 && sq == 4.0); /* mean 0, population variance 1 */
    ds_scaler_fini(&s);
    ds_destroy(train);
    ds_destroy(test);
}

/* ---- Row selection -------------------------------------------------------------------- */

/* n rows whose feature 0 is the row id and label is id % 3. */
static ds_dataset *make_ids(int64_t n)
{
    pst_err err = {0};
    ds_dataset *ds = ds_create(n, 2, DS_TASK_CLASSIFY, 3, 0, &err);
    assert_non_null(ds);
    for (int64_t i = 0; i < n; i++) {
        ds_x(ds)[i * 2] = (float)i;
        ds_x(ds)[i * 2 + 1] = (float)(-i);
        ds_labels(ds)[i] = (int32_t)(i % 3);
    }
    return ds;
}

/* Marks the row ids of part in seen, failing on a repeat; checks rows stay intact. */
static void mark_rows(const ds_dataset *part, unsigned char *seen, int64_t n)
{
    const float *x = ds_x_const(part);
    for (int64_t i = 0; i < ds_count(part); i++) {
        int64_t id = (int64_t)x[i * 2];
        assert_true(id >= 0 && id < n);
        assert_int_equal(seen[id], 0);
        seen[id] = 1;
        assert_true(x[i * 2 + 1] == -x[i * 2]);
        assert_int_equal(ds_labels_const(part)[i], id % 3);
    }
}

static void test_subset(void **state)
{
    (void)state;
    ds_dataset *ds = make_ids(5);
    pst_err err = {0};
    int64_t rows[3] = {4, 0, 4};
    ds_dataset *sub = ds_subset(ds, rows, 3, &err);
    assert_non_null(sub);
    assert_int_equal(ds_count(sub), 3);
    assert_int_equal(ds_nclasses(sub), 3);
    assert_true(ds_x(sub)[0] == 4 && ds_x(sub)[2] == 0 && ds_x(sub)[4] == 4);
    assert_int_equal(ds_labels(sub)[0], 1);
    ds_destroy(sub);
    rows[1] = 5;
    expect_fail(ds_subset(ds, rows, 3, &err), &err, PST_ERR_ARG, "rows[1] = 5 out of range [0, 5)");
    sub = ds_subset(ds, NULL, 0, &err);
    assert_non_null(sub);
    assert_int_equal(ds_count(sub), 0);
    ds_destroy(sub);
    ds_destroy(ds);
}

static void test_split(void **state)
{
    (void)state;
    enum { N = 103 };
    ds_dataset *ds = make_ids(N);
    pst_err err = {0};
    ds_dataset *tr, *va, *tr2, *va2;
    assert_int_equal(ds_split(ds, 0.2, 42, &tr, &va, &err), PST_OK);
    assert_int_equal(ds_count(va), 21); /* round(20.6) */
    assert_int_equal(ds_count(tr), N - 21);
    unsigned char seen[N] = {0};
    mark_rows(tr, seen, N);
    mark_rows(va, seen, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);

    /* Same seed, same split; another seed, another order. */
    assert_int_equal(ds_split(ds, 0.2, 42, &tr2, &va2, &err), PST_OK);
    assert_memory_equal(ds_x(va), ds_x(va2), 21 * 2 * sizeof(float));
    assert_memory_equal(ds_x(tr), ds_x(tr2), (N - 21) * 2 * sizeof(float));
    ds_destroy(tr2);
    ds_destroy(va2);
    assert_int_equal(ds_split(ds, 0.2, 43, &tr2, &va2, &err), PST_OK);
    assert_true(memcmp(ds_x(va), ds_x(va2), 21 * 2 * sizeof(float)) != 0);
    ds_destroy(tr2);
    ds_destroy(va2);

    /* The training rows are shuffled, not kept in file order. */
    int in_order = 1;
    for (int64_t i = 1; i < ds_count(tr); i++)
        in_order &= ds_x(tr)[i * 2] > ds_x(tr)[(i - 1) * 2];
    assert_false(in_order);
    ds_destroy(tr);
    ds_destroy(va);

    assert_int_equal(ds_split(ds, 0.0, 1, &tr, &va, &err), PST_OK);
    assert_int_equal(ds_count(va), 0);
    assert_int_equal(ds_count(tr), N);
    ds_destroy(tr);
    ds_destroy(va);
    assert_int_equal(ds_split(ds, 1.0, 1, &tr, &va, &err), PST_ERR_ARG);
    assert_null(tr);
    assert_null(va);
    assert_int_equal(ds_split(ds, -0.1, 1, &tr, &va, &err), PST_ERR_ARG);
    ds_destroy(ds);
}

static void test_partition(void **state)
{
    (void)state;
    enum { N = 103 };
    ds_dataset *ds = make_ids(N);
    pst_err err = {0};
    static const int nparts_cases[] = {1, 4, 7, 103, 150};
    for (size_t c = 0; c < sizeof nparts_cases / sizeof nparts_cases[0]; c++) {
        int np = nparts_cases[c];
        unsigned char seen[N] = {0};
        int64_t total = 0, lo = N, hi = 0;
        for (int k = 0; k < np; k++) {
            ds_dataset *p = ds_partition(ds, np, k, 7, &err);
            assert_non_null(p);
            mark_rows(p, seen, N);
            int64_t m = ds_count(p);
            assert_int_equal(m, ((int64_t)k + 1) * N / np - (int64_t)k * N / np);
            total += m;
            lo = m < lo ? m : lo;
            hi = m > hi ? m : hi;
            /* Deterministic for a seed: the same part twice is the same rows. */
            ds_dataset *again = ds_partition(ds, np, k, 7, &err);
            assert_non_null(again);
            assert_int_equal(ds_count(again), m);
            if (m > 0)
                assert_memory_equal(ds_x(again), ds_x(p), (size_t)m * 2 * sizeof(float));
            ds_destroy(again);
            ds_destroy(p);
        }
        assert_int_equal(total, N);
        assert_true(hi - lo <= 1);
        for (int i = 0; i < N; i++)
            assert_int_equal(seen[i], 1);
    }
    /* One permutation for every nparts: part 0 of 1 lists it, part k of 103 is its row k. */
    ds_dataset *all = ds_partition(ds, 1, 0, 7, &err);
    assert_non_null(all);
    for (int k = 0; k < N; k += 17) {
        ds_dataset *p = ds_partition(ds, N, k, 7, &err);
        assert_non_null(p);
        assert_true(ds_x(p)[0] == ds_x(all)[k * 2]);
        ds_destroy(p);
    }
    ds_destroy(all);
    expect_fail(ds_partition(ds, 4, 4, 7, &err), &err, PST_ERR_ARG, "part 4 of 4");
    expect_fail(ds_partition(ds, 0, 0, 7, &err), &err, PST_ERR_ARG, "part 0 of 0");
    ds_destroy(ds);
}

static void test_filter_classes(void **state)
{
    const char *p = put_text(state, "f.csv", "1,a\n2,b\n3,c\n4,a\n5,c\n6,b\n");
    pst_err err = {0};
    ds_csv_options o = csv_opts(0, -1, DS_TASK_CLASSIFY);
    ds_dataset *ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_nclasses(ds), 3);
    int keep[2] = {2, 0}; /* c -> 0, a -> 1 */
    ds_dataset *f = ds_filter_classes(ds, keep, 2, &err);
    assert_non_null(f);
    assert_int_equal(ds_count(f), 4);
    assert_int_equal(ds_nclasses(f), 2);
    static const float wx[4] = {1, 3, 4, 5};
    static const int32_t wy[4] = {1, 0, 1, 0};
    for (int i = 0; i < 4; i++) {
        assert_true(ds_x(f)[i] == wx[i]);
        assert_int_equal(ds_labels(f)[i], wy[i]);
    }
    assert_string_equal(ds_class_name(f, 0), "c");
    assert_string_equal(ds_class_name(f, 1), "a");
    assert_null(ds_class_name(f, 2));
    ds_destroy(f);

    int dup[2] = {1, 1}, out[1] = {3};
    expect_fail(ds_filter_classes(ds, dup, 2, &err), &err, PST_ERR_ARG, "class 1 listed twice");
    expect_fail(ds_filter_classes(ds, out, 1, &err), &err, PST_ERR_ARG,
                "keep[0] = 3 out of range [0, 3)");
    ds_destroy(ds);

    ds_dataset *reg = ds_create(2, 1, DS_TASK_REGRESS, 0, 1, &err);
    assert_non_null(reg);
    expect_fail(ds_filter_classes(reg, keep, 1, &err), &err, PST_ERR_ARG, "no class labels");
    ds_destroy(reg);
}

static void test_shuffle_inplace_matches_partition(void **state)
{
    (void)state;
    pst_err err = {0};
    ds_dataset *a = make_ids(1001), *b = make_ids(1001);
    ds_dataset *p = ds_partition(a, 1, 0, 77, &err);
    assert_non_null(p);
    assert_int_equal(ds_shuffle_inplace(b, 77, &err), PST_OK);
    assert_memory_equal(ds_x(p), ds_x(b), 1001 * sizeof(float) * (size_t)ds_dim(b));
    if (ds_labels(p))
        assert_memory_equal(ds_labels(p), ds_labels(b), 1001 * sizeof(int32_t));
    assert_memory_not_equal(ds_x(a), ds_x(b), 1001 * sizeof(float) * (size_t)ds_dim(b));
    ds_destroy(a);
    ds_destroy(b);
    ds_destroy(p);
}

static void test_csv_without_label_column(void **state)
{
    pst_err err = {0};
    const char *p = put_text(state, "nolabel.csv", "a,b,c\n1,2,3\n4,5,6\n");
    ds_csv_options o = csv_opts(-1, DS_CSV_NO_LABEL, DS_TASK_CLASSIFY);
    ds_dataset *ds = ds_load_csv(p, &o, &err);
    if (!ds)
        fail_msg("%s", err.msg);
    assert_int_equal(ds_count(ds), 2);
    assert_int_equal(ds_dim(ds), 3); /* every column is a feature */
    assert_float_equal(ds_x(ds)[5], 6.0f, 0.0f);
    assert_int_equal(ds_labels(ds)[0], 0);
    assert_int_equal(ds_labels(ds)[1], 0);
    ds_destroy(ds);
    o.label_index = -3;
    assert_null(ds_load_csv(p, &o, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
}

static void test_align_classes(void **state)
{
    pst_err err = {0};
    ds_csv_options o = csv_opts(1, -1, DS_TASK_CLASSIFY);
    const char *tr = put_text(state, "al-train.csv", "a,y\n1,cat\n2,dog\n3,bird\n");
    const char *te = put_text(state, "al-test.csv", "a,y\n4,bird\n5,cat\n6,bird\n");
    const char *bad = put_text(state, "al-bad.csv", "a,y\n4,fish\n");
    const char *num = put_text(state, "al-num.csv", "a,y\n4,0\n");
    ds_dataset *train = ds_load_csv(tr, &o, &err);
    ds_dataset *test = ds_load_csv(te, &o, &err);
    assert_non_null(train);
    assert_non_null(test);
    /* In its own file "bird" is class 0; the training file made it class 2. */
    assert_int_equal(ds_labels(test)[0], 0);
    assert_int_equal(ds_align_classes(test, train, "al-test.csv", &err), PST_OK);
    assert_int_equal(ds_nclasses(test), 3);
    assert_int_equal(ds_labels(test)[0], 2);
    assert_int_equal(ds_labels(test)[1], 0);
    assert_int_equal(ds_labels(test)[2], 2);
    assert_string_equal(ds_class_name(test, 1), "dog");

    ds_dataset *b = ds_load_csv(bad, &o, &err);
    assert_non_null(b);
    assert_int_equal(ds_align_classes(b, train, "al-bad.csv", &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "al-bad.csv"));
    assert_non_null(strstr(err.msg, "'fish'"));
    ds_dataset *n = ds_load_csv(num, &o, &err);
    assert_non_null(n);
    assert_int_equal(ds_align_classes(n, train, "al-num.csv", &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "numbers"));
    ds_destroy(train);
    ds_destroy(test);
    ds_destroy(b);
    ds_destroy(n);
}

static void test_create(void **state)
{
    (void)state;
    pst_err err = {0};
    ds_dataset *ds = ds_create(2, 3, DS_TASK_REGRESS, 0, 2, &err);
    assert_non_null(ds);
    assert_int_equal(ds_target_dim(ds), 2);
    assert_int_equal(ds_nclasses(ds), 0);
    for (int i = 0; i < 6; i++)
        assert_true(ds_x(ds)[i] == 0.0f);
    assert_true(ds_targets(ds)[3] == 0.0f);
    ds_destroy(ds);
    ds_destroy(NULL);
    expect_fail(ds_create(2, 0, DS_TASK_CLASSIFY, 2, 0, &err), &err, PST_ERR_ARG, "shape");
    expect_fail(ds_create(2, 3, DS_TASK_CLASSIFY, 0, 0, &err), &err, PST_ERR_ARG, "0 classes");
    expect_fail(ds_create(2, 3, DS_TASK_REGRESS, 0, 0, &err), &err, PST_ERR_ARG, "target dim 0");
    expect_fail(ds_create(INT64_MAX / 2, 1 << 20, DS_TASK_CLASSIFY, 2, 0, &err), &err,
                PST_ERR_NOMEM, "overflows");
}

/* ---- The real Fashion-MNIST test set, when the package is installed ---------------------- */

static void test_fashion_mnist_t10k(void **state)
{
    (void)state;
    const char *ip = FMNIST_DIR "/t10k-images-idx3-ubyte.gz";
    const char *lp = FMNIST_DIR "/t10k-labels-idx1-ubyte.gz";
    if (access(ip, R_OK) != 0 || access(lp, R_OK) != 0)
        skip();
    pst_err err = {0};
    ds_dataset *ds = ds_load_idx(ip, lp, 10, &err);
    if (!ds)
        fail_msg("%s", err.msg);
    assert_int_equal(ds_count(ds), 10000);
    assert_int_equal(ds_dim(ds), 784);
    assert_int_equal(ds_nclasses(ds), 10);
    /* The test set is balanced: 1000 images of each of the 10 classes. */
    int per_class[10] = {0};
    for (int i = 0; i < 10000; i++) {
        int32_t y = ds_labels(ds)[i];
        assert_true(y >= 0 && y < 10);
        per_class[y]++;
    }
    for (int c = 0; c < 10; c++)
        assert_int_equal(per_class[c], 1000);
    /* Raw bytes: all in [0, 255], both ends used, mean intensity about 0.29 * 255. */
    const float *x = ds_x_const(ds);
    float lo = 255, hi = 0;
    double sum = 0;
    for (size_t i = 0; i < (size_t)10000 * 784; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        assert_true(x[i] == floorf(x[i]));
        sum += x[i];
    }
    assert_true(lo == 0.0f && hi == 255.0f);
    double mean = sum / (10000.0 * 784.0);
    assert_true(mean > 0.25 * 255 && mean < 0.33 * 255);
    ds_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_plain),
        cmocka_unit_test(test_idx_gzip),
        cmocka_unit_test(test_idx_errors),
        cmocka_unit_test(test_csv_header_string_labels),
        cmocka_unit_test(test_csv_no_header),
        cmocka_unit_test(test_csv_label_by_name_and_index),
        cmocka_unit_test(test_csv_crlf_and_long_lines),
        cmocka_unit_test(test_csv_errors),
        cmocka_unit_test(test_libsvm_valid),
        cmocka_unit_test(test_libsvm_errors),
        cmocka_unit_test(test_scaler_minmax),
        cmocka_unit_test(test_scaler_minmax_raw_range),
        cmocka_unit_test(test_scaler_standardize),
        cmocka_unit_test(test_subset),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_partition),
        cmocka_unit_test(test_filter_classes),
        cmocka_unit_test(test_align_classes),
        cmocka_unit_test(test_csv_without_label_column),
        cmocka_unit_test(test_shuffle_inplace_matches_partition),
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_fashion_mnist_t10k),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
