/* ps/server.h -- a parameter server process: registers with the coordinator, receives
 * its shard of the model, applies workers' gradients (shard.c) and answers their pulls.
 *
 * Single-threaded around one ZeroMQ ROUTER socket: every request is handled to the end
 * without blocking (pulls that must wait are parked and answered when the clocks allow),
 * so a slow or vanished worker never stalls the others. A heartbeat thread (proto/hb.h)
 * keeps the coordinator informed and brings the membership: lost and rejoined workers. */
#ifndef PSTRAIN_PS_SERVER_H
#define PSTRAIN_PS_SERVER_H

#include <signal.h>

#include "job/job.h"
#include "base/err.h"
#include "base/log.h"
#include "ps/shard.h"
#include "obs/obs.h"

typedef struct {
    int rank;
    const char *coordinator; /* endpoint, "tcp://host:port" */
    const char *bind_host;   /* interface to listen on: "127.0.0.1", "0.0.0.0", ... */
    const char *advertise;   /* host workers connect to; NULL: bind_host (or this host's
                                name when binding 0.0.0.0) */
    int port;                /* port to listen on; 0: any free one (a fixed one lets a
                                Kubernetes readiness probe find it) */
    const cfg_job *job;
    const log_ctx *lg;
    const volatile sig_atomic_t *stop;
    const char *faults;    /* test-only fault injection spec (net/faults.h); NULL: none */
    obs_registry *metrics; /* NULL: metrics off; else the server registers its series here
                                (pstrain_server_*, docs/observability.md) and updates them
                                from its loop; the caller serves them (obs_http) */
    int *stopped_by;       /* may be NULL: set to the signal of a stop the server ended with */
    srv_update_fn update;  /* NULL: the job's optimizer; else a user rule (ps/shard.h) */
    void *update_ctx;
} srv_options;

/* Runs until the coordinator's SHUTDOWN (PST_OK), or a failure: the coordinator silent past
 * cluster.heartbeat_timeout_s or giving this server up (PST_ERR_TIMEOUT / PST_ERR_NET,
 * naming it and what the server waited for). A stop signal (or the stop the coordinator
 * announces) does not end it at once: the workers' last pushes are taken until SHUTDOWN,
 * whose checkpoint is then of one clock on every server; without SHUTDOWN within three
 * quarters of the stop's window (hb_stop_window_ms), or with the coordinator gone, it
 * writes the checkpoint of its own clock, says so, and returns (PST_OK, *stopped_by set).
 * A server started again after a crash (WELCOME rejoin) first recovers its shard from its
 * newest checkpoint (docs/fault-tolerance.md). */
int srv_run(const srv_options *o, pst_err *err);

#endif
