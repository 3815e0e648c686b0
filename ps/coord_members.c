/* ps/coord_members.c -- the coordinator's membership while training: heartbeats, barriers,
 * DONE, rejoining processes (new incarnations), lost workers and servers. See coord.h and
 * coord_internal.h. */
#include "coord_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"

int coord_same_route(const peer *p, const msg_in *in)
{
    return p->route_len == in->route_len && memcmp(p->route, in->route, in->route_len) == 0;
}

/* Acknowledges a worker's DONE (the one just received, or a repeat of it). The worker's
 * DONE is often the last thing before the coordinator stops the servers and exits, and a
 * lost ACK would then leave the worker asking until its timeout: the ACK goes in
 * DONE_ACK_COPIES copies (a repeat of a message already answered is ignored). */
void coord_ack_done(coord *c, const msg_in *in)
{
    enum { DONE_ACK_COPIES = 3 };
    wire_env a;
    wire_env_init(&a, WIRE_MSG_ACK, ROLE, 0);
    a.request_id = in->h.request_id;
    for (int i = 0; i < DONE_ACK_COPIES; i++) {
        pst_err e = {0};
        msg_send(c->sock, in->route, in->route_len, &a, NULL, NULL, 0, 0, &e);
    }
}

/* Releases barrier `id` when every worker not yet done waits at it: each gets a BARRIER
 * reply. Workers use it once, before their first step, so that all start training
 * together (under asp an early starter would otherwise take many steps alone). */
void coord_barrier_release(coord *c, int64_t id)
{
    int waiting = 0;
    for (int w = 0; w < c->W; w++) {
        const peer *p = &c->workers[w];
        if (p->done || p->lost || p->stopped)
            continue;
        if (p->barrier != id)
            return;
        waiting++;
    }
    for (int w = 0; w < c->W; w++) {
        peer *p = &c->workers[w];
        if (p->done || p->lost || p->stopped || p->barrier != id)
            continue;
        p->barrier_released = id;
        wire_env h;
        wire_env_init(&h, WIRE_MSG_BARRIER, ROLE, 0);
        h.clock = id;
        pst_err e = {0};
        if (msg_send(c->sock, p->route, p->route_len, &h, NULL, NULL, 0, 0, &e))
            log_warn(c->o->lg, "BARRIER to worker[%d]: %s", w, e.msg);
        p->barrier = -1;
    }
    log_debug(c->o->lg, "barrier %lld released (%d workers)", (long long)id, waiting);
}

/* The membership into c->members: workers' incarnations, lost and done flags; servers'
 * incarnations and endpoints. */
const wire_membership *coord_put_membership(coord *c)
{
    wire_membership *m = c->members;
    m->nworkers = c->W;
    for (int w = 0; w < c->W; w++) {
        m->gen[w] = c->workers[w].gen;
        m->lost[w] = (uint8_t)c->workers[w].lost;
        m->done[w] = (uint8_t)c->workers[w].done;
    }
    m->nservers = c->S;
    for (int s = 0; s < c->S; s++) {
        m->server_gen[s] = c->servers[s].gen;
        snprintf(m->server_ep[s], WIRE_ENDPOINT_MAX, "%s", c->servers[s].endpoint);
    }
    m->stop_signal = (uint32_t)c->stop_signal;
    return m;
}

/* The WELCOME as it stands (c->welcome) to peer p, with the membership when asked. */
static int send_welcome(coord *c, const peer *p, int with_members, pst_err *err)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_WELCOME, ROLE, 0);
    wire_body b = {.welcome = c->welcome,
                   .membership = with_members ? coord_put_membership(c) : NULL};
    return msg_send(c->sock, p->route, p->route_len, &h, &b, NULL, 0, 0, err);
}

/* Answers a HEARTBEAT: the membership, or an ERROR when the sender is an incarnation this
 * job has given up. Servers and workers are known by (role, rank, incarnation), and by the
 * connection of that incarnation's first heartbeat. */
static void handle_heartbeat(coord *c, const msg_in *in)
{
    const wire_env *h = &in->h;
    int is_server = strcmp(h->role, "server") == 0, is_worker = strcmp(h->role, "worker") == 0;
    if ((!is_server && !is_worker) || h->rank >= (is_server ? c->S : c->W)) {
        coord_warn(c, "ignoring HEARTBEAT from %s[%d]", h->role, h->rank);
        return;
    }
    peer *p = is_server ? &c->servers[h->rank] : &c->workers[h->rank];
    uint64_t g = h->generation ? h->generation : 1;
    pst_err e = {0};
    if (is_worker && (g < p->gen || (g == p->gen && p->lost))) {
        char text[200];
        snprintf(text, sizeof text,
                 "worker[%d] incarnation %llu was declared lost (silent "
                 "for %d s)%s; this process may not continue",
                 h->rank, (unsigned long long)g, c->o->job->cluster.heartbeat_timeout_s,
                 g < p->gen ? " and replaced by a restarted one" : "");
        msg_send_error(c->sock, in->route, in->route_len, ROLE, 0, h->request_id, PST_ERR_PEER,
                       text, &e);
        return;
    }
    if (is_server && (g < p->gen || (g == p->gen && p->fenced))) {
        /* A fenced or replaced incarnation (a hung process woken up): refused; it exits
         * 75 on this text (hb.h), so that a restart policy starts a fresh one. */
        char text[200];
        snprintf(text, sizeof text, "replaced by incarnation %llu while stopped",
                 (unsigned long long)(p->fenced ? p->gen + 1 : p->gen));
        coord_warn(c, "refused HEARTBEAT of server[%d] incarnation %llu: %s", h->rank,
                   (unsigned long long)g, text);
        msg_send_error(c->sock, in->route, in->route_len, ROLE, 0, h->request_id, PST_ERR_PEER,
                       text, &e);
        return;
    }
    if (g > p->gen || !p->joined)
        return; /* not registered (yet): it will say HELLO */
    if (p->hb_route_len == 0 && in->route_len <= sizeof p->hb_route) {
        memcpy(p->hb_route, in->route, in->route_len);
        p->hb_route_len = in->route_len;
    } else if (p->hb_route_len != in->route_len ||
               memcmp(p->hb_route, in->route, in->route_len) != 0) {
        coord_warn(c, "ignoring HEARTBEAT claiming to be %s[%d] from another connection", h->role,
                   h->rank);
        return;
    }
    p->last_ms = net_now_ms();
    if (is_worker && in->b.progress) {
        p->epoch = in->b.progress->epoch;
        p->step = in->b.progress->step;
        p->loss = in->b.progress->loss;
        p->clock = h->clock;
    }
    wire_env r;
    wire_env_init(&r, WIRE_MSG_HEARTBEAT, ROLE, 0);
    r.request_id = h->request_id;
    wire_body b = {.membership = coord_put_membership(c)};
    if (msg_send(c->sock, in->route, in->route_len, &r, &b, NULL, 0, 0, &e))
        log_debug(c->o->lg, "HEARTBEAT answer to %s[%d]: %s", h->role, h->rank, e.msg);
}

/* Logs line about the message just received within the per-peer limit. */
static void warn_limited(coord *c, const char *line)
{
    char key[MSG_PEER], name[MSG_PEER];
    msg_peer(c->in, 1, key, name);
    log_limit_warn(c->warn, key, name, pst_mono_ms(), "%s", line);
}

void coord_warn(coord *c, const char *fmt, ...)
{
    c->rejected++;
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    warn_limited(c, line);
}

void coord_refused(coord *c, const pst_err *why)
{
    c->malformed++;
    char line[600];
    snprintf(line, sizeof line, "dropped a malformed message: %s%s", why->msg,
             msg_refuse_version(c->sock, c->in, "coordinator", 0)
                 ? "; answered with an ERROR naming both versions"
                 : "");
    warn_limited(c, line);
}

/* STATUS and HEARTBEAT, answered the same way whatever the coordinator is waiting for;
 * returns 1 when the message just received was one of them. */
int coord_answer_anytime(coord *c)
{
    if (c->in->h.type == WIRE_MSG_STATUS)
        coord_answer_status(c, c->in);
    else if (c->in->h.type == WIRE_MSG_HEARTBEAT)
        handle_heartbeat(c, c->in);
    else
        return 0;
    return 1;
}

/* A HELLO once the job runs: a restarted worker taking over its rank (a new incarnation),
 * or the same process asking again because its WELCOME was lost. */
void coord_handle_rejoin(coord *c, int *done)
{
    const wire_env *env = &c->in->h;
    const wire_hello *h = c->in->b.hello;
    const char *role = env->role;
    int rank = env->rank;
    int is_server = strcmp(role, "server") == 0, is_worker = strcmp(role, "worker") == 0;
    pst_err e = {0};
    wire_welcome *wel = c->welcome;
    if ((is_server || is_worker) && rank < (is_server ? c->S : c->W)) {
        peer *p = is_server ? &c->servers[rank] : &c->workers[rank];
        /* The same process asking again: its WELCOME was lost. */
        if (p->joined && coord_same_route(p, c->in) && h->pid == p->pid) {
            wel->generation = p->gen;
            wel->rejoin = p->gen > 1;
            if (send_welcome(c, p, is_server && p->gen > 1, &e))
                log_warn(c->o->lg, "WELCOME to %s[%d]: %s", role, rank, e.msg);
            return;
        }
    }
    if (is_server && rank < c->S && h->job_hash == c->job_hash) {
        /* A restarted server: it recovers its shard from its newest checkpoint; the workers
         * learn its (new) endpoint from the membership and send it again what its previous
         * incarnation did not answer. */
        peer *p = &c->servers[rank];
        if (p->fenced)
            log_warn(c->o->lg,
                     "server[%d]: incarnation %llu takes the rank of the fenced one after %.1f s",
                     rank, (unsigned long long)p->gen + 1, (net_now_ms() - p->fence_ms) / 1000.0);
        p->fenced = 0;
        p->gen++;
        p->hb_route_len = 0;
        memcpy(p->route, c->in->route, c->in->route_len);
        p->route_len = c->in->route_len;
        p->pid = h->pid;
        p->last_ms = net_now_ms();
        p->restarts++;
        snprintf(p->endpoint, sizeof p->endpoint, "%s", h->endpoint);
        snprintf(wel->server_endpoints[rank], WIRE_ENDPOINT_MAX, "%s", h->endpoint);
        wel->generation = p->gen;
        wel->rejoin = 1;
        if (send_welcome(c, p, 1, &e))
            log_warn(c->o->lg, "WELCOME to server[%d]: %s", rank, e.msg);
        log_warn(c->o->lg,
                 "server[%d] restarted as incarnation %llu (pid %d, %s): it recovers "
                 "its shard from its newest checkpoint",
                 rank, (unsigned long long)p->gen, h->pid, h->endpoint);
        return;
    }
    if (!is_worker || rank >= c->W) {
        coord_warn(c, "ignoring HELLO from %s[%d] while the job runs%s", role, rank,
                   is_server ? " (a server of another job, or a rank past the job's)" : "");
        return;
    }
    peer *p = &c->workers[rank];
    if (h->job_hash != c->job_hash || h->nparams != c->nparams ||
        !coord_same_groups(c, &h->groups)) {
        coord_reject(c, &e, 0,
                     "worker[%d] cannot rejoin: it runs a different job (model, optimizer, "
                     "cluster or training settings differ)",
                     rank);
        return;
    }
    if (p->done) {
        coord_reject(c, &e, 0, "worker[%d] cannot rejoin: it already finished its data", rank);
        return;
    }
    if (p->lost)
        c->nlost--;
    p->gen++;
    p->restarts++;
    p->lost = 0;
    p->hb_route_len = 0;
    p->barrier = -1;
    memcpy(p->route, c->in->route, c->in->route_len);
    p->route_len = c->in->route_len;
    p->pid = h->pid;
    p->last_ms = net_now_ms();
    wel->generation = p->gen;
    wel->rejoin = 1;
    if (send_welcome(c, p, 0, &e))
        log_warn(c->o->lg, "WELCOME to worker[%d]: %s", rank, e.msg);
    log_info(c->o->lg,
             "worker[%d] rejoined as incarnation %llu (pid %d); %d of %d workers "
             "training",
             rank, (unsigned long long)p->gen, h->pid, c->W - *done - c->nlost, c->W);
}

void coord_handle_stop(coord *c, peer *p, int *done)
{
    const wire_env *h = &c->in->h;
    wire_env a;
    wire_env_init(&a, WIRE_MSG_ACK, ROLE, 0);
    a.request_id = h->request_id;
    a.clock = h->clock;
    pst_err e = {0};
    msg_send(c->sock, c->in->route, c->in->route_len, &a, NULL, NULL, 0, 0, &e);
    if (p->stopped)
        return; /* a repeat: our ACK was lost */
    const wire_progress *pr = c->in->b.progress;
    if (!c->stop_signal) {
        c->stop_signal = pr && pr->stop_signal ? (int)pr->stop_signal : 15 /* SIGTERM */;
        c->stop_ms = net_now_ms();
        log_warn(c->o->lg,
                 "worker[%d] was stopped (signal %d): stopping the job; every worker "
                 "stops after its current step",
                 h->rank, c->stop_signal);
    }
    p->stopped = 1;
    p->clock = h->clock;
    c->nstopped++;
    log_info(c->o->lg, "worker[%d] stopped at clock %lld (%d of %d)", h->rank, (long long)h->clock,
             c->nstopped, c->W - *done - c->nlost);
    /* It no longer holds back a barrier the others wait at. */
    for (int w = 0; w < c->W; w++)
        if (!c->workers[w].done && !c->workers[w].lost && !c->workers[w].stopped &&
            c->workers[w].barrier >= 0) {
            coord_barrier_release(c, c->workers[w].barrier);
            break;
        }
}

/* Dead-peer detection, in two steps. A peer silent for more than 1.2 heartbeat intervals
 * is probed every half interval: an unsolicited HEARTBEAT answer (the membership) to its
 * heartbeat connection. The ROUTER refuses it (EHOSTUNREACH: ZMQ_ROUTER_MANDATORY) once
 * that connection is closed -- a killed process's sockets close at once -- and the peer is
 * then suspected; suspected, it is confirmed gone when its silence reaches GONE_MS. A live
 * peer whose link dropped reconnects within ~0.1 s (and keeps beating), a stopped one
 * (SIGSTOP) keeps its connection: both are left to the heartbeat timeout. Returns whether
 * p is confirmed gone. */
static int connection_gone(coord *c, peer *p, int64_t now)
{
    const cfg_cluster *cl = &c->o->job->cluster;
    /* Three intervals, at least 1 s: a loaded machine may delay a live beat that long. */
    const int64_t gone_ms = 3 * cl->heartbeat_ms > 1000 ? 3 * cl->heartbeat_ms : 1000;
    int64_t silent = now - p->last_ms;
    if (p->hb_route_len == 0 || silent < (int64_t)cl->heartbeat_ms * 6 / 5) {
        p->suspect_ms = 0;
        return 0;
    }
    if (now - p->probe_ms >= cl->heartbeat_ms / 2) {
        p->probe_ms = now;
        wire_env r;
        wire_env_init(&r, WIRE_MSG_HEARTBEAT, ROLE, 0);
        wire_body b = {.membership = coord_put_membership(c)};
        pst_err e = {0};
        int rc = msg_send(c->sock, p->hb_route, p->hb_route_len, &r, &b, NULL, 0, 0, &e);
        if (rc == PST_ERR_PEER && !p->suspect_ms)
            p->suspect_ms = now;
        else if (rc != PST_ERR_PEER)
            p->suspect_ms = 0;
    }
    return p->suspect_ms && silent >= gone_ms;
}

/* A server silent past the heartbeat timeout (stopped, hung, cut off) that a restart may
 * replace (its restarts < cluster.max_restarts, no stop under way): fenced rather than the
 * job ended. Its incarnation is refused from now on (handle_heartbeat), and a new one may
 * take the rank (coord_handle_rejoin) within cluster.timeout_s: under `pstrain local` the
 * launcher kills the stopped process and starts another (cli/supervise.c), elsewhere the
 * process learns on waking that it was replaced and exits 75 for its restart policy.
 * Returns 1 while the job may wait for the new incarnation. */
static int fence_server(coord *c, int s, int64_t now)
{
    const cfg_cluster *cl = &c->o->job->cluster;
    peer *p = &c->servers[s];
    if (p->fenced)
        return now - p->fence_ms <= (int64_t)cl->timeout_s * 1000;
    if (p->done || c->stop_signal || p->restarts >= cl->max_restarts)
        return 0;
    p->fenced = 1;
    p->fence_ms = now;
    log_warn(c->o->lg,
             "server[%d] (pid %d, %s) is not answering: no heartbeat for %.1f s; fenced: "
             "incarnation %llu is refused from now on, incarnation %llu may take its rank "
             "(restart %d of %d; waiting up to %d s for it)",
             s, p->pid, p->endpoint, (now - p->last_ms) / 1000.0, (unsigned long long)p->gen,
             (unsigned long long)p->gen + 1, p->restarts + 1, cl->max_restarts, cl->timeout_s);
    return 1;
}

/* Checks every process's last heartbeat: a silent worker is lost (the job goes on without
 * it), a silent server is fenced (fence_server) or, past its restarts, ends the job. Silence for the heartbeat timeout, or a closed
 * connection and a shorter silence (connection_gone; servers only when no restart may
 * bring them back, cluster.max_restarts 0). */
int coord_check_liveness(coord *c, int done, pst_err *err)
{
    const cfg_cluster *cl = &c->o->job->cluster;
    int64_t now = net_now_ms(), limit = (int64_t)cl->heartbeat_timeout_s * 1000;
    char why[96];
    for (int s = 0; s < c->S; s++) {
        peer *p = &c->servers[s];
        int gone = cl->max_restarts == 0 && !p->done && connection_gone(c, p, now);
        if (now - p->last_ms <= limit && !gone)
            continue;
        if (fence_server(c, s, now))
            continue;
        if (p->fenced)
            snprintf(why, sizeof why, "fenced %.1f s ago and no new incarnation took its rank",
                     (now - p->fence_ms) / 1000.0);
        else if (gone)
            snprintf(why, sizeof why, "no heartbeat for %.1f s and its connection is closed",
                     (now - p->last_ms) / 1000.0);
        else
            snprintf(why, sizeof why, "no heartbeat for %d s", cl->heartbeat_timeout_s);
        return pst_err_set(err, PST_ERR_TIMEOUT,
                           "server[%d] (pid %d, %s) is lost: %s; its shard is gone (restart "
                           "the job with --resume to continue from the last checkpoint)",
                           s, p->pid, p->endpoint, why);
    }
    for (int w = 0; w < c->W; w++) {
        peer *p = &c->workers[w];
        if (p->done || p->lost || p->stopped)
            continue;
        int gone = connection_gone(c, p, now);
        if (now - p->last_ms <= limit && !gone)
            continue;
        p->lost = 1;
        c->nlost++;
        if (gone)
            snprintf(why, sizeof why, "no heartbeat for %.1f s and its connection is closed",
                     (now - p->last_ms) / 1000.0);
        else
            snprintf(why, sizeof why, "no heartbeat for %d s", cl->heartbeat_timeout_s);
        /* Where the servers had it: the clock its heartbeats last carried (a restarted
         * incarnation's before its first step still report the previous one's). */
        char at[96] = "before its first step";
        if (p->epoch > 0)
            snprintf(at, sizeof at, "at clock %lld (epoch %d, step %lld of it)",
                     (long long)p->clock, p->epoch, (long long)p->step);
        /* Lost is fenced: this incarnation's heartbeats are refused from now on, and the
         * servers refuse its pushes (the membership says lost); a restart may take the
         * rank (coord_handle_rejoin). */
        log_warn(c->o->lg,
                 "worker[%d] (pid %d) is lost: %s, %s; going on with %d of %d workers; "
                 "incarnation %llu is refused from now on",
                 w, p->pid, why, at, c->W - done - c->nlost, c->W, (unsigned long long)p->gen);
        /* Lost during a stop: the shards may differ in its last step (one took it, another
         * went on without it), so the stop writes no checkpoint. */
        if (c->stop_signal && !c->stop_partial) {
            c->stop_partial = 1;
            log_warn(c->o->lg,
                     "stop: worker[%d] was lost before it said STOP; the servers "
                     "write no checkpoint",
                     w);
        }
        /* It no longer holds back a barrier the others wait at. */
        for (int k = 0; k < c->W; k++)
            if (!c->workers[k].done && !c->workers[k].lost && c->workers[k].barrier >= 0) {
                coord_barrier_release(c, c->workers[k].barrier);
                break;
            }
    }
    return PST_OK;
}
