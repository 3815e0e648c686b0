/* worker/trainer.h -- the training loop: batches, forward/backward, update, evaluation.
 *
 * One step:  gather a shuffled batch -> ml_model_forward -> ml_model_loss ->
 *            ml_model_backward -> clip -> opt_apply over the whole parameter vector.
 * The trainer owns the model, the optimizer state and the batch buffers; datasets are
 * borrowed for the duration of a call. */
#ifndef PSTRAIN_WORKER_TRAINER_H
#define PSTRAIN_WORKER_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "core/config.h"
#include "core/data.h"
#include "core/err.h"
#include "core/metrics.h"
#include "core/model.h"

typedef struct wk_trainer wk_trainer;

typedef struct {
    int64_t samples;  /* samples trained on this epoch */
    int64_t steps;
    double loss;      /* mean training loss over the epoch's samples */
    double accuracy;  /* of the training batches' predictions (classification), else NaN */
    double seconds;   /* wall time of the epoch's steps */
    int interrupted;  /* 1 if *stop was raised mid-epoch */
} wk_epoch_stats;

typedef struct {
    int classify;     /* 1: accuracy etc. valid; 0: mse/mae/r2 valid */
    int64_t n;
    double loss;
    met_summary cls;
    double mse, mae, r2;
} wk_eval;

/* Called after every step with the running figures of the epoch; may be NULL. */
typedef void (*wk_progress_fn)(void *ctx, int epoch, int64_t step, int64_t nsteps,
                               double loss, double samples_per_s);

/* Builds the model of job for data like `like` (input width, classes/targets) and checks
 * that the model's output fits the data. The model is initialised from job->seed; rank
 * (0 for single-process training) varies the per-epoch shuffle between workers. */
wk_trainer *wk_trainer_create(const cfg_job *job, const ds_dataset *like, int rank,
                              pst_err *err);
void wk_trainer_destroy(wk_trainer *t);

ml_model *wk_trainer_model(wk_trainer *t);
int64_t wk_trainer_step(const wk_trainer *t); /* updates applied so far */

/* One pass over train in shuffled batches (epoch is 1-based; it seeds the shuffle, so a run
 * is reproducible). Checks *stop (may be NULL) between steps and returns early with
 * st->interrupted set. Fails with PST_ERR_NUMERIC if the loss becomes NaN/Inf. */
int wk_trainer_epoch(wk_trainer *t, const ds_dataset *train, int epoch, wk_progress_fn cb,
                     void *cb_ctx, const volatile sig_atomic_t *stop, wk_epoch_stats *st,
                     pst_err *err);

/* The same loop in pieces, for callers that update the weights themselves:
 * begin_epoch shuffles and returns the number of steps (-1 on error); compute writes the
 * (clipped) gradient of step s into ml_model_grads and returns the epoch's running mean
 * loss in *loss; apply_local takes one optimizer step; end_epoch fills the figures. */
int64_t wk_trainer_begin_epoch(wk_trainer *t, const ds_dataset *train, int epoch, pst_err *err);
int wk_trainer_compute(wk_trainer *t, const ds_dataset *train, int64_t step, double *loss,
                       pst_err *err);
void wk_trainer_apply_local(wk_trainer *t);
double wk_trainer_samples_per_s(const wk_trainer *t);
void wk_trainer_end_epoch(wk_trainer *t, int interrupted, wk_epoch_stats *st);

/* Loss and metrics of the current model on ds. Fills cm (may be NULL; classification only,
 * nclasses of the model) with the confusion matrix of ds. */
int wk_trainer_evaluate(wk_trainer *t, const ds_dataset *ds, wk_eval *ev, met_confusion *cm,
                        pst_err *err);

#endif
