/* worker/local_ckpt.h -- checkpoints of a single-process run (`pstrain train`):
 * DIR/ckpt-<step>/{model,optimizer}.safetensors (and tables.safetensors for a model with
 * embedding tables), each folder written atomically.
 *
 * When one is written is the loop's cadence (worker/loop.h); a distributed job's
 * checkpoints are the servers' shard files instead (ps/srv_ckpt.h). */
#ifndef PSTRAIN_WORKER_LOCAL_CKPT_H
#define PSTRAIN_WORKER_LOCAL_CKPT_H

#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "job/job.h"
#include "worker/dataprep.h"
#include "worker/trainer.h"

typedef struct wk_local_ckpt wk_local_ckpt;

/* Checkpoints of job's run in checkpoint.dir (default OUTPUT_DIR/checkpoints), of the
 * model trained on data (its classes and scaler go into every model file). Borrows all. */
wk_local_ckpt *wk_local_ckpt_create(const cfg_job *job, const wk_data *data, const log_ctx *lg,
                                    pst_err *err);
void wk_local_ckpt_destroy(wk_local_ckpt *k);

const char *wk_local_ckpt_dir(const wk_local_ckpt *k);
/* The step of the newest checkpoint written or resumed from; -1: none. */
int64_t wk_local_ckpt_last(const wk_local_ckpt *k);

/* Restores into tr the newest checkpoint of `from` that loads whole: one folder written
 * here, or a folder of them (checkpoint.dir, or an output.dir holding checkpoints/). A
 * damaged newest one is skipped with a warning naming it; one of another job stops
 * (PST_ERR_CONFIG). *at: where the run stands. */
int wk_local_ckpt_resume(wk_local_ckpt *k, const char *from, wk_trainer *tr, wk_resume *at,
                         pst_err *err);

/* "The newest checkpoint" must be this run's. A fresh run sets an earlier run's aside
 * (ckpt_set_aside, with a warning) and removes them once it has written its first, so a
 * run that dies before that destroyed nothing; a resumed run removes those after the one
 * it resumed from (damaged ones). */
int wk_local_ckpt_clear_newer(wk_local_ckpt *k, pst_err *err);

/* Writes the checkpoint of the trainer's current step, then keeps the newest
 * checkpoint.keep; nothing when that step has one already. epoch_done: see
 * wk_trainer_save_state. why: logged ("periodic", "stopped"); NULL: a debug line. */
int wk_local_ckpt_write(wk_local_ckpt *k, wk_trainer *tr, int epoch_done, const char *why,
                        pst_err *err);

#endif
