/* ps/coord_internal.h -- the coordinator's state, shared by its files (not a public header:
 * only ps/coord*.c include it; the public interface is coord.h).
 *
 *   coord.c          the run: rendezvous, training (following workers), shutdown
 *   coord_join.c     rendezvous: HELLO checks, the shard map, resume clock, WELCOME
 *   coord_members.c  membership during training: heartbeats, barriers, DONE, rejoining
 *                    processes (new incarnations), lost workers and servers
 *   coord_status.c   what others read: the /status document and metrics, STATUS answers,
 *                    the coordinator.endpoint file
 * Single-threaded: the coordinator's loop owns everything here. */
#ifndef PSTRAIN_PS_COORD_INTERNAL_H
#define PSTRAIN_PS_COORD_INTERNAL_H

#include <stdint.h>

#include "base/loglimit.h"
#include "net/net.h"
#include "proto/msg.h"
#include "ps/coord.h"

#define ROLE "coordinator"

typedef struct {
    int joined;
    char route[64];
    size_t route_len;
    char endpoint[WIRE_ENDPOINT_MAX];
    int pid;
    int done;
    int64_t last_ms; /* when we last heard from it */
    int epoch;
    int64_t step;  /* steps done in `epoch` (1-based) */
    int64_t clock; /* a worker: steps it had pushed (its clock on the servers), as its
                          heartbeats last said; kept across incarnations until the new one
                          reports */
    double loss;
    uint64_t steps;  /* a worker: steps of its whole run (HELLO) */
    int64_t barrier; /* the barrier it waits at, -1: none */
    int nckpt;       /* a server of a resumed job: clocks of its complete checkpoints */
    int64_t ckpt_clocks[WIRE_MAX_CKPTS];
    int ckpt_any;             /* ... which stand for any clock (its shard is all frozen) */
    int welcomed;             /* got its WELCOME (a repeated HELLO gets it again) */
    uint64_t gen;             /* workers: current incarnation, 1 at the start */
    int lost;                 /* silent past the heartbeat timeout; its steps no longer count */
    int restarts;             /* workers: incarnations after the first */
    int64_t barrier_released; /* highest barrier released to it, -1: none */
    char hb_route[64];        /* the heartbeat thread's connection (of incarnation gen) */
    size_t hb_route_len;
    int stopped; /* a worker: said STOP (a stop: every push it sent is taken, at `clock`) */
    /* Dead-peer detection (coord_check_liveness): when its heartbeat connection was last
     * probed, and since when the probe finds it closed (0: not suspected). */
    int64_t probe_ms, suspect_ms;
    /* A server silent past the heartbeat timeout while a restart may replace it: fenced.
     * Incarnation gen is refused from fence_ms on (its heartbeats get an ERROR saying it
     * was replaced by gen + 1); the job waits coord_replace_ms for gen + 1's HELLO. */
    int fenced;
    int64_t fence_ms;
} peer;

typedef struct {
    const coord_options *o;
    net_ctx *ctx;
    net_sock *sock;
    net_msg *m;
    msg_in *in; /* the message being handled */
    int S, W;
    peer *servers, *workers;
    uint64_t nparams, job_hash;
    uint64_t steps_max, steps_sum; /* over the workers' HELLOs */
    /* Fine-tuning: the workers' update groups (the first worker's; the others must agree),
     * passed on to the servers in WELCOME. */
    int have_groups, ngroups;
    uint64_t group_offsets[WIRE_MAX_GROUPS + 1];
    float group_mults[WIRE_MAX_GROUPS];
    unsigned char group_state[WIRE_MAX_GROUPS]; /* 1: a state group (wire_groups) */
    double test_accuracy;
    int64_t resume_clock;     /* a resumed job: the checkpoints' clock; -1: a fresh start */
    wire_welcome *welcome;    /* as sent to every process (rejoining workers get a copy) */
    const char *phase;        /* gathering, training, stopping (status) */
    char endpoint_file[4200]; /* <output.dir>/coordinator.endpoint while running, or "" */
    int64_t start_ms;
    wire_membership *members; /* scratch: HEARTBEAT answers, a restarted server's WELCOME */
    net_faults *faults;
    int nlost; /* workers lost and not rejoined */
    /* A stop (docs/fault-tolerance.md): its signal (this process's, or the one a worker's
     * STOP carried; announced in every membership), when it began, workers stopped. */
    int stop_signal;
    int64_t stop_ms;
    int nstopped;
    int stop_partial; /* a live worker did not say STOP in time: SHUTDOWN writes nothing */
    /* The stop is the coordinator's own retriable end (stop_signal HB_STOP_RETRIABLE):
     * worker 0 lost with nothing to restart it; the job exits 75 after the checkpoint. */
    int retriable;
    unsigned key_refusals; /* messages as a server from a client key (coord_key_refused) */
    /* Messages from peers dropped as malformed, and well-formed ones refused or ignored
     * (forged, out of place); their warnings limited per peer (coord_warn). */
    uint64_t malformed, rejected;
    log_limit *warn;
    struct coord_obs *obs; /* metrics and /status (NULL: off); coord_status.c */
} coord;

/* coord_status.c */
int coord_obs_register(coord *c, pst_err *err);
void coord_obs_free(struct coord_obs *x);
/* Notes the phase; with metrics on, updates the series and publishes /status (at most
 * every 250 ms; called at the top of each loop). */
void coord_obs_tick(coord *c, const char *phase);
/* Answers STATUS (`pstrain status`): the status document as the answer's one frame. */
void coord_answer_status(coord *c, const msg_in *in);
/* <output.dir>/coordinator.endpoint (best effort; c->endpoint_file set when written). */
void coord_write_endpoint_file(coord *c, const char *bound);

/* coord_join.c */
/* Waits until all S + W processes said HELLO (PST_OK), or the timeout (naming who is
 * missing), or a fatal refusal. */
int coord_gather(coord *c, pst_err *err);
/* Refuses the HELLO just received: logs the reason, answers the sender with an ERROR
 * carrying it, and, when fatal (the job cannot run as configured), fails the coordinator
 * with it too; a refusal that is not fatal is counted and logged as coord_warn does
 * (at error level). */
int coord_reject(coord *c, pst_err *err, int fatal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Whether a worker's update groups are those of the workers before it (the first one's are
 * taken as they are). */
int coord_same_groups(coord *c, const wire_groups *g);
int coord_choose_resume(coord *c, pst_err *err);
int coord_welcome_all(coord *c, pst_err *err);
/* The job cannot go on: tells every process that joined so each stops now with the
 * reason. code: PST_ERR_CONFIG while registering (a refusal), PST_ERR_PEER later. */
void coord_abort_joined(coord *c, const pst_err *why, int code);
/* With CURVE on, only the job's server key may speak as a server: returns 1 when the
 * message just received claims the role "server" from a client key (it is dropped, a
 * HELLO answered with the reason), 0 when it may be handled. */
int coord_key_refused(coord *c);

/* coord_members.c */
/* Whether the message came on the connection p joined on. */
int coord_same_route(const peer *p, const msg_in *in);
/* Acknowledges a worker's DONE (the one just received, or a repeat of it). */
void coord_ack_done(coord *c, const msg_in *in);
/* Releases barrier `id` when every worker not yet done waits at it. */
void coord_barrier_release(coord *c, int64_t id);
/* The membership as it stands, into c->members (valid until the next call). */
const wire_membership *coord_put_membership(coord *c);
/* STATUS and HEARTBEAT, answered the same way whatever the coordinator is waiting for;
 * returns 1 when the message just received was one of them. */
int coord_answer_anytime(coord *c);
/* The message just received is refused or ignored: counted (c->rejected), and the warning
 * (printf-style) logged naming the sender's address, at most LOG_LIMIT_BURST a peer per
 * LOG_LIMIT_WINDOW_MS (base/loglimit.h), the rest counted in one line. */
void coord_warn(coord *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A message msg_recv refused (why: its reason): counted (c->malformed) and logged as
 * coord_warn does; one of another wire version is answered with an ERROR naming both
 * versions (msg_refuse_version). */
void coord_refused(coord *c, const pst_err *why);
/* A HELLO once the job runs: a restarted process taking over its rank (a new
 * incarnation), or the same process asking again because its WELCOME was lost. */
void coord_handle_rejoin(coord *c, int *done);
/* A worker's STOP: acknowledged; the job is stopping (if it was not already). */
void coord_handle_stop(coord *c, peer *p, int *done);
/* Checks every process's last heartbeat: a silent worker is lost (the job goes on without
 * it), a silent server ends the job (PST_ERR_TIMEOUT). */
int coord_check_liveness(coord *c, int done, pst_err *err);

#endif
