/* ps/coord.h -- the coordinator: the rendezvous of a job's processes.
 *
 * Servers and workers say HELLO (servers with the endpoint workers should use, workers
 * with the size of the model they built); once all S + W have, the coordinator cuts the
 * parameter vector into the shard map and sends every process a WELCOME with it. It then
 * follows the workers' PROGRESS and DONE messages, and when every worker is done tells the
 * servers to SHUTDOWN and collects their figures. Every wait has a deadline naming who is
 * late. It holds no parameters.
 *
 * Failures (docs/fault-tolerance.md): every process sends heartbeats; a worker silent for
 * cluster.heartbeat_timeout_s is lost -- the others go on without it (servers learn it from
 * the membership in heartbeat answers) -- and a restarted process of its rank may rejoin
 * (HELLO again: a new incarnation). A lost server ends the job (exit 75, retriable). */
#ifndef PSTRAIN_PS_COORD_H
#define PSTRAIN_PS_COORD_H

#include <signal.h>
#include <stdint.h>

#include "job/job.h"
#include "base/err.h"
#include "base/log.h"
#include "obs/obs.h"

typedef struct {
    const char *bind; /* endpoint to bind, e.g. "tcp://0.0.0.0:7070" or "tcp://127.0.0.1:0" */
    int ready_fd;     /* >= 0: write the bound endpoint and a newline here, then close it */
    const cfg_job *job;
    const log_ctx *lg;
    const volatile sig_atomic_t *stop;
    const char *faults;    /* test-only fault injection spec (net/faults.h); NULL: none */
    obs_registry *metrics; /* NULL: off; else the coordinator registers its series here
                              (pstrain_coord_*) and publishes the /status JSON document
                              (docs/observability.md); the caller serves them (obs_http) */
    int *stopped_by;       /* may be NULL: set to the signal of a stop the job ended with
                              (this process's, or one a worker's STOP carried) */
} coord_options;

int coord_run(const coord_options *o, pst_err *err);

/* The shard map: S contiguous ranges of nearly equal size (multiples of 16 floats, so
 * every shard starts on a 64-byte boundary), offsets[0] = 0, offsets[S] = nparams. Equal
 * bytes per server whatever the layer sizes, and every server gets a part of even a small
 * model. */
void coord_shard_map(uint64_t nparams, int nservers, uint64_t *offsets);

/* The shard map of a fine-tuning job (update groups, see WELCOME; ngroups 0 is
 * coord_shard_map): the cuts balance the trainable floats -- what servers update and
 * workers send every step -- instead of all floats, so a frozen body does not leave servers
 * idle while one holds the whole head. Cuts stay multiples of 16 floats and no shard is
 * empty; frozen ranges go with the shards around them. Falls back to coord_shard_map when
 * nothing trains or the model is too small to cut so. */
void coord_shard_map_groups(uint64_t nparams, int nservers, const uint64_t *group_offsets,
                            const float *group_mults, int ngroups, uint64_t *offsets);

#endif
