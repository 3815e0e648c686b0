/* ps/coord.c -- the coordinator's run: rendezvous, training, shutdown. See coord.h; the
 * pieces are in coord_join.c, coord_members.c and coord_status.c (coord_internal.h). */
#include "coord_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "proto/hb.h"

/* A stop that waited half its window (hb_stop_window_ms) for the workers' STOP: it goes on
 * without those still training, naming them (their last steps may be on some shards
 * only: a resume then takes an older clock every server has). */
static int stop_overdue(coord *c, int done)
{
    int64_t waited = net_now_ms() - c->stop_ms;
    if (waited < hb_stop_window_ms(c->o->job->cluster.heartbeat_timeout_s) / 2)
        return 0;
    char list[512];
    size_t n = 0;
    list[0] = '\0';
    for (int w = 0; w < c->W && n < sizeof list; w++) {
        const peer *p = &c->workers[w];
        if (!p->done && !p->lost && !p->stopped)
            n += (size_t)snprintf(list + n, sizeof list - n, "%sworker[%d]", n ? ", " : "", w);
    }
    log_warn(c->o->lg,
             "stop: %s did not say STOP within %.1f s (%d of %d stopped): the shards may "
             "differ in its last step, so the servers write no checkpoint (a resume takes "
             "the newest they have)",
             list, waited / 1000.0, c->nstopped, c->W - done - c->nlost);
    c->stop_partial = 1;
    return 1;
}

/* Worker 0 writes the final model: lost with cluster.max_restarts 0 (nothing starts it
 * again), the job cannot finish. Rather than let the others train on for nothing, the
 * coordinator stops the job as for a signal -- every live worker stops at one clock, the
 * servers write its checkpoint -- and exits 75, so that --resume continues from there. */
static void begin_retriable_stop(coord *c)
{
    c->stop_signal = HB_STOP_RETRIABLE;
    c->stop_ms = net_now_ms();
    c->retriable = 1;
    log_warn(c->o->lg,
             "worker[0] is lost and cluster.max_restarts is 0, so the final model cannot be "
             "written: stopping the job (every worker stops after its current step, the "
             "servers write their checkpoints), then exiting 75");
}

/* Follows the workers until each is done or lost, or, once the job is stopping (a signal
 * here, a worker's STOP, or worker 0 lost for good), until every live one has stopped or
 * the stop's time is up. */
static int follow(coord *c, pst_err *err)
{
    const coord_options *o = c->o;
    int done = 0;
    int64_t now = net_now_ms();
    for (int w = 0; w < c->W; w++) {
        c->workers[w].last_ms = now;
        c->workers[w].barrier = -1;
        c->workers[w].barrier_released = -1;
    }
    for (int s = 0; s < c->S; s++)
        c->servers[s].last_ms = now;
    while (done + c->nlost + c->nstopped < c->W) {
        coord_obs_tick(c, c->stop_signal ? "stopping" : "training");
        if (*o->stop && !c->stop_signal) {
            c->stop_signal = (int)*o->stop;
            c->stop_ms = net_now_ms();
            log_warn(o->lg,
                     "stopped by signal %d: every worker stops after its current step, then "
                     "the servers write their checkpoints",
                     c->stop_signal);
        }
        if (c->stop_signal && stop_overdue(c, done))
            break;
        int rc = coord_check_liveness(c, done, err);
        if (rc && c->stop_signal) {
            /* Asked to stop, the job ends with the stop, saying what was lost (the shards
             * cannot all be written). */
            log_warn(o->lg, "stop: %s; the servers write no checkpoint", err->msg);
            c->stop_partial = 1;
            pst_err_clear(err);
            break;
        }
        if (rc)
            return rc;
        if (!c->stop_signal && c->workers[0].lost && o->job->cluster.max_restarts == 0)
            begin_retriable_stop(c);
        if (done + c->nlost + c->nstopped == c->W)
            break;
        pst_err e = {0};
        rc = msg_recv(c->sock, c->m, 1, c->in, 200, &e);
        if (rc == PST_ERR_TIMEOUT)
            continue;
        if (rc == PST_ERR_PEER) {
            coord_refused(c, &e);
            continue;
        }
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        if (coord_key_refused(c) || coord_answer_anytime(c))
            continue;
        const wire_env *h = &c->in->h;
        if (h->type == WIRE_MSG_HELLO) {
            coord_handle_rejoin(c, &done);
            continue;
        }
        if (strcmp(h->role, "worker") != 0 || h->rank >= c->W) {
            coord_warn(c, "ignoring %s from %s[%d]", wire_type_name(h->type), h->role, h->rank);
            continue;
        }
        peer *p = &c->workers[h->rank];
        /* A worker is known by the connection it joined on: anyone else claiming its rank
         * could otherwise finish the job early (DONE) or keep a dead worker alive. */
        if (!coord_same_route(p, c->in)) {
            coord_warn(c, "ignoring %s claiming to be worker[%d] from another connection",
                       wire_type_name(h->type), h->rank);
            continue;
        }
        if (p->lost)
            continue; /* a stale incarnation's last words */
        p->last_ms = net_now_ms();
        const wire_progress *pr = c->in->b.progress;
        if (pr) {
            p->epoch = pr->epoch;
            p->step = pr->step;
            p->loss = pr->loss;
        }
        if (h->type == WIRE_MSG_BARRIER && !p->done) {
            if (p->barrier_released >= h->clock) { /* its release was lost: again */
                wire_env b;
                wire_env_init(&b, WIRE_MSG_BARRIER, ROLE, 0);
                b.clock = h->clock;
                msg_send(c->sock, p->route, p->route_len, &b, NULL, NULL, 0, 0, &e);
                continue;
            }
            p->barrier = h->clock;
            coord_barrier_release(c, h->clock);
        }
        if (h->type == WIRE_MSG_STOP) {
            coord_handle_stop(c, p, &done);
            continue;
        }
        if (h->type == WIRE_MSG_DONE)
            coord_ack_done(c, c->in);
        if (h->type == WIRE_MSG_DONE && !p->done) {
            p->done = 1;
            done++;
            if (h->rank == 0 && pr)
                c->test_accuracy = pr->test_accuracy;
            log_info(o->lg, "worker[%d] finished (%d of %d)", h->rank, done, c->W);
            /* It no longer holds back a barrier the others wait at. */
            for (int w = 0; w < c->W; w++)
                if (!c->workers[w].done && !c->workers[w].lost && c->workers[w].barrier >= 0) {
                    coord_barrier_release(c, c->workers[w].barrier);
                    break;
                }
        }
    }
    if (c->stop_signal)
        return PST_OK;
    /* Every server is still there (a lost one ends the loop above): coord_run has them
     * write their checkpoints before the job ends retriably. */
    c->retriable = c->nlost == c->W || c->workers[0].lost;
    if (c->nlost == c->W)
        return pst_err_set(err, PST_ERR_TIMEOUT,
                           "every worker was lost (no heartbeat for %d "
                           "s); the job cannot finish",
                           o->job->cluster.heartbeat_timeout_s);
    if (c->workers[0].lost)
        return pst_err_set(err, PST_ERR_TIMEOUT,
                           "worker[0] was lost before it finished, so the "
                           "final model was not written (restart it, or the job with --resume)");
    return PST_OK;
}

static void send_shutdown(coord *c, int s)
{
    wire_env h;
    wire_env_init(&h, WIRE_MSG_SHUTDOWN, ROLE, 0);
    h.clock = c->stop_partial ? -1 : 0; /* -1: write no checkpoint */
    /* The membership goes with it: a server that has not yet heard (by heartbeat) that a
     * worker was lost would write the clock before that worker's missing step, another
     * server the one after -- two clocks, and no checkpoint a resume can take. */
    wire_body b = {.membership = coord_put_membership(c)};
    pst_err e = {0};
    if (msg_send(c->sock, c->servers[s].route, c->servers[s].route_len, &h, &b, NULL, 0,
                 c->o->job->cluster.timeout_s * 1000, &e))
        log_warn(c->o->lg, "SHUTDOWN to server[%d]: %s", s, e.msg);
}

/* SHUTDOWN to every server (each writes its checkpoint and answers BYE with its figures),
 * within timeout_ms. */
static int shutdown_servers(coord *c, int timeout_ms, pst_err *err)
{
    const coord_options *o = c->o;
    for (int s = 0; s < c->S; s++)
        send_shutdown(c, s);
    int byes = 0;
    int64_t deadline = net_now_ms() + timeout_ms, max_gap = 0;
    int64_t resend = net_now_ms() + o->job->cluster.heartbeat_ms;
    uint64_t bytes = 0, nonfinite = 0, refused = 0;
    while (byes < c->S) {
        coord_obs_tick(c, "stopping");
        int64_t now = net_now_ms();
        int left = (int)(deadline - now);
        if (left <= 0)
            return pst_err_set(err, PST_ERR_TIMEOUT,
                               "%d of %d servers did not confirm SHUTDOWN "
                               "within %.1f s",
                               c->S - byes, c->S, timeout_ms / 1000.0);
        if (now >= resend) { /* a SHUTDOWN may be lost */
            for (int s = 0; s < c->S; s++)
                if (!c->servers[s].done)
                    send_shutdown(c, s);
            resend = now + o->job->cluster.heartbeat_ms;
        }
        pst_err e = {0};
        int rc = msg_recv(c->sock, c->m, 1, c->in, 100, &e);
        if (rc == PST_ERR_PEER)
            coord_refused(c, &e);
        if (rc == PST_ERR_TIMEOUT || rc == PST_ERR_PEER)
            continue;
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        if (coord_key_refused(c) || coord_answer_anytime(c))
            continue;
        const wire_env *h = &c->in->h;
        if (h->type == WIRE_MSG_DONE && strcmp(h->role, "worker") == 0 && h->rank >= 0 &&
            h->rank < c->W && coord_same_route(&c->workers[h->rank], c->in)) {
            /* A worker still sending DONE lost our ACKs: answer again, or it waits out its
             * timeout after the job is over. */
            coord_ack_done(c, c->in);
            continue;
        }
        if (h->type != WIRE_MSG_BYE || strcmp(h->role, "server") != 0)
            continue; /* e.g. a worker's last PROGRESS */
        /* Count each server once, and only from the connection it joined on. */
        if (h->rank >= c->S || !coord_same_route(&c->servers[h->rank], c->in)) {
            coord_warn(c, "ignoring BYE claiming to be server[%d] (another connection)", h->rank);
            continue;
        }
        wire_env a;
        wire_env_init(&a, WIRE_MSG_ACK, ROLE, 0);
        msg_send(c->sock, c->in->route, c->in->route_len, &a, NULL, NULL, 0, 0, &e);
        if (c->servers[h->rank].done)
            continue; /* a repeat: our ACK was lost */
        c->servers[h->rank].done = 1;
        byes++;
        const wire_stats *st = c->in->b.stats;
        if (!st)
            continue; /* a BYE without figures counts, adds none */
        if (st->max_clock_gap > max_gap)
            max_gap = st->max_clock_gap;
        bytes += st->bytes_in + st->bytes_out;
        nonfinite += st->nonfinite;
        refused += st->refused;
    }
    if (nonfinite)
        log_warn(o->lg, "%llu gradient chunk(s) with NaN/Inf were %s",
                 (unsigned long long)nonfinite,
                 o->job->cluster.nonfinite == CFG_NONFINITE_SKIP ? "skipped" : "refused");
    log_info(o->lg, "all servers stopped; %.1f MB moved, largest clock gap served %lld",
             bytes / 1e6, (long long)max_gap);
    log_limit_tick(c->warn, pst_mono_ms(), 1);
    if (refused + c->malformed + c->rejected)
        log_info(o->lg,
                 "refused messages from peers: %llu by the servers, %llu by the coordinator "
                 "(%llu of them malformed)",
                 (unsigned long long)refused, (unsigned long long)(c->malformed + c->rejected),
                 (unsigned long long)c->malformed);
    return PST_OK;
}

/* The end of a job some workers did not see through: who, and how often ranks rejoined. */
static void log_losses(const coord *c)
{
    char list[512];
    size_t n = 0;
    int restarts = 0;
    list[0] = '\0';
    for (int w = 0; w < c->W; w++) {
        restarts += c->workers[w].restarts;
        if (c->workers[w].lost && n < sizeof list)
            n += (size_t)snprintf(list + n, sizeof list - n, "%sworker[%d] (at step %lld)",
                                  n ? ", " : "", w, (long long)c->workers[w].step);
    }
    if (n)
        log_warn(c->o->lg, "lost and not rejoined: %s", list);
    if (restarts)
        log_info(c->o->lg, "%d restarted worker process(es) rejoined the job", restarts);
}

/* The end of a job that cannot finish, once the live workers are done (worker 0, or
 * every worker, lost while a restart could still have brought it back): the servers, all
 * there, write the checkpoint of the clock they reached (SHUTDOWN, within a quarter of the
 * stop's window), so --resume continues from it; err (the reason, PST_ERR_TIMEOUT: exit
 * 75) says so. Returns PST_OK when they did. */
static int end_retriably(coord *c, pst_err *err)
{
    const coord_options *o = c->o;
    pst_err e = {0};
    if (shutdown_servers(c, hb_stop_window_ms(o->job->cluster.heartbeat_timeout_s) / 4, &e)) {
        log_warn(o->lg, "%s; a resume takes the newest clock every server has", e.msg);
        return e.code;
    }
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof err->msg - n,
             "; the servers wrote their checkpoints: continue the job with --resume %s",
             o->job->output.dir ? o->job->output.dir : "OUTPUT_DIR");
    return PST_OK;
}

/* The end of a stop: the servers write their checkpoints (SHUTDOWN) within a quarter of
 * the stop's window; the job then exits with the stop's code, or 75 for the coordinator's
 * own retriable stop (begin_retriable_stop; err says why). */
static int stop_servers(coord *c, pst_err *err)
{
    const coord_options *o = c->o;
    int64_t lo = INT64_MAX, hi = -1;
    for (int w = 0; w < c->W; w++)
        if (c->workers[w].stopped) {
            lo = c->workers[w].clock < lo ? c->workers[w].clock : lo;
            hi = c->workers[w].clock > hi ? c->workers[w].clock : hi;
        }
    pst_err e = {0};
    int written = !c->stop_partial;
    if (shutdown_servers(c, hb_stop_window_ms(o->job->cluster.heartbeat_timeout_s) / 4, &e)) {
        log_warn(o->lg, "stop: %s; a resume takes the newest clock every server has", e.msg);
        written = 0;
    }
    if (c->retriable) {
        const char *dir = o->job->output.dir ? o->job->output.dir : "OUTPUT_DIR";
        if (written && hi >= 0)
            return pst_err_set(err, PST_ERR_TIMEOUT,
                               "worker[0] was lost before it finished, so the final model was "
                               "not written; the servers wrote checkpoints with the workers at "
                               "clocks %lld..%lld: continue the job with --resume %s",
                               (long long)lo, (long long)hi, dir);
        if (written)
            return pst_err_set(err, PST_ERR_TIMEOUT,
                               "worker[0] was lost before it finished, so the final model was "
                               "not written; the servers wrote their checkpoints: continue the "
                               "job with --resume %s",
                               dir);
        return pst_err_set(err, PST_ERR_TIMEOUT,
                           "worker[0] was lost before it finished, so the final model was not "
                           "written, and the job could not stop at one clock (no checkpoint "
                           "of it; a resume takes the newest clock every server has): "
                           "--resume %s",
                           dir);
    }
    if (hi >= 0)
        log_warn(o->lg,
                 "job stopped (signal %d) with workers at clocks %lld..%lld: continue it with "
                 "--resume %s",
                 c->stop_signal, (long long)lo, (long long)hi,
                 o->job->output.dir ? o->job->output.dir : "OUTPUT_DIR");
    else
        log_warn(o->lg, "job stopped (signal %d) before any worker said STOP", c->stop_signal);
    if (o->stopped_by)
        *o->stopped_by = c->stop_signal;
    return PST_OK;
}

int coord_run(const coord_options *o, pst_err *err)
{
    coord c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.S = o->job->cluster.servers;
    c.W = o->job->cluster.workers;
    c.job_hash = cfg_job_hash(o->job);
    c.test_accuracy = NAN;
    c.start_ms = net_now_ms();
    int rc;
    /* Two jobs must not write one run folder; a folder this process cannot write costs
     * only the check (the endpoint file below is a convenience too). */
    fs_lock lock = {-1};
    char who[160];
    snprintf(who, sizeof who, "the coordinator of job '%.100s'", o->job->name ? o->job->name : "");
    pst_err le = {0};
    if (o->job->output.dir && (rc = fs_lock_dir(&lock, o->job->output.dir, who, &le))) {
        if (rc == PST_ERR_CONFIG)
            return pst_err_set(err, rc, "%s", le.msg);
        log_warn(o->lg, "output.dir not locked against other jobs: %s", le.msg);
    }
    c.welcome = malloc(sizeof *c.welcome);
    c.members = malloc(sizeof *c.members);
    c.in = malloc(sizeof *c.in);
    char bound[256];
    c.servers = calloc((size_t)c.S, sizeof *c.servers);
    c.workers = calloc((size_t)c.W, sizeof *c.workers);
    if (!c.servers || !c.workers || !c.welcome || !c.members || !c.in) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (!(c.ctx = net_ctx_create(1, err)) || !(c.m = net_msg_create(err)) ||
        !(c.warn = log_limit_create(o->lg, LOG_LIMIT_BURST, LOG_LIMIT_WINDOW_MS, LOG_LIMIT_PEERS,
                                    err)) ||
        (rc = coord_obs_register(&c, err)) ||
        (rc = net_faults_attach(c.ctx, o->faults, 0xc002dULL, o->lg, &c.faults, err))) {
        rc = err->code;
        goto cleanup;
    }
    const cfg_security *sec = &o->job->security;
    net_curve_files cf = {sec->server_key, sec->server_public, sec->client_key, sec->allow};
    if ((rc = net_ctx_curve(c.ctx, &cf, o->lg, err)))
        goto cleanup;
    net_opts so = {.hwm = -1, .max_msg_bytes = WIRE_MAX_META + 1024};
    if (!(c.sock = net_sock_create(c.ctx, NET_ROUTER, &so, err))) {
        rc = err->code;
        goto cleanup;
    }
    if ((rc = net_sock_bind(c.sock, o->bind, bound, sizeof bound, err)))
        goto cleanup;
    log_info(o->lg, "listening on %s for %d servers and %d workers", bound, c.S, c.W);
    coord_write_endpoint_file(&c, bound);
    if (o->ready_fd >= 0) {
        char line[300];
        int n = snprintf(line, sizeof line, "%s\n", bound);
        ssize_t wr = write(o->ready_fd, line, (size_t)n);
        close(o->ready_fd);
        if (wr != n) {
            rc = pst_err_set(err, PST_ERR_IO, "cannot write the endpoint to --ready-fd");
            goto cleanup;
        }
    }
    if ((rc = coord_gather(&c, err)) || *o->stop || (rc = coord_choose_resume(&c, err))) {
        if (rc)
            coord_abort_joined(&c, err, PST_ERR_CONFIG);
        goto cleanup;
    }
    if ((rc = coord_welcome_all(&c, err)))
        goto cleanup;
    rc = follow(&c, err);
    log_losses(&c);
    if (rc) {
        if (!c.retriable || end_retriably(&c, err))
            coord_abort_joined(&c, err, PST_ERR_PEER);
        goto cleanup;
    }
    if (c.stop_signal) {
        rc = stop_servers(&c, err);
        goto cleanup;
    }
    if ((rc = shutdown_servers(&c, o->job->cluster.timeout_s * 1000, err)))
        goto cleanup;
    /* Worker 0 scores the final model on the test set, or without one on the validation
     * set: say which. */
    if (!isnan(c.test_accuracy))
        log_info(o->lg, "job finished; %s accuracy %.4f",
                 o->job->data.test && o->job->data.test[0] ? "test" : "validation",
                 c.test_accuracy);
    else
        log_info(o->lg, "job finished");
cleanup:
    if (c.endpoint_file[0])
        unlink(c.endpoint_file);
    fs_unlock(&lock);
    coord_obs_free(c.obs);
    log_limit_destroy(c.warn, pst_mono_ms());
    free(c.servers);
    free(c.workers);
    free(c.welcome);
    free(c.members);
    free(c.in);
    net_msg_destroy(c.m);
    net_sock_destroy(c.sock);
    net_ctx_destroy(c.ctx);
    net_faults_finish(c.faults, o->lg);
    return rc;
}
