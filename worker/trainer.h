/* worker/trainer.h -- a model in training: batches, forward/backward, update, evaluation.
 *
 * One step:  gather a shuffled batch -> ml_model_forward -> ml_model_loss ->
 *            ml_model_backward -> clip -> opt_apply over the whole parameter vector, per
 *            update group (fine-tuning: each layer's lr_mult; frozen layers skipped).
 * The trainer owns the model, the optimizer state and the batch buffers; datasets are
 * borrowed for the duration of a call. */
#ifndef PSTRAIN_WORKER_TRAINER_H
#define PSTRAIN_WORKER_TRAINER_H

#include <signal.h>
#include <stdint.h>

#include "ckpt/ckpt.h"
#include "job/job.h"
#include "data/data.h"
#include "base/err.h"
#include "core/metrics.h"
#include "core/model.h"

typedef struct wk_trainer wk_trainer;

typedef struct {
    int64_t samples; /* samples trained on this epoch */
    int64_t steps;
    double loss;     /* mean training loss over the epoch's samples */
    double accuracy; /* of the training batches' predictions (classification), else NaN */
    double seconds;  /* wall time of the epoch's steps */
    int interrupted; /* 1 if *stop was raised mid-epoch */
    int lm;          /* a language model: loss is the mean token loss (perplexity exp) */
} wk_epoch_stats;

typedef struct {
    int classify;      /* 1: accuracy etc. valid; 0: mse/mae/r2 valid (NaN for lm) */
    int lm;            /* a language model: loss is the mean token loss, perplexity valid */
    double perplexity; /* exp(loss) */
    int64_t n;
    double loss;
    met_summary cls;
    double mse, mae, r2;
} wk_eval;

/* Builds the model of job for data like `like` (input width, classes/targets) and checks
 * that the model's output fits the data. The model is initialised from job->seed, then
 * takes by name the weights of job->model.init_from when set (ckpt_init_from: a layer the
 * checkpoint lacks keeps its seeded weights). rank (0 for single-process training) varies
 * the per-epoch shuffle between workers. */
wk_trainer *wk_trainer_create(const cfg_job *job, const ds_dataset *like, int rank, pst_err *err);
void wk_trainer_destroy(wk_trainer *t);

ml_model *wk_trainer_model(wk_trainer *t);
int64_t wk_trainer_step(const wk_trainer *t); /* updates applied so far */

/* Fine-tuning. The update groups of the model (owned by t): [offset, offset + len) of the
 * flat vector with its layer's lr multiplier, 0 for frozen layers (trainable: false or
 * lr_mult: 0), neighbours with one multiplier merged; *n = 0 when every parameter trains at
 * multiplier 1. Servers get them through HELLO/WELCOME. */
const opt_group *wk_trainer_groups(const wk_trainer *t, int *n);
/* (n of wk_trainer_groups) 1 for a state group: batchnorm's running statistics (multiplier
 * 0, never merged with other groups), which a distributed worker pushes as values; NULL
 * when there are no groups. */
const unsigned char *wk_trainer_group_state(const wk_trainer *t);
/* The state groups' current values (the model's parameters there) into dst, a vector of
 * the model's length (nothing outside them is written): a distributed worker puts them
 * into its push buffer, where a state group's "gradient" is its values (ps/shard.h). */
void wk_trainer_state_values(const wk_trainer *t, float *dst);
size_t wk_trainer_frozen_params(const wk_trainer *t); /* parameters of frozen layers */
/* What model.init_from loaded, or NULL when the job names no checkpoint. */
const ckpt_init_report *wk_trainer_init_report(const wk_trainer *t);
/* That as one log line ("init_from PATH: 4 tensor(s) loaded; 2 freshly initialised (...);
 * 2 skipped, not in the model (...)") in buf; returns 0 (buf untouched) without init_from. */
int wk_trainer_finetune_note(const wk_trainer *t, char *buf, size_t n);

/* The pieces of a step, for the training loop (worker/loop.h) and test references:
 * begin_epoch (epoch is 1-based; it seeds the shuffle, so a run is reproducible) shuffles and returns the number of steps (-1 on error); compute writes the
 * (clipped) gradient of step s into ml_model_grads and returns the epoch's running mean
 * loss in *loss; apply_local takes one optimizer step; end_epoch fills the figures. */
int64_t wk_trainer_begin_epoch(wk_trainer *t, const ds_dataset *train, int epoch, pst_err *err);
int wk_trainer_compute(wk_trainer *t, const ds_dataset *train, int64_t step, double *loss,
                       pst_err *err);
int wk_trainer_apply_local(wk_trainer *t, pst_err *err);
double wk_trainer_samples_per_s(const wk_trainer *t);
void wk_trainer_end_epoch(wk_trainer *t, int interrupted, wk_epoch_stats *st);

/* ---- Sparse features: the rows of a model's embedding tables --------------------------------
 *
 * A model with embedding tables (sparse layers, core/model.h) trains on a dataset with a
 * sparse part (data/sparse.h). Before each step's forward (and each evaluation batch's) the
 * trainer gathers the batch's unique keys per table and asks its rows source for their
 * rows; after backward the step's row gradients are ml_model_table_nkeys/keys/grads of
 * wk_trainer_model (clipped with the dense gradient). A single process keeps the tables
 * itself (worker/sparse.h; wk_trainer_apply_local updates them); a distributed worker
 * sets a source that pulls from its servers and pushes the row gradients in its update. */
typedef struct {
    /* rows (n, dim) of table t for the batch's unique keys[0..n): before a training step's
     * forward (train 1: rows are created on first touch, counted for admission) and before
     * an evaluation batch's (train 0: read only). */
    int (*pull)(void *ctx, int table, const uint64_t *keys, size_t n, float *rows, int train,
                pst_err *err);
    void *ctx;
} wk_rows_source;
/* src replaces the trainer's own tables (which it drops) as the source of embedding rows. */
void wk_trainer_set_rows_source(wk_trainer *t, const wk_rows_source *src);
/* The embedding tables a single process holds, in one file (ckpt/sparse.h: keys, rows and
 * optimizer state per table, numpy-readable) -- beside model.safetensors at the end of a
 * run and in every checkpoint folder. Both do nothing (PST_OK) for a trainer without own
 * tables. Loading checks every table before it changes any. */
#define WK_TABLES_FILE "tables.safetensors"
/* The tables' rule and each table's rows, budget refusals, expiries and memory, as one log
 * line in buf; returns 0 (buf untouched) for a model without tables. */
int wk_trainer_tables_note(const wk_trainer *t, char *buf, size_t n);
int wk_trainer_save_tables(const wk_trainer *t, const char *path, pst_err *err);
int wk_trainer_load_tables(wk_trainer *t, const char *path, pst_err *err);

/* The model's outputs (n, K) for rows [lo, lo + n) of ds, n at most the job's
 * train.batch_size: the evaluation-mode forward pass wk_trainer_evaluate scores (embedding
 * rows read only), for `pstrain predict`. Owned by the model, valid until its next forward
 * pass; NULL on failure (err says why). */
const float *wk_trainer_predict(wk_trainer *t, const ds_dataset *ds, int64_t lo, int n,
                                pst_err *err);

/* Loss and metrics of the current model on ds. Fills cm (may be NULL; classification only,
 * nclasses of the model) with the confusion matrix of ds. */
int wk_trainer_evaluate(wk_trainer *t, const ds_dataset *ds, wk_eval *ev, met_confusion *cm,
                        pst_err *err);

/* Whether a finished run learned anything, from the final evaluation ev of ds: it fails
 * (PST_ERR_NUMERIC, saying which and by how much) when the loss diverged -- the final
 * loss is not finite or over 100 times that of the first batch this trainer computed
 * (for a classifier, at least ln K: guessing uniformly) -- or when the model is no better
 * than a constant: a classifier's accuracy at or below the share of ds's most frequent
 * class and, with a cross-entropy loss, its loss at or above the entropy of ds's class
 * frequencies; a regressor's R^2 at or below 0 (predicting the mean). A run that trains
 * to garbage must say so, not exit 0. */
int wk_trainer_judge(const wk_trainer *t, const ds_dataset *ds, const wk_eval *ev, pst_err *err);
/* The same verdict after epoch `epoch` (train.on_divergence): on the validation set's
 * evaluation ev when there is one (val and ev not NULL), else on the epoch's running
 * training figures st over train -- loss and accuracy only, as they hold no R^2. */
int wk_trainer_judge_epoch(const wk_trainer *t, int epoch, const ds_dataset *val, const wk_eval *ev,
                           const ds_dataset *train, const wk_epoch_stats *st, pst_err *err);

/* ---- Checkpoints: continuing a stopped run exactly ------------------------------------------
 *
 * A resume point says where training stands: the epoch in progress and how many of its
 * steps are done, with the running figures of those steps, so that the resumed epoch
 * reports the loss and accuracy an uninterrupted run would. The shuffle of an epoch
 * depends only on (seed, epoch, rank), so skipping the done steps gives the same batches. */
typedef struct {
    int epoch;       /* 1-based; train.epochs + 1 when every epoch is done */
    int64_t done;    /* steps of `epoch` already taken */
    int64_t samples; /* their samples, correct predictions and summed loss */
    int64_t correct;
    double loss_sum;
} wk_resume;

/* Saves the optimizer state and the resume point to path (a state file of kind
 * "optimizer", ckpt/ckpt.h): the epoch begun last with the steps taken so far, or with
 * epoch_done (after wk_trainer_end_epoch and its report) the start of the next one.
 * job_hash (cfg_job_hash) is recorded so that only the same job resumes from it. */
int wk_trainer_save_state(wk_trainer *t, const char *path, int epoch_done, uint64_t job_hash,
                          pst_err *err);

/* Loads a checkpoint: the weights from model_path, the optimizer state and the resume point
 * (*at) from state_path. Everything is checked before anything changes, so on failure the
 * trainer is as it was. */
int wk_trainer_restore(wk_trainer *t, const char *model_path, const char *state_path,
                       uint64_t job_hash, wk_resume *at, pst_err *err);

/* After wk_trainer_begin_epoch(at->epoch): continues that epoch at step at->done with the
 * running figures of the steps before. Fails (PST_ERR_DATA) when the training data is not
 * the one the checkpoint was taken on (another sample count). */
int wk_trainer_resume_epoch(wk_trainer *t, const ds_dataset *train, const wk_resume *at,
                            pst_err *err);

#endif
