/* tests/test_config.c -- job files: parsing, defaults, errors, overrides, printing. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "job/job.h"
#include "spec_helpers.h"

/* The value of an int or enum key of a layer, by name. */
static int64_t key_i(const ml_layer_spec *L, const char *key)
{
    int k = ml_layer_key_find(L->ops, key);
    assert_true(k >= 0);
    return L->val[k].i;
}

#define SRC "test.yaml"

/* The smallest job cfg_job_check accepts: everything else takes its default. */
static const char *const MINIMAL = "data: {train: train.idx, train_labels: labels.idx}\n"
                                   "model:\n"
                                   "  layers:\n"
                                   "    - {units: 10, activation: softmax}\n";

/* Every key set, none to its default. */
static const char *const FULL =
    "name: full-job\n"
    "seed: 7\n"
    "data:\n"
    "  format: csv\n"
    "  train: data/train.csv\n"
    "  train_labels: data/unused.idx\n"
    "  test: data/test.csv\n"
    "  test_labels: data/test-labels.csv\n"
    "  task: classify\n"
    "  num_classes: 3\n"
    "  label: species\n"
    "  label_index: 2\n"
    "  header: yes\n"
    "  delimiter: ';'\n"
    "  dim: 7\n"
    "  validation_split: 0.25\n"
    "  scale: standardize\n"
    "  classes: [2, 0, 1]\n"
    "  limit: 100\n"
    "model:\n"
    "  layers:\n"
    "    - type: dense\n"
    "      units: 16\n"
    "      activation: relu\n"
    "      name: hidden\n"
    "      trainable: false\n"
    "    - type: activation\n"
    "      activation: tanh\n"
    "    - {type: dense, units: 3, activation: softmax, name: out, lr_mult: 0.25}\n"
    "  loss: categorical_crossentropy\n"
    "  init: he\n"
    "  init_from: pre/model.safetensors\n"
    "optimizer:\n"
    "  name: adamw\n"
    "  lr: 0.005\n"
    "  momentum: 0.8\n"
    "  beta1: 0.85\n"
    "  beta2: 0.99\n"
    "  rho: 0.95\n"
    "  eps: 1e-7\n"
    "  weight_decay: 0.02\n"
    "  clip_norm: 1.5\n"
    "  schedule: cosine\n"
    "  warmup_steps: 10\n"
    "  step_size: 50\n"
    "  gamma: 0.5\n"
    "  total_steps: 1000\n"
    "  min_lr: 0.0001\n"
    "train:\n"
    "  batch_size: 64\n"
    "  epochs: 3\n"
    "  threads: 2\n"
    "  shuffle: false\n"
    "  log_every: 25\n"
    "output:\n"
    "  dir: out/full\n";

static int load(const char *yaml, cfg_job **job, pst_err *err)
{
    pst_err_clear(err);
    return cfg_job_load_string(job, yaml, strlen(yaml), SRC, err);
}

static cfg_job *load_ok(const char *yaml)
{
    cfg_job *job = NULL;
    pst_err err;
    int rc = load(yaml, &job, &err);
    if (rc != PST_OK)
        print_error("unexpected failure: %s\n", err.msg);
    assert_int_equal(rc, PST_OK);
    assert_non_null(job);
    return job;
}

/* MINIMAL followed by extra top-level YAML (later sections only: no key repeats). */
static char *minimal_plus(const char *extra)
{
    size_t n = strlen(MINIMAL) + strlen(extra) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s", MINIMAL, extra);
    return s;
}

static void assert_str_eq_or_null(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

static void assert_opt_equal(const opt_config *a, const opt_config *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_true(a->lr == b->lr);
    assert_true(a->momentum == b->momentum);
    assert_true(a->beta1 == b->beta1);
    assert_true(a->beta2 == b->beta2);
    assert_true(a->rho == b->rho);
    assert_true(a->eps == b->eps);
    assert_true(a->weight_decay == b->weight_decay);
    assert_true(a->clip_norm == b->clip_norm);
    assert_int_equal(a->sched.kind, b->sched.kind);
    assert_int_equal(a->sched.warmup_steps, b->sched.warmup_steps);
    assert_int_equal(a->sched.step_size, b->sched.step_size);
    assert_true(a->sched.gamma == b->sched.gamma);
    assert_int_equal(a->sched.total_steps, b->sched.total_steps);
    assert_true(a->sched.min_lr == b->sched.min_lr);
}

/* Exact equality of every field (floats bit for bit: printing must round-trip). */
static void assert_job_equal(const cfg_job *a, const cfg_job *b)
{
    assert_str_eq_or_null(a->name, b->name);
    assert_true(a->seed == b->seed);
    const cfg_data *da = &a->data, *db = &b->data;
    assert_int_equal(da->format, db->format);
    assert_str_eq_or_null(da->train, db->train);
    assert_str_eq_or_null(da->train_labels, db->train_labels);
    assert_str_eq_or_null(da->test, db->test);
    assert_str_eq_or_null(da->test_labels, db->test_labels);
    assert_int_equal(da->task, db->task);
    assert_int_equal(da->num_classes, db->num_classes);
    assert_str_eq_or_null(da->label, db->label);
    assert_int_equal(da->label_index, db->label_index);
    assert_int_equal(da->header, db->header);
    assert_str_eq_or_null(da->delimiter, db->delimiter);
    assert_int_equal(da->dim, db->dim);
    assert_true(da->validation_split == db->validation_split);
    assert_int_equal(da->scale, db->scale);
    assert_int_equal(da->classes_count, db->classes_count);
    for (unsigned i = 0; i < da->classes_count; i++)
        assert_int_equal(da->classes[i], db->classes[i]);
    assert_int_equal(da->limit, db->limit);
    assert_str_eq_or_null(a->model.init_from, b->model.init_from);
    assert_int_equal(a->model.spec.nlayers, b->model.spec.nlayers);
    for (unsigned i = 0; i < a->model.spec.nlayers; i++) {
        const ml_layer_spec *la = &a->model.spec.layers[i], *lb = &b->model.spec.layers[i];
        assert_ptr_equal(la->ops, lb->ops);
        for (int k = 0; k < la->ops->nkeys; k++)
            assert_true(memcmp(&la->val[k], &lb->val[k], sizeof la->val[k]) == 0 ||
                        la->ops->keys[k].kind == ML_KEY_STRING);
        assert_int_equal(la->ninputs, lb->ninputs);
        for (unsigned k = 0; k < la->ninputs; k++)
            assert_string_equal(la->inputs[k], lb->inputs[k]);
        assert_str_eq_or_null(la->name, lb->name);
        assert_int_equal(la->trainable, lb->trainable);
        assert_true(la->lr_mult == lb->lr_mult);
    }
    assert_int_equal(a->model.spec.loss, b->model.spec.loss);
    assert_int_equal(a->model.spec.init, b->model.spec.init);
    assert_opt_equal(&a->optimizer, &b->optimizer);
    assert_int_equal(a->train.batch_size, b->train.batch_size);
    assert_int_equal(a->train.epochs, b->train.epochs);
    assert_int_equal(a->train.threads, b->train.threads);
    assert_int_equal(a->train.shuffle, b->train.shuffle);
    assert_int_equal(a->train.log_every, b->train.log_every);
    assert_str_eq_or_null(a->output.dir, b->output.dir);
}

/* ---- Parsing ----------------------------------------------------------------------- */

static void test_full_file(void **state)
{
    (void)state;
    cfg_job *j = load_ok(FULL);
    assert_string_equal(j->name, "full-job");
    assert_true(j->seed == 7);
    assert_int_equal(j->data.format, CFG_FMT_CSV);
    assert_string_equal(j->data.train, "data/train.csv");
    assert_string_equal(j->data.train_labels, "data/unused.idx");
    assert_string_equal(j->data.test, "data/test.csv");
    assert_string_equal(j->data.test_labels, "data/test-labels.csv");
    assert_int_equal(j->data.task, DS_TASK_CLASSIFY);
    assert_int_equal(j->data.num_classes, 3);
    assert_string_equal(j->data.label, "species");
    assert_int_equal(j->data.label_index, 2);
    assert_int_equal(j->data.header, CFG_HEADER_YES);
    assert_string_equal(j->data.delimiter, ";");
    assert_int_equal(j->data.dim, 7);
    assert_float_equal(j->data.validation_split, 0.25, 0.0);
    assert_int_equal(j->data.scale, DS_SCALE_STANDARDIZE);
    assert_int_equal(j->data.classes_count, 3);
    assert_int_equal(j->data.classes[0], 2);
    assert_int_equal(j->data.classes[1], 0);
    assert_int_equal(j->data.classes[2], 1);
    assert_int_equal(j->data.limit, 100);
    assert_string_equal(j->model.init_from, "pre/model.safetensors");
    assert_int_equal(j->model.spec.layers[0].trainable, 0);
    assert_true(j->model.spec.layers[0].lr_mult == 1.0f);
    assert_int_equal(j->model.spec.layers[2].trainable, 1);
    assert_true(j->model.spec.layers[2].lr_mult == 0.25f);

    assert_int_equal(j->model.spec.nlayers, 3);
    assert_ptr_equal(j->model.spec.layers[0].ops, &ml_layer_dense);
    assert_int_equal(key_i(&j->model.spec.layers[0], "units"), 16);
    assert_int_equal(key_i(&j->model.spec.layers[0], "activation"), ACT_RELU);
    assert_string_equal(j->model.spec.layers[0].name, "hidden");
    assert_ptr_equal(j->model.spec.layers[1].ops, &ml_layer_activation);
    assert_int_equal(key_i(&j->model.spec.layers[1], "activation"), ACT_TANH);
    assert_null(j->model.spec.layers[1].name);
    assert_ptr_equal(j->model.spec.layers[2].ops, &ml_layer_dense);
    assert_int_equal(key_i(&j->model.spec.layers[2], "units"), 3);
    assert_int_equal(key_i(&j->model.spec.layers[2], "activation"), ACT_SOFTMAX);
    assert_string_equal(j->model.spec.layers[2].name, "out");
    assert_int_equal(j->model.spec.loss, ML_LOSS_CCE);
    assert_int_equal(j->model.spec.init, ML_INIT_HE);

    const opt_config *o = &j->optimizer;
    assert_int_equal(o->kind, OPT_ADAMW);
    assert_true(o->lr == 0.005f);
    assert_true(o->momentum == 0.8f);
    assert_true(o->beta1 == 0.85f);
    assert_true(o->beta2 == 0.99f);
    assert_true(o->rho == 0.95f);
    assert_true(o->eps == 1e-7f);
    assert_true(o->weight_decay == 0.02f);
    assert_true(o->clip_norm == 1.5f);
    assert_int_equal(o->sched.kind, OPT_SCHED_COSINE);
    assert_int_equal(o->sched.warmup_steps, 10);
    assert_int_equal(o->sched.step_size, 50);
    assert_true(o->sched.gamma == 0.5f);
    assert_int_equal(o->sched.total_steps, 1000);
    assert_true(o->sched.min_lr == 0.0001f);

    assert_int_equal(j->train.batch_size, 64);
    assert_int_equal(j->train.epochs, 3);
    assert_int_equal(j->train.threads, 2);
    assert_int_equal(j->train.shuffle, 0);
    assert_int_equal(j->train.log_every, 25);
    assert_string_equal(j->output.dir, "out/full");
    cfg_job_free(j);
}

static void test_minimal_gets_defaults(void **state)
{
    (void)state;
    cfg_job *j = load_ok(MINIMAL);
    assert_string_equal(j->name, "pstrain-job");
    assert_true(j->seed == 42);
    assert_int_equal(j->data.format, CFG_FMT_IDX);
    assert_string_equal(j->data.train, "train.idx");
    assert_string_equal(j->data.train_labels, "labels.idx");
    assert_null(j->data.test);
    assert_null(j->data.test_labels);
    assert_int_equal(j->data.task, DS_TASK_CLASSIFY);
    assert_int_equal(j->data.num_classes, 0);
    assert_null(j->data.label);
    assert_int_equal(j->data.label_index, -1);
    assert_int_equal(j->data.header, CFG_HEADER_AUTO);
    assert_null(j->data.delimiter);
    assert_int_equal(j->data.dim, 0);
    assert_true(j->data.validation_split == 0.0);
    assert_int_equal(j->data.scale, DS_SCALE_NONE);
    assert_int_equal(j->model.spec.nlayers, 1);
    assert_ptr_equal(j->model.spec.layers[0].ops, &ml_layer_dense);
    assert_null(j->model.spec.layers[0].name);
    assert_int_equal(j->model.spec.loss, ML_LOSS_CCE);
    assert_int_equal(j->model.spec.init, ML_INIT_AUTO);
    opt_config sgd;
    opt_config_default(&sgd, OPT_SGD);
    assert_opt_equal(&j->optimizer, &sgd);
    assert_int_equal(j->train.batch_size, 32);
    assert_int_equal(j->train.epochs, 1);
    assert_int_equal(j->train.threads, 1);
    assert_int_equal(j->train.shuffle, 1);
    assert_int_equal(j->train.log_every, 0);
    assert_string_equal(j->output.dir, "runs/pstrain-job");
    cfg_job_free(j);
}

static void test_optimizer_defaults_per_kind(void **state)
{
    (void)state;
    for (int k = OPT_SGD; k <= OPT_ADAMW; k++) {
        char extra[128];
        snprintf(extra, sizeof extra, "optimizer: {name: %s}\n", opt_kind_name((opt_kind)k));
        char *yaml = minimal_plus(extra);
        cfg_job *j = load_ok(yaml);
        opt_config want;
        opt_config_default(&want, (opt_kind)k);
        assert_opt_equal(&j->optimizer, &want);
        cfg_job_free(j);
        free(yaml);
    }
    /* Keys the file sets win; the rest still come from the kind's defaults. */
    char *yaml = minimal_plus("optimizer: {name: adam, lr: 0.01, beta2: 0.98}\n");
    cfg_job *j = load_ok(yaml);
    opt_config want;
    opt_config_default(&want, OPT_ADAM);
    want.lr = 0.01f;
    want.beta2 = 0.98f;
    assert_opt_equal(&j->optimizer, &want);
    cfg_job_free(j);
    free(yaml);
}

static void test_explicit_zero_is_kept(void **state)
{
    (void)state;
    /* 0 and false written in the file are values, not "absent" (libcyaml zero-fills). */
    char *yaml = minimal_plus("seed: 0\n"
                              "optimizer: {name: momentum, momentum: 0}\n"
                              "train: {shuffle: no}\n");
    cfg_job *j = load_ok(yaml);
    assert_true(j->seed == 0);
    assert_true(j->optimizer.momentum == 0.0f);
    assert_true(j->optimizer.lr == 0.01f);
    assert_int_equal(j->train.shuffle, 0);
    cfg_job_free(j);
    free(yaml);
}

static void test_output_dir_follows_name(void **state)
{
    (void)state;
    char *yaml = minimal_plus("name: exp1\n");
    cfg_job *j = load_ok(yaml);
    assert_string_equal(j->output.dir, "runs/exp1");
    cfg_job_free(j);
    free(yaml);
    yaml = minimal_plus("name: exp1\noutput: {dir: /somewhere/else}\n");
    j = load_ok(yaml);
    assert_string_equal(j->output.dir, "/somewhere/else");
    cfg_job_free(j);
    free(yaml);
}

static void test_scalar_forms(void **state)
{
    (void)state;
    char *yaml = minimal_plus("seed: 18446744073709551615\n"
                              "train: {shuffle: On, epochs: 0x10, batch_size: '8'}\n"
                              "output: {dir: ~}\n");
    /* output.dir: ~ sets it to nothing, which cfg_job_check refuses. */
    cfg_job *j = NULL;
    pst_err err;
    assert_int_equal(load(yaml, &j, &err), PST_ERR_CONFIG);
    assert_null(j);
    assert_non_null(strstr(err.msg, "output.dir"));
    free(yaml);

    yaml = minimal_plus("seed: 18446744073709551615\n"
                        "train: {shuffle: On, epochs: 0x10, batch_size: '8'}\n");
    j = load_ok(yaml);
    assert_true(j->seed == UINT64_MAX);
    assert_int_equal(j->train.shuffle, 1);
    assert_int_equal(j->train.epochs, 16);
    assert_int_equal(j->train.batch_size, 8);
    cfg_job_free(j);
    free(yaml);
}

/* ---- Load errors ------------------------------------------------------------------- */

typedef struct {
    const char *extra; /* appended to MINIMAL, or a whole document when whole is set */
    int whole;
    const char *want[3]; /* substrings the message must contain */
} bad_case;

static void check_bad(const bad_case *c)
{
    char *yaml = c->whole ? strdup(c->extra) : minimal_plus(c->extra);
    assert_non_null(yaml);
    cfg_job *j = (cfg_job *)&j; /* must be reset to NULL */
    pst_err err;
    int rc = load(yaml, &j, &err);
    if (rc != PST_ERR_CONFIG)
        print_error("case accepted: %s\n", c->extra);
    assert_int_equal(rc, PST_ERR_CONFIG);
    assert_int_equal(err.code, PST_ERR_CONFIG);
    assert_null(j);
    assert_non_null(strstr(err.msg, SRC));
    assert_null(strchr(err.msg, '\n'));
    for (int i = 0; i < 3 && c->want[i]; i++) {
        if (!strstr(err.msg, c->want[i]))
            print_error("message '%s' lacks '%s'\n", err.msg, c->want[i]);
        assert_non_null(strstr(err.msg, c->want[i]));
    }
    free(yaml);
}

static void test_load_errors(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        /* unknown keys, with the key's own line */
        {"nmae: x\n", 0, {"unknown key 'nmae'", SRC ":5:", "known: name, seed"}},
        {"optimizer:\n  lr: 0.1\n  lrr: 0.1\n", 0, {"unknown key 'optimizer.lrr'", SRC ":7:"}},
        {"data: {train: a, fromat: csv}\n", 1, {"unknown key 'data.fromat'", SRC ":1:"}},
        {"model:\n  layers:\n    - {units: 3}\n    - {unit: 3}\n",
         1,
         {"unknown key 'model.layers.1.unit'", SRC ":4:"}},
        /* wrong types, including what libcyaml alone would read leniently */
        {"train: {epochs: abc}\n", 0, {"train.epochs", "'abc' is not an integer"}},
        {"train: {epochs: 5abc}\n", 0, {"train.epochs", "'5abc' is not an integer"}},
        {"train: {epochs: 1.5}\n", 0, {"train.epochs", "'1.5'"}},
        {"train: {epochs: 99999999999}\n", 0, {"train.epochs", "out of range"}},
        {"train: {epochs: }\n", 0, {"train.epochs", "no value"}},
        {"train: {shuffle: banana}\n", 0, {"train.shuffle", "'banana' is not a boolean"}},
        {"optimizer: {lr: abc}\n", 0, {"optimizer.lr: 'abc' is not a number"}},
        {"optimizer:\n  lr: 1,5\n", 0, {"optimizer.lr", "'1,5'"}},
        {"optimizer: {lr: .inf}\n", 0, {"optimizer.lr", "not a number"}},
        {"optimizer: {lr: 1e50}\n", 0, {"optimizer.lr", "out of range"}},
        {"seed: -1\n", 0, {"seed", "'-1' is not a non-negative integer"}},
        {"train: {epochs: [1, 2]}\n", 0, {"train.epochs", "expected an integer, got a list"}},
        {"train: 5\n", 0, {"train", "expected a mapping"}},
        {"data: {train: [a]}\n", 1, {"data.train", "got a list"}},
        {"model:\n  layers: {units: 3}\n", 1, {"model.layers", "expected a list"}},
        /* a layer key whose value fails to scan: the entry's keys so far are freed once
         * (found by fuzz_config: a bad free of the unset value) */
        {"model:\n  layers:\n    - {units: [3]}\n",
         1,
         {"model.layers.0.units", "expected a single value, got a list"}},
        {"model:\n  layers:\n    - {activation: relu, units: {a: 1}}\n",
         1,
         {"model.layers.0.units", "got a mapping"}},
        /* bad enum names */
        {"model:\n  loss: hinge\n  layers: [{units: 2, activation: softmax}]\n",
         1,
         {"model.loss", "'hinge' is not one of", "mse"}},
        {"optimizer: {name: adamax}\n", 0, {"optimizer.name", "adamax"}},
        {"optimizer: {schedule: 1}\n", 0, {"optimizer.schedule", "'1' is not one of"}},
        {"data: {format: parquet}\n", 1, {"data.format", "parquet"}},
        /* structure */
        {"train: {epochs: 2, epochs: 3}\n", 0, {"train.epochs", "given twice"}},
        {"train: {epochs: 1\n", 0, {"YAML syntax error", SRC ":"}},
        {"- a\n- b\n", 1, {"a job is a mapping"}},
        {"base: &b {units: 3}\n", 1, {"unknown key 'base'"}},
        {"model:\n  layers:\n    - *x\n", 1, {"model.layers.0", "aliases"}},
        {"train: {epochs: 2}\n---\ntrain: {epochs: 3}\n", 0, {"one YAML document"}},
        /* cfg_job_check, reached through the file */
        /* the line is that of the key the check names, found in the file when it sets it */
        {"train: {batch_size: 0}\n", 0, {SRC ":5: train.batch_size: must be >= 1, got 0"}},
        {"train: {epochs: 0}\n", 0, {"train.epochs: must be >= 1"}},
        {"train: {threads: 0}\n", 0, {"train.threads: must be >= 1"}},
        {"train: {log_every: -1}\n", 0, {"train.log_every"}},
        {"data: {train: a, train_labels: b, validation_split: 1.0}\n"
         "model: {layers: [{units: 2, activation: softmax}]}\n",
         1,
         {"data.validation_split", "[0, 1)"}},
        {"data: {train: a, train_labels: b, validation_split: -0.1}\n"
         "model: {layers: [{units: 2, activation: softmax}]}\n",
         1,
         {"data.validation_split"}},
        {"data: {train: a, train_labels: b}\n", 1, {"model.layers", "at least one"}},
        {"data: {train: a, train_labels: b}\nmodel: {layers: []}\n", 1, {"model.layers"}},
        {"data: {train: a, train_labels: b}\n"
         "model: {layers: [{type: activation, activation: softmax}]}\n",
         1,
         {"model.layers", "dense"}},
        {"data: {train: a, train_labels: b}\n"
         "model: {layers: [{units: 0, activation: softmax}]}\n",
         1,
         {SRC ":2: model.layers.0.units: must be >= 1, got 0"}},
        {"model: {layers: [{units: 2, activation: softmax}]}\n", 1, {"data.train: must be set"}},
        {"data: {train: a}\nmodel: {layers: [{units: 2, activation: softmax}]}\n",
         1,
         {"data.train_labels", "idx"}},
        {"data: {train: a, train_labels: b, test: c}\n"
         "model: {layers: [{units: 2, activation: softmax}]}\n",
         1,
         {"data.test_labels"}},
        {"data: {format: csv, train: a, delimiter: ';;'}\n"
         "model: {layers: [{units: 2, activation: softmax}]}\n",
         1,
         {"data.delimiter", "exactly one character"}},
        {"data: {train: a, train_labels: b}\n"
         "model: {layers: [{units: 4, activation: relu}]}\n",
         1,
         {"model.loss", "softmax", "relu"}},
        {"data: {train: a, train_labels: b}\n"
         "model:\n  loss: binary_crossentropy\n  layers: [{units: 1, activation: softmax}]\n",
         1,
         {"model.loss", "binary_crossentropy", "sigmoid"}},
        {"data: {format: csv, train: a, task: regress}\n"
         "model: {layers: [{units: 1, activation: softmax}]}\n",
         1,
         {"model.loss", "regress"}},
        {"data: {train: a, train_labels: b, num_classes: 10}\n"
         "model: {layers: [{units: 4, activation: softmax}]}\n",
         1,
         {"model.layers.0.units", "num_classes"}},
        {"data: {train: a, train_labels: b}\n"
         "model: {layers: [{units: 4, name: x}, {units: 2, activation: softmax, name: x}]}\n",
         1,
         {"model.layers.1.name", "'x'"}},
        /* fine-tuning keys */
        {"data: {train: a, train_labels: b}\n"
         "model:\n  layers:\n    - {units: 4, lr_mult: -1}\n"
         "    - {units: 2, activation: softmax}\n",
         1,
         {SRC ":4: model.layers.0.lr_mult: must be >= 0", "got -1"}},
        {"data: {train: a, train_labels: b}\n"
         "model:\n  layers:\n    - {units: 4, trainable: false}\n"
         "    - {units: 2, activation: softmax, lr_mult: 0}\n",
         1,
         {"model.layers: every dense layer is frozen"}},
        {"data: {train: a, train_labels: b}\n"
         "model:\n  layers:\n    - {units: 4}\n    - {type: activation, activation: relu,"
         " trainable: no}\n    - {units: 2, activation: softmax}\n",
         1,
         {"model.layers.1.trainable", "no parameters"}},
        {"data: {train: a, train_labels: b}\n"
         "model:\n  layers:\n    - {units: 2, activation: softmax, lr_mult: abc}\n",
         1,
         {"model.layers.0.lr_mult", "'abc' is not a number"}},
        {"data: {train: a, train_labels: b, classes: [5, 6, 5]}\n"
         "model: {layers: [{units: 3, activation: softmax}]}\n",
         1,
         {SRC ":1: data.classes: class 5 is listed twice"}},
        {"data: {train: a, train_labels: b, classes: [5, -6]}\n"
         "model: {layers: [{units: 2, activation: softmax}]}\n",
         1,
         {"data.classes: entry 1", "got -6"}},
        {"data: {train: a, train_labels: b, classes: [5, 6], num_classes: 6}\n"
         "model: {layers: [{units: 2, activation: softmax}]}\n",
         1,
         {"data.classes: entry 1: class 6, but data.num_classes is 6"}},
        {"data: {train: a, train_labels: b, classes: [5, 6, 7]}\n"
         "model: {layers: [{units: 10, activation: softmax}]}\n",
         1,
         {"model.layers.0.units", "10 units but the length of data.classes is 3"}},
        {"data: {train: a, train_labels: b, classes: 5}\n"
         "model: {layers: [{units: 1, activation: softmax}]}\n",
         1,
         {"data.classes", "expected a list"}},
        {"data: {train: a, train_labels: b, classes: [x]}\n"
         "model: {layers: [{units: 1, activation: softmax}]}\n",
         1,
         {"data.classes.0", "'x' is not an integer"}},
        {"data: {format: csv, train: a, task: regress, classes: [1]}\n"
         "model: {loss: mse, layers: [{units: 1}]}\n",
         1,
         {"data.classes: needs data.task classify"}},
        {"data: {train: a, train_labels: b, limit: -3}\n"
         "model: {layers: [{units: 2, activation: softmax}]}\n",
         1,
         {"data.limit: must be >= 0", "-3"}},
        /* opt_config_check names the file's keys */
        {"optimizer: {lr: 0}\n", 0, {SRC ":5: optimizer.lr", "> 0"}},
        {"optimizer: {name: momentum, momentum: 1.0}\n", 0, {"optimizer.momentum"}},
        {"optimizer: {schedule: step, gamma: 0}\n", 0, {"optimizer.gamma"}},
        {"optimizer: {schedule: cosine, total_steps: -5}\n", 0, {"optimizer.total_steps"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_bad(&cases[i]);

    /* err may be NULL: the code alone comes back */
    cfg_job *j = NULL;
    assert_int_equal(cfg_job_load_string(&j, "train: 5\n", 9, SRC, NULL), PST_ERR_CONFIG);
    assert_int_equal(cfg_job_load_string(&j, MINIMAL, strlen(MINIMAL), SRC, NULL), PST_OK);
    assert_int_equal(cfg_override(j, "train.epochs", "x", NULL), PST_ERR_CONFIG);
    assert_int_equal(cfg_override(j, "train.epochs", "0", NULL), PST_OK);
    assert_int_equal(cfg_job_check(j, NULL), PST_ERR_CONFIG);
    cfg_job_free(j);
}

static void test_empty_document(void **state)
{
    (void)state;
    static const char *const docs[] = {"", "# nothing here\n", "---\n"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        cfg_job *j = NULL;
        pst_err err;
        /* All defaults, and the defaults name no training data. */
        assert_int_equal(load(docs[i], &j, &err), PST_ERR_CONFIG);
        assert_non_null(strstr(err.msg, "data.train"));
    }
}

/* Found by fuzz/fuzz_config.c: a scalar or key spanning lines (a plain scalar continued on
 * the next line, or a quoted "\n") was copied into the message, which then had two lines. */
static void test_errors_stay_one_line(void **state)
{
    (void)state;
    static const char *const docs[] = {"data:\n  format:0.2\n\n    layers\n", "\"a\\nb\": 1\n",
                                       "train: {epochs: \"1\\r\\n2\"}\n"};
    static const char *const want[] = {"expected a mapping", "unknown key", "train.epochs"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        cfg_job *j = NULL;
        pst_err err;
        assert_int_equal(load(docs[i], &j, &err), PST_ERR_CONFIG);
        if (!strstr(err.msg, want[i]) || strpbrk(err.msg, "\r\n"))
            print_error("case %zu: message '%s'\n", i, err.msg);
        assert_non_null(strstr(err.msg, want[i]));
        assert_null(strpbrk(err.msg, "\r\n"));
    }
}

/* ---- Overrides --------------------------------------------------------------------- */

static void set_ok(cfg_job *j, const char *path, const char *value)
{
    pst_err err;
    pst_err_clear(&err);
    int rc = cfg_override(j, path, value, &err);
    if (rc != PST_OK)
        print_error("override %s=%s: %s\n", path, value, err.msg);
    assert_int_equal(rc, PST_OK);
}

static void set_bad(cfg_job *j, const char *path, const char *value, const char *want)
{
    pst_err err;
    pst_err_clear(&err);
    assert_int_equal(cfg_override(j, path, value, &err), PST_ERR_CONFIG);
    if (!strstr(err.msg, want))
        print_error("message '%s' lacks '%s'\n", err.msg, want);
    assert_non_null(strstr(err.msg, want));
}

static void test_override_values(void **state)
{
    (void)state;
    cfg_job *j = load_ok(FULL);
    set_ok(j, "train.epochs", "5");
    assert_int_equal(j->train.epochs, 5);
    set_ok(j, "data.label_index", "-1");
    assert_int_equal(j->data.label_index, -1);
    set_ok(j, "seed", "12345678901234");
    assert_true(j->seed == UINT64_C(12345678901234));
    set_ok(j, "optimizer.lr", "0.05");
    assert_true(j->optimizer.lr == 0.05f);
    set_ok(j, "optimizer.warmup_steps", "300");
    assert_int_equal(j->optimizer.sched.warmup_steps, 300);
    set_ok(j, "data.validation_split", "0.125");
    assert_true(j->data.validation_split == 0.125);
    set_ok(j, "train.shuffle", "yes");
    assert_int_equal(j->train.shuffle, 1);
    set_ok(j, "train.shuffle", "0");
    assert_int_equal(j->train.shuffle, 0);
    set_ok(j, "train.shuffle", "TRUE");
    assert_int_equal(j->train.shuffle, 1);
    set_ok(j, "optimizer.schedule", "step");
    assert_int_equal(j->optimizer.sched.kind, OPT_SCHED_STEP);
    set_ok(j, "model.loss", "mse");
    assert_int_equal(j->model.spec.loss, ML_LOSS_MSE);
    set_ok(j, "data.format", "libsvm");
    assert_int_equal(j->data.format, CFG_FMT_LIBSVM);
    set_ok(j, "output.dir", "elsewhere/run");
    assert_string_equal(j->output.dir, "elsewhere/run");
    set_ok(j, "data.test", "");
    assert_null(j->data.test);
    set_ok(j, "data.label", "null");
    assert_null(j->data.label);
    set_ok(j, "data.test", "t.csv");
    assert_string_equal(j->data.test, "t.csv");
    /* list entries */
    set_ok(j, "model.layers.0.units", "64");
    assert_int_equal(key_i(&j->model.spec.layers[0], "units"), 64);
    set_ok(j, "model.layers.2.activation", "sigmoid");
    assert_int_equal(key_i(&j->model.spec.layers[2], "activation"), ACT_SIGMOID);
    set_ok(j, "model.layers.1.name", "squash");
    assert_string_equal(j->model.spec.layers[1].name, "squash");
    set_ok(j, "model.layers.1.type", "dense");
    assert_ptr_equal(j->model.spec.layers[1].ops, &ml_layer_dense);
    cfg_job_free(j);
}

static void test_override_errors(void **state)
{
    (void)state;
    cfg_job *j = load_ok(FULL);
    set_bad(j, "optimizer.lrr", "0.1", "unknown key 'optimizer.lrr'");
    set_bad(j, "optimiser.lr", "0.1", "unknown key 'optimiser.lr'");
    set_bad(j, "train.epochs.x", "1", "unknown key 'train.epochs.x'");
    set_bad(j, "", "1", "unknown key ''");
    set_bad(j, "train..epochs", "1", "unknown key");
    set_bad(j, "optimizer", "adam", "optimizer: is a section");
    set_bad(j, "optimizer.lr", "abc", "optimizer.lr: 'abc' is not a number");
    set_bad(j, "optimizer.lr", "0.1x", "optimizer.lr: '0.1x' is not a number");
    set_bad(j, "optimizer.lr", "nan", "not a finite number");
    set_bad(j, "optimizer.lr", "", "optimizer.lr: no value given");
    set_bad(j, "train.epochs", "1.5", "train.epochs: '1.5' is not an integer");
    set_bad(j, "train.epochs", " 5", "is not an integer");
    set_bad(j, "train.epochs", "3000000000", "train.epochs: '3000000000' is out of range");
    set_bad(j, "seed", "-5", "seed");
    set_bad(j, "train.shuffle", "maybe", "train.shuffle: 'maybe' is not a boolean");
    set_bad(j, "model.init", "xavier", "model.init: 'xavier' is not one of: auto, glorot, he");
    set_bad(j, "model.layers", "3", "model.layers: name an entry");
    set_bad(j, "model.layers.0", "3", "model.layers.0: name an entry");
    set_bad(j, "model.layers.3.units", "3", "index 3 is past the end (3 entries)");
    set_bad(j, "model.layers.x.units", "3", "'x' is not an entry index");
    set_bad(j, "model.layers.-1.units", "3", "is not an entry index");
    set_bad(j, "model.layers.0.unitz", "3", "unknown key 'model.layers.0.unitz'");
    /* nothing changed */
    cfg_job *fresh = load_ok(FULL);
    assert_job_equal(j, fresh);
    cfg_job_free(fresh);
    cfg_job_free(j);
}

static void test_override_then_check(void **state)
{
    (void)state;
    cfg_job *j = load_ok(MINIMAL);
    pst_err err;
    set_ok(j, "train.epochs", "0");
    assert_int_equal(cfg_job_check(j, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "train.epochs: must be >= 1, got 0"));
    set_ok(j, "train.epochs", "2");
    assert_int_equal(cfg_job_check(j, &err), PST_OK);
    set_ok(j, "model.layers.0.activation", "relu");
    assert_int_equal(cfg_job_check(j, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.loss"));
    set_ok(j, "model.loss", "mse");
    assert_int_equal(cfg_job_check(j, &err), PST_OK);
    set_ok(j, "optimizer.schedule", "step");
    set_ok(j, "optimizer.step_size", "0");
    assert_int_equal(cfg_job_check(j, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "optimizer.step_size"));
    cfg_job_free(j);
}

static void test_override_follows_defaults(void **state)
{
    (void)state;
    /* --optimizer.name adam on a file that left lr alone: adam's lr, as in a file. */
    cfg_job *j = load_ok(MINIMAL);
    set_ok(j, "optimizer.name", "adam");
    opt_config want;
    opt_config_default(&want, OPT_ADAM);
    assert_opt_equal(&j->optimizer, &want);
    set_ok(j, "optimizer.lr", "0.2");
    set_ok(j, "optimizer.name", "sgd");
    assert_int_equal(j->optimizer.kind, OPT_SGD);
    assert_true(j->optimizer.lr == 0.2f); /* set by the user: kept */
    /* the names cfg_override takes are the ones opt_kind_name gives */
    for (int k = OPT_SGD; k <= OPT_ADAMW; k++) {
        set_ok(j, "optimizer.name", opt_kind_name((opt_kind)k));
        assert_int_equal(j->optimizer.kind, k);
    }
    /* data.task and data.scale take data/'s names (one table for jobs and checkpoints) */
    for (int k = 0; k < DS_TASK_COUNT; k++) {
        assert_int_equal(ds_task_find(ds_task_name(k)), k);
        set_ok(j, "data.task", ds_task_name(k));
        assert_int_equal(j->data.task, k);
    }
    for (int k = 0; k < DS_SCALE_COUNT; k++) {
        assert_int_equal(ds_scale_find(ds_scale_name(k)), k);
        set_ok(j, "data.scale", ds_scale_name(k));
        assert_int_equal(j->data.scale, k);
    }
    assert_null(ds_scale_name(DS_SCALE_COUNT));
    assert_int_equal(ds_task_find("classification"), -1);
    set_ok(j, "data.task", "classify");

    /* --name moves a default output.dir along, not an explicit one. */
    set_ok(j, "name", "exp2");
    assert_string_equal(j->output.dir, "runs/exp2");
    set_ok(j, "output.dir", "mine");
    set_ok(j, "name", "exp3");
    assert_string_equal(j->name, "exp3");
    assert_string_equal(j->output.dir, "mine");
    cfg_job_free(j);
}

/* ---- Printing ---------------------------------------------------------------------- */

static char *print_job(const cfg_job *j)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    pst_err err;
    assert_int_equal(cfg_job_print(j, f, &err), PST_OK);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void round_trip(const char *yaml)
{
    cfg_job *a = load_ok(yaml);
    char *text = print_job(a);
    cfg_job *b = load_ok(text);
    assert_job_equal(a, b);
    char *again = print_job(b);
    assert_string_equal(text, again);
    free(again);
    free(text);
    cfg_job_free(b);
    cfg_job_free(a);
}

static void test_print_round_trip(void **state)
{
    (void)state;
    round_trip(FULL);
    round_trip(MINIMAL);
    /* Strings that need quoting and floats that %g would round. */
    char *yaml = minimal_plus("name: \"a \\\"quoted\\\" name: #1\\n\\ttab \\\\ \\x01\"\n"
                              "optimizer: {lr: 0.123456789, eps: 1.17549435e-38, gamma: 3e+38}\n"
                              "output: {dir: \"yes\"}\n");
    round_trip(yaml);
    free(yaml);

    yaml = minimal_plus("optimizer: {lr: 0.1}\n");
    cfg_job *j = load_ok(yaml);
    char *text = print_job(j);
    /* the shortest form that reads back, not 0.100000001 */
    assert_non_null(strstr(text, "  lr: 0.1\n"));
    assert_non_null(strstr(text, "  test: null\n"));
    assert_non_null(strstr(text, "name: \"pstrain-job\"\n"));
    free(text);
    cfg_job_free(j);
    free(yaml);

    /* a double set from text reads back exactly */
    j = load_ok(MINIMAL);
    set_ok(j, "data.validation_split", "0.1");
    text = print_job(j);
    cfg_job *k = load_ok(text);
    assert_true(k->data.validation_split == 0.1);
    cfg_job_free(k);
    free(text);
    cfg_job_free(j);
}

static void test_print_rejects_bad_enum(void **state)
{
    (void)state;
    cfg_job *j = load_ok(MINIMAL);
    ml_loss saved = j->model.spec.loss;
    j->model.spec.loss = (ml_loss)42;
    pst_err err;
    assert_int_equal(cfg_job_check(j, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.loss"));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_not_equal(cfg_job_print(j, f, &err), PST_OK);
    assert_non_null(strstr(err.msg, "loss"));
    fclose(f);
    free(buf);
    j->model.spec.loss = saved;
    cfg_job_free(j);
}

/* The fingerprint of a job is part of what checkpoints store and processes started
 * separately compare: its value for a known job must never change. Measured with the
 * pstrain before the layer registry (restructure at 3b055e8, core/config.c) on this text
 * and on examples/fashion-mnist.yaml. */
static void test_job_hash_is_stable(void **state)
{
    (void)state;
    cfg_job *j = load_ok("name: hash-known\n"
                         "seed: 7\n"
                         "data: {format: csv, train: a.csv, task: classify, num_classes: 3, "
                         "scale: standardize, classes: [2, 0, 1], limit: 100}\n"
                         "model:\n"
                         "  layers:\n"
                         "    - {units: 16, activation: relu, name: hidden, trainable: false}\n"
                         "    - type: activation\n"
                         "      activation: tanh\n"
                         "    - {type: dense, units: 3, activation: softmax, name: out, "
                         "lr_mult: 0.25}\n"
                         "  loss: categorical_crossentropy\n"
                         "  init: he\n"
                         "optimizer: {name: adamw, lr: 0.005}\n"
                         "cluster: {servers: 1, workers: 3, consistency: bsp}\n");
    assert_true(cfg_job_hash(j) == UINT64_C(0xe611f0fd30ead5c9));
    /* What a run does when it goes wrong computes nothing: it is no part of the job. */
    j->train.on_divergence = CFG_DIV_STOP;
    assert_true(cfg_job_hash(j) == UINT64_C(0xe611f0fd30ead5c9));
    j->train.epochs++;
    assert_true(cfg_job_hash(j) != UINT64_C(0xe611f0fd30ead5c9));
    cfg_job_free(j);
    j = NULL;
    pst_err err;
    assert_int_equal(cfg_job_load_file(&j, PSTRAIN_SOURCE_DIR "/examples/fashion-mnist.yaml", &err),
                     PST_OK);
    assert_true(cfg_job_hash(j) == UINT64_C(0x2451e6f324801b5a));
    cfg_job_free(j);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(ml_activation_name(ACT_SOFTMAX), "softmax");
    assert_string_equal(ml_activation_name(ACT_RELU), "relu");
    assert_string_equal(ml_loss_name(ML_LOSS_BCE), "binary_crossentropy");
    assert_string_equal(ml_loss_name(ML_LOSS_MSE), "mse");
    assert_null(ml_loss_name(99));
}

/* ---- Files ------------------------------------------------------------------------- */

static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/pst_test_config_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/job.yaml", dir);

    cfg_job *j = (cfg_job *)&j;
    pst_err err;
    pst_err_clear(&err);
    assert_int_equal(cfg_job_load_file(&j, path, &err), PST_ERR_IO);
    assert_null(j);
    assert_non_null(strstr(err.msg, path));
    /* a directory opens but does not read */
    assert_int_equal(cfg_job_load_file(&j, dir, &err), PST_ERR_IO);
    assert_non_null(strstr(err.msg, dir));

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(MINIMAL, f);
    fputs("train:\n  epochs: x\n", f);
    fclose(f);
    assert_int_equal(cfg_job_load_file(&j, path, &err), PST_ERR_CONFIG);
    char want[256];
    snprintf(want, sizeof want, "%s:6: train.epochs: 'x' is not an integer", path);
    assert_string_equal(err.msg, want);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs(FULL, f);
    fclose(f);
    assert_int_equal(cfg_job_load_file(&j, path, &err), PST_OK);
    cfg_job *ref = load_ok(FULL);
    assert_job_equal(j, ref);
    cfg_job_free(ref);
    cfg_job_free(j);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* Every job shipped in examples/ must load. The directory is found from this file's path,
 * which CMake passes absolute and a build from the repository root passes relative. */
static void test_examples_parse(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash)
        snprintf(slash + 1, sizeof dir - (size_t)(slash + 1 - dir), "../examples");
    else
        snprintf(dir, sizeof dir, "../examples");
    DIR *d = opendir(dir);
    if (!d)
        skip();
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        cfg_job *j = NULL;
        pst_err err;
        pst_err_clear(&err);
        int rc = cfg_job_load_file(&j, path, &err);
        if (rc != PST_OK)
            print_error("%s\n", err.msg);
        assert_int_equal(rc, PST_OK);
        cfg_job_free(j);
        n++;
    }
    closedir(d);
    if (n == 0)
        skip();
}

/* ---- Fine-tuning keys ------------------------------------------------------------ */

static void test_finetune_keys(void **state)
{
    (void)state;
    /* Defaults: everything trains at the base lr, all classes, all samples, fresh weights. */
    cfg_job *j = load_ok(MINIMAL);
    assert_int_equal(j->model.spec.layers[0].trainable, 1);
    assert_true(j->model.spec.layers[0].lr_mult == 1.0f);
    assert_null(j->model.init_from);
    assert_null(j->data.classes);
    assert_int_equal(j->data.classes_count, 0);
    assert_int_equal(j->data.limit, 0);
    cfg_job_free(j);

    /* Layer defaults are per entry: a key one layer sets does not reach the others. */
    j = load_ok("data: {train: a, train_labels: b}\n"
                "model:\n  layers:\n"
                "    - {units: 8, trainable: false}\n"
                "    - {units: 8, lr_mult: 0}\n"
                "    - {units: 3, activation: softmax, lr_mult: 0.1}\n");
    assert_int_equal(j->model.spec.layers[0].trainable, 0);
    assert_true(j->model.spec.layers[0].lr_mult == 1.0f);
    assert_int_equal(j->model.spec.layers[1].trainable, 1);
    assert_true(j->model.spec.layers[1].lr_mult == 0.0f);
    assert_int_equal(j->model.spec.layers[2].trainable, 1);
    assert_true(j->model.spec.layers[2].lr_mult == 0.1f);

    /* Overrides: layer keys, the class list as a whole, init_from. */
    set_ok(j, "model.layers.0.trainable", "true");
    set_ok(j, "model.layers.2.lr_mult", "2.5");
    assert_int_equal(j->model.spec.layers[0].trainable, 1);
    assert_true(j->model.spec.layers[2].lr_mult == 2.5f);
    set_ok(j, "data.classes", "5,6,7");
    assert_int_equal(j->data.classes_count, 3);
    assert_int_equal(j->data.classes[2], 7);
    set_ok(j, "data.classes", "[ 9, 8 ,1 ]");
    assert_int_equal(j->data.classes_count, 3);
    assert_int_equal(j->data.classes[0], 9);
    assert_int_equal(j->data.classes[1], 8);
    assert_int_equal(j->data.classes[2], 1);
    assert_int_equal(cfg_job_check(j, NULL), PST_OK);
    set_bad(j, "data.classes", "5,x", "data.classes: entry 1: 'x' is not an integer");
    set_bad(j, "data.classes", "5,,6", "entry 1: no value");
    set_bad(j, "data.classes", "[5, 6", "is not a list");
    set_bad(j, "data.classes.0", "5", "unknown key 'data.classes.0'");
    assert_int_equal(j->data.classes_count, 3); /* refused overrides change nothing */
    set_ok(j, "data.classes", "7");
    assert_int_equal(j->data.classes_count, 1);
    set_ok(j, "data.classes", "[]");
    assert_int_equal(j->data.classes_count, 0);
    set_ok(j, "data.classes", "");
    assert_int_equal(j->data.classes_count, 0);
    set_ok(j, "data.limit", "500");
    assert_int_equal(j->data.limit, 500);
    set_ok(j, "model.init_from", "runs/pre/model.safetensors");
    assert_string_equal(j->model.init_from, "runs/pre/model.safetensors");
    set_ok(j, "model.layers.2.lr_mult", "-1");
    pst_err err;
    assert_int_equal(cfg_job_check(j, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.layers.2.lr_mult: must be >= 0"));
    set_ok(j, "model.layers.2.lr_mult", "1");

    /* The fingerprint covers which samples train, not where the pretrained file lies. */
    uint64_t h = cfg_job_hash(j);
    set_ok(j, "model.init_from", "/elsewhere/model.safetensors");
    assert_true(cfg_job_hash(j) == h);
    set_ok(j, "data.classes", "1,2,3");
    assert_true(cfg_job_hash(j) != h);
    set_ok(j, "data.classes", "");
    assert_true(cfg_job_hash(j) == h);
    set_ok(j, "data.limit", "499");
    assert_true(cfg_job_hash(j) != h);
    set_ok(j, "data.limit", "500");
    set_ok(j, "model.layers.2.lr_mult", "0.5");
    assert_true(cfg_job_hash(j) != h);

    /* The printed job keeps them and loads back to the same values. */
    set_ok(j, "data.classes", "4,3,1");
    char *text = print_job(j);
    assert_non_null(strstr(text, "  classes: [4, 3, 1]\n"));
    assert_non_null(strstr(text, "      lr_mult: 0.5\n"));
    assert_non_null(strstr(text, "      trainable: true\n"));
    cfg_job *k = load_ok(text);
    assert_job_equal(j, k);
    cfg_job_free(k);
    free(text);
    cfg_job_free(j);
}

/* checkpoint: defaults, values from a file and from flags, range checks, and no effect on
 * the job's fingerprint (a resumed run, or one checkpointing elsewhere, is the same job). */
static void test_checkpoint_keys(void **state)
{
    (void)state;
    cfg_job *j = load_ok(MINIMAL);
    const cfg_checkpoint *k = &j->checkpoint;
    assert_int_equal(k->enabled, 1);
    assert_null(k->dir);
    assert_null(k->resume);
    assert_int_equal(k->every_steps, 0);
    assert_true(k->every_seconds == 0.0);
    assert_int_equal(k->keep, 2);
    uint64_t hash = cfg_job_hash(j);
    set_ok(j, "checkpoint.every_steps", "100");
    set_ok(j, "checkpoint.every_seconds", "600.5");
    set_ok(j, "checkpoint.keep", "3");
    set_ok(j, "checkpoint.dir", "ck");
    set_ok(j, "checkpoint.resume", "runs/x");
    set_ok(j, "checkpoint.enabled", "no");
    assert_int_equal(k->every_steps, 100);
    assert_true(k->every_seconds == 600.5);
    assert_int_equal(k->keep, 3);
    assert_string_equal(k->dir, "ck");
    assert_string_equal(k->resume, "runs/x");
    assert_int_equal(k->enabled, 0);
    assert_true(cfg_job_hash(j) == hash);
    set_ok(j, "train.epochs", "7"); /* the fingerprint does see the rest */
    assert_true(cfg_job_hash(j) != hash);
    pst_err err;
    assert_int_equal(cfg_job_check(j, &err), PST_OK);
    set_ok(j, "checkpoint.keep", "0");
    assert_int_equal(cfg_job_check(j, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "checkpoint.keep: must be >= 1"));
    set_ok(j, "checkpoint.keep", "1");
    set_ok(j, "checkpoint.every_steps", "-1");
    assert_int_equal(cfg_job_check(j, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "checkpoint.every_steps"));
    set_ok(j, "checkpoint.every_steps", "0");
    set_ok(j, "checkpoint.every_seconds", "-2");
    assert_int_equal(cfg_job_check(j, &err), PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "checkpoint.every_seconds"));
    set_bad(j, "checkpoint.every_seconds", "soon", "not a number");
    set_bad(j, "checkpoint.often", "1", "unknown key");
    cfg_job_free(j);

    char *yaml = minimal_plus("checkpoint:\n  every_steps: 5\n  resume: old/checkpoints\n");
    j = load_ok(yaml);
    assert_int_equal(j->checkpoint.every_steps, 5);
    assert_string_equal(j->checkpoint.resume, "old/checkpoints");
    assert_int_equal(j->checkpoint.keep, 2);
    /* Printed and read back, the section is the same. */
    char *text = print_job(j);
    cfg_job *back = load_ok(text);
    assert_int_equal(back->checkpoint.every_steps, 5);
    assert_string_equal(back->checkpoint.resume, "old/checkpoints");
    assert_null(back->checkpoint.dir);
    assert_int_equal(back->checkpoint.enabled, 1);
    free(text);
    free(yaml);
    cfg_job_free(back);
    cfg_job_free(j);
    yaml = minimal_plus("checkpoint:\n  keep: 0\n");
    cfg_job *bad = NULL;
    assert_int_equal(load(yaml, &bad, &err), PST_ERR_CONFIG);
    assert_null(bad);
    assert_non_null(strstr(err.msg, "checkpoint.keep: must be >= 1"));
    free(yaml);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_minimal_gets_defaults),
        cmocka_unit_test(test_optimizer_defaults_per_kind),
        cmocka_unit_test(test_explicit_zero_is_kept),
        cmocka_unit_test(test_output_dir_follows_name),
        cmocka_unit_test(test_scalar_forms),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_empty_document),
        cmocka_unit_test(test_errors_stay_one_line),
        cmocka_unit_test(test_override_values),
        cmocka_unit_test(test_override_errors),
        cmocka_unit_test(test_override_then_check),
        cmocka_unit_test(test_override_follows_defaults),
        cmocka_unit_test(test_finetune_keys),
        cmocka_unit_test(test_checkpoint_keys),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_print_rejects_bad_enum),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_job_hash_is_stable),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_examples_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
