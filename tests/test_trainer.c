/* tests/test_trainer.c -- fine-tuning in the training loop: frozen layers, per-layer
 * learning-rate multipliers and initial weights from a checkpoint (model.init_from); and
 * the per-row outputs of wk_trainer_predict.
 *
 * Jobs are YAML, loaded as a user's would be (so every default is the loader's). The data
 * are 96 seeded random samples of 5 features in 3 classes; shuffling is on, so a run is a
 * few epochs of the trainer's real loop. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ckpt/ckpt.h"
#include "base/rng.h"
#include "worker/loop.h"
#include "worker/trainer.h"

enum { N = 96, D = 5, K = 3 };

static ds_dataset *make_data(void)
{
    ds_dataset *ds = ds_create(N, D, DS_TASK_CLASSIFY, K, 0, NULL);
    assert_non_null(ds);
    rng_state r;
    rng_seed(&r, 11);
    float *x = ds_x(ds);
    int32_t *y = ds_labels(ds);
    for (int i = 0; i < N; i++) {
        y[i] = (int32_t)rng_below(&r, K);
        for (int j = 0; j < D; j++)
            x[i * D + j] = rng_normal(&r) + (j == y[i] ? 1.5f : 0.0f);
    }
    return ds;
}

/* A job around the three layers given (YAML flow mappings), with optimizer `opt`. */
static cfg_job *job_of(const char *l0, const char *l1, const char *l2, const char *opt,
                       const char *init_from)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "seed: 5\n"
             "data: {train: unused, train_labels: unused}\n"
             "model:\n"
             "  init_from: %s\n"
             "  layers:\n"
             "    - %s\n"
             "    - %s\n"
             "    - %s\n"
             "optimizer: %s\n"
             "train: {batch_size: 16, epochs: 3}\n",
             init_from ? init_from : "null", l0, l1, l2, opt);
    cfg_job *job = NULL;
    pst_err err = {0};
    if (cfg_job_load_string(&job, yaml, strlen(yaml), "test", &err))
        fail_msg("job: %s", err.msg);
    return job;
}

/* Trains job on ds for its epochs; returns the trainer (caller destroys it). */
static wk_trainer *train(const cfg_job *job, const ds_dataset *ds)
{
    pst_err err = {0};
    wk_trainer *t = wk_trainer_create(job, ds, 0, &err);
    if (!t)
        fail_msg("trainer: %s", err.msg);
    for (int e = 1; e <= job->train.epochs; e++) {
        wk_epoch_stats st;
        if (wk_loop_local_epochs(t, ds, e, e, &st, &err))
            fail_msg("epoch %d: %s", e, err.msg);
    }
    return t;
}

static const ml_segment *segment(wk_trainer *t, const char *name)
{
    ml_model *m = wk_trainer_model(t);
    for (int i = 0; i < ml_model_nsegments(m); i++)
        if (strcmp(ml_model_segment(m, i)->name, name) == 0)
            return ml_model_segment(m, i);
    fail_msg("no segment %s", name);
    return NULL;
}

/* Bit-for-bit equality of two trainers' weights. */
static void same_weights(wk_trainer *a, wk_trainer *b)
{
    ml_model *ma = wk_trainer_model(a), *mb = wk_trainer_model(b);
    assert_int_equal(ml_model_nparams(ma), ml_model_nparams(mb));
    assert_memory_equal(ml_model_params(ma), ml_model_params(mb),
                        ml_model_nparams(ma) * sizeof(float));
}

#define L0 "{units: 8, activation: relu, name: a"
#define L1 "{units: 6, activation: tanh, name: b"
#define L2 "{units: 3, activation: softmax, name: c"
#define ADAM "{name: adam, lr: 0.01, weight_decay: 0.001, clip_norm: 1.0}"

/* A frozen layer keeps its initial weights through training (even with weight decay and
 * clipping), the others move; lr_mult 0 is the same as trainable: false, to the bit. */
static void test_frozen_layer_unchanged(void **state)
{
    (void)state;
    ds_dataset *ds = make_data();
    cfg_job *jf = job_of(L0 "}", L1 ", trainable: false}", L2 "}", ADAM, NULL);
    cfg_job *jz = job_of(L0 "}", L1 ", lr_mult: 0}", L2 "}", ADAM, NULL);
    pst_err err = {0};
    wk_trainer *fresh = wk_trainer_create(jf, ds, 0, &err); /* the same seeded start */
    assert_non_null(fresh);
    wk_trainer *tf = train(jf, ds), *tz = train(jz, ds);
    const ml_segment *bw = segment(tf, "b.weight"), *bb = segment(tf, "b.bias");
    const float *w0 = ml_model_params(wk_trainer_model(fresh));
    const float *w = ml_model_params(wk_trainer_model(tf));
    size_t frozen_from = bw->offset, frozen_to = bb->offset + bb->len;
    assert_int_equal(wk_trainer_frozen_params(tf), frozen_to - frozen_from);
    assert_memory_equal(w + frozen_from, w0 + frozen_from,
                        (frozen_to - frozen_from) * sizeof(float));
    size_t moved = 0;
    for (size_t i = 0; i < ml_model_nparams(wk_trainer_model(tf)); i++)
        moved += (i < frozen_from || i >= frozen_to) && w[i] != w0[i];
    assert_true(moved >= 60); /* the others (69 floats) did train */
    same_weights(tf, tz);
    int ng;
    const opt_group *g = wk_trainer_groups(tf, &ng);
    assert_int_equal(ng, 3); /* a x1 | b frozen | c x1 */
    assert_true(g[1].lr_mult == 0.0f && g[1].offset == frozen_from);
    wk_trainer_destroy(fresh);
    wk_trainer_destroy(tf);
    wk_trainer_destroy(tz);
    cfg_job_free(jf);
    cfg_job_free(jz);
    ds_destroy(ds);
}

/* Batchnorm's running statistics are a state group of their own (a distributed worker
 * pushes their values, ps/state.h): never merged with the frozen layer after them, and
 * wk_trainer_state_values copies exactly those floats. */
static void test_state_group(void **state)
{
    (void)state;
    ds_dataset *ds = make_data();
    cfg_job *j = job_of(L0 "}\n    - {type: batchnorm, name: bn}", L1 ", trainable: false}", L2 "}",
                        ADAM, NULL);
    wk_trainer *t = train(j, ds);
    int ng;
    const opt_group *g = wk_trainer_groups(t, &ng);
    const unsigned char *st = wk_trainer_group_state(t);
    assert_int_equal(ng, 4); /* a + bn's gamma, beta x1 | bn's statistics | b frozen | c x1 */
    assert_non_null(st);
    assert_true(!st[0] && st[1] && !st[2] && !st[3]);
    const ml_segment *rm = segment(t, "bn.running_mean"), *rv = segment(t, "bn.running_var");
    assert_true(g[1].offset == rm->offset && g[1].len == rm->len + rv->len);
    assert_true(g[1].lr_mult == 0.0f && g[2].lr_mult == 0.0f);
    ml_model *m = wk_trainer_model(t);
    size_t P = ml_model_nparams(m);
    float *buf = malloc(P * sizeof *buf);
    assert_non_null(buf);
    for (size_t i = 0; i < P; i++)
        buf[i] = -7.0f;
    wk_trainer_state_values(t, buf);
    const float *w = ml_model_params(m);
    for (size_t i = 0; i < P; i++) {
        int in = i >= g[1].offset && i < g[1].offset + g[1].len;
        assert_true(in ? buf[i] == w[i] : buf[i] == -7.0f);
    }
    assert_true(w[rm->offset] != 0.0f && w[rv->offset] != 1.0f); /* they moved in training */
    free(buf);
    wk_trainer_destroy(t);
    cfg_job_free(j);
    ds_destroy(ds);
}

/* lr_mult scales one layer's learning rate only: lr 0.01 with layer b at x2 is lr 0.02 with
 * layers a and c at x0.5 -- the same effective rate for every layer, and in float the same
 * products (0.01f * 2 = 0.02f, 0.02f * 0.5 = 0.01f), so the same weights to the bit. The
 * schedule (warmup + cosine) multiplies in before the multiplier. Not the same as plain
 * lr 0.01: the comparison can fail. */
static void test_lr_mult_is_that_layers_lr(void **state)
{
    (void)state;
    ds_dataset *ds = make_data();
    const char *o1 = "{name: momentum, lr: 0.01, schedule: cosine, warmup_steps: 3}";
    const char *o2 = "{name: momentum, lr: 0.02, schedule: cosine, warmup_steps: 3}";
    cfg_job *j1 = job_of(L0 "}", L1 ", lr_mult: 2}", L2 "}", o1, NULL);
    cfg_job *j2 = job_of(L0 ", lr_mult: 0.5}", L1 "}", L2 ", lr_mult: 0.5}", o2, NULL);
    cfg_job *jp = job_of(L0 "}", L1 "}", L2 "}", o1, NULL);
    wk_trainer *t1 = train(j1, ds), *t2 = train(j2, ds), *tp = train(jp, ds);
    same_weights(t1, t2);
    int ng;
    wk_trainer_groups(tp, &ng);
    assert_int_equal(ng, 0); /* nothing special: the whole vector at x1, as before */
    ml_model *m1 = wk_trainer_model(t1), *mp = wk_trainer_model(tp);
    assert_true(memcmp(ml_model_params(m1), ml_model_params(mp),
                       ml_model_nparams(m1) * sizeof(float)) != 0);
    wk_trainer_destroy(t1);
    wk_trainer_destroy(t2);
    wk_trainer_destroy(tp);
    cfg_job_free(j1);
    cfg_job_free(j2);
    cfg_job_free(jp);
    ds_destroy(ds);
}

/* model.init_from: the body by name from a pretrained checkpoint, a renamed head fresh
 * (exactly the seeded head of a model without init_from), the old head skipped; a frozen
 * layer missing from the file and a reshaped layer are errors naming the tensor; the
 * checkpoint is only read. */
static void test_init_from(void **state)
{
    (void)state;
    char dir[] = "/tmp/pstrain-trainer-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/pre.safetensors", dir);
    ds_dataset *ds = make_data();
    cfg_job *jpre = job_of(L0 "}", L1 "}", L2 "}", ADAM, NULL);
    wk_trainer *pre = train(jpre, ds);
    pst_err err = {0};
    assert_int_equal(
        ckpt_save_model(path, wk_trainer_model(pre), &jpre->model.spec, ds, NULL, &err), PST_OK);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static unsigned char before[1 << 16], after[1 << 16];
    size_t nb = fread(before, 1, sizeof before, f);
    fclose(f);

    /* Same body, new head "h"; body frozen. */
    cfg_job *jft = job_of(L0 ", trainable: false}", L1 ", trainable: false}",
                          "{units: 3, activation: softmax, name: h}", ADAM, path);
    cfg_job *jplain =
        job_of(L0 "}", L1 "}", "{units: 3, activation: softmax, name: h}", ADAM, NULL);
    wk_trainer *ft = wk_trainer_create(jft, ds, 0, &err);
    if (!ft)
        fail_msg("%s", err.msg);
    wk_trainer *plain = wk_trainer_create(jplain, ds, 0, &err);
    assert_non_null(plain);
    const ckpt_init_report *r = wk_trainer_init_report(ft);
    assert_non_null(r);
    assert_int_equal(r->loaded, 4);
    assert_int_equal(r->fresh, 2);
    assert_int_equal(r->skipped, 2);
    assert_string_equal(r->fresh_names, "h.weight, h.bias");
    assert_string_equal(r->skipped_names, "c.weight, c.bias");
    assert_null(wk_trainer_init_report(plain));
    char note[512];
    assert_int_equal(wk_trainer_finetune_note(ft, note, sizeof note), 1);
    assert_non_null(strstr(note, "4 tensor(s) loaded"));
    const ml_segment *aw = segment(ft, "a.weight"), *hw = segment(ft, "h.weight");
    const float *wft = ml_model_params(wk_trainer_model(ft));
    const float *wpre = ml_model_params(wk_trainer_model(pre));
    const float *wplain = ml_model_params(wk_trainer_model(plain));
    size_t body = hw->offset; /* a and b come first */
    assert_int_equal(aw->offset, 0);
    assert_memory_equal(wft, wpre, body * sizeof(float));
    assert_memory_equal(wft + body, wplain + body,
                        (ml_model_nparams(wk_trainer_model(ft)) - body) * sizeof(float));
    /* Training it moves the head only. */
    wk_trainer_destroy(ft);
    ft = train(jft, ds);
    wft = ml_model_params(wk_trainer_model(ft));
    assert_memory_equal(wft, wpre, body * sizeof(float));
    assert_true(memcmp(wft + body, wplain + body, 3 * sizeof(float)) != 0);

    /* Errors: a reshaped layer, a frozen layer the file lacks, a file that is not there. */
    cfg_job *jbad = job_of("{units: 9, activation: relu, name: a}", L1 "}", L2 "}", ADAM, path);
    assert_null(wk_trainer_create(jbad, ds, 0, &err));
    assert_int_equal(err.code, PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "tensor 'a.weight': shape [8, 5] but the model needs [9, 5]"));
    assert_null(strchr(err.msg, '\n'));
    cfg_job_free(jbad);
    jbad = job_of("{units: 8, activation: relu, name: typo, trainable: false}", L1 "}", L2 "}",
                  ADAM, path);
    assert_null(wk_trainer_create(jbad, ds, 0, &err));
    assert_int_equal(err.code, PST_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "model.layers.0: frozen, but"));
    assert_non_null(strstr(err.msg, "'typo.weight'"));
    cfg_job_free(jbad);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.safetensors", dir);
    jbad = job_of(L0 "}", L1 "}", L2 "}", ADAM, missing);
    assert_null(wk_trainer_create(jbad, ds, 0, &err));
    assert_int_equal(err.code, PST_ERR_IO);
    assert_non_null(strstr(err.msg, "model.init_from: "));
    cfg_job_free(jbad);

    f = fopen(path, "rb");
    assert_non_null(f);
    size_t na = fread(after, 1, sizeof after, f);
    fclose(f);
    assert_int_equal(na, nb);
    assert_memory_equal(before, after, nb);

    wk_trainer_destroy(pre);
    wk_trainer_destroy(ft);
    wk_trainer_destroy(plain);
    cfg_job_free(jpre);
    cfg_job_free(jft);
    cfg_job_free(jplain);
    ds_destroy(ds);
    unlink(path);
    rmdir(dir);
}

/* wk_trainer_predict gives the outputs wk_trainer_evaluate scores: their argmax over every
 * batch has its accuracy; rows past the data or a batch over the job's are refused. */
static void test_predict_is_what_evaluate_scores(void **state)
{
    (void)state;
    ds_dataset *ds = make_data();
    cfg_job *job = job_of(L0 "}", L1 "}", L2 "}", ADAM, NULL);
    wk_trainer *t = train(job, ds);
    pst_err err = {0};
    wk_eval ev;
    assert_int_equal(wk_trainer_evaluate(t, ds, &ev, NULL, &err), PST_OK);
    int64_t hits = 0;
    for (int64_t lo = 0; lo < N; lo += 16) {
        int n = N - lo < 16 ? (int)(N - lo) : 16;
        const float *y = wk_trainer_predict(t, ds, lo, n, &err);
        assert_non_null(y);
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                best = y[i * K + k] > y[i * K + best] ? k : best;
            hits += best == ds_labels_const(ds)[lo + i];
        }
    }
    assert_true(ev.cls.accuracy > 0.5);
    assert_true(fabs(ev.cls.accuracy - (double)hits / N) < 1e-12);
    assert_null(wk_trainer_predict(t, ds, N - 8, 16, &err));
    assert_int_equal(err.code, PST_ERR_ARG);
    assert_null(wk_trainer_predict(t, ds, 0, 17, &err));
    wk_trainer_destroy(t);
    cfg_job_free(job);
    ds_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frozen_layer_unchanged),          cmocka_unit_test(test_state_group),
        cmocka_unit_test(test_lr_mult_is_that_layers_lr),       cmocka_unit_test(test_init_from),
        cmocka_unit_test(test_predict_is_what_evaluate_scores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
