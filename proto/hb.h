/* proto/hb.h -- heartbeats: a process's thread that tells the coordinator it is alive.
 *
 * Every server and worker runs one once it has joined. The thread has its own DEALER
 * socket (ZeroMQ sockets are single-threaded) and sends HEARTBEAT every interval with the
 * progress the main thread last set, so a long step or a checkpoint write does not make a
 * healthy process look dead. The coordinator answers each with the job's membership
 * (which workers are lost, each worker's incarnation), or with an ERROR when it has given
 * this process up (e.g. it was paused past the timeout and replaced).
 *
 * The main thread polls hb_check between steps: it fails when the coordinator has not
 * answered for the timeout (the coordinator is gone: there is nobody left to finish the
 * job) or has refused this process (PST_ERR_NET: retriable, a restart may rejoin), naming
 * which and why. */
#ifndef PSTRAIN_PROTO_HB_H
#define PSTRAIN_PROTO_HB_H

#include <stdint.h>

#include "base/err.h"
#include "base/log.h"
#include "net/net.h"
#include "proto/wire.h"

typedef struct hb_client hb_client;

typedef struct {
    net_ctx *ctx;
    const char *coordinator; /* endpoint */
    const char *role;        /* "server" or "worker" */
    int rank;
    uint64_t generation; /* this process's incarnation (workers: from WELCOME) */
    int interval_ms;
    int timeout_ms; /* coordinator silent this long: lost */
    const log_ctx *lg;
} hb_options;

/* Starts the thread (which sends the first heartbeat at once). */
hb_client *hb_start(const hb_options *o, pst_err *err);
/* Stops and joins the thread; NULL is fine. */
void hb_stop(hb_client *c);

/* What the next heartbeats carry (workers: epoch, step in it, loss). Heartbeats carry no
 * progress before the first call, so a restarted worker's first beats do not overwrite
 * what the coordinator knows of its rank with zeros. */
void hb_set_progress(hb_client *c, int epoch, int64_t step, double loss);
/* The clock the next heartbeats with progress carry (in the envelope): the steps this
 * worker has pushed, i.e. its clock on the servers. */
void hb_set_clock(hb_client *c, int64_t clock);

/* PST_OK while the coordinator answers; PST_ERR_TIMEOUT when it has been silent for the
 * timeout, PST_ERR_PEER when it refused this process (its text in err). */
int hb_check(hb_client *c, pst_err *err);
/* hb_check also guards against a process that was stopped (SIGSTOP, a debugger) for
 * longer than half the timeout (long enough to be fenced): it first waits (up to the timeout) for
 * the coordinator's answer to a heartbeat sent after the stop, since the coordinator may
 * have fenced this incarnation meanwhile; fenced, it fails with PST_ERR_NET (exit 75) and
 * the coordinator's refusal: a server's "ROLE[RANK]: replaced by incarnation N while
 * stopped; exiting 75", a worker's "... incarnation N was declared lost ...". hb_away says whether
 * that wait is due: a loop that polls before it acts calls hb_check first when it is
 * (a stopped server's queued requests must not be answered by a fenced incarnation). */
int hb_away(hb_client *c);

/* The signal of a stop the coordinator announced (membership.stop_signal: the job is
 * stopping, every worker stops after its current step); 0 while none. */
int hb_stop_signal(hb_client *c);

/* The "signal" of a stop the coordinator begins itself when the job cannot finish but may
 * be retried (worker 0 lost for good, docs/fault-tolerance.md): every process stops as for
 * a signal, the servers write a checkpoint of one clock, and each exits 75 (retriable)
 * rather than 130/143. 75 is no signal number on any platform pstrain runs on (signals
 * are below 65) and is the exit code it stands for. */
#define HB_STOP_RETRIABLE 75

/* The time a stop may take, from the signal to every process's exit (docs/
 * fault-tolerance.md): cluster.heartbeat_timeout_s, at most 8 s so that it ends within
 * `pstrain local`'s 10 s grace before SIGKILL. Its parts: a worker waits a quarter of it for
 * its pushes' acknowledgements and a quarter for STOP's; the coordinator half for every
 * worker's STOP, then a quarter for the servers' BYE; a server that was signalled writes
 * what it has after three quarters without SHUTDOWN. */
int hb_stop_window_ms(int heartbeat_timeout_s);

/* The newest membership received: copies up to n workers' generations, lost and done
 * flags (done may be NULL) and returns how many the coordinator sent (0 before the first
 * answer). *version grows by one with each answer that changed it (may be NULL). */
int hb_membership(hb_client *c, int n, uint64_t *gen, uint8_t *lost, uint8_t *done,
                  uint64_t *version);
/* The same for the servers: incarnation and endpoint of each (a restarted server's
 * incarnation grows; it may listen elsewhere). */
int hb_servers(hb_client *c, int n, uint64_t *gen, char (*endpoints)[WIRE_ENDPOINT_MAX],
               uint64_t *version);

#endif
