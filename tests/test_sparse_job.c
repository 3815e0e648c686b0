/* tests/test_sparse_job.c -- the job keys of sparse data (data.sparse, categorical,
 * crosses, hash_bits, hash_seed, ngrams, text_*): parsed, printed back (--print-config),
 * set from the command line, checked against the format, and part of the fingerprint. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "job/job.h"

#define MODEL "model: {layers: [{units: 2, activation: softmax}]}\n"

static cfg_job *load_ok(const char *yaml)
{
    cfg_job *j = NULL;
    pst_err err = {0};
    int rc = cfg_job_load_string(&j, yaml, strlen(yaml), "t.yaml", &err);
    if (rc)
        fail_msg("%s", err.msg);
    return j;
}

static void load_fails(const char *yaml, const char *want)
{
    cfg_job *j = NULL;
    pst_err err = {0};
    assert_int_not_equal(cfg_job_load_string(&j, yaml, strlen(yaml), "t.yaml", &err), PST_OK);
    if (!strstr(err.msg, want))
        fail_msg("got '%s', want '%s'", err.msg, want);
    assert_null(j);
}

static char *printed(const cfg_job *j)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    pst_err err;
    assert_int_equal(cfg_job_print(j, f, &err), PST_OK);
    fclose(f);
    return buf;
}

static void test_keys_parse_print_and_round_trip(void **state)
{
    (void)state;
    cfg_job *j = load_ok("data:\n"
                         "  format: csv\n"
                         "  train: ads.csv\n"
                         "  categorical: [city, device]\n"
                         "  crosses: [\"city x device\"]\n"
                         "  hash_bits: 20\n"
                         "  hash_seed: 7\n" MODEL);
    const cfg_data *d = &j->data;
    assert_int_equal(d->categorical_count, 2);
    assert_string_equal(d->categorical[1], "device");
    assert_string_equal(d->crosses[0], "city x device");
    assert_int_equal(d->hash_bits, 20);
    assert_true(d->hash_seed == 7);
    assert_int_equal(d->ngrams, 1); /* default */
    char *text = printed(j);
    assert_non_null(strstr(text, "  categorical: [\"city\", \"device\"]\n"));
    assert_non_null(strstr(text, "  crosses: [\"city x device\"]\n"));
    assert_non_null(strstr(text, "  text_value: count\n"));
    cfg_job *k = load_ok(text);
    char *again = printed(k);
    assert_string_equal(text, again);
    assert_true(cfg_job_hash(j) == cfg_job_hash(k));
    free(text);
    free(again);
    cfg_job_free(k);
    cfg_job_free(j);

    j = load_ok("data:\n"
                "  format: text_dir\n"
                "  train: corpus\n"
                "  text_classes: [\"ham=easy-ham-1 hard-ham-1\", \"spam=spam-1 spam-2\"]\n"
                "  text_suffix: .txt\n"
                "  ngrams: 2\n"
                "  text_value: tf\n"
                "  text_headers: subject\n" MODEL);
    d = &j->data;
    assert_int_equal(d->format, CFG_FMT_TEXT_DIR);
    assert_int_equal(d->text_classes_count, 2);
    assert_string_equal(d->text_classes[1], "spam=spam-1 spam-2");
    assert_int_equal(d->text_value, DS_TEXT_TF);
    assert_int_equal(d->text_headers, DS_TEXT_HEADERS_SUBJECT);
    text = printed(j);
    k = load_ok(text);
    assert_true(cfg_job_hash(j) == cfg_job_hash(k));
    free(text);
    cfg_job_free(k);
    cfg_job_free(j);
}

static void test_overrides(void **state)
{
    (void)state;
    cfg_job *j = load_ok("data: {format: csv, train: a.csv, categorical: [x]}\n" MODEL);
    pst_err err = {0};
    assert_int_equal(cfg_override(j, "data.categorical", "city, device ,zip", &err), PST_OK);
    assert_int_equal(j->data.categorical_count, 3);
    assert_string_equal(j->data.categorical[1], "device");
    assert_int_equal(cfg_override(j, "data.crosses", "[city x zip]", &err), PST_OK);
    assert_string_equal(j->data.crosses[0], "city x zip");
    assert_int_equal(cfg_override(j, "data.hash_seed", "9", &err), PST_OK);
    assert_int_equal(cfg_job_check(j, &err), PST_OK);
    assert_int_not_equal(cfg_override(j, "data.categorical", "a,,b", &err), PST_OK);
    assert_non_null(strstr(err.msg, "data.categorical: entry 1: an empty entry"));
    assert_int_equal(j->data.categorical_count, 3); /* unchanged on error */
    assert_int_equal(cfg_override(j, "data.categorical", "", &err), PST_OK);
    assert_int_equal(j->data.categorical_count, 0);
    cfg_job_free(j);
}

static void test_cross_field_checks(void **state)
{
    (void)state;
    load_fails("data: {format: libsvm, train: a, categorical: [c]}\n" MODEL,
               "t.yaml:1: data.categorical: needs data.format csv");
    load_fails("data: {format: idx, train: a, train_labels: b, crosses: [\"a x b\"]}\n" MODEL,
               "data.crosses: needs data.format csv");
    load_fails("data: {format: csv, train: a, crosses: [\"a*b\"]}\n" MODEL,
               "data.crosses: entry 0: 'a*b' is not 'a x b'");
    load_fails("data: {format: csv, train: a, categorical: [c, c]}\n" MODEL,
               "data.categorical: column 'c' is listed twice");
    load_fails("data: {format: csv, train: a, categorical: [c], hash_bits: 64}\n" MODEL,
               "data.hash_bits: must be in [0, 63]");
    load_fails("data: {format: csv, train: a, hash_bits: 20}\n" MODEL,
               "data.hash_bits: needs sparse features");
    load_fails("data: {format: csv, train: a, sparse: true}\n" MODEL,
               "data.sparse: needs data.format libsvm");
    load_fails("data: {format: libsvm, train: a, sparse: true, dim: 5}\n" MODEL,
               "data.dim: sparse libsvm rows have no dense width");
    load_fails("data: {format: csv, train: a, ngrams: 2}\n" MODEL,
               "data.ngrams: needs data.format text_dir");
    load_fails("data: {format: csv, train: a, text_headers: none}\n" MODEL,
               "data.text_headers: needs data.format text_dir");
    load_fails("data: {format: text_dir, train: a, ngrams: 0}\n" MODEL,
               "data.ngrams: must be in [1, 8]");
    load_fails("data: {format: text_dir, train: a, text_classes: [\"ham=a\"]}\n" MODEL,
               "data.text_classes: one class");
    load_fails("data: {format: text_dir, train: a, text_classes: [ham, \"spam=b\"]}\n" MODEL,
               "data.text_classes: entry 0: 'ham' is not 'name=folder folder ...'");
    load_fails("data: {format: text_dir, train: a, task: regress}\n"
               "model: {layers: [{units: 1}], loss: mse}\n",
               "data.task: text_dir documents are classified");
    load_fails("data: {format: text_dir, train: a, train_labels: b}\n" MODEL,
               "data.train_labels: text_dir takes its classes from folders");
    cfg_job_free(load_ok("data: {format: libsvm, train: a, sparse: true, hash_bits: 30}\n" MODEL));
}

/* What changes feature ids changes the fingerprint; a job without sparse keys keeps the
 * hash it had before they existed (test_config's test_job_hash_is_stable). */
static void test_fingerprint(void **state)
{
    (void)state;
    const char *base = "data: {format: text_dir, train: a}\n" MODEL;
    cfg_job *a = load_ok(base);
    uint64_t h = cfg_job_hash(a);
    pst_err err;
    assert_int_equal(cfg_override(a, "data.hash_seed", "1", &err), PST_OK);
    assert_true(cfg_job_hash(a) != h);
    assert_int_equal(cfg_override(a, "data.hash_seed", "0", &err), PST_OK);
    assert_true(cfg_job_hash(a) == h);
    assert_int_equal(cfg_override(a, "data.ngrams", "2", &err), PST_OK);
    assert_true(cfg_job_hash(a) != h);
    assert_int_equal(cfg_override(a, "data.ngrams", "1", &err), PST_OK);
    assert_int_equal(cfg_override(a, "data.text_classes", "x=a,y=b", &err), PST_OK);
    assert_true(cfg_job_hash(a) != h);
    assert_int_equal(cfg_override(a, "data.text_classes", "", &err), PST_OK);
    assert_true(cfg_job_hash(a) == h);
    /* The root folder is a path: like data.train, not in the fingerprint. */
    assert_int_equal(cfg_override(a, "data.train", "/elsewhere/a", &err), PST_OK);
    assert_true(cfg_job_hash(a) == h);
    cfg_job_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_parse_print_and_round_trip),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_cross_field_checks),
        cmocka_unit_test(test_fingerprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
