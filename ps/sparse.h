/* ps/sparse.h -- one server's share of the model's embedding tables, and their clocks.
 *
 * The sparse counterpart of shard.h: no sockets, the handler (handler.c) decodes SPUSH and
 * SPULL and calls these. Server `rank` of S holds, for each of the model's T tables, an
 * spt_table (core/sptable.h) of the keys it owns: spt_owner(key, S) == rank. Every
 * process makes the same tables from the job (cfg_sparse_table: seed from the job's seed
 * and the table's name), so a row is the same wherever and whenever it is created.
 *
 * Clocks: each table is its own stream per worker. A worker sends every server one SPUSH
 * per table and step (K = 0 when the step touched none of this server's keys), so its
 * sparse clock of table t here is the number of its steps taken for t. The shard's rule
 * (shard.h) applies unchanged:
 *   a pull of table t for clock c is answered when  c - min_live_clock_t <= s
 *   s = 0 (bsp), staleness (ssp), unbounded (asp).
 * bsp keeps each worker's push of the clock being assembled apart (keys + gradients) and,
 * once every live worker has pushed that clock, sums them per key in rank order (so the
 * float sums do not depend on arrival order), scales by 1/K (K = workers whose step was
 * taken: a key a worker did not touch has gradient 0 in that worker's step, as in the
 * densified model) and applies the mean with one spt_push + spt_tick: one update per clock,
 * as a single process takes one per step. ssp/asp apply each push at once (one spt_push +
 * spt_tick per push, as each is an update).
 * Workers send a step's SPUSHes, acknowledged, before its dense PUSH chunks, so once a
 * step is complete in the shard its sparse part is taken here (checkpoints rely on it).
 *
 * Repeats and order follow proto/dlv.h: a push of an earlier clock than the worker's is a
 * repeat (acknowledged again, not applied); one of a later clock (bsp: not the clock being
 * assembled) is early (not taken, not acknowledged: it comes again).
 * Not handled yet: a worker lost halfway, rejoins and a restarted server's recovery keep
 * the shard's rules only for the dense part (see the report of issue 12). */
#ifndef PSTRAIN_PS_SPARSE_H
#define PSTRAIN_PS_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "core/sptable.h"
#include "job/job.h"
#include "ps/shard.h"

typedef struct srv_sparse srv_sparse;

/* Tables names[0..ntables) with configs cfgs (copied; names 1 .. 31 chars) for server rank
 * of nservers and nworkers workers, all live at clock 0. */
srv_sparse *srv_sparse_create(const char *const *names, const spt_config *cfgs, int ntables,
                              uint32_t rank, uint32_t nservers, cfg_consistency cons, int staleness,
                              int nworkers, pst_err *err);
/* The tables of the job's model (ml_tables_of_spec: no data needed), each configured as
 * every process of the job configures it. *out NULL (PST_OK) when the model has none. */
int srv_sparse_create_for_job(srv_sparse **out, const cfg_job *job, uint32_t rank,
                              uint32_t nservers, int nworkers, pst_err *err);
void srv_sparse_destroy(srv_sparse *sp);
/* What a gradient with NaN/Inf does (default reject): reject refuses the push, skip takes
 * it without applying it (bsp: the worker's step leaves the clock's mean). */
void srv_sparse_set_nonfinite(srv_sparse *sp, cfg_nonfinite policy);

int srv_sparse_ntables(const srv_sparse *sp);
const char *srv_sparse_name(const srv_sparse *sp, int table);
spt_table *srv_sparse_table(srv_sparse *sp, int table);

/* Checks a request's table and keys: a known table (else PST_ERR_PEER naming the index
 * and the tables there are), its dim, every key owned by this server (the first stray
 * key is named). */
int srv_sparse_check(const srv_sparse *sp, uint32_t table, uint32_t dim, const uint64_t *keys,
                     size_t n, pst_err *err);

/* Worker's gradients grads (n, d) of keys[0..n) (checked by srv_sparse_check; a key may
 * repeat: its gradients add up) for step `clock` of table. *out as in shard.h. Refused
 * (PST_ERR_PEER), nothing changed, when the worker is not live or (policy reject) a value
 * is NaN/Inf. PST_ERR_NOMEM when staging or merging fails. */
int srv_sparse_push(srv_sparse *sp, int worker, int64_t clock, uint32_t table, const uint64_t *keys,
                    size_t n, const float *grads, srv_outcome *out, pst_err *err);

/* Whether a pull of table for `clock` can be answered now (the rule above). */
int srv_sparse_pull_ready(const srv_sparse *sp, uint32_t table, int64_t clock);
/* Rows (n, d) of keys[0..n) into rows: train 1 goes through spt_pull (rows created,
 * stamped, counted for admission), train 0 reads only. */
int srv_sparse_pull(srv_sparse *sp, uint32_t table, const uint64_t *keys, size_t n, int train,
                    float *rows, pst_err *err);

/* The worker is finished (or lost): it leaves the live set; bsp may apply a clock that
 * waited only for it. */
void srv_sparse_worker_done(srv_sparse *sp, int worker);
int64_t srv_sparse_worker_clock(const srv_sparse *sp, int worker, uint32_t table);

/* The clock of table's state: bsp, the clocks applied; ssp/asp, the largest worker clock. */
int64_t srv_sparse_clock(const srv_sparse *sp, uint32_t table);
/* A resumed run from a checkpoint of `clock` (the tables restored by the caller): every
 * worker live at that clock. */
void srv_sparse_restore_clock(srv_sparse *sp, int64_t clock);

typedef struct {
    uint64_t pushes, repeats, early, rejected_nonfinite, keys_in, keys_out;
    spt_stats tables; /* summed over the tables (rows, admitted, refused, evicted, ...) */
} srv_sparse_stats;
void srv_sparse_get_stats(const srv_sparse *sp, srv_sparse_stats *st);

#endif
