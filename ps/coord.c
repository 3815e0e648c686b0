/* ps/coord.c -- see coord.h. */
#include "coord.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/fs.h"
#include "ckpt/ckpt.h"
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
    int64_t step;      /* steps done in `epoch` (1-based) */
    double loss;
    uint64_t steps;    /* a worker: steps of its whole run (HELLO) */
    int64_t barrier;   /* the barrier it waits at, -1: none */
    int nckpt;         /* a server of a resumed job: clocks of its complete checkpoints */
    int64_t ckpt_clocks[WIRE_MAX_CKPTS];
    int ckpt_any;      /* ... which stand for any clock (its shard is all frozen) */
    int welcomed;      /* got its WELCOME (a repeated HELLO gets it again) */
    uint64_t gen;      /* workers: current incarnation, 1 at the start */
    int lost;          /* silent past the heartbeat timeout; its steps no longer count */
    int restarts;      /* workers: incarnations after the first */
    int64_t barrier_released; /* highest barrier released to it, -1: none */
    char hb_route[64]; /* the heartbeat thread's connection (of incarnation gen) */
    size_t hb_route_len;
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
    wire_header *welcome; /* as sent to every process (rejoining workers get a copy) */
    const char *phase;    /* gathering, training, stopping (status) */
    char endpoint_file[4200]; /* <output.dir>/coordinator.endpoint while running, or "" */
    int64_t start_ms;
    wire_header *reply;   /* scratch for HEARTBEAT answers */
    net_faults *faults;
    int nlost;            /* workers lost and not rejoined */
    struct coord_obs *obs; /* metrics and /status (NULL: off); see "Observability" below */
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

/* ---- Observability: Prometheus series and the /status document -------------------------
 * Rendered from the loops below (coord_obs_tick, at the top of each loop, so at least every
 * 500 ms and after every message), at most every OBS_EVERY_MS: the HTTP thread only ever
 * reads what was published, never the peers. Seconds since a process was last heard are
 * exact at scrape time in /metrics (ages), as of "time" in /status. */
#define OBS_EVERY_MS 250

struct coord_obs {
    obs_metric *reg_servers, *reg_workers, *live_servers, *live_workers, *done, *progress,
        *start;
    obs_metric **step, **epoch, **loss; /* (W) */
    obs_metric **heard;                 /* (S + W): servers first */
    int64_t last_ms;                    /* last render; 0: never */
    double start_unix;
};

static void coord_obs_free(struct coord_obs *x)
{
    if (!x)
        return;
    free(x->step);
    free(x->epoch);
    free(x->loss);
    free(x->heard);
    free(x);
}

static int coord_obs_register(coord *c, pst_err *err)
{
    obs_registry *r = c->o->metrics;
    if (!r)
        return PST_OK;
    struct coord_obs *x = calloc(1, sizeof *x);
    if (!x || !(x->step = calloc((size_t)c->W, sizeof *x->step)) ||
        !(x->epoch = calloc((size_t)c->W, sizeof *x->epoch)) ||
        !(x->loss = calloc((size_t)c->W, sizeof *x->loss)) ||
        !(x->heard = calloc((size_t)(c->S + c->W), sizeof *x->heard))) {
        coord_obs_free(x);
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory for metrics");
    }
    c->obs = x;
    const char *reg_h = "Processes of the role that have joined (HELLO).";
    const char *live_h = "Processes of the role joined, not done and not lost.";
    if (!(x->reg_servers = obs_gauge(r, "pstrain_coord_registered", reg_h, "role=\"server\"", err)) ||
        !(x->reg_workers = obs_gauge(r, "pstrain_coord_registered", reg_h, "role=\"worker\"", err)) ||
        !(x->live_servers = obs_gauge(r, "pstrain_coord_live", live_h, "role=\"server\"", err)) ||
        !(x->live_workers = obs_gauge(r, "pstrain_coord_live", live_h, "role=\"worker\"", err)) ||
        !(x->done = obs_gauge(r, "pstrain_coord_workers_done", "Workers that sent DONE.", NULL,
                              err)) ||
        !(x->progress = obs_gauge(r, "pstrain_coord_progress_ratio",
                                  "Steps the workers reported over the steps of the job, 0..1.",
                                  NULL, err)) ||
        !(x->start = obs_gauge(r, "process_start_time_seconds",
                               "Start time of the process since the Unix epoch in seconds.",
                               NULL, err)))
        return err->code;
    char lab[64];
    for (int w = 0; w < c->W; w++) {
        snprintf(lab, sizeof lab, "worker=\"%d\"", w);
        if (!(x->step[w] = obs_gauge(r, "pstrain_coord_worker_step",
                                     "Steps (clocks) the worker reported done over its run.", lab,
                                     err)) ||
            !(x->epoch[w] = obs_gauge(r, "pstrain_coord_worker_epoch",
                                      "Last epoch the worker reported.", lab, err)) ||
            !(x->loss[w] = obs_gauge(r, "pstrain_coord_worker_loss",
                                     "Last training loss the worker reported.", lab, err)))
            return err->code;
    }
    for (int i = 0; i < c->S + c->W; i++) {
        snprintf(lab, sizeof lab, "role=\"%s\",rank=\"%d\"", i < c->S ? "server" : "worker",
                 i < c->S ? i : i - c->S);
        if (!(x->heard[i] = obs_age(r, "pstrain_coord_last_heard_seconds",
                                    "Seconds since the process's last message (absent before "
                                    "it joins).", lab, err)))
            return err->code;
    }
    x->start_unix = obs_now();
    obs_set(x->start, x->start_unix);
    return PST_OK;
}

/* alive, done, lost (a worker declared lost: silent for cluster.heartbeat_timeout_s, not
 * rejoined), late (heard from longer ago than two heartbeats) or waiting (not joined). */
static const char *peer_state(const coord *c, const peer *p, int is_server, int64_t now)
{
    (void)is_server;
    if (!p->joined)
        return "waiting";
    if (p->done)
        return "done";
    if (p->lost)
        return "lost";
    if (now - p->last_ms > 2LL * c->o->job->cluster.heartbeat_ms + 500)
        return "late";
    return "alive";
}

/* Counts that the status document and the metrics share. */
typedef struct {
    int reg[2], live[2], done;
    double progress;
} coord_counts;

/* The /status document (also the answer to STATUS, `pstrain status`): the job's phase and
 * progress, and every process with its state, pid, last heartbeat and (workers) progress.
 * With x (metrics on), also updates the per-process series. */
static cJSON *status_doc(coord *c, struct coord_obs *x, coord_counts *n)
{
    int64_t now = net_now_ms();
    double unix_now = obs_now();
    double steps = 0;
    memset(n, 0, sizeof *n);
    cJSON *doc = cJSON_CreateObject(), *procs = cJSON_CreateArray();
    cJSON_AddStringToObject(doc, "role", ROLE);
    cJSON_AddStringToObject(doc, "job", c->o->job->name ? c->o->job->name : "");
    cJSON_AddStringToObject(doc, "phase", c->phase ? c->phase : "starting");
    cJSON_AddStringToObject(doc, "consistency",
                            cfg_consistency_name(c->o->job->cluster.consistency));
    cJSON_AddNumberToObject(doc, "time", unix_now);
    cJSON_AddNumberToObject(doc, "uptime_s", (double)(now - c->start_ms) / 1000.0);
    cJSON_AddNumberToObject(doc, "servers", c->S);
    cJSON_AddNumberToObject(doc, "workers", c->W);
    for (int i = 0; i < c->S + c->W; i++) {
        int is_server = i < c->S, rank = is_server ? i : i - c->S;
        const peer *p = is_server ? &c->servers[rank] : &c->workers[rank];
        const char *state = peer_state(c, p, is_server, now);
        n->reg[!is_server] += p->joined;
        n->live[!is_server] += strcmp(state, "alive") == 0 || strcmp(state, "late") == 0;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "role", is_server ? "server" : "worker");
        cJSON_AddNumberToObject(e, "rank", rank);
        cJSON_AddStringToObject(e, "state", state);
        if (p->joined) {
            double ago = (double)(now - p->last_ms) / 1000.0;
            if (x)
                obs_set_time(x->heard[i], unix_now - ago);
            cJSON_AddNumberToObject(e, "pid", p->pid);
            cJSON_AddNumberToObject(e, "last_heard_s_ago", ago);
            cJSON_AddNumberToObject(e, "incarnation", (double)p->gen);
            cJSON_AddNumberToObject(e, "restarts", p->restarts);
            if (is_server)
                cJSON_AddStringToObject(e, "endpoint", p->endpoint);
        }
        if (!is_server) {
            /* PROGRESS says epoch e (from 1) and the steps done in it. */
            int epochs = c->o->job->train.epochs;
            double per_epoch = epochs > 0 ? (double)p->steps / epochs : 0.0;
            double run = p->epoch > 0 ? (p->epoch - 1) * per_epoch + (double)p->step : 0.0;
            n->done += p->done;
            steps += p->done ? (double)p->steps : run;
            if (x) {
                obs_set(x->step[rank], run);
                obs_set(x->epoch[rank], p->epoch);
                obs_set(x->loss[rank], p->loss);
            }
            if (p->joined) {
                cJSON_AddNumberToObject(e, "epoch", p->epoch);
                cJSON_AddNumberToObject(e, "step_in_epoch", (double)p->step);
                cJSON_AddNumberToObject(e, "steps_done", run);
                cJSON_AddNumberToObject(e, "steps_total", (double)p->steps);
                cJSON_AddNumberToObject(e, "loss", p->loss); /* NaN prints as null */
            }
        }
        cJSON_AddItemToArray(procs, e);
    }
    double progress = c->steps_sum ? steps / (double)c->steps_sum : 0.0;
    n->progress = n->done == c->W ? 1.0 : progress > 1.0 ? 1.0 : progress;
    cJSON_AddNumberToObject(doc, "progress", n->progress);
    cJSON_AddNumberToObject(doc, "workers_done", n->done);
    cJSON_AddNumberToObject(doc, "workers_lost", c->nlost);
    cJSON_AddItemToObject(doc, "processes", procs);
    return doc;
}

/* Notes the phase; with metrics on, updates the series and publishes /status. */
static void coord_obs_tick(coord *c, const char *phase)
{
    c->phase = phase;
    struct coord_obs *x = c->obs;
    int64_t now = net_now_ms();
    if (!x || (x->last_ms && now - x->last_ms < OBS_EVERY_MS))
        return;
    x->last_ms = now;
    coord_counts n;
    cJSON *doc = status_doc(c, x, &n);
    obs_set(x->reg_servers, n.reg[0]);
    obs_set(x->reg_workers, n.reg[1]);
    obs_set(x->live_servers, n.live[0]);
    obs_set(x->live_workers, n.live[1]);
    obs_set(x->done, n.done);
    obs_set(x->progress, n.progress);
    char *text = cJSON_PrintUnformatted(doc);
    pst_err e = {0};
    if (!text || obs_publish(c->o->metrics, "/status", "application/json", text, &e))
        log_warn(c->o->lg, "/status not updated: out of memory");
    free(text);
    cJSON_Delete(doc);
}

/* Answers STATUS (`pstrain status`): the status document as the answer's one frame. */
static void answer_status(coord *c, const msg_in *in)
{
    coord_counts n;
    cJSON *doc = status_doc(c, NULL, &n);
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    pst_err e = {0};
    if (!text) {
        msg_send_error(c->sock, in->route, in->route_len, ROLE, 0, in->h.request_id,
                       PST_ERR_NOMEM, "out of memory for the status", &e);
        return;
    }
    wire_header h;
    wire_header_init(&h, WIRE_MSG_STATUS, ROLE, 0);
    h.request_id = in->h.request_id;
    net_frame f = {.data = text, .len = strlen(text)};
    if (msg_send(c->sock, in->route, in->route_len, &h, &f, 1, 0, &e))
        log_debug(c->o->lg, "STATUS answer: %s", e.msg);
    free(text);
}

static int same_route(const peer *p, const msg_in *in)
{
    return p->route_len == in->route_len && memcmp(p->route, in->route, in->route_len) == 0;
}

/* Acknowledges a worker's DONE (the one just received, or a repeat of it). The worker's
 * DONE is often the last thing before the coordinator stops the servers and exits, and a
 * lost ACK would then leave the worker asking until its timeout: the ACK goes in
 * DONE_ACK_COPIES copies (a repeat of a message already answered is ignored). */
static void ack_done(coord *c, const msg_in *in)
{
    enum { DONE_ACK_COPIES = 3 };
    wire_header a;
    wire_header_init(&a, WIRE_MSG_ACK, ROLE, 0);
    a.request_id = in->h.request_id;
    for (int i = 0; i < DONE_ACK_COPIES; i++) {
        pst_err e = {0};
        msg_send(c->sock, in->route, in->route_len, &a, NULL, 0, 0, &e);
    }
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
        p->steps = h->steps;
        if (h->steps > c->steps_max)
            c->steps_max = h->steps;
    }
    if (p->joined && same_route(p, &c->in)) {
        log_debug(c->o->lg, "%s said HELLO again (an answer lost?)", who);
        return PST_OK;
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

static int gather(coord *c, pst_err *err)
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
        int rc = msg_recv(c->sock, c->m, 1, &c->in, left < 500 ? left : 500, &e);
        if (rc == PST_ERR_TIMEOUT)
            continue;
        if (rc == PST_ERR_PEER) {
            log_warn(o->lg, "dropped a malformed message: %s", e.msg);
            continue;
        }
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        if (c->in.h.type == WIRE_MSG_STATUS) {
            answer_status(c, &c->in);
            continue;
        }
        if ((rc = handle_hello(c, &joined, err)))
            return rc;
    }
    return PST_OK;
}

/* The job cannot go on: tells every process that joined -- on its main connection and, once
 * it runs, its heartbeat one -- so each stops now with the reason instead of at its own
 * timeout. code: PST_ERR_CONFIG while registering (a refusal), PST_ERR_PEER later. */
static void abort_joined(coord *c, const pst_err *why, int code)
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
    wire_header *h = c->welcome;
    wire_header_init(h, WIRE_MSG_WELCOME, ROLE, 0);
    h->generation = 1;
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
        p->welcomed = 1;
    }
    log_info(c->o->lg, "all %d servers and %d workers joined; model of %llu parameters, %llu "
             "per server", c->S, c->W, (unsigned long long)c->nparams,
             (unsigned long long)(h->shard_offsets[1] - h->shard_offsets[0]));
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
        if (p->done || p->lost)
            continue;
        if (p->barrier != id)
            return;
        waiting++;
    }
    for (int w = 0; w < c->W; w++) {
        peer *p = &c->workers[w];
        if (p->done || p->lost || p->barrier != id)
            continue;
        p->barrier_released = id;
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

/* The membership into h: workers' incarnations, lost and done flags; servers' incarnations
 * and endpoints. */
static void put_membership(const coord *c, wire_header *h)
{
    h->nmembers = c->W;
    for (int w = 0; w < c->W; w++) {
        h->member_gen[w] = c->workers[w].gen;
        h->member_lost[w] = (uint8_t)c->workers[w].lost;
        h->member_done[w] = (uint8_t)c->workers[w].done;
    }
    h->nmember_servers = c->S;
    for (int s = 0; s < c->S; s++) {
        h->member_server_gen[s] = c->servers[s].gen;
        snprintf(h->member_server_ep[s], WIRE_ENDPOINT_MAX, "%s", c->servers[s].endpoint);
    }
}

/* Answers a HEARTBEAT: the membership, or an ERROR when the sender is an incarnation this
 * job has given up. Servers and workers are known by (role, rank, incarnation), and by the
 * connection of that incarnation's first heartbeat. */
static void handle_heartbeat(coord *c, const msg_in *in)
{
    const wire_header *h = &in->h;
    int is_server = strcmp(h->role, "server") == 0, is_worker = strcmp(h->role, "worker") == 0;
    if ((!is_server && !is_worker) || h->rank >= (is_server ? c->S : c->W)) {
        log_warn(c->o->lg, "ignoring HEARTBEAT from %s[%d]", h->role, h->rank);
        return;
    }
    peer *p = is_server ? &c->servers[h->rank] : &c->workers[h->rank];
    uint64_t g = h->generation ? h->generation : 1;
    pst_err e = {0};
    if (is_worker && (g < p->gen || (g == p->gen && p->lost))) {
        char text[200];
        snprintf(text, sizeof text, "worker[%d] incarnation %llu was declared lost (silent "
                 "for %d s)%s; this process may not continue", h->rank, (unsigned long long)g,
                 c->o->job->cluster.heartbeat_timeout_s,
                 g < p->gen ? " and replaced by a restarted one" : "");
        msg_send_error(c->sock, in->route, in->route_len, ROLE, 0, h->request_id, PST_ERR_PEER,
                       text, &e);
        return;
    }
    if (is_server && g < p->gen) {
        msg_send_error(c->sock, in->route, in->route_len, ROLE, 0, h->request_id, PST_ERR_PEER,
                       "this server was replaced by a restarted one", &e);
        return;
    }
    if (g > p->gen || !p->joined)
        return; /* not registered (yet): it will say HELLO */
    if (p->hb_route_len == 0 && in->route_len <= sizeof p->hb_route) {
        memcpy(p->hb_route, in->route, in->route_len);
        p->hb_route_len = in->route_len;
    } else if (p->hb_route_len != in->route_len ||
               memcmp(p->hb_route, in->route, in->route_len) != 0) {
        log_warn(c->o->lg, "ignoring HEARTBEAT claiming to be %s[%d] from another connection",
                 h->role, h->rank);
        return;
    }
    p->last_ms = net_now_ms();
    if (is_worker && h->has_progress) {
        p->epoch = h->epoch;
        p->step = h->step;
        p->loss = h->loss;
    }
    wire_header *r = c->reply;
    wire_header_init(r, WIRE_MSG_HEARTBEAT, ROLE, 0);
    r->request_id = h->request_id;
    put_membership(c, r);
    if (msg_send(c->sock, in->route, in->route_len, r, NULL, 0, 0, &e))
        log_debug(c->o->lg, "HEARTBEAT answer to %s[%d]: %s", h->role, h->rank, e.msg);
}

/* STATUS and HEARTBEAT, answered the same way whatever the coordinator is waiting for;
 * returns 1 when the message just received was one of them. */
static int answer_anytime(coord *c)
{
    if (c->in.h.type == WIRE_MSG_STATUS)
        answer_status(c, &c->in);
    else if (c->in.h.type == WIRE_MSG_HEARTBEAT)
        handle_heartbeat(c, &c->in);
    else
        return 0;
    return 1;
}

/* A HELLO once the job runs: a restarted worker taking over its rank (a new incarnation),
 * or the same process asking again because its WELCOME was lost. */
static void handle_rejoin(coord *c, int *done)
{
    const wire_header *h = &c->in.h;
    int is_server = strcmp(h->role, "server") == 0, is_worker = strcmp(h->role, "worker") == 0;
    pst_err e = {0};
    wire_header *wel = c->welcome;
    if ((is_server || is_worker) && h->rank < (is_server ? c->S : c->W)) {
        peer *p = is_server ? &c->servers[h->rank] : &c->workers[h->rank];
        if (p->joined && same_route(p, &c->in) && h->pid == p->pid) { /* its WELCOME was lost */
            wel->generation = p->gen;
            wel->rejoin = p->gen > 1;
            if (is_server && p->gen > 1)
                put_membership(c, wel);
            if (msg_send(c->sock, p->route, p->route_len, wel, NULL, 0, 0, &e))
                log_warn(c->o->lg, "WELCOME to %s[%d]: %s", h->role, h->rank, e.msg);
            wel->nmembers = wel->nmember_servers = 0;
            return;
        }
    }
    if (is_server && h->rank < c->S && h->job_hash == c->job_hash) {
        /* A restarted server: it recovers its shard from its newest checkpoint; the workers
         * learn its (new) endpoint from the membership and send it again what its previous
         * incarnation did not answer. */
        peer *p = &c->servers[h->rank];
        p->gen++;
        p->hb_route_len = 0;
        memcpy(p->route, c->in.route, c->in.route_len);
        p->route_len = c->in.route_len;
        p->pid = h->pid;
        p->last_ms = net_now_ms();
        p->restarts++;
        snprintf(p->endpoint, sizeof p->endpoint, "%s", h->endpoint);
        snprintf(wel->server_endpoints[h->rank], WIRE_ENDPOINT_MAX, "%s", h->endpoint);
        wel->generation = p->gen;
        wel->rejoin = 1;
        put_membership(c, wel);
        int rc = msg_send(c->sock, p->route, p->route_len, wel, NULL, 0, 0, &e);
        wel->nmembers = wel->nmember_servers = 0;
        if (rc)
            log_warn(c->o->lg, "WELCOME to server[%d]: %s", h->rank, e.msg);
        log_warn(c->o->lg, "server[%d] restarted as incarnation %llu (pid %d, %s): it recovers "
                 "its shard from its newest checkpoint", h->rank, (unsigned long long)p->gen,
                 h->pid, h->endpoint);
        return;
    }
    if (!is_worker || h->rank >= c->W) {
        log_warn(c->o->lg, "ignoring HELLO from %s[%d] while the job runs%s", h->role, h->rank,
                 is_server ? " (a server of another job, or a rank past the job's)" : "");
        return;
    }
    peer *p = &c->workers[h->rank];
    if (h->job_hash != c->job_hash || h->nparams != c->nparams || !same_groups(c, h)) {
        reject(c, &e, 0, "worker[%d] cannot rejoin: it runs a different job (model, optimizer, "
               "cluster or training settings differ)", h->rank);
        return;
    }
    if (p->done) {
        reject(c, &e, 0, "worker[%d] cannot rejoin: it already finished its data", h->rank);
        return;
    }
    if (p->lost)
        c->nlost--;
    p->gen++;
    p->restarts++;
    p->lost = 0;
    p->hb_route_len = 0;
    p->barrier = -1;
    memcpy(p->route, c->in.route, c->in.route_len);
    p->route_len = c->in.route_len;
    p->pid = h->pid;
    p->last_ms = net_now_ms();
    wel->generation = p->gen;
    wel->rejoin = 1;
    if (msg_send(c->sock, p->route, p->route_len, wel, NULL, 0, 0, &e))
        log_warn(c->o->lg, "WELCOME to worker[%d]: %s", h->rank, e.msg);
    log_info(c->o->lg, "worker[%d] rejoined as incarnation %llu (pid %d); %d of %d workers "
             "training", h->rank, (unsigned long long)p->gen, h->pid, c->W - *done - c->nlost,
             c->W);
}

/* Checks every process's last heartbeat: a silent worker is lost (the job goes on without
 * it), a silent server ends the job. */
static int check_liveness(coord *c, int done, pst_err *err)
{
    const cfg_cluster *cl = &c->o->job->cluster;
    int64_t now = net_now_ms(), limit = (int64_t)cl->heartbeat_timeout_s * 1000;
    for (int s = 0; s < c->S; s++)
        if (now - c->servers[s].last_ms > limit)
            return pst_err_set(err, PST_ERR_TIMEOUT, "server[%d] (pid %d, %s) is lost: no "
                               "heartbeat for %d s; its shard is gone (restart the job with "
                               "--resume to continue from the last checkpoint)", s,
                               c->servers[s].pid, c->servers[s].endpoint,
                               cl->heartbeat_timeout_s);
    for (int w = 0; w < c->W; w++) {
        peer *p = &c->workers[w];
        if (p->done || p->lost || now - p->last_ms <= limit)
            continue;
        p->lost = 1;
        c->nlost++;
        log_warn(c->o->lg, "worker[%d] (pid %d) is lost: no heartbeat for %d s, at epoch %d "
                 "step %lld; going on with %d of %d workers", w, p->pid, cl->heartbeat_timeout_s,
                 p->epoch, (long long)p->step, c->W - done - c->nlost, c->W);
        /* It no longer holds back a barrier the others wait at. */
        for (int k = 0; k < c->W; k++)
            if (!c->workers[k].done && !c->workers[k].lost && c->workers[k].barrier >= 0) {
                barrier_maybe_release(c, c->workers[k].barrier);
                break;
            }
    }
    return PST_OK;
}

/* Follows the workers until each is done or lost. */
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
    while (done + c->nlost < c->W) {
        coord_obs_tick(c, "training");
        if (*o->stop)
            return PST_OK;
        int rc = check_liveness(c, done, err);
        if (rc)
            return rc;
        if (done + c->nlost == c->W)
            break;
        pst_err e = {0};
        rc = msg_recv(c->sock, c->m, 1, &c->in, 200, &e);
        if (rc == PST_ERR_TIMEOUT)
            continue;
        if (rc == PST_ERR_PEER) {
            log_warn(o->lg, "dropped a malformed message: %s", e.msg);
            continue;
        }
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        if (answer_anytime(c))
            continue;
        const wire_header *h = &c->in.h;
        if (h->type == WIRE_MSG_HELLO) {
            handle_rejoin(c, &done);
            continue;
        }
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
        if (p->lost)
            continue; /* a stale incarnation's last words */
        p->last_ms = net_now_ms();
        if (h->has_progress) {
            p->epoch = h->epoch;
            p->step = h->step;
            p->loss = h->loss;
        }
        if (h->type == WIRE_MSG_BARRIER && !p->done) {
            if (p->barrier_released >= h->clock) { /* its release was lost: again */
                wire_header b;
                wire_header_init(&b, WIRE_MSG_BARRIER, ROLE, 0);
                b.clock = h->clock;
                msg_send(c->sock, p->route, p->route_len, &b, NULL, 0, 0, &e);
                continue;
            }
            p->barrier = h->clock;
            barrier_maybe_release(c, h->clock);
        }
        if (h->type == WIRE_MSG_DONE)
            ack_done(c, &c->in);
        if (h->type == WIRE_MSG_DONE && !p->done) {
            p->done = 1;
            done++;
            if (h->rank == 0 && h->has_progress)
                c->test_accuracy = h->test_accuracy;
            log_info(o->lg, "worker[%d] finished (%d of %d)", h->rank, done, c->W);
            /* It no longer holds back a barrier the others wait at. */
            for (int w = 0; w < c->W; w++)
                if (!c->workers[w].done && !c->workers[w].lost && c->workers[w].barrier >= 0) {
                    barrier_maybe_release(c, c->workers[w].barrier);
                    break;
                }
        }
    }
    if (c->nlost == c->W)
        return pst_err_set(err, PST_ERR_TIMEOUT, "every worker was lost (no heartbeat for %d "
                           "s); the job cannot finish", o->job->cluster.heartbeat_timeout_s);
    if (c->workers[0].lost)
        return pst_err_set(err, PST_ERR_TIMEOUT, "worker[0] was lost before it finished, so the "
                           "final model was not written (restart it, or the job with --resume)");
    return PST_OK;
}

static void send_shutdown(coord *c, int s)
{
    wire_header h;
    wire_header_init(&h, WIRE_MSG_SHUTDOWN, ROLE, 0);
    pst_err e = {0};
    if (msg_send(c->sock, c->servers[s].route, c->servers[s].route_len, &h, NULL, 0,
                 c->o->job->cluster.timeout_s * 1000, &e))
        log_warn(c->o->lg, "SHUTDOWN to server[%d]: %s", s, e.msg);
}

static int shutdown_servers(coord *c, pst_err *err)
{
    const coord_options *o = c->o;
    int timeout_ms = o->job->cluster.timeout_s * 1000;
    for (int s = 0; s < c->S; s++)
        send_shutdown(c, s);
    int byes = 0;
    int64_t deadline = net_now_ms() + timeout_ms, max_gap = 0;
    int64_t resend = net_now_ms() + o->job->cluster.heartbeat_ms;
    uint64_t bytes = 0, nonfinite = 0;
    while (byes < c->S) {
        coord_obs_tick(c, "stopping");
        int64_t now = net_now_ms();
        int left = (int)(deadline - now);
        if (left <= 0)
            return pst_err_set(err, PST_ERR_TIMEOUT, "%d of %d servers did not confirm SHUTDOWN "
                               "within %d s", c->S - byes, c->S, o->job->cluster.timeout_s);
        if (now >= resend) { /* a SHUTDOWN may be lost */
            for (int s = 0; s < c->S; s++)
                if (!c->servers[s].done)
                    send_shutdown(c, s);
            resend = now + o->job->cluster.heartbeat_ms;
        }
        pst_err e = {0};
        int rc = msg_recv(c->sock, c->m, 1, &c->in, 100, &e);
        if (rc == PST_ERR_TIMEOUT || rc == PST_ERR_PEER)
            continue;
        if (rc)
            return pst_err_set(err, rc, "%s", e.msg);
        if (answer_anytime(c))
            continue;
        const wire_header *h = &c->in.h;
        if (h->type == WIRE_MSG_DONE && strcmp(h->role, "worker") == 0 && h->rank >= 0 &&
            h->rank < c->W && same_route(&c->workers[h->rank], &c->in)) {
            /* A worker still sending DONE lost our ACKs: answer again, or it waits out its
             * timeout after the job is over. */
            ack_done(c, &c->in);
            continue;
        }
        if (h->type != WIRE_MSG_BYE || strcmp(h->role, "server") != 0)
            continue; /* e.g. a worker's last PROGRESS */
        /* Count each server once, and only from the connection it joined on. */
        if (h->rank >= c->S || !same_route(&c->servers[h->rank], &c->in)) {
            log_warn(o->lg, "ignoring BYE claiming to be server[%d] (another connection)",
                     h->rank);
            continue;
        }
        wire_header a;
        wire_header_init(&a, WIRE_MSG_ACK, ROLE, 0);
        msg_send(c->sock, c->in.route, c->in.route_len, &a, NULL, 0, 0, &e);
        if (c->servers[h->rank].done)
            continue; /* a repeat: our ACK was lost */
        c->servers[h->rank].done = 1;
        byes++;
        if (h->max_clock_gap > max_gap)
            max_gap = h->max_clock_gap;
        bytes += h->bytes_in + h->bytes_out;
        nonfinite += h->nonfinite;
    }
    if (nonfinite)
        log_warn(o->lg, "%llu gradient chunk(s) with NaN/Inf were %s", (unsigned long long)nonfinite,
                 o->job->cluster.nonfinite == CFG_NONFINITE_SKIP ? "skipped" : "refused");
    log_info(o->lg, "all servers stopped; %.1f MB moved, largest clock gap served %lld",
             bytes / 1e6, (long long)max_gap);
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

/* <output.dir>/coordinator.endpoint: where `pstrain status RUN_DIR` finds this job. A
 * wildcard host is written as the loopback (the command runs on this machine). Best
 * effort: a read-only output folder costs only that convenience. */
static void write_endpoint_file(coord *c, const char *bound)
{
    const char *dir = c->o->job->output.dir;
    pst_err e = {0};
    if (!dir || fs_mkdirs(dir, &e)) {
        log_debug(c->o->lg, "no coordinator.endpoint file: %s", dir ? e.msg : "no output.dir");
        return;
    }
    char text[300];
    const char *wild = strstr(bound, "://0.0.0.0:");
    if (wild)
        snprintf(text, sizeof text, "tcp://127.0.0.1:%s\n", wild + strlen("://0.0.0.0:"));
    else
        snprintf(text, sizeof text, "%s\n", bound);
    snprintf(c->endpoint_file, sizeof c->endpoint_file, "%s/coordinator.endpoint", dir);
    fs_atomic out;
    int rc = fs_atomic_open(&out, c->endpoint_file, 0644, &e);
    if (!rc && fputs(text, out.f) < 0) {
        fs_atomic_abort(&out);
        rc = pst_err_set(&e, PST_ERR_IO, "%s: write failed", c->endpoint_file);
    }
    if (rc || (rc = fs_atomic_commit(&out, FS_REPLACE, &e))) {
        log_debug(c->o->lg, "no coordinator.endpoint file: %s", e.msg);
        c->endpoint_file[0] = '\0';
    }
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
    c.welcome = malloc(sizeof *c.welcome);
    c.reply = malloc(sizeof *c.reply);
    char bound[256];
    c.servers = calloc((size_t)c.S, sizeof *c.servers);
    c.workers = calloc((size_t)c.W, sizeof *c.workers);
    if (!c.servers || !c.workers || !c.welcome || !c.reply) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (!(c.ctx = net_ctx_create(1, err)) || !(c.m = net_msg_create(err)) ||
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
    write_endpoint_file(&c, bound);
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
            abort_joined(&c, err, PST_ERR_CONFIG);
        goto cleanup;
    }
    if ((rc = welcome_all(&c, err)))
        goto cleanup;
    rc = follow(&c, err);
    log_losses(&c);
    if (rc) {
        abort_joined(&c, err, PST_ERR_PEER);
        goto cleanup;
    }
    if (*o->stop)
        goto cleanup;
    if ((rc = shutdown_servers(&c, err)))
        goto cleanup;
    if (!isnan(c.test_accuracy))
        log_info(o->lg, "job finished; test accuracy %.4f", c.test_accuracy);
    else
        log_info(o->lg, "job finished");
cleanup:
    if (c.endpoint_file[0])
        unlink(c.endpoint_file);
    coord_obs_free(c.obs);
    free(c.servers);
    free(c.workers);
    free(c.welcome);
    free(c.reply);
    net_msg_destroy(c.m);
    net_sock_destroy(c.sock);
    net_ctx_destroy(c.ctx);
    net_faults_finish(c.faults, o->lg);
    return rc;
}
