/* ps/srv_ckpt.h -- a server's shard checkpoints: <dir>/server-<rank>-clock-<c>.safetensors
 *
 * A shard checkpoint holds the shard's weights ("weights"), the optimizer state and where
 * they stand (state.clock: every worker's steps before it are applied). All servers write
 * at the same clocks, so the checkpoints of one clock together are the whole model:
 *   - when a worker flags its push of step c, each server writes clock c + 1 once that
 *     step is applied (bsp: the mean of step c; ssp/asp: that worker's push). Every worker
 *     flags the steps after which c + 1 is a multiple of checkpoint.every_steps (so bsp
 *     checkpoints go on while any worker trains), worker 0 alone those that end
 *     checkpoint.every_seconds -- the one cadence rule, wk_cadence in worker/loop.h
 *     (srv_ckpt_want, then srv_ckpt_maybe after each message);
 *   - at SHUTDOWN, the end-of-run clock (srv_ckpt_write).
 * A resumed job's coordinator picks the newest clock every server has complete (the
 * clocks srv_ckpt_scan found go in HELLO). A shard that is all frozen (fine-tuning)
 * receives no pushes, so it sees no flags and its clocks stay put; its weights and
 * optimizer state never change either, so its checkpoints stand for any clock
 * ("trainable": 0), and it says so in HELLO. It writes one as soon as it is initialised.
 *
 * Not thread-safe; the server's loop owns it. The shard passed in is borrowed. */
#ifndef PSTRAIN_PS_SRV_CKPT_H
#define PSTRAIN_PS_SRV_CKPT_H

#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "job/job.h"
#include "obs/obs.h"
#include "proto/wire.h"
#include "ps/shard.h"
#include "ps/sparse.h"

typedef struct srv_ckpt srv_ckpt;

/* Checkpoints of server `rank` of job, in checkpoint.dir (default <output.dir>/checkpoints).
 * The metrics may be NULL (off): written count, age of the last, its clock. */
srv_ckpt *srv_ckpt_create(int rank, const cfg_job *job, const log_ctx *lg, obs_metric *count,
                          obs_metric *age, obs_metric *clock, pst_err *err);
void srv_ckpt_destroy(srv_ckpt *c);
const char *srv_ckpt_dir(const srv_ckpt *c);

/* Before HELLO: the clocks of this server's complete checkpoints in `from` (or the
 * checkpoints/ folder inside it), newest first. A damaged one is left out with a warning
 * naming it; the coordinator then picks another clock. */
int srv_ckpt_scan(srv_ckpt *c, const char *from, pst_err *err);
/* What srv_ckpt_scan found: up to WIRE_MAX_CKPTS clocks (newest first) into clocks,
 * *any: they are of an all-frozen shard (any of them stands for any clock). Returns n. */
int srv_ckpt_found(const srv_ckpt *c, int64_t *clocks, int *any);

/* After WELCOME of a resumed job (or a restart): the shard from the checkpoint of
 * `clock` found by srv_ckpt_scan, which must cover exactly the shard's range. Nothing
 * changes unless all of it loads. */
int srv_ckpt_restore(srv_ckpt *c, srv_shard *sh, int64_t clock, pst_err *err);
/* Writes the shard's checkpoint of `clock` now (then prunes to checkpoint.keep). */
int srv_ckpt_write(srv_ckpt *c, srv_shard *sh, int64_t clock, pst_err *err);
/* A restart of this server lost the updates of `steps` steps (its shard recovered from
 * an older checkpoint): every checkpoint it writes from now on says so ("steps_lost",
 * cumulative), and a resume from one warns that the model it rebuilds combines shards
 * at different steps. */
void srv_ckpt_note_lost(srv_ckpt *c, int64_t steps);
/* The server's embedding tables (borrowed; NULL: none): every checkpoint of the shard
 * writes them first, to <dir>/tables-server-<rank>-clock-<c>.safetensors (ckpt/sparse.h,
 * numpy-readable), pruned with the shard's; a restore loads them with the shard (every
 * table checked before any changes) and puts their clocks at the checkpoint's. */
void srv_ckpt_set_sparse(srv_ckpt *c, srv_sparse *sp);
/* The clock of the newest checkpoint written or resumed from; -1: none. */
int64_t srv_ckpt_last(const srv_ckpt *c);

/* A flagged push of `worker` asks for the checkpoint of `clock` (several workers flag the
 * same clock; under bsp at most one clock is pending). */
void srv_ckpt_want(srv_ckpt *c, int worker, int64_t clock);
/* After each worker message: writes the checkpoints asked for whose step is now applied
 * (and an all-frozen shard's one). */
int srv_ckpt_maybe(srv_ckpt *c, srv_shard *sh, pst_err *err);

/* "The newest checkpoint" must be this run's. A resume from `keep_upto` removes this
 * server's checkpoints newer than that; a fresh start (keep_upto -1) sets the earlier
 * run's aside (ckpt_set_aside, with a warning) and removes them once it has written its
 * first, so a run that dies before that destroyed nothing. */
int srv_ckpt_remove_newer(srv_ckpt *c, int64_t keep_upto, pst_err *err);

#endif
