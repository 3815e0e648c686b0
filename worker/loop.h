/* worker/loop.h -- the training loop: every epoch's steps, its evaluation, its report and
 * its checkpoints, one function for `pstrain train`, a distributed worker, bench_mlp and
 * the trainer tests.
 *
 * Step s of epoch e (clock = steps of the whole run done before it):
 *   ops->prepare(clock)             where the gradient goes (a worker: a buffer ZeroMQ has
 *                                   let go of)
 *   wk_trainer_compute(s)           batch -> forward -> loss -> backward -> clip
 *   due = wk_cadence_due(clock + 1) does this step end a checkpoint interval?
 *   ops->update(clock, due)         the gradient becomes an update: the optimizer here
 *                                   (no update op), or a push to the servers -- flagged
 *                                   for a checkpoint when due -- and the pull of the new
 *                                   weights (worker/dist.c)
 *   progress, a step record every train.log_every steps, ops->after_step, test hooks,
 *   ops->checkpoint(periodic) when due and the epoch goes on.
 * After the epoch's steps: ops->end_epoch, evaluation on the validation set and the epoch
 * report (with a report) and its verdict (wk_trainer_judge_epoch: a warning, or with
 * on_divergence stop the end of the run, PST_ERR_DIVERGED, before its checkpoint, so the
 * last one kept is from before), then ops->checkpoint(epoch end, or "stopped").
 * A stop (*stop != 0) is looked at between steps; the loop then returns with
 * res->interrupted set. */
#ifndef PSTRAIN_WORKER_LOOP_H
#define PSTRAIN_WORKER_LOOP_H

#include <signal.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "base/testhooks.h"
#include "data/data.h"
#include "job/job.h"
#include "worker/report.h"
#include "worker/trainer.h"

/* ---- Checkpoint cadence: the one rule for `pstrain train`, the workers and the servers ---
 *
 * A checkpoint is due after the step that makes the run's step count a multiple of
 * checkpoint.every_steps, and after the first step that ends checkpoint.every_seconds
 * since the last one. A single process writes it; a distributed worker flags that step's
 * push and every server writes the clock once the step is applied (ps/srv_ckpt.h). Only
 * one process may keep the seconds of a distributed job (worker 0: `timed`), so that all
 * workers and servers agree on the clocks written. */
typedef struct {
    int enabled;          /* checkpoint.enabled */
    int every_steps;      /* 0: off */
    double every_seconds; /* 0: off */
    int timed;            /* this process keeps the seconds */
    double last_s;        /* monotonic seconds of the last checkpoint */
} wk_cadence;

void wk_cadence_init(wk_cadence *c, const cfg_checkpoint *ck, int timed);
/* Whether a checkpoint is due once `steps_done` steps of the run are done; a due one
 * restarts the seconds. */
int wk_cadence_due(wk_cadence *c, int64_t steps_done);
/* A checkpoint was written for another reason (an epoch's end): the seconds restart. */
void wk_cadence_reset(wk_cadence *c);

/* ---- The loop --------------------------------------------------------------------------- */

/* Where the loop stands, for the ops (and the callbacks they start). */
typedef struct {
    int epoch;      /* 1-based */
    int64_t step;   /* of the epoch, 0-based: the step being taken */
    int64_t nsteps; /* of the epoch */
    int64_t clock;  /* steps of the run done: before this one in prepare and update,
                       including it in after_step */
    double loss;    /* the epoch's running mean training loss */
} wk_loop_pos;

/* What differs between training here and training against the servers. Every member may
 * be NULL; a NULL update is training here: one optimizer step over the whole vector
 * (wk_trainer_apply_local). ctx is wk_loop_options.ctx. */
typedef struct {
    /* Before an epoch's first step. */
    void (*begin_epoch)(void *ctx, int epoch);
    /* Before the step's gradient is computed. */
    int (*prepare)(void *ctx, const wk_loop_pos *at, pst_err *err);
    /* The step's gradient (ml_model_grads) becomes an update; checkpoint: the cadence says
     * one is due after this step. */
    int (*update)(void *ctx, const wk_loop_pos *at, int checkpoint, pst_err *err);
    /* After the step's progress report. */
    int (*after_step)(void *ctx, const wk_loop_pos *at, pst_err *err);
    /* The traffic for a record: epoch != 0 that of the epoch just ended, else that since
     * the previous step record (which starts a new interval). NULL: a single process. */
    void (*comm)(void *ctx, int epoch, wk_comm_stats *cs);
    /* After an epoch's steps (interrupted: a stop cut it short), before its evaluation. */
    int (*end_epoch)(void *ctx, const wk_epoch_stats *st, pst_err *err);
    /* Writes a checkpoint of this process (NULL: a worker, whose servers write them):
     * epoch_done after an epoch's end; why names a checkpoint worth a log line
     * ("periodic", "stopped"), NULL the routine one of an epoch's end. */
    int (*checkpoint)(void *ctx, int epoch_done, const char *why, pst_err *err);
} wk_loop_ops;

typedef struct {
    wk_trainer *tr;
    const ds_dataset *train;
    const ds_dataset *val;   /* evaluated after each epoch when there is a report; or NULL */
    int first_epoch;         /* 1-based */
    int last_epoch;          /* train.epochs; first_epoch > last_epoch: nothing to do */
    int64_t first_step;      /* steps of first_epoch already taken (a resumed run) */
    const wk_resume *resume; /* single process: the running figures of those steps; NULL:
                                they start from 0 */
    int64_t clock;           /* steps of the run taken before (first_epoch, first_step) */
    wk_report *rep;          /* progress, step and epoch records; NULL: a log line per epoch */
    int log_every;           /* a step record every N steps (train.log_every); 0: none */
    int report_interrupted;  /* evaluate and report an epoch a stop cut short (a single
                                process, whose resume continues its figures) */
    const log_ctx *lg;       /* may be NULL without a report */
    const volatile sig_atomic_t *stop; /* may be NULL */
    const pst_test_hooks *hooks;       /* NULL in production: stop_after_clock */
    int on_divergence;                 /* train.on_divergence (cfg_divergence), judged after
                                          every reported epoch */
    wk_cadence *cadence;               /* NULL: no checkpoints */
    const wk_loop_ops *ops;
    void *ctx;
} wk_loop_options;

typedef struct {
    int64_t clock;       /* steps of the run done */
    int interrupted;     /* a stop ended the loop */
    wk_epoch_stats last; /* the figures of the last epoch run (zero: none) */
} wk_loop_result;

int wk_loop_run(const wk_loop_options *o, wk_loop_result *res, pst_err *err);

/* Epochs first..last of the local loop with no report, checkpoint or hook: what bench_mlp
 * times and the trainer tests run. st: the last epoch's figures. */
int wk_loop_local_epochs(wk_trainer *tr, const ds_dataset *train, int first, int last,
                         wk_epoch_stats *st, pst_err *err);

#endif
