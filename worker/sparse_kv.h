/* worker/sparse_kv.h -- the worker's client of the servers' embedding tables (ps/sparse.h).
 *
 * Per step and table: the batch's unique keys are grouped by owner (spt_owner(key, S)),
 * each owner is asked for its keys' rows (SPULL, one message per server and table; a
 * server without keys of the batch is not asked), the rows are scattered back in the
 * keys' order; after backward each server gets the gradients of its keys (SPUSH, one per
 * server and table, K = 0 for a server none of whose keys the step touched: the push
 * counts toward the worker's clock of that table there).
 *
 * One DEALER per server of its own (not wk_kv's sockets, whose replies wk_kv's waits take):
 * calls are synchronous, sent again with the same request id under the retry timer
 * (DLV_RTO_CALL) until answered (an SPULL the server parks is acknowledged, then answered
 * when the table's clocks allow). wk_skv_push returns once every server acknowledged, so a
 * caller that pushes the step's dense chunks afterwards has the sparse part taken first
 * (what the servers' checkpoints rely on). Frames are copies (sent again as they are). */
#ifndef PSTRAIN_WORKER_SPARSE_KV_H
#define PSTRAIN_WORKER_SPARSE_KV_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "net/net.h"
#include "proto/wire.h"

typedef struct wk_skv wk_skv;

/* Tables t < ntables of row width dims[t], servers of welcome. */
wk_skv *wk_skv_create(net_ctx *ctx, int rank, const wire_welcome *welcome, int ntables,
                      const int *dims, int timeout_ms, const log_ctx *lg,
                      const volatile sig_atomic_t *stop, pst_err *err);
void wk_skv_destroy(wk_skv *kv);

/* rows (n, d) of table's keys[0..n) (unique) for step `clock`; train 0: read-only (an
 * evaluation batch). Errors name the server (an ERROR answer, or none in time). */
int wk_skv_pull(wk_skv *kv, int table, const uint64_t *keys, size_t n, float *rows, int train,
                int64_t clock, pst_err *err);
/* grads (n, d) of table's keys[0..n) for step `clock`, to every server. */
int wk_skv_push(wk_skv *kv, int table, const uint64_t *keys, size_t n, const float *grads,
                int64_t clock, pst_err *err);

typedef struct {
    uint64_t bytes_pushed, bytes_pulled; /* raw frames: keys + gradients, keys + rows */
    uint64_t messages, resent;
} wk_skv_stats;
void wk_skv_get_stats(const wk_skv *kv, wk_skv_stats *st);

#endif
