/* ps/coord.c -- see coord.h. */
#include "coord.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/net.h"
#include "proto/msg.h"

#define ROLE "coordinator"

typedef struct {
    int joined;
    char route[64];
    size_t route_len;
    char endpoint[WIRE_ENDPOINT_MAX];
    int pid;
    int done;
    int64_t last_ms;   /* when we last heard from it */
    int epoch;
    int64_t step;
    double loss;
    int64_t barrier;   /* the barrier it waits at, -1: none */
    int nckpt;         /* a server of a resumed job: clocks of its complete checkpoints */
    int64_t ckpt_clocks[WIRE_MAX_CKPTS];
    int ckpt_any;      /* ... which stand for any clock (its shard is all frozen) */
} peer;

typedef struct {
    const coord_options *o;
    net_ctx *ctx;
    net_sock *sock;
    net_msg *m;
    msg_in in;
    int S, W;
    peer *servers, *workers;
    uint64_t nparams, job_hash;
    uint64_t steps_max, steps_sum; /* over the workers' HELLOs */
    /* Fine-tuning: the workers' update groups (the first worker's; the others must agree),
     * passed on to the servers in WELCOME. */
    int have_groups, ngroups;
    uint64_t group_offsets[WIRE_MAX_GROUPS + 1];
    float group_mults[WIRE_MAX_GROUPS];
    double test_accuracy;
    int64_t resume_clock; /* a resumed job: the checkpoints' clock; -1: a fresh start */
} coord;

void coord_shard_map(uint64_t nparams, int nservers, uint64_t *offsets)
{
    uint64_t blocks = (nparams + 15) / 16;
    for (int s = 0; s <= nservers; s++) {
        uint64_t b = blocks * (uint64_t)s / (uint64_t)nservers;
        uint64_t off = b * 16;
        offsets[s] = off < nparams ? off : nparams;
    }
}

void coord_shard_map_groups(uint64_t nparams, int nservers, const uint64_t *group_offsets,
                            const float *group_mults, int ngroups, uint64_t *offsets)
{
    uint64_t trainable = 0;
    for (int g = 0; g < ngroups; g++)
        if (group_mults[g] > 0.0f)
            trainable += group_offsets[g + 1] - group_offsets[g];
    if (trainable == 0 || nparams < 16 * (uint64_t)nservers) {
        coord_shard_map(nparams, nservers, offsets);
        return;
    }
    offsets[0] = 0;
    offsets[nservers] = nparams;
    for (int s = 1; s < nservers; s++) {
        /* Where the trainable floats before the cut reach s/S of them ... */
        uint64_t want = trainable * (uint64_t)s / (uint64_t)nservers, seen = 0, x = nparams;
        for (int g = 0; g < ngroups; g++) {
            uint64_t len = group_offsets[g + 1] - group_offsets[g];
            if (!(group_mults[g] > 0.0f))
                continue;
            if (seen + len >= want) {
                x = group_offsets[g] + (want - seen);
                break;
            }
            seen += len;
        }
        /* ... on the nearest 16-float boundary, leaving room for the shards on each side. */
        x = (x + 8) / 16 * 16;
        uint64_t lo = offsets[s - 1] + 16;
        uint64_t hi = (nparams - 16 * (uint64_t)(nservers - s)) / 16 * 16;
        offsets[s] = x < lo ? lo : x > hi ? hi : x;
    }
}

static int same_route(const peer *p, const msg_in *in)
{
    return p->route_len == in->route_len && memcmp(p->route, in->route, in->route_len) == 0;
}

/* Refuses the HELLO just received: logs the reason, answers the sender with an ERROR
 * carrying it, and, when fatal (the job cannot run as configured), fails the coordinator
 * with it too. */
static int reject(coord *c, pst_err *err, int fatal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int reject(coord *c, pst_err *err, int fatal, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_error(c->o->lg, "%s", text);
    pst_err e = {0};
    if (msg_send_error(c->sock, c->in.route, c->in.route_len, ROLE, 0, c->in.h.request_id,
                       PST_ERR_CONFIG, text, &e))
        log_warn(c->o->lg, "could not tell the sender: %s", e.msg);
    return fatal ? pst_err_set(err, PST_ERR_CONFIG, "%s", text) : PST_OK;
}

/* Whether a worker's update groups are those of the workers before it (the first one's are
 * taken as they are). */
static int same_groups(coord *c, const wire_header *h)
{
    size_t n = (size_t)h->ngroups;
    if (!c->have_groups) {
        c->have_groups = 1;
        c->ngroups = h->ngroups;
        memcpy(c->group_offsets, h->group_offsets, (n + 1) * sizeof *h->group_offsets);
        memcpy(c->group_mults, h->group_mults, n * sizeof *h->group_mults);
        return 1;
    }
    return h->ngroups == c->ngroups &&
           memcmp(c->group_offsets, h->group_offsets, (n + 1) * sizeof *h->group_offsets) == 0 &&
           memcmp(c->group_mults, h->group_mults, n * sizeof *h->group_mults) == 0;
}

/* Registration: returns PST_OK when everyone has joined. */
static int handle_hello(coord *c, int *joined, pst_err *err)
{
    const wire_header *h = &c->in.h;
    int is_server = strcmp(h->role, "server") == 0;
    int is_worker = strcmp(h->role, "worker") == 0;
    char who[48];
    snprintf(who, sizeof who, "%s[%d]", h->role, h->rank);
    if (h->type != WIRE_MSG_HELLO) {
        log_warn(c->o->lg, "ignoring %s from %s before the job started", wire_type_name(h->type),
                 who);
        return PST_OK;
    }
    /* A stray process (another job's, a wrong rank) is turned away; the job goes on. */
    if ((!is_server && !is_worker) || h->rank >= (is_server ? c->S : c->W))
        return reject(c, err, 0, "unexpected HELLO from %s: the job has %d servers and %d workers",
                      who, c->S, c->W);
    if (h->job_hash != c->job_hash)
        return reject(c, err, 1, "%s runs a different job (model, optimizer, cluster or training "
                      "settings differ from the coordinator's)", who);
    if (is_worker) {
        if (c->nparams == 0)
            c->nparams = h->nparams;
        else if (h->nparams != c->nparams)
            return reject(c, err, 1, "%s built a model of %llu parameters, the others %llu", who,
                          (unsigned long long)h->nparams, (unsigned long long)c->nparams);
    }
    if (is_worker && !same_groups(c, h))
        return reject(c, err, 1, "%s freezes or scales other parameters than the others (%d "
                      "update groups, the others %d)", who, h->ngroups, c->ngroups);
    peer *p = is_server ? &c->servers[h->rank] : &c->workers[h->rank];
    if (is_worker && !p->joined) {
        c->steps_sum += h->steps;
        if (h->steps > c->steps_max)
            c->steps_max = h->steps;
    }
    if (p->joined)
        return reject(c, err, 1, "%s joined twice (two processes with the same rank?)", who);
    if (c->in.route_len > sizeof p->route)
        return pst_err_set(err, PST_ERR_PEER, "%s: routing id too long", who);
    p->joined = 1;
    memcpy(p->route, c->in.route, c->in.route_len);
    p->route_len = c->in.route_len;
    snprintf(p->endpoint, sizeof p->endpoint, "%s", h->endpoint);
    p->pid = h->pid;
    p->nckpt = is_server ? h->nckpt : 0;
    p->ckpt_any = is_server && h->nckpt > 0 && h->ckpt_any;
    memcpy(p->ckpt_clocks, h->ckpt_clocks, sizeof p->ckpt_clocks);
    p->last_ms = net_now_ms();
    (*joined)++;
    log_info(c->o->lg, "%s joined (pid %d%s%s), %d of %d", who, h->pid, is_server ? ", " : "",
             is_server ? h->endpoint : "", *joined, c->S + c->W);
    return PST_OK;
}

static void list_missing(const coord *c, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < c->S && n < cap; i++)
        if (!c->servers[i].joined)
            n += (size_t)snprintf(buf + n, cap - n, "%sserver[%d]", n ? ", " : "", i);
    for (int i = 0; i < c->W && n < cap; i++)
        if (!c->workers[i].joined)
            n += (size_t)snprintf(buf + n, cap - n, "%sworker[%d]", n ? ", " : "", i);
}

static int gather(coord *c, pst_err *err)
{
    const coord_options *o = c->o;
    int joined = 0, timeout_ms = o->job->cluster.timeout_s * 1000;
    int64_t deadline = net_now_ms() + timeout_ms;
    while (joined < c->S + c->W) {
        if (*o->stop)
            return PST_OK;
        int left = (int)(deadline - net_now_ms());
        if (left <= 0) {
            char missing[512];
            list_missing(c, missing, sizeof missing);
            return pst_err_set(err, PST_ERR_TIMEOUT, "after %d s still waiting for %s to join",
                               o->job->cluster.timeout_s, missing);
        }
        pst_err e = {0};
        int rc = msg_recv(c->sock, c->m, 1, &c->in, left < 500 ? left : 500, &e);
        if (rc == PST_ERR_TIMEOUT)
            continue;
        if (rc == PST_ERR_PEER) {
            log_warn(o->lg, "dropped a malformed message: %s", e.msg);
            continue;
        }
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        if ((rc = handle_hello(c, &joined, err)))
            return rc;
    }
    return PST_OK;
}

/* Registration failed: tell everyone who joined, so they stop now instead of waiting for
 * a WELCOME until their timeout. */
static void abort_joined(coord *c, const pst_err *why)
{
    char text[300];
    snprintf(text, sizeof text, "job aborted by the coordinator: %.200s", why->msg);
    for (int i = 0; i < c->S + c->W; i++) {
        peer *p = i < c->S ? &c->servers[i] : &c->workers[i - c->S];
        pst_err e = {0};
        if (p->joined)
            msg_send_error(c->sock, p->route, p->route_len, ROLE, 0, 0, PST_ERR_CONFIG, text, &e);
    }
}

/* Whether server s can resume at clock t: it has that clock complete, or checkpoints of
 * an all-frozen shard, which stand for any clock. */
static int server_has(const peer *p, int64_t t)
{
    if (p->ckpt_any)
        return 1;
    for (int j = 0; j < p->nckpt; j++)
        if (p->ckpt_clocks[j] == t)
            return 1;
    return 0;
}

/* A resumed job continues from the newest clock of which every server has a complete
 * checkpoint (a server may have died while writing a newer one). */
static int choose_resume(coord *c, pst_err *err)
{
    c->resume_clock = -1;
    if (!c->o->job->checkpoint.resume)
        return PST_OK;
    /* The candidates: every clock some server has (its own list is newest first). */
    for (int r = 0; r < c->S; r++) {
        const peer *p = &c->servers[r];
        for (int i = 0; i < p->nckpt; i++) {
            int64_t t = p->ckpt_clocks[i];
            int everywhere = t > c->resume_clock;
            for (int s = 0; s < c->S && everywhere; s++)
                everywhere = server_has(&c->servers[s], t);
            if (everywhere)
                c->resume_clock = t;
        }
    }
    /* What each server has, for the message: "server[0] 40 20, server[1] 20". */
    char have[400];
    size_t n = 0;
    have[0] = '\0';
    for (int s = 0; s < c->S && n < sizeof have; s++) {
        n += (size_t)snprintf(have + n, sizeof have - n, "%sserver[%d]", s ? ", " : "", s);
        for (int j = 0; j < c->servers[s].nckpt && n < sizeof have; j++)
            n += (size_t)snprintf(have + n, sizeof have - n, " %lld",
                                  (long long)c->servers[s].ckpt_clocks[j]);
        if (c->servers[s].ckpt_any && n < sizeof have)
            n += (size_t)snprintf(have + n, sizeof have - n, " (all frozen: any clock)");
        if (c->servers[s].nckpt == 0 && n < sizeof have)
            n += (size_t)snprintf(have + n, sizeof have - n, " none");
    }
    if (c->resume_clock < 0)
        return pst_err_set(err, PST_ERR_DATA, "--resume %s: no clock has a complete checkpoint "
                           "on every server (%s)", c->o->job->checkpoint.resume, have);
    int newest = 1;
    for (int s = 0; s < c->S; s++)
        newest &= c->servers[s].ckpt_any || c->servers[s].ckpt_clocks[0] == c->resume_clock;
    if (newest)
        log_info(c->o->lg, "resuming from the servers' checkpoints of clock %lld",
                 (long long)c->resume_clock);
    else
        log_warn(c->o->lg, "resuming from clock %lld, the newest that every server has "
                 "complete (%s)", (long long)c->resume_clock, have);
    return PST_OK;
}

static int welcome_all(coord *c, pst_err *err)
{
    wire_header *h = malloc(sizeof *h);
    if (!h)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    wire_header_init(h, WIRE_MSG_WELCOME, ROLE, 0);
    h->num_servers = c->S;
    h->num_workers = c->W;
    h->nparams = c->nparams;
    /* A server updates once per clock under bsp (as many clocks as the longest worker has
     * steps), once per worker step otherwise. */
    h->total_updates =
        c->o->job->cluster.consistency == CFG_CONS_BSP ? c->steps_max : c->steps_sum;
    coord_shard_map_groups(c->nparams, c->S, c->group_offsets, c->group_mults, c->ngroups,
                           h->shard_offsets);
    h->ngroups = c->ngroups;
    memcpy(h->group_offsets, c->group_offsets, sizeof h->group_offsets);
    memcpy(h->group_mults, c->group_mults, sizeof h->group_mults);
    h->resume = c->resume_clock >= 0;
    h->resume_clock = h->resume ? c->resume_clock : 0;
    for (int s = 0; s < c->S; s++)
        snprintf(h->server_endpoints[s], WIRE_ENDPOINT_MAX, "%s", c->servers[s].endpoint);
    int rc = PST_OK;
    int timeout_ms = c->o->job->cluster.timeout_s * 1000;
    for (int i = 0; i < c->S + c->W && !rc; i++) {
        peer *p = i < c->S ? &c->servers[i] : &c->workers[i - c->S];
        rc = msg_send(c->sock, p->route, p->route_len, h, NULL, 0, timeout_ms, err);
    }
    log_info(c->o->lg, "all %d servers and %d workers joined; model of %llu parameters, %llu "
             "per server", c->S, c->W, (unsigned long long)c->nparams,
             (unsigned long long)(h->shard_offsets[1] - h->shard_offsets[0]));
    free(h);
    return rc;
}

/* Releases barrier `id` when every worker not yet done waits at it: each gets a BARRIER
 * reply. Workers use it once, before their first step, so that all start training
 * together (under asp an early starter would otherwise take many steps alone). */
static void barrier_maybe_release(coord *c, int64_t id)
{
    int waiting = 0;
    for (int w = 0; w < c->W; w++) {
        const peer *p = &c->workers[w];
        if (p->done)
            continue;
        if (p->barrier != id)
            return;
        waiting++;
    }
    for (int w = 0; w < c->W; w++) {
        peer *p = &c->workers[w];
        if (p->done || p->barrier != id)
            continue;
        wire_header h;
        wire_header_init(&h, WIRE_MSG_BARRIER, ROLE, 0);
        h.clock = id;
        pst_err e = {0};
        if (msg_send(c->sock, p->route, p->route_len, &h, NULL, 0, 0, &e))
            log_warn(c->o->lg, "BARRIER to worker[%d]: %s", w, e.msg);
        p->barrier = -1;
    }
    log_debug(c->o->lg, "barrier %lld released (%d workers)", (long long)id, waiting);
}

/* Follows the workers until all are done; a worker silent for longer than the timeout is
 * an error naming it. */
static int follow(coord *c, pst_err *err)
{
    const coord_options *o = c->o;
    int64_t timeout_ms = (int64_t)o->job->cluster.timeout_s * 1000;
    int done = 0;
    int64_t now = net_now_ms();
    for (int w = 0; w < c->W; w++) {
        c->workers[w].last_ms = now;
        c->workers[w].barrier = -1;
    }
    while (done < c->W) {
        if (*o->stop)
            return PST_OK;
        now = net_now_ms();
        for (int w = 0; w < c->W; w++)
            if (!c->workers[w].done && now - c->workers[w].last_ms > timeout_ms)
                return pst_err_set(err, PST_ERR_TIMEOUT,
                                   "no word from worker[%d] (pid %d) for %d s; it was at epoch "
                                   "%d step %lld",
                                   w, c->workers[w].pid, o->job->cluster.timeout_s,
                                   c->workers[w].epoch, (long long)c->workers[w].step);
        pst_err e = {0};
        int rc = msg_recv(c->sock, c->m, 1, &c->in, 500, &e);
        if (rc == PST_ERR_TIMEOUT)
            continue;
        if (rc == PST_ERR_PEER) {
            log_warn(o->lg, "dropped a malformed message: %s", e.msg);
            continue;
        }
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        const wire_header *h = &c->in.h;
        if (strcmp(h->role, "worker") != 0 || h->rank >= c->W) {
            log_warn(o->lg, "ignoring %s from %s[%d]", wire_type_name(h->type), h->role, h->rank);
            continue;
        }
        peer *p = &c->workers[h->rank];
        /* A worker is known by the connection it joined on: anyone else claiming its rank
         * could otherwise finish the job early (DONE) or keep a dead worker alive. */
        if (!same_route(p, &c->in)) {
            log_warn(o->lg, "ignoring %s claiming to be worker[%d] from another connection",
                     wire_type_name(h->type), h->rank);
            continue;
        }
        p->last_ms = net_now_ms();
        if (h->has_progress) {
            p->epoch = h->epoch;
            p->step = h->step;
            p->loss = h->loss;
        }
        if (h->type == WIRE_MSG_BARRIER && !p->done) {
            p->barrier = h->clock;
            barrier_maybe_release(c, h->clock);
        }
        if (h->type == WIRE_MSG_DONE && !p->done) {
            p->done = 1;
            done++;
            if (h->rank == 0 && h->has_progress)
                c->test_accuracy = h->test_accuracy;
            log_info(o->lg, "worker[%d] finished (%d of %d)", h->rank, done, c->W);
            /* It no longer holds back a barrier the others wait at. */
            for (int w = 0; w < c->W; w++)
                if (!c->workers[w].done && c->workers[w].barrier >= 0) {
                    barrier_maybe_release(c, c->workers[w].barrier);
                    break;
                }
        }
    }
    return PST_OK;
}

static int shutdown_servers(coord *c, pst_err *err)
{
    const coord_options *o = c->o;
    int timeout_ms = o->job->cluster.timeout_s * 1000;
    for (int s = 0; s < c->S; s++) {
        wire_header h;
        wire_header_init(&h, WIRE_MSG_SHUTDOWN, ROLE, 0);
        pst_err e = {0};
        if (msg_send(c->sock, c->servers[s].route, c->servers[s].route_len, &h, NULL, 0,
                     timeout_ms, &e))
            log_warn(o->lg, "SHUTDOWN to server[%d]: %s", s, e.msg);
    }
    int byes = 0;
    int64_t deadline = net_now_ms() + timeout_ms, max_gap = 0;
    uint64_t bytes = 0;
    while (byes < c->S) {
        int left = (int)(deadline - net_now_ms());
        if (left <= 0)
            return pst_err_set(err, PST_ERR_TIMEOUT, "%d of %d servers did not confirm SHUTDOWN "
                               "within %d s", c->S - byes, c->S, o->job->cluster.timeout_s);
        pst_err e = {0};
        int rc = msg_recv(c->sock, c->m, 1, &c->in, left, &e);
        if (rc == PST_ERR_TIMEOUT || rc == PST_ERR_PEER)
            continue;
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        const wire_header *h = &c->in.h;
        if (h->type != WIRE_MSG_BYE || strcmp(h->role, "server") != 0)
            continue; /* e.g. a worker's last PROGRESS */
        /* Count each server once, and only from the connection it joined on. */
        if (h->rank >= c->S || !same_route(&c->servers[h->rank], &c->in) ||
            c->servers[h->rank].done) {
            log_warn(o->lg, "ignoring BYE claiming to be server[%d] (another connection or a "
                     "repeat)", h->rank);
            continue;
        }
        c->servers[h->rank].done = 1;
        byes++;
        if (h->max_clock_gap > max_gap)
            max_gap = h->max_clock_gap;
        bytes += h->bytes_in + h->bytes_out;
    }
    log_info(o->lg, "all servers stopped; %.1f MB moved, largest clock gap served %lld",
             bytes / 1e6, (long long)max_gap);
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
    int rc;
    char bound[256];
    c.servers = calloc((size_t)c.S, sizeof *c.servers);
    c.workers = calloc((size_t)c.W, sizeof *c.workers);
    if (!c.servers || !c.workers) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (!(c.ctx = net_ctx_create(1, err)) || !(c.m = net_msg_create(err))) {
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
    if ((rc = gather(&c, err)) || *o->stop || (rc = choose_resume(&c, err))) {
        if (rc)
            abort_joined(&c, err);
        goto cleanup;
    }
    if ((rc = welcome_all(&c, err)))
        goto cleanup;
    if ((rc = follow(&c, err)) || *o->stop)
        goto cleanup;
    if ((rc = shutdown_servers(&c, err)))
        goto cleanup;
    if (!isnan(c.test_accuracy))
        log_info(o->lg, "job finished; test accuracy %.4f", c.test_accuracy);
    else
        log_info(o->lg, "job finished");
cleanup:
    free(c.servers);
    free(c.workers);
    net_msg_destroy(c.m);
    net_sock_destroy(c.sock);
    net_ctx_destroy(c.ctx);
    return rc;
}
