/* worker/report.h -- what a training run tells its user: a progress line while an epoch
 * runs, one summary line per epoch, and metrics files in the run directory.
 *
 * Files (appended per epoch, flushed at once so a killed run keeps what it reported):
 *   metrics.csv    epoch,train_loss,train_acc,val_loss,val_acc,val_precision,val_recall,
 *                  val_f1,val_mse,val_mae,val_r2,seconds,samples_per_s  (empty: not measured)
 *   metrics.jsonl  one JSON object per epoch, and a last one with "split": "test". */
#ifndef PSTRAIN_WORKER_REPORT_H
#define PSTRAIN_WORKER_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "core/err.h"
#include "core/log.h"
#include "worker/trainer.h"

typedef struct wk_report wk_report;

/* Creates dir (and parents) and opens the metrics files there (truncating old ones).
 * tty != 0 draws a live progress bar on progress_out; otherwise a plain log line every
 * log_every steps (0: none). */
wk_report *wk_report_create(const char *dir, const log_ctx *lg, FILE *progress_out, int tty,
                            int log_every, int epochs, pst_err *err);
/* The same for a resumed run: appends to the metrics files (the CSV header goes only into a
 * new or empty file), so the epochs before the stop stay. An epoch the stop interrupted
 * appears twice: cut short ("interrupted": true), then whole. */
wk_report *wk_report_resume(const char *dir, const log_ctx *lg, FILE *progress_out, int tty,
                            int log_every, int epochs, pst_err *err);
void wk_report_destroy(wk_report *r);

/* A wk_progress_fn: pass the wk_report as ctx. */
void wk_report_progress(void *ctx, int epoch, int64_t step, int64_t nsteps, double loss,
                        double samples_per_s);

/* Logs the epoch line and appends it to the files. val may be NULL. */
int wk_report_epoch(wk_report *r, int epoch, const wk_epoch_stats *st, const wk_eval *val,
                    pst_err *err);
/* Logs and records the final evaluation of a split ("test"). */
int wk_report_final(wk_report *r, const char *split, const wk_eval *ev, pst_err *err);

/* Creates a directory and its parents (mkdir -p). */
int wk_mkdirs(const char *path, pst_err *err);

#endif
