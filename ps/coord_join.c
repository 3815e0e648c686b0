/* ps/coord_join.c -- the coordinator's rendezvous: HELLO checks, the shard map, the resume
 * clock, WELCOME. See coord.h and coord_internal.h. */
#include "coord_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

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

int coord_reject(coord *c, pst_err *err, int fatal, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (fatal)
        log_error(c->o->lg, "%s", text);
    else { /* a stray process: the job goes on, and a flood of them fills no log */
        c->rejected++;
        char key[MSG_PEER], name[MSG_PEER];
        msg_peer(c->in, 1, key, name);
        log_limit_log(c->warn, LOG_ERROR, key, name, pst_mono_ms(), "%s", text);
    }
    pst_err e = {0};
    if (msg_send_error(c->sock, c->in->route, c->in->route_len, ROLE, 0, c->in->h.request_id,
                       PST_ERR_CONFIG, text, &e))
        log_warn(c->o->lg, "could not tell the sender: %s", e.msg);
    return fatal ? pst_err_set(err, PST_ERR_CONFIG, "%s", text) : PST_OK;
}

/* Whether a worker's update groups are those of the workers before it (the first one's are
 * taken as they are). */
int coord_same_groups(coord *c, const wire_groups *g)
{
    size_t n = (size_t)g->n;
    if (!c->have_groups) {
        c->have_groups = 1;
        c->ngroups = g->n;
        memcpy(c->group_offsets, g->offsets, (n + 1) * sizeof *g->offsets);
        memcpy(c->group_mults, g->mults, n * sizeof *g->mults);
        memcpy(c->group_state, g->state, n * sizeof *g->state);
        return 1;
    }
    return g->n == c->ngroups &&
           memcmp(c->group_offsets, g->offsets, (n + 1) * sizeof *g->offsets) == 0 &&
           memcmp(c->group_mults, g->mults, n * sizeof *g->mults) == 0 &&
           memcmp(c->group_state, g->state, n * sizeof *g->state) == 0;
}

int coord_key_refused(coord *c)
{
    const wire_env *e = &c->in->h;
    char key[41];
    /* A worker key holder could otherwise register as server[r] -- or, while the job runs,
     * as its new incarnation (the job fingerprint is in every checkpoint): the real server
     * would be told it was replaced, and the job would end. Server keys may act as
     * anything: their holders could impersonate the coordinator itself. */
    if (strcmp(e->role, "server") != 0 || net_msg_key(c->m, key) != NET_KEY_CLIENT)
        return 0;
    char text[256];
    snprintf(text, sizeof text,
             "security: refused %s as server[%d]: it comes with the client "
             "key %s, and only the job's server key (security.server_key) may act as a server",
             wire_type_name(e->type), e->rank, key);
    /* Logged the 1st, 10th, 100th, ... time, so a flood cannot fill the log. */
    c->rejected++;
    unsigned n = ++c->key_refusals, k = n;
    while (k >= 10 && k % 10 == 0)
        k /= 10;
    if (k == 1)
        log_warn(c->o->lg, "%s (%u such message%s so far)", text, n, n > 1 ? "s" : "");
    pst_err err = {0};
    if (e->type == WIRE_MSG_HELLO)
        msg_send_error(c->sock, c->in->route, c->in->route_len, ROLE, 0, e->request_id,
                       PST_ERR_CONFIG, text, &err);
    return 1;
}

/* Registration: returns PST_OK when everyone has joined. */
static int handle_hello(coord *c, int *joined, pst_err *err)
{
    const wire_env *e = &c->in->h;
    int is_server = strcmp(e->role, "server") == 0;
    int is_worker = strcmp(e->role, "worker") == 0;
    char who[48];
    snprintf(who, sizeof who, "%s[%d]", e->role, e->rank);
    if (e->type != WIRE_MSG_HELLO) {
        coord_warn(c, "ignoring %s from %s before the job started", wire_type_name(e->type), who);
        return PST_OK;
    }
    const wire_hello *h = c->in->b.hello;
    /* A stray process (another job's, a wrong rank) is turned away; the job goes on. */
    if ((!is_server && !is_worker) || e->rank >= (is_server ? c->S : c->W))
        return coord_reject(c, err, 0,
                            "unexpected HELLO from %s: the job has %d servers and %d workers", who,
                            c->S, c->W);
    if (h->job_hash != c->job_hash)
        return coord_reject(c, err, 1,
                            "%s runs a different job (model, optimizer, cluster or training "
                            "settings differ from the coordinator's)",
                            who);
    if (is_worker) {
        if (c->nparams == 0)
            c->nparams = h->nparams;
        else if (h->nparams != c->nparams)
            return coord_reject(c, err, 1, "%s built a model of %llu parameters, the others %llu",
                                who, (unsigned long long)h->nparams,
                                (unsigned long long)c->nparams);
    }
    if (is_worker && !coord_same_groups(c, &h->groups))
        return coord_reject(c, err, 1,
                            "%s freezes or scales other parameters than the others (%d "
                            "update groups, the others %d)",
                            who, h->groups.n, c->ngroups);
    peer *p = is_server ? &c->servers[e->rank] : &c->workers[e->rank];
    if (is_worker && !p->joined) {
        c->steps_sum += h->steps;
        p->steps = h->steps;
        if (h->steps > c->steps_max)
            c->steps_max = h->steps;
    }
    if (p->joined && coord_same_route(p, c->in)) {
        log_debug(c->o->lg, "%s said HELLO again (an answer lost?)", who);
        return PST_OK;
    }
    if (p->joined)
        return coord_reject(c, err, 1, "%s joined twice (two processes with the same rank?)", who);
    if (c->in->route_len > sizeof p->route)
        return pst_err_set(err, PST_ERR_PEER, "%s: routing id too long", who);
    p->joined = 1;
    memcpy(p->route, c->in->route, c->in->route_len);
    p->route_len = c->in->route_len;
    snprintf(p->endpoint, sizeof p->endpoint, "%s", h->endpoint);
    p->pid = h->pid;
    p->nckpt = is_server ? h->nckpt : 0;
    p->ckpt_any = is_server && h->nckpt > 0 && h->ckpt_any;
    memcpy(p->ckpt_clocks, h->ckpt_clocks, sizeof p->ckpt_clocks);
    p->last_ms = net_now_ms();
    p->gen = 1;
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

int coord_gather(coord *c, pst_err *err)
{
    const coord_options *o = c->o;
    int joined = 0, timeout_ms = o->job->cluster.timeout_s * 1000;
    int64_t deadline = net_now_ms() + timeout_ms;
    while (joined < c->S + c->W) {
        coord_obs_tick(c, "gathering");
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
        int rc = msg_recv(c->sock, c->m, 1, c->in, left < 500 ? left : 500, &e);
        if (rc == PST_ERR_TIMEOUT)
            continue;
        if (rc == PST_ERR_PEER) {
            coord_refused(c, &e);
            continue;
        }
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        if (c->in->h.type == WIRE_MSG_STATUS) {
            coord_answer_status(c, c->in);
            continue;
        }
        if (coord_key_refused(c))
            continue;
        if ((rc = handle_hello(c, &joined, err)))
            return rc;
    }
    return PST_OK;
}

/* The job cannot go on: tells every process that joined -- on its main connection and, once
 * it runs, its heartbeat one -- so each stops now with the reason instead of at its own
 * timeout. code: PST_ERR_CONFIG while registering (a refusal), PST_ERR_PEER later. */
void coord_abort_joined(coord *c, const pst_err *why, int code)
{
    char text[300];
    snprintf(text, sizeof text, "job aborted by the coordinator: %.200s", why->msg);
    for (int i = 0; i < c->S + c->W; i++) {
        peer *p = i < c->S ? &c->servers[i] : &c->workers[i - c->S];
        pst_err e = {0};
        if (p->joined)
            msg_send_error(c->sock, p->route, p->route_len, ROLE, 0, 0, code, text, &e);
        if (p->hb_route_len)
            msg_send_error(c->sock, p->hb_route, p->hb_route_len, ROLE, 0, 0, code, text, &e);
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
int coord_choose_resume(coord *c, pst_err *err)
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
        return pst_err_set(err, PST_ERR_DATA,
                           "--resume %s: no clock has a complete checkpoint "
                           "on every server (%s)",
                           c->o->job->checkpoint.resume, have);
    int newest = 1;
    for (int s = 0; s < c->S; s++)
        newest &= c->servers[s].ckpt_any || c->servers[s].ckpt_clocks[0] == c->resume_clock;
    if (newest)
        log_info(c->o->lg, "resuming from the servers' checkpoints of clock %lld",
                 (long long)c->resume_clock);
    else
        log_warn(c->o->lg,
                 "resuming from clock %lld, the newest that every server has "
                 "complete (%s)",
                 (long long)c->resume_clock, have);
    return PST_OK;
}

int coord_welcome_all(coord *c, pst_err *err)
{
    wire_env env;
    wire_env_init(&env, WIRE_MSG_WELCOME, ROLE, 0);
    wire_welcome *h = c->welcome;
    memset(h, 0, sizeof *h);
    h->generation = 1;
    h->num_servers = c->S;
    h->num_workers = c->W;
    h->nparams = c->nparams;
    /* A server updates once per clock under bsp (as many clocks as the longest worker has
     * steps), once per worker step otherwise. */
    h->total_updates = c->o->job->cluster.consistency == CFG_CONS_BSP ? c->steps_max : c->steps_sum;
    coord_shard_map_groups(c->nparams, c->S, c->group_offsets, c->group_mults, c->ngroups,
                           h->shard_offsets);
    h->groups.n = c->ngroups;
    memcpy(h->groups.offsets, c->group_offsets, sizeof h->groups.offsets);
    memcpy(h->groups.mults, c->group_mults, sizeof h->groups.mults);
    memcpy(h->groups.state, c->group_state, sizeof h->groups.state);
    h->resume = c->resume_clock >= 0;
    h->resume_clock = h->resume ? c->resume_clock : 0;
    for (int s = 0; s < c->S; s++)
        snprintf(h->server_endpoints[s], WIRE_ENDPOINT_MAX, "%s", c->servers[s].endpoint);
    int rc = PST_OK;
    int timeout_ms = c->o->job->cluster.timeout_s * 1000;
    for (int i = 0; i < c->S + c->W && !rc; i++) {
        peer *p = i < c->S ? &c->servers[i] : &c->workers[i - c->S];
        rc = msg_send(c->sock, p->route, p->route_len, &env, &(wire_body){.welcome = h}, NULL, 0,
                      timeout_ms, err);
        p->welcomed = 1;
    }
    log_info(c->o->lg,
             "all %d servers and %d workers joined; model of %llu parameters, %llu "
             "per server",
             c->S, c->W, (unsigned long long)c->nparams,
             (unsigned long long)(h->shard_offsets[1] - h->shard_offsets[0]));
    return rc;
}
