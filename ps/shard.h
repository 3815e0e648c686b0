/* ps/shard.h -- one server's slice of the model: weights, optimizer state, worker clocks.
 *
 * No sockets here: the server's message handler (handler.c) decodes messages and calls
 * these functions; this file holds the update rule and the consistency rule, so tests drive
 * them directly.
 *
 * The shard owns parameters [base, base + len) of the model's flat vector. Ranges passed
 * in are global offsets and must lie inside the shard.
 *
 * Clocks: a worker's clock is the number of steps whose gradient it has pushed completely
 * (every float of the shard that is not frozen, see srv_shard_set_groups). One rule serves
 * the three consistency models:
 *   a pull for clock c from a worker may be answered when  c - min_clock <= s
 *   where min_clock is the clock of the slowest live worker and s = 0 (bsp), staleness
 *   (ssp) or unbounded (asp). bsp also sums the gradients of a clock and applies their mean
 *   once, when every live worker has pushed that clock; ssp and asp apply each push at once.
 * A worker that is done (or lost) leaves the live set, so it never holds the others back. */
#ifndef PSTRAIN_PS_SHARD_H
#define PSTRAIN_PS_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "job/job.h"
#include "base/err.h"
#include "core/optim.h"

typedef struct srv_shard srv_shard;

srv_shard *srv_shard_create(uint64_t base, uint64_t len, const opt_config *opt,
                            cfg_consistency cons, int staleness, int nworkers, pst_err *err);
/* What a gradient chunk with NaN/Inf does (default reject; see cfg_nonfinite). */
void srv_shard_set_nonfinite(srv_shard *sh, cfg_nonfinite policy);

/* A user update rule (include/pstrain/pstrain.h, pst_update_fn) in place of the job's
 * optimizer: fn(ctx, w, g, offset, n, step, lr) updates w[0..n) (flat floats [offset,
 * offset + n)) from the gradient g (under bsp the workers' mean) at update `step` with the
 * scheduled lr; called wherever opt_apply_groups would be, on the server's thread. The
 * update groups' multipliers are not applied (frozen ranges still are never updated). NULL
 * restores the optimizer. */
typedef void (*srv_update_fn)(void *ctx, float *w, const float *g, uint64_t offset, uint64_t n,
                              int64_t step, float lr);
void srv_shard_set_update(srv_shard *sh, srv_update_fn fn, void *ctx);
/* model.keep_zeros (docs/finetuning.md): on, the weights that are exactly 0 once the shard's
 * weights are whole -- worker 0's INIT, i.e. the pruned model.init_from checkpoint, or a
 * restored checkpoint -- are the shard's pruning mask, set back to 0 after every update.
 * Call before the weights arrive. srv_shard_mask_count: the mask's size (0 when off). */
void srv_shard_set_keep_zeros(srv_shard *sh, int on);
uint64_t srv_shard_mask_count(const srv_shard *sh);
void srv_shard_destroy(srv_shard *sh);

uint64_t srv_shard_base(const srv_shard *sh);
uint64_t srv_shard_len(const srv_shard *sh);
int srv_shard_initialized(const srv_shard *sh);

/* Checks that [off, off + len) lies inside the shard (PST_ERR_PEER naming the range). */
int srv_shard_check_range(const srv_shard *sh, uint64_t off, uint64_t len, pst_err *err);

/* What became of a chunk (INIT or PUSH). The transport may lose, repeat or delay messages
 * and workers send again what was not acknowledged, so a chunk may arrive twice, or after
 * one that was lost: */
typedef enum {
    SRV_APPLIED = 0, /* taken: acknowledge it */
    SRV_REPEAT,      /* taken before: acknowledge it again, change nothing */
    SRV_EARLY        /* a chunk before it is missing (or, bsp, the clock is not yet being
                        assembled): not taken, not acknowledged; it comes again */
} srv_outcome;

/* Initial weights for a range (from worker 0). Ranges are taken in order: a range that
 * starts where the previous one ended is applied, one already set is a repeat, one past a
 * gap is early; the shard counts as initialised once every float has been set. */
int srv_shard_init_range(srv_shard *sh, uint64_t off, const float *w, uint64_t len,
                         srv_outcome *out, pst_err *err);

/* Fine-tuning: the update groups of the model (WELCOME's): group i is [offsets[i],
 * offsets[i+1]) of the flat vector, n + 1 increasing offsets that cover the shard; its
 * updates use lr * mults[i], and mults[i] = 0 freezes it: never updated, and a push must
 * not cover it (workers skip frozen ranges, so a step's chunks jump over them). n = 0: all
 * at multiplier 1, as after srv_shard_create. Only before the first push (PST_ERR_STATE).
 * state (NULL: none) flags state groups (multiplier 0; batchnorm's running statistics):
 * pushed like trainable ones, but their floats are the workers' values, which the shard
 * averages (ps/state.h) instead of applying the optimizer. */
int srv_shard_set_groups(srv_shard *sh, const uint64_t *offsets, const float *mults,
                         const unsigned char *state, int n, pst_err *err);
/* Floats of the shard a worker's step pushes (its length less the frozen floats). */
uint64_t srv_shard_trainable(const srv_shard *sh);

/* Gradient of worker's step `clock` for a range. The worker's chunks are taken in order:
 * one that starts where its previous chunk of the step ended (past frozen ranges) is
 * applied; one of an earlier clock, or before that point, is a repeat; one of a later
 * clock (bsp: later than the clock being assembled), or past a gap, is early (*out).
 * Refused (PST_ERR_PEER), leaving the shard unchanged, when the worker is not live, the
 * range covers a frozen range, or (policy reject) a value is NaN/Inf; under policy skip
 * such a chunk is taken but not applied (bsp: the worker's step leaves the mean). Both
 * count in stats.rejected_nonfinite. */
int srv_shard_push(srv_shard *sh, int worker, int64_t clock, uint64_t off, const float *g,
                   uint64_t len, srv_outcome *out, pst_err *err);

/* Whether a pull for `clock` by worker can be answered now (see the rule above). A final
 * pull waits until every worker is done. Pulls also wait for initialisation. */
int srv_shard_pull_ready(const srv_shard *sh, int worker, int64_t clock, int final);

/* The requester's clock gap at this moment: worker's clock - slowest live clock (0 when
 * the worker is the slowest or alone). Recorded by srv_shard_note_served. */
int64_t srv_shard_clock_gap(const srv_shard *sh, int worker);
void srv_shard_note_served(srv_shard *sh, int worker);

/* ssp/asp: corrections for stale gradients (ps/async.h): staleness_lr divides a step's lr
 * by 1 + its staleness; dc_lambda > 0 turns on delay compensation (DC-ASGD-a with that
 * lambda0), which keeps a copy of the weights each worker read: W + 2 shard-sized buffers.
 * Nothing under bsp, where no gradient is stale. Before the first push. */
int srv_shard_set_async(srv_shard *sh, int staleness_lr, float dc_lambda, pst_err *err);
/* The worker is sent weights [off, off + len) now: its next step's staleness counts the
 * updates from here (and delay compensation keeps the weights sent). */
void srv_shard_note_read(srv_shard *sh, int worker, uint64_t off, uint64_t len);

/* Weights of a range; valid until the next update of the shard. */
const float *srv_shard_weights(const srv_shard *sh, uint64_t off);
/* The weights a (non-final) pull of `clock` gets: bsp keeps those of the clock before the
 * current one (the last update's input), for a restarted worker whose previous
 * incarnation's step of that clock was taken whole here but not on another shard: it
 * rejoins at the smallest clock its servers report and computes that step again from the
 * weights every worker used for it. Otherwise the current weights. Valid until the next
 * update. */
const float *srv_shard_weights_of(const srv_shard *sh, int64_t clock, uint64_t off);

/* The worker is finished: it leaves the live set. */
void srv_shard_worker_done(srv_shard *sh, int worker);
/* The worker is lost (the coordinator heard nothing from it for the heartbeat timeout):
 * it leaves the live set; a step it had pushed only in part does not count (bsp: the
 * mean is over the workers that pushed the whole step). */
void srv_shard_worker_lost(srv_shard *sh, int worker);
/* A new incarnation of the worker rejoins: it is live again from the clock the shard is
 * at (bsp: the clock being assembled, or the next one when a lone worker's clock is being
 * applied as it arrives; ssp/asp: the slowest live worker's). Its pushes of earlier clocks
 * are repeats. Returns that clock, which pulls report to it (srv_shard_worker_clock). */
int64_t srv_shard_worker_rejoin(srv_shard *sh, int worker);
int srv_shard_live_workers(const srv_shard *sh);
int srv_shard_worker_live(const srv_shard *sh, int worker);
int srv_shard_all_done(const srv_shard *sh);
int64_t srv_shard_worker_clock(const srv_shard *sh, int worker);

/* ---- Recovery: a restarted server ----------------------------------------------------
 * A server that died is restarted from its newest checkpoint (srv_shard_restore), whose
 * clock C is behind the job's. Until every live worker has sent a request, the shard does
 * not know where each stands; srv_shard_note_clock records the clock each request
 * carries (a push of step x or a pull of clock x: the worker has pushed x - 1), and once
 * every live worker is known (or the caller gives up waiting), srv_shard_end_recovery
 * puts each at its clock -- bsp: the clock assembled next is the smallest -- so training
 * goes on. What the shard lost is returned: bsp, the clocks from C to that clock (one
 * update each, the mean of every worker's step); ssp/asp, where each step of each worker
 * was an update, the sum over the live workers of (its clock - C). lost (NULL, or W
 * entries): each worker's steps since C, set for every consistency. */
void srv_shard_begin_recovery(srv_shard *sh);
int srv_shard_recovering(const srv_shard *sh);
/* Returns 1 once every live worker has reported (worker -1: only asks). */
int srv_shard_note_clock(srv_shard *sh, int worker, int64_t clock);
int64_t srv_shard_end_recovery(srv_shard *sh, int64_t *lost);

typedef struct {
    uint64_t pushes, updates, rejected_nonfinite, repeats, early, lost_workers, rejoins;
    int64_t max_clock_gap; /* largest clock gap among answered pulls */
} srv_shard_stats;
void srv_shard_get_stats(const srv_shard *sh, srv_shard_stats *st);

/* ---- Checkpoints ------------------------------------------------------------------------------
 * A checkpoint of the shard is its weights, its optimizer state and a clock: every worker's
 * steps before that clock are in the weights. */

/* The optimizer state (for saving and restoring it). */
opt_state *srv_shard_opt(srv_shard *sh);
/* Whether `worker`'s steps before `clock` are all applied: bsp, the mean of every clock
 * before it (the update count is clock); ssp/asp, the worker's own pushes. */
int srv_shard_applied(const srv_shard *sh, int worker, int64_t clock);
/* The clock of the shard's state: bsp, the updates applied; ssp/asp, the largest worker
 * clock (the end-of-run clock once every worker is done). */
int64_t srv_shard_clock(const srv_shard *sh);
/* Starts a resumed run from a checkpoint of `clock`: the weights w (the shard's len floats)
 * with every worker live at that clock (bsp: the clock being assembled). The caller
 * restores the optimizer state into srv_shard_opt. Only before initialisation
 * (PST_ERR_STATE otherwise); then the shard counts as initialised. */
int srv_shard_restore(srv_shard *sh, const float *w, int64_t clock, pst_err *err);

#endif
