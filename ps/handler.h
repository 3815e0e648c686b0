/* ps/handler.h -- the server's message handler: one worker message in, its replies out.
 *
 * The receiver's side of the delivery contract (proto/dlv.h) for a parameter server:
 * it checks the sender (a known worker, its current incarnation, its connection), feeds
 * INIT and PUSH chunks to the shard in stream order (ps/shard.c: taken once; a repeat is
 * acknowledged again, a chunk after a gap waits unacknowledged), answers PULLs the
 * consistency rule allows and parks the others (each request id once) until a push, a
 * DONE or a lost worker moves the slowest clock, and acknowledges DONE. SPUSH and SPULL
 * (one embedding table's rows) go to the sparse tables (ps/sparse.h) the same way: a
 * taken or repeated SPUSH is acknowledged, an SPULL answered (SPULL_REPLY, the rows in
 * the keys' order) once the table's clocks allow, parked until then. Problems a
 * message causes (a bad range, a stale incarnation, NaN) are answered with an ERROR and
 * logged; the handler goes on.
 *
 * No loop and no waits: srv_run (server.c) receives, calls srv_handle, and between
 * messages srv_handler_tick; tests drive it the same way over an inproc:// socket pair.
 * Replies go out on the ROUTER socket given at creation, never blocking (hwm -1 there).
 * Borrowed: the socket, the shard, the checkpoints and metrics; single-threaded. */
#ifndef PSTRAIN_PS_HANDLER_H
#define PSTRAIN_PS_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "job/job.h"
#include "net/net.h"
#include "obs/obs.h"
#include "proto/msg.h"
#include "ps/shard.h"
#include "ps/sparse.h"
#include "ps/srv_ckpt.h"

typedef struct srv_handler srv_handler;

typedef struct {
    int rank;           /* this server's */
    const cfg_job *job; /* consistency, checkpoint.enabled, heartbeat_timeout_s */
    const log_ctx *lg;
    net_sock *sock; /* ROUTER: the workers' connections */
    srv_shard *shard;
    srv_sparse *sparse; /* the server's share of the embedding tables; NULL: none (SPUSH and
                           SPULL are refused) */
    int nworkers;
    srv_ckpt *ckpt;                    /* NULL: flagged pushes write no checkpoints */
    obs_metric *apply, *gap, *refused; /* NULL: metrics off (see server.c) */
    /* pstrain_refused_messages_total{reason="malformed"} and {reason="refused"}: messages
     * dropped as malformed, and well-formed ones refused (NULL: metrics off) */
    obs_metric *malformed, *rejected;
} srv_handler_options;

/* Every worker at incarnation 1, none lost. */
srv_handler *srv_handler_create(const srv_handler_options *o, pst_err *err);
void srv_handler_destroy(srv_handler *h);

/* Handles one message from a worker (in as msg_recv left it, route included), then
 * writes the checkpoints it completed and answers the parked pulls it unblocked. Returns
 * PST_OK unless the server cannot go on (out of memory, the socket failed). */
int srv_handle(srv_handler *h, const msg_in *in, pst_err *err);

/* A message msg_recv refused (why: its reason): logged; one of another wire version is
 * answered with an ERROR naming both versions (msg_refuse_version). The warnings about
 * refused and malformed messages name the sender's address and are limited per peer
 * (base/loglimit.h: LOG_LIMIT_BURST per LOG_LIMIT_WINDOW_MS, then a count). */
void srv_handle_refused(srv_handler *h, const msg_in *in, const pst_err *why);
/* Logs the counts of warnings still held back (before the final summary). */
void srv_handler_flush_log(srv_handler *h);

/* Between messages: ends a recovery whose time is up, writes due checkpoints and answers
 * parked pulls the clocks now allow. */
int srv_handler_tick(srv_handler *h, pst_err *err);

/* The coordinator's newest membership (hb_membership, n = nworkers): a worker newly lost
 * leaves the live set (its parked pulls go), a new incarnation rejoins at the shard's
 * clock (its new connection replaces the old one's), a done one leaves. */
void srv_handler_membership(srv_handler *h, const uint64_t *gen, const uint8_t *lost,
                            const uint8_t *done);

/* A restarted server (WELCOME rejoin) whose shard was restored from the checkpoint of
 * `from_clock`: the workers' incarnations and who is done or lost from the membership its
 * WELCOME carried (nworkers 0: none); then the shard learns the workers' clocks from
 * their requests (unanswered until every live worker is heard or heartbeat_timeout_s
 * passed; srv_shard_note_clock). */
void srv_handler_recover(srv_handler *h, const wire_membership *m, int64_t from_clock);

typedef struct {
    uint64_t pulls, bytes_in, bytes_out;                /* pulls answered; float payload bytes */
    uint64_t spulls, sparse_bytes_in, sparse_bytes_out; /* SPULLs answered; key + row bytes */
    size_t parked;                                      /* pulls waiting now */
    uint64_t malformed, rejected; /* messages dropped as malformed; well-formed ones refused */
} srv_handler_stats;
void srv_handler_get_stats(const srv_handler *h, srv_handler_stats *st);

#endif
