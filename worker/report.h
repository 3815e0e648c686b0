/* worker/report.h -- what a training run tells its user: a progress line while an epoch
 * runs, one summary line per epoch, and metrics files in the run directory.
 *
 * Files (appended per record, flushed at once so a killed run keeps what it reported):
 *   metrics.csv    epoch,train_loss,train_acc,val_loss,val_acc,val_precision,val_recall,
 *                  val_f1,val_mse,val_mae,val_r2,seconds,samples_per_s, then the traffic
 *                  columns WK_REPORT_COMM_COLUMNS  (empty cell: not measured)
 *   metrics.jsonl  one JSON object per epoch, and a last one with "split": "test".
 *   steps.csv      epoch,step,steps,loss,seconds,samples_per_s, then WK_REPORT_COMM_COLUMNS:
 *   steps.jsonl    one record per wk_report_steps call (every train.log_every steps).
 * The traffic columns describe the interval of the record (the epoch, or the steps since
 * the previous step record): bytes_pushed, bytes_pulled; push_ms_* and pull_ms_* latency
 * percentiles (see worker/kv.h for what they time); staleness_mean/max, the clock gap the
 * servers reported per pull; wait_s, the time blocked waiting for the servers, and
 * compute_s, the rest of the interval. A single-process run has no traffic: 0 bytes, no
 * latencies or staleness, wait_s 0. */
#ifndef PSTRAIN_WORKER_REPORT_H
#define PSTRAIN_WORKER_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "job/job.h"
#include "base/err.h"
#include "base/log.h"
#include "worker/trainer.h"

typedef struct wk_report wk_report;

#define WK_REPORT_COMM_COLUMNS                                                                     \
    "bytes_pushed,bytes_pulled,push_ms_p50,push_ms_p90,push_ms_p99,pull_ms_p50,pull_ms_p90,"       \
    "pull_ms_p99,staleness_mean,staleness_max,wait_s,compute_s"

/* A distributed worker's traffic over an interval; NULL for a single-process run. */
typedef struct {
    uint64_t bytes_pushed, bytes_pulled;
    double push_p50, push_p90, push_p99; /* seconds; NAN: no push completed */
    double pull_p50, pull_p90, pull_p99; /* seconds; NAN: no pull completed */
    double gap_mean, gap_max;            /* clock gaps; NAN: no pull */
    double wait_s;                       /* blocked waiting for the servers */
} wk_comm_stats;

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

/* The progress line (or log line) after a step; ctx is the wk_report. */
void wk_report_progress(void *ctx, int epoch, int64_t step, int64_t nsteps, double loss,
                        double samples_per_s);

/* Logs the epoch line and appends it to the files. val and comm may be NULL. */
int wk_report_epoch(wk_report *r, int epoch, const wk_epoch_stats *st, const wk_eval *val,
                    const wk_comm_stats *comm, pst_err *err);
/* Appends a step record (steps.csv, steps.jsonl) for the interval since the previous one
 * (or since the previous epoch record): the caller calls it every train.log_every steps.
 * comm may be NULL. */
int wk_report_steps(wk_report *r, int epoch, int64_t step, int64_t nsteps, double loss,
                    double samples_per_s, const wk_comm_stats *comm, pst_err *err);
/* Logs and records the final evaluation of a split ("test"). */
int wk_report_final(wk_report *r, const char *split, const wk_eval *ev, pst_err *err);

/* Writes the effective job to dir/job.yaml with its data paths made absolute, so that
 * tools given only the run directory (pstrain plot) find the data the model learned. */
int wk_report_write_job(const char *dir, const cfg_job *job, pst_err *err);

#endif
