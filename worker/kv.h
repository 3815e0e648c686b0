/* worker/kv.h -- the worker's client of the parameter servers (push, pull, wait).
 *
 * The model's flat vector is cut by the shard map into S server ranges, each sent in chunks
 * of at most WIRE_CHUNK_FLOATS. Pushes and pulls return at once: ZeroMQ's I/O thread moves
 * the bytes while the caller computes; wk_kv_pull_wait blocks only when the caller needs
 * the weights. Pushed gradients are sent zero-copy straight from the caller's buffer, which
 * must stay untouched until wk_kv_push_released says ZeroMQ let go of it.
 *
 * One DEALER socket per server keeps each server's requests in order: a server answers a
 * worker's pull only after the pushes that worker sent before it.
 *
 * Messages may be lost (a flaky network, or fault injection): the delivery contract of
 * proto/dlv.h holds. INIT, PUSH and DONE are acknowledged and pulls answered, and whatever
 * has no answer within the retry timer (DLV_RTO_KV: 2 x srtt + 4 x rttvar + 2 ms, at
 * least 10 ms, doubling while nothing comes back and kept doubled until a request sent once
 * is answered, at most 1 s) is sent again with the same request id;
 * servers recognise repeats (ps/shard.h). A pull a server parks is acknowledged at once
 * and then sent again only after KV_PARKED_MS (250 ms) without its reply. A push that the
 * reply to a later pull shows missing (the server's clock for us is behind it) is sent
 * again at once. A pushed buffer is kept until acknowledged (wk_kv_push_released waits
 * for it). Replies are taken by whichever wait is running, so the weights of an
 * outstanding pull may land in the caller's vector (the one it passes to
 * wk_kv_pull_wait) before that call. */
#ifndef PSTRAIN_WORKER_KV_H
#define PSTRAIN_WORKER_KV_H

#include <signal.h>
#include <stdint.h>

#include "base/err.h"
#include "core/metrics.h"
#include "base/log.h"
#include "net/net.h"
#include "proto/wire.h"

typedef struct wk_kv wk_kv;

/* Connects to the servers of welcome (a WELCOME header). */
wk_kv *wk_kv_create(net_ctx *ctx, int rank, const wire_welcome *welcome, int timeout_ms,
                    const log_ctx *lg, const volatile sig_atomic_t *stop, pst_err *err);
void wk_kv_destroy(wk_kv *kv);
/* Closes the sockets. Frames still queued (a worker stopped mid-step) are released by
 * ZeroMQ later, at the latest when net_ctx_destroy returns, through callbacks that use kv:
 * so when a step may have been cut short, call wk_kv_close before net_ctx_destroy and
 * wk_kv_destroy only after it. */
void wk_kv_close(wk_kv *kv);

/* Sends the initial weights w (nparams floats) to the servers (worker 0 only), zero-copy;
 * returns once ZeroMQ has let go of w. */
int wk_kv_init(wk_kv *kv, const float *w, pst_err *err);

/* Pushes gradient g (nparams floats) of step `clock`, zero-copy. */
int wk_kv_push(wk_kv *kv, const float *g, int64_t clock, pst_err *err);
/* Flags the next push: every server writes a checkpoint of clock + 1 once that step is
 * applied (worker 0 asks; see ps/srv_ckpt.h). */
void wk_kv_request_checkpoint(wk_kv *kv);
/* Waits until ZeroMQ has released the buffers pushed at clocks of the same parity as
 * `clock` (so the caller may overwrite the buffer it pushed two steps ago). Returns at once
 * in the normal flow: a pull reply arriving implies the pushes before it were sent. */
int wk_kv_push_released(wk_kv *kv, int64_t clock, pst_err *err);

/* Asks for the weights of step `clock` (final: the weights once every worker is done).
 * Frozen ranges (update groups of multiplier 0 in WELCOME) are neither pushed nor pulled:
 * the caller's copy of them stays as it is. */
int wk_kv_pull_start(wk_kv *kv, int64_t clock, int final, pst_err *err);
/* The same for every float, frozen ranges included: the first pull, so that every worker
 * starts from worker 0's weights whatever it loaded itself. */
int wk_kv_pull_start_full(wk_kv *kv, int64_t clock, pst_err *err);
/* Waits for the replies of the outstanding pull and writes them into w (nparams floats).
 * *gap receives the largest clock gap the servers reported (may be NULL). A server's
 * ERROR reply, or no reply within the timeout, is an error naming the server. A final
 * pull has no timeout of its own: it waits for the slowest worker, which the coordinator
 * watches (it fails the job if that worker goes silent). */
int wk_kv_pull_wait(wk_kv *kv, float *w, int64_t *gap, pst_err *err);
int wk_kv_pull_outstanding(const wk_kv *kv);

/* cluster.compression: pushes in enc (F32: as sent by default, zero-copy; F16, BF16, or
 * TOPK with error feedback and topk_ratio, worker/compress.h), and the pulls of trainable
 * ranges in F16/BF16 for those (F32 for TOPK); the first, full pull and final pulls stay
 * float32. Call before the first push. The push's buffer is then read during wk_kv_push
 * only (the encoded copy travels); bytes_pushed/bytes_pulled count the encoded bytes. */
int wk_kv_set_compression(wk_kv *kv, wire_enc enc, double topk_ratio, pst_err *err);

/* Called about twice a second while wk_kv_pull_wait blocks (e.g. to tell the coordinator
 * this worker is alive and waiting); a non-zero return aborts the wait with that status. */
typedef int (*wk_kv_idle_fn)(void *ctx, pst_err *err);
void wk_kv_set_idle(wk_kv *kv, wk_kv_idle_fn fn, void *ctx);

/* Tells every server this worker is done, once every push is acknowledged (a push sent
 * again after DONE would come from a worker the server no longer counts). */
int wk_kv_done(wk_kv *kv, pst_err *err);

/* A stop: waits until every push sent is acknowledged (taken by its server), at most
 * timeout_ms; unlike every other wait, a stop signal does not end it. Afterwards every
 * server holds exactly this worker's pushes up to its clock (no push half-delivered). */
int wk_kv_flush(wk_kv *kv, int timeout_ms, pst_err *err);

/* Server s was restarted (a new incarnation, perhaps at another endpoint): a fresh
 * connection to endpoint, and everything it has not answered is sent again at once. */
int wk_kv_reconnect(wk_kv *kv, int s, const char *endpoint, pst_err *err);

/* The smallest clock the servers reported for this worker in the replies of the last
 * pull (a rejoining worker starts there); INT64_MAX before any. */
int64_t wk_kv_reply_clock(const wk_kv *kv);

/* Cumulative since wk_kv_create; an interval's figures are the difference of two snapshots
 * (met_hist_sub for the histograms). Latencies:
 *   push  from wk_kv_push to ZeroMQ releasing the last frame of that gradient (its bytes
 *         handed to the kernel); counted when the caller next waits on that buffer
 *         (wk_kv_push_released) or reads the stats.
 *   pull  from wk_kv_pull_start to the last reply of that pull arriving; final pulls are
 *         left out (they wait for the slowest worker, not for the network). */
typedef struct {
    uint64_t bytes_pushed, bytes_pulled;
    uint64_t resent; /* requests sent again for want of an answer */
    double wait_s;   /* time spent blocked waiting for the servers */
    met_hist push_lat, pull_lat;
} wk_kv_stats;
void wk_kv_get_stats(wk_kv *kv, wk_kv_stats *st);

#endif
