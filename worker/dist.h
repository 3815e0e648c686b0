/* worker/dist.h -- a worker process of a distributed job.
 *
 * Loads its partition of the data, registers with the coordinator, and trains: each step
 * computes the gradient locally (trainer.c), pushes it to the servers and pulls the new
 * weights (kv.c). Under bsp it waits for the weights before the next step; under ssp and
 * asp it computes the next step while the pull is in flight (one step of extra staleness
 * buys overlap of communication with computation). Worker 0 also initialises the servers'
 * weights, evaluates on the validation set each epoch, writes the metrics files, and at
 * the end evaluates the final model (once every worker is done) and saves it. */
#ifndef PSTRAIN_WORKER_DIST_H
#define PSTRAIN_WORKER_DIST_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "job/job.h"
#include "base/err.h"
#include "base/log.h"
#include "base/testhooks.h"

typedef struct {
    int rank;
    const char *coordinator;
    const cfg_job *job;
    const log_ctx *lg;
    const volatile sig_atomic_t *stop;
    FILE *progress_out; /* worker 0's progress bar/lines */
    int tty;
    /* A pipe to a launcher (pstrain local) that draws the job's progress, or -1. Every
     * worker writes one line per record, at most every WK_PROGRESS_MS and at each epoch's
     * last step; a full pipe drops the record rather than stall training (the descriptor
     * is made non-blocking):
     *   "P <rank> <epoch> <epochs> <step> <steps> <clock> <total> <loss> <samples/s>\n"
     * step of steps in this epoch; clock of total steps of this worker's whole run. */
    int progress_fd;
    const char *faults;          /* test-only fault injection spec (net/faults.h); NULL: none */
    const pst_test_hooks *hooks; /* test-only behaviour (base/testhooks.h); NULL in
                                    production */
    int *stopped_by; /* may be NULL: set to the signal of a stop this worker ended at (its
                        own, or one the coordinator announced), for the exit code */
} wk_dist_options;

#define WK_PROGRESS_MS 100

int wk_dist_run(const wk_dist_options *o, pst_err *err);

#endif
