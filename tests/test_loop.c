/* tests/test_loop.c -- the one training loop (worker/loop.h): the order of a step's calls,
 * checkpoint cadence, resuming mid-epoch, stops, and that the local loop is the pieces it
 * is made of.
 *
 * The data are 40 seeded random samples of 4 features in 2 classes, batch 8: 5 steps an
 * epoch. A recording ops table stands in for the servers. */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/rng.h"
#include "worker/loop.h"
#include "worker/trainer.h"

enum { N = 40, D = 4, K = 2, STEPS = 5, EPOCHS = 3 };

static ds_dataset *make_data(void)
{
    ds_dataset *ds = ds_create(N, D, DS_TASK_CLASSIFY, K, 0, NULL);
    assert_non_null(ds);
    rng_state r;
    rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        ds_labels(ds)[i] = (int32_t)rng_below(&r, K);
        for (int j = 0; j < D; j++)
            ds_x(ds)[i * D + j] = rng_normal(&r) + (j == ds_labels(ds)[i] ? 1.0f : 0.0f);
    }
    return ds;
}

static cfg_job *make_job(void)
{
    static const char yaml[] = "seed: 9\n"
                               "data: {train: unused, train_labels: unused}\n"
                               "model:\n"
                               "  layers: [{type: dense, units: 6, activation: relu}, {type: "
                               "dense, units: 2, activation: softmax}]\n"
                               "optimizer: {name: sgd, lr: 0.1}\n"
                               "train: {batch_size: 8, epochs: 3}\n";
    cfg_job *job = NULL;
    pst_err err = {0};
    if (cfg_job_load_string(&job, yaml, strlen(yaml), "test", &err))
        fail_msg("job: %s", err.msg);
    return job;
}

/* What the ops saw, in order: one letter per call (b begin, p prepare, u update, a after,
 * e end, c checkpoint), and the clocks updates were flagged at. */
typedef struct {
    wk_trainer *tr;
    char calls[512];
    int n;
    int64_t flagged[16];
    int nflagged;
    int64_t ckpt_clock[16]; /* trainer step at each checkpoint call */
    const char *ckpt_why[16];
    int nckpt;
    int stop_at_clock; /* after_step raises *stop once this many steps are done; 0: never */
    volatile sig_atomic_t *stop;
    int ended_interrupted;
} rec;

static void add(rec *r, char c)
{
    assert_true(r->n < (int)sizeof r->calls - 1);
    r->calls[r->n++] = c;
    r->calls[r->n] = '\0';
}

static void r_begin(void *ctx, int epoch)
{
    (void)epoch;
    add(ctx, 'b');
}

static int r_prepare(void *ctx, const wk_loop_pos *at, pst_err *err)
{
    (void)at;
    (void)err;
    add(ctx, 'p');
    return PST_OK;
}

static int r_update(void *ctx, const wk_loop_pos *at, int checkpoint, pst_err *err)
{
    rec *r = ctx;
    add(r, 'u');
    assert_true(isfinite(at->loss));
    if (checkpoint)
        r->flagged[r->nflagged++] = at->clock;
    return wk_trainer_apply_local(r->tr, err);
}

static int r_after(void *ctx, const wk_loop_pos *at, pst_err *err)
{
    rec *r = ctx;
    (void)err;
    add(r, 'a');
    if (r->stop_at_clock && at->clock >= r->stop_at_clock) /* at->clock: steps done */
        *r->stop = SIGINT;
    return PST_OK;
}

static int r_end(void *ctx, const wk_epoch_stats *st, pst_err *err)
{
    rec *r = ctx;
    (void)err;
    add(r, 'e');
    r->ended_interrupted = st->interrupted;
    return PST_OK;
}

static int r_ckpt(void *ctx, int epoch_done, const char *why, pst_err *err)
{
    rec *r = ctx;
    (void)err;
    (void)epoch_done;
    add(r, 'c');
    r->ckpt_clock[r->nckpt] = wk_trainer_step(r->tr);
    r->ckpt_why[r->nckpt++] = why;
    return PST_OK;
}

static const wk_loop_ops rec_ops = {.begin_epoch = r_begin,
                                    .prepare = r_prepare,
                                    .update = r_update,
                                    .after_step = r_after,
                                    .end_epoch = r_end,
                                    .checkpoint = r_ckpt};

static void test_cadence(void **state)
{
    (void)state;
    wk_cadence c;
    cfg_checkpoint ck = {.enabled = 1, .every_steps = 3};
    wk_cadence_init(&c, &ck, 1);
    int due[10];
    for (int s = 1; s <= 9; s++)
        due[s] = wk_cadence_due(&c, s);
    for (int s = 1; s <= 9; s++)
        assert_int_equal(due[s], s % 3 == 0);
    /* Seconds: only the timed process; an elapsed interval makes the next step due. */
    cfg_checkpoint secs = {.enabled = 1, .every_seconds = 1e-9};
    wk_cadence_init(&c, &secs, 0);
    assert_false(wk_cadence_due(&c, 1));
    wk_cadence_init(&c, &secs, 1);
    assert_true(wk_cadence_due(&c, 1));
    cfg_checkpoint hour = {.enabled = 1, .every_seconds = 3600};
    wk_cadence_init(&c, &hour, 1);
    assert_false(wk_cadence_due(&c, 1));
    cfg_checkpoint off = {.enabled = 0, .every_steps = 1};
    wk_cadence_init(&c, &off, 1);
    assert_false(wk_cadence_due(&c, 1));
}

/* Three epochs of 5 steps, a checkpoint every 3: the calls in order, updates flagged at
 * clocks 2, 5, 8, 11, 14 (steps 3, 6, ...), periodic checkpoints except on an epoch's last
 * step (the epoch-end one covers it). */
static void test_order_and_cadence(void **state)
{
    (void)state;
    ds_dataset *ds = make_data();
    cfg_job *job = make_job();
    pst_err err = {0};
    rec r = {0};
    assert_non_null(r.tr = wk_trainer_create(job, ds, 0, &err));
    wk_cadence cad;
    cfg_checkpoint ck = {.enabled = 1, .every_steps = 3};
    wk_cadence_init(&cad, &ck, 1);
    wk_loop_options o = {.tr = r.tr,
                         .train = ds,
                         .first_epoch = 1,
                         .last_epoch = EPOCHS,
                         .cadence = &cad,
                         .ops = &rec_ops,
                         .ctx = &r};
    wk_loop_result res;
    assert_int_equal(wk_loop_run(&o, &res, &err), PST_OK);
    assert_int_equal(res.clock, EPOCHS * STEPS);
    assert_false(res.interrupted);
    assert_int_equal(res.last.steps, STEPS);
    assert_int_equal(res.last.samples, N);
    /* Epoch 1: steps 1..5, a periodic checkpoint after step 3, the epoch end's. Epoch 2
     * (clocks 6..10 after its steps): due after 6 and 9. Epoch 3 (11..15): after 12, and
     * 15 is its last step, covered by the epoch end's. */
    assert_string_equal(r.calls, "bpuapuapuacpuapuaec"
                                 "bpuacpuapuapuacpuaec"
                                 "bpuapuacpuapuapuaec");
    int64_t want_flag[] = {2, 5, 8, 11, 14};
    assert_int_equal(r.nflagged, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r.flagged[i], want_flag[i]);
    int64_t want_ckpt[] = {3, 5, 6, 9, 10, 12, 15};
    assert_int_equal(r.nckpt, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(r.ckpt_clock[i], want_ckpt[i]);
    assert_string_equal(r.ckpt_why[0], "periodic");
    assert_null(r.ckpt_why[1]);
    wk_trainer_destroy(r.tr);
    cfg_job_free(job);
    ds_destroy(ds);
}

/* A stop between steps: the epoch ends interrupted; reported and checkpointed as
 * "stopped" only when report_interrupted (a single process). */
static void test_stop(void **state)
{
    (void)state;
    ds_dataset *ds = make_data();
    cfg_job *job = make_job();
    pst_err err = {0};
    for (int report = 0; report <= 1; report++) {
        volatile sig_atomic_t stop = 0;
        rec r = {.stop = &stop, .stop_at_clock = 7};
        assert_non_null(r.tr = wk_trainer_create(job, ds, 0, &err));
        wk_loop_options o = {.tr = r.tr,
                             .train = ds,
                             .first_epoch = 1,
                             .last_epoch = EPOCHS,
                             .stop = &stop,
                             .report_interrupted = report,
                             .ops = &rec_ops,
                             .ctx = &r};
        wk_loop_result res;
        assert_int_equal(wk_loop_run(&o, &res, &err), PST_OK);
        assert_true(res.interrupted);
        assert_int_equal(res.clock, 7);
        assert_int_equal(res.last.steps, 2);
        assert_true(r.ended_interrupted);
        assert_string_equal(r.calls, report ? "bpuapuapuapuapuaec"
                                              "bpuapuaec"
                                            : "bpuapuapuapuapuaec"
                                              "bpuapuae");
        if (report)
            assert_string_equal(r.ckpt_why[r.nckpt - 1], "stopped");
        wk_trainer_destroy(r.tr);
    }
    cfg_job_free(job);
    ds_destroy(ds);
}

/* The test hook raises SIGTERM once the clock reaches k (ignored here, so the run goes on;
 * the handler counts). */
static volatile sig_atomic_t terms;
static void on_term(int sig)
{
    (void)sig;
    terms++;
}

static void test_stop_hook(void **state)
{
    (void)state;
    ds_dataset *ds = make_data();
    cfg_job *job = make_job();
    pst_err err = {0};
    struct sigaction sa = {.sa_handler = on_term}, old;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGTERM, &sa, &old), 0);
    wk_trainer *tr = wk_trainer_create(job, ds, 0, &err);
    assert_non_null(tr);
    pst_test_hooks hooks = {.stop_after_clock = 4};
    const wk_loop_ops local = {0};
    wk_loop_options o = {
        .tr = tr, .train = ds, .first_epoch = 1, .last_epoch = 1, .hooks = &hooks, .ops = &local};
    wk_loop_result res;
    terms = 0;
    assert_int_equal(wk_loop_run(&o, &res, &err), PST_OK);
    assert_int_equal(terms, 1);
    sigaction(SIGTERM, &old, NULL);
    wk_trainer_destroy(tr);
    cfg_job_free(job);
    ds_destroy(ds);
}

/* The local loop (no update op) is the pieces by hand; and a run resumed at epoch 2 step 3
 * (with the running figures) reports what the uninterrupted one did. */
static void test_local_is_the_pieces(void **state)
{
    (void)state;
    ds_dataset *ds = make_data();
    cfg_job *job = make_job();
    pst_err err = {0};
    wk_trainer *a = wk_trainer_create(job, ds, 0, &err), *b = wk_trainer_create(job, ds, 0, &err);
    assert_non_null(a);
    assert_non_null(b);
    wk_epoch_stats sa, sb;
    assert_int_equal(wk_loop_local_epochs(a, ds, 1, 2, &sa, &err), PST_OK);
    for (int e = 1; e <= 2; e++) {
        int64_t n = wk_trainer_begin_epoch(b, ds, e, &err);
        assert_int_equal(n, STEPS);
        for (int64_t s = 0; s < n; s++) {
            assert_int_equal(wk_trainer_compute(b, ds, s, NULL, &err), PST_OK);
            assert_int_equal(wk_trainer_apply_local(b, &err), PST_OK);
        }
        wk_trainer_end_epoch(b, 0, &sb);
    }
    size_t P = ml_model_nparams(wk_trainer_model(a));
    assert_memory_equal(ml_model_params(wk_trainer_model(a)), ml_model_params(wk_trainer_model(b)),
                        P * sizeof(float));
    assert_int_equal(wk_trainer_step(a), 2 * STEPS);
    assert_true(sa.loss == sb.loss);
    assert_true(sa.accuracy == sb.accuracy);
    wk_trainer_destroy(a);
    wk_trainer_destroy(b);
    cfg_job_free(job);
    ds_destroy(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cadence),
        cmocka_unit_test(test_order_and_cadence),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_stop_hook),
        cmocka_unit_test(test_local_is_the_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
