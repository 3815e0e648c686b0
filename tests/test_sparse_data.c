/* tests/test_sparse_data.c -- the sparse part of a dataset (data/sparse.h): every row
 * operation of data.h carries it, batches gather from it; CSV categorical columns and
 * crosses hashed; the text_dir featurizer on small hand-written documents; each bad input
 * refused with one line naming file, row and column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tmp_files.h"

#include "data/sparse.h"

static char dir[TMP_DIR_MAX];

static int setup(void **state)
{
    (void)state;
    return tmp_dir_make(dir, "/tmp/test-spdata");
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

static const char *path_of(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* Rows are told apart by their first id: row r of the fixture holds ids (100 + r, r)
 * with values (r, 1), label r % 3. */
static ds_dataset *fixture(int n)
{
    char *text = malloc((size_t)n * 64 + 1), *p = text;
    for (int r = 0; r < n; r++)
        p += sprintf(p, "%d %d:%d %d:1\n", r % 3, 100 + r, r, r);
    const char *path = file_of("fx.svm", text);
    free(text);
    ds_sparse_options o = {.task = DS_TASK_CLASSIFY, .nclasses = 3};
    pst_err err = {0};
    ds_dataset *ds = ds_load_libsvm_sparse(path, &o, &err);
    assert_non_null(ds);
    return ds;
}

/* Row i of ds is fixture row r: its entries and its label agree. */
static int row_is(const ds_dataset *ds, int64_t i, int r)
{
    const uint64_t *ids;
    const float *vals;
    int64_t k = ds_sparse_row(ds_sparse_of(ds), i, &ids, &vals, NULL);
    return k == 2 && ids[0] == (uint64_t)(100 + r) && vals[0] == (float)r &&
           ids[1] == (uint64_t)r && ds_labels_const(ds)[i] == r % 3;
}

static int fixture_row(const ds_dataset *ds, int64_t i)
{
    const uint64_t *ids;
    const float *vals;
    ds_sparse_row(ds_sparse_of(ds), i, &ids, &vals, NULL);
    return (int)(ids[0] - 100);
}

static void test_pure_sparse_dataset(void **state)
{
    (void)state;
    ds_dataset *ds = fixture(10);
    assert_int_equal(ds_count(ds), 10);
    assert_int_equal(ds_dim(ds), 0);
    assert_int_equal(ds_nclasses(ds), 3);
    const ds_sparse *sp = ds_sparse_of(ds);
    assert_non_null(sp);
    assert_int_equal(ds_sparse_rows(sp), 10);
    assert_int_equal(ds_sparse_nnz(sp), 20);
    assert_null(ds_sparse_labels(sp)); /* the dataset's labels are the rows' labels */
    assert_int_equal(ds_sparse_max_row(sp), 2);
    for (int r = 0; r < 10; r++)
        assert_true(row_is(ds, r, r));
    ds_destroy(ds);
}

static void test_row_operations_carry_sparse_rows(void **state)
{
    (void)state;
    ds_dataset *ds = fixture(30);
    pst_err err = {0};
    int64_t pick[] = {7, 2, 2, 29};
    ds_dataset *sub = ds_subset(ds, pick, 4, &err);
    assert_non_null(sub);
    for (int i = 0; i < 4; i++)
        assert_true(row_is(sub, i, (int)pick[i]));
    ds_destroy(sub);

    /* split: validation and training rows are disjoint and cover ds. */
    ds_dataset *tr, *va;
    assert_int_equal(ds_split(ds, 0.2, 5, &tr, &va, &err), PST_OK);
    assert_int_equal(ds_count(va), 6);
    assert_int_equal(ds_count(tr), 24);
    int seen[30] = {0};
    for (int64_t i = 0; i < ds_count(va); i++)
        seen[fixture_row(va, i)]++, assert_true(row_is(va, i, fixture_row(va, i)));
    for (int64_t i = 0; i < ds_count(tr); i++)
        seen[fixture_row(tr, i)]++, assert_true(row_is(tr, i, fixture_row(tr, i)));
    for (int r = 0; r < 30; r++)
        assert_int_equal(seen[r], 1);
    ds_destroy(tr);
    ds_destroy(va);

    /* partitions: workers' shares cover ds once; shuffle_inplace = partition(1, 0). */
    memset(seen, 0, sizeof seen);
    for (int k = 0; k < 4; k++) {
        ds_dataset *part = ds_partition(ds, 4, k, 9, &err);
        assert_non_null(part);
        for (int64_t i = 0; i < ds_count(part); i++)
            seen[fixture_row(part, i)]++, assert_true(row_is(part, i, fixture_row(part, i)));
        ds_destroy(part);
    }
    for (int r = 0; r < 30; r++)
        assert_int_equal(seen[r], 1);
    ds_dataset *whole = ds_partition(ds, 1, 0, 9, &err);
    assert_int_equal(ds_shuffle_inplace(ds, 9, &err), PST_OK);
    for (int64_t i = 0; i < 30; i++) {
        assert_int_equal(fixture_row(ds, i), fixture_row(whole, i));
        assert_true(row_is(ds, i, fixture_row(ds, i)));
    }
    ds_destroy(whole);

    /* filter_classes keeps the rows of classes 2 and 0 (relabelled 0 and 1). */
    int keep[] = {2, 0};
    ds_dataset *f = ds_filter_classes(ds, keep, 2, &err);
    assert_non_null(f);
    assert_int_equal(ds_count(f), 20);
    for (int64_t i = 0; i < ds_count(f); i++) {
        int r = fixture_row(f, i);
        assert_true(r % 3 != 1);
        assert_int_equal(ds_labels_const(f)[i], r % 3 == 2 ? 0 : 1);
    }
    ds_destroy(f);

    /* scalers fit and apply on the dense columns only (none here). */
    ds_scaler sc;
    assert_int_equal(ds_scaler_fit(&sc, DS_SCALE_STANDARDIZE, ds, &err), PST_OK);
    assert_int_equal(ds_scaler_apply(&sc, ds, &err), PST_OK);
    ds_scaler_fini(&sc);
    assert_true(row_is(ds, 0, fixture_row(ds, 0)));
    ds_destroy(ds);
}

static void test_gather_batch(void **state)
{
    (void)state;
    ds_dataset *ds = fixture(8);
    const ds_sparse *sp = ds_sparse_of(ds);
    uint32_t rows[] = {5, 0, 7};
    assert_int_equal(ds_sparse_count(sp, rows, 3), 6);
    int64_t rp[4];
    uint64_t ids[6];
    float vals[6];
    uint32_t fields[6];
    pst_err err = {0};
    assert_int_equal(ds_sparse_gather(sp, rows, 3, rp, ids, vals, fields, 6, &err), 6);
    assert_true(rp[0] == 0 && rp[1] == 2 && rp[2] == 4 && rp[3] == 6);
    assert_true(ids[0] == 105 && ids[1] == 5 && ids[2] == 100 && ids[4] == 107);
    assert_true(vals[0] == 5.0f && vals[5] == 1.0f && fields[3] == 0);
    /* rows NULL: the first n rows. */
    assert_int_equal(ds_sparse_gather(sp, NULL, 2, rp, ids, vals, NULL, 6, &err), 4);
    assert_true(ids[2] == 101);
    /* too small a buffer, a row out of range: refused */
    assert_int_equal(ds_sparse_gather(sp, rows, 3, rp, ids, vals, NULL, 5, &err), -1);
    assert_non_null(strstr(err.msg, "do not fit"));
    uint32_t bad[] = {8};
    assert_int_equal(ds_sparse_gather(sp, bad, 1, rp, ids, vals, NULL, 6, &err), -1);
    ds_destroy(ds);
}

/* The id of column col, value v, as sparse.h defines it. */
static uint64_t cat_id(const char *col, const char *v, uint64_t seed, int bits)
{
    char b[128];
    int n = snprintf(b, sizeof b, "%s\x1f%s", col, v);
    return ds_hash_id(b, (size_t)n, seed, bits);
}

static void test_csv_categorical_and_crosses(void **state)
{
    (void)state;
    const char *p = file_of("ads.csv", "price,city,device,clicked\n"
                                       "1.5,paris,mobile,1\n"
                                       "2.0,lyon,desktop,0\n"
                                       "0.5,paris,paris,1\n");
    const char *cat[] = {"city", "device"};
    const char *cross[] = {"city x device"};
    ds_csv_options o = {.header = -1,
                        .label_name = "clicked",
                        .task = DS_TASK_CLASSIFY,
                        .categorical = cat,
                        .ncategorical = 2,
                        .crosses = cross,
                        .ncrosses = 1,
                        .hash_bits = 20,
                        .hash_seed = 7};
    pst_err err = {0};
    ds_dataset *ds = ds_load_csv(p, &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_dim(ds), 1); /* price stays dense */
    assert_true(ds_x_const(ds)[0] == 1.5f && ds_x_const(ds)[2] == 0.5f);
    const ds_sparse *sp = ds_sparse_of(ds);
    assert_int_equal(ds_sparse_nfields(sp), 3);
    const uint64_t *ids;
    const float *vals;
    const uint32_t *fields;
    assert_int_equal(ds_sparse_row(sp, 0, &ids, &vals, &fields), 3);
    assert_true(ids[0] == cat_id("city", "paris", 7, 20) && fields[0] == 0 && vals[0] == 1.0f);
    assert_true(ids[1] == cat_id("device", "mobile", 7, 20) && fields[1] == 1);
    assert_true(ids[2] == ds_hash_id("city\x1fparis\x1e"
                                     "device\x1fmobile",
                                     24, 7, 20) &&
                fields[2] == 2);
    for (int i = 0; i < 3; i++)
        assert_true(ids[i] < (1u << 20));
    /* Fixed seed, fixed ids: a change of hash or of its input bytes shows here. */
    assert_true(ids[0] == 0xc4018ULL);
    assert_true(ds_hash64("win", 3, 3) == 0x70a163b9e375ebc3ULL);
    /* The column is in the hash: "paris" as city and as device are two ids. */
    const uint64_t *ids2;
    ds_sparse_row(sp, 2, &ids2, &vals, &fields);
    assert_true(ids2[0] == ids[0]);
    assert_true(ids2[1] != ids2[0] && ids2[1] == cat_id("device", "paris", 7, 20));
    /* Another seed, other ids. */
    assert_true(cat_id("city", "paris", 8, 20) != ids[0]);
    ds_destroy(ds);
}

static void test_csv_bad_input(void **state)
{
    (void)state;
    pst_err err = {0};
    const char *cat[] = {"town"};
    ds_csv_options o = {.header = -1,
                        .label_index = -1,
                        .task = DS_TASK_CLASSIFY,
                        .categorical = cat,
                        .ncategorical = 1};
    const char *p = file_of("m.csv", "price,city,y\n1,paris,0\n");
    assert_null(ds_load_csv(p, &o, &err));
    assert_non_null(strstr(err.msg, "m.csv:1: categorical column 'town': no such column"));
    cat[0] = "city";
    p = file_of("nan.csv", "price,city,y\n1,paris,0\nnan,lyon,1\n");
    assert_null(ds_load_csv(p, &o, &err));
    assert_non_null(strstr(err.msg, "nan.csv:3: column 1 ('price'): 'nan' is not a finite number"));
    cat[0] = "y";
    p = file_of("lab.csv", "price,city,y\n1,paris,0\n");
    assert_null(ds_load_csv(p, &o, &err));
    assert_non_null(strstr(err.msg, "'y' is the label column"));
    cat[0] = "city";
    const char *cross[] = {"city x zip"};
    o.crosses = cross;
    o.ncrosses = 1;
    assert_null(ds_load_csv(p, &o, &err));
    assert_non_null(strstr(err.msg, "cross 'city x zip': no column 'zip'"));
    o.ncrosses = 0;
    o.header = 0;
    assert_null(ds_load_csv(p, &o, &err));
    assert_non_null(strstr(err.msg, "named by a header line"));
}

static void test_libsvm_sparse_bad_input(void **state)
{
    (void)state;
    pst_err err = {0};
    ds_sparse_options o = {.task = DS_TASK_CLASSIFY, .id_space = UINT64_C(1) << 20};
    const char *p = file_of("big.svm", "1 5:1\n0 1048576:1\n");
    assert_null(ds_load_libsvm_sparse(p, &o, &err));
    assert_non_null(
        strstr(err.msg, "big.svm:2: entry 1: feature id 1048576 is beyond the id space"));
    p = file_of("empty.svm", "1 5:1\n0\n");
    assert_null(ds_load_libsvm_sparse(p, &o, &err));
    assert_non_null(strstr(err.msg, "empty.svm:2: a row with a label and no features"));
    p = file_of("nan.svm", "1 5:1\n0 3:nan\n");
    assert_null(ds_load_libsvm_sparse(p, &o, &err));
    assert_non_null(strstr(err.msg, "nan.svm:2: entry 1 '3:nan': value is not a finite number"));
}

static uint64_t word_id(const char *w, int bits) { return ds_hash_id(w, strlen(w), 3, bits); }

/* Entry of id in row r, its value; -1 when absent. */
static float value_of(const ds_sparse *sp, int64_t r, uint64_t id, uint32_t *field)
{
    const uint64_t *ids;
    const float *vals;
    const uint32_t *fields;
    int64_t k = ds_sparse_row(sp, r, &ids, &vals, &fields);
    for (int64_t i = 0; i < k; i++)
        if (ids[i] == id) {
            if (field)
                *field = fields[i];
            return vals[i];
        }
    return -1.0f;
}

static void test_text_featurizer(void **state)
{
    (void)state;
    file_of("t1/spam/a.txt", "Subject: WIN money\n\nWin, win MONEY now!\n");
    file_of("t1/spam/b.txt", "Cheap caf\xc3\xa9 deals: 50% off\n");
    file_of("t1/spam/notes.json", "{\"skipped\": 1}\n"); /* suffix .txt only */
    file_of("t1/ham1/c.txt", "Hello Bob,\nlunch at noon?\n");
    file_of("t1/ham2/d.txt", "From: alice\nSubject: re lunch\n\nyes noon works\n");
    const char *classes[] = {"ham = ham1 ham2", "spam=spam"};
    ds_text_options o = {.ngrams = 2,
                         .hash_bits = 18,
                         .seed = 3,
                         .suffix = ".txt",
                         .classes = classes,
                         .nclasses = 2};
    pst_err err = {0};
    ds_dataset *ds = ds_load_text_dir(path_of("t1"), &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_count(ds), 4);
    assert_int_equal(ds_dim(ds), 0);
    assert_int_equal(ds_nclasses(ds), 2);
    assert_string_equal(ds_class_name(ds, 0), "ham");
    assert_string_equal(ds_class_name(ds, 1), "spam");
    const int32_t *y = ds_labels_const(ds);
    assert_true(y[0] == 0 && y[1] == 0 && y[2] == 1 && y[3] == 1); /* ham1/c, ham2/d, spam/a, b */
    const ds_sparse *sp = ds_sparse_of(ds);
    uint32_t f;
    /* a.txt, headers all: subject win money | win win money now -> "win" 3 times. */
    assert_true(value_of(sp, 2, word_id("win", 18), &f) == 3.0f && f == 0);
    assert_true(value_of(sp, 2, word_id("win win", 18), &f) == 1.0f && f == 1);
    assert_true(value_of(sp, 2, word_id("subject win", 18), NULL) == 1.0f);
    assert_true(value_of(sp, 2, word_id("Win", 18), NULL) < 0); /* lower-cased before hashing */
    /* b.txt: the UTF-8 bytes of "café" separate: "caf" then "deals". */
    assert_true(value_of(sp, 3, word_id("caf", 18), NULL) == 1.0f);
    assert_true(value_of(sp, 3, word_id("caf deals", 18), NULL) == 1.0f);
    assert_true(value_of(sp, 3, word_id("50", 18), NULL) == 1.0f);
    /* Each row's ids are unique and sorted by (field, id). */
    for (int64_t r = 0; r < 4; r++) {
        const uint64_t *ids;
        const float *vals;
        const uint32_t *fl;
        int64_t k = ds_sparse_row(sp, r, &ids, &vals, &fl);
        for (int64_t i = 1; i < k; i++)
            assert_true(fl[i - 1] < fl[i] || (fl[i - 1] == fl[i] && ids[i - 1] < ids[i]));
    }
    ds_destroy(ds);

    /* headers none: only the body; subject: the Subject: line too; binary and tf values. */
    o.ngrams = 1;
    o.headers = DS_TEXT_HEADERS_NONE;
    o.value = DS_TEXT_BINARY;
    const char *one[] = {"ham=ham2", "spam=spam"};
    o.classes = one;
    file_of("t1/spam/b.txt", "Subject: x\n\nwin win\n");
    ds = ds_load_text_dir(path_of("t1"), &o, &err);
    assert_non_null(ds);
    sp = ds_sparse_of(ds);
    assert_true(value_of(sp, 0, word_id("alice", 18), NULL) < 0);
    assert_true(value_of(sp, 0, word_id("lunch", 18), NULL) < 0);
    assert_true(value_of(sp, 0, word_id("noon", 18), NULL) == 1.0f);
    assert_true(value_of(sp, 1, word_id("win", 18), NULL) == 1.0f); /* binary */
    ds_destroy(ds);
    o.headers = DS_TEXT_HEADERS_SUBJECT;
    o.value = DS_TEXT_TF;
    ds = ds_load_text_dir(path_of("t1"), &o, &err);
    assert_non_null(ds);
    sp = ds_sparse_of(ds);
    assert_true(value_of(sp, 0, word_id("alice", 18), NULL) < 0);
    assert_true(value_of(sp, 0, word_id("lunch", 18), NULL) == 0.2f); /* re lunch yes noon works */
    /* a.txt: subject "win money", body "win win money now": 3 of 6 */
    assert_true(value_of(sp, 1, word_id("win", 18), NULL) == 0.5f);
    ds_destroy(ds);

    /* A file without an empty line has no body: with headers subject, c.txt has no words. */
    o.classes = NULL;
    o.nclasses = 0;
    assert_null(ds_load_text_dir(path_of("t1"), &o, &err));
    assert_non_null(strstr(err.msg, "t1/ham1/c.txt (row 1): no words in the document (an empty "
                                    "row; headers: subject)"));
    /* No class list: each subfolder a class, by name. */
    o.headers = DS_TEXT_HEADERS_ALL;
    ds = ds_load_text_dir(path_of("t1"), &o, &err);
    assert_non_null(ds);
    assert_int_equal(ds_nclasses(ds), 3);
    assert_string_equal(ds_class_name(ds, 2), "spam");
    ds_destroy(ds);
}

static void test_text_bad_input(void **state)
{
    (void)state;
    pst_err err = {0};
    const char *classes[] = {"ham=ham", "spam=spam"};
    ds_text_options o = {.ngrams = 1, .classes = classes, .nclasses = 2};
    file_of("t2/ham/a.txt", "hello\n");
    mkdir(path_of("t2/spam"), 0755);
    assert_null(ds_load_text_dir(path_of("t2"), &o, &err));
    assert_non_null(strstr(err.msg, "t2/spam: no documents in the class folder"));
    file_of("t2/spam/b.txt", "...!!! \xff\xfe ---\n");
    assert_null(ds_load_text_dir(path_of("t2"), &o, &err));
    assert_non_null(strstr(err.msg, "t2/spam/b.txt (row 2): no words in the document"));
    assert_int_equal(err.code, PST_ERR_DATA);
    /* Unreadable: reading /proc/self/mem at offset 0 fails (EIO), even for root. */
    file_of("t2/spam/b.txt", "win\n");
    assert_int_equal(symlink("/proc/self/mem", path_of("t2/spam/c.txt")), 0);
    assert_null(ds_load_text_dir(path_of("t2"), &o, &err));
    assert_non_null(strstr(err.msg, "t2/spam/c.txt: cannot read"));
    assert_int_equal(err.code, PST_ERR_IO);
    unlink(path_of("t2/spam/c.txt"));
    const char *missing[] = {"ham=ham", "spam=spam nope"};
    o.classes = missing;
    assert_null(ds_load_text_dir(path_of("t2"), &o, &err));
    assert_non_null(strstr(err.msg, "t2/nope: cannot read the folder"));
    const char *malformed[] = {"ham", "spam=spam"};
    o.classes = malformed;
    assert_null(ds_load_text_dir(path_of("t2"), &o, &err));
    assert_non_null(strstr(err.msg, "entry 0 'ham' is not 'name=folder"));
    o.classes = classes;
    ds_dataset *ds = ds_load_text_dir(path_of("t2"), &o, &err);
    assert_non_null(ds);
    ds_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pure_sparse_dataset),
        cmocka_unit_test(test_row_operations_carry_sparse_rows),
        cmocka_unit_test(test_gather_batch),
        cmocka_unit_test(test_csv_categorical_and_crosses),
        cmocka_unit_test(test_csv_bad_input),
        cmocka_unit_test(test_libsvm_sparse_bad_input),
        cmocka_unit_test(test_text_featurizer),
        cmocka_unit_test(test_text_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
