/* ps/coord_status.c -- what others read of the coordinator: the /status document and
 * metrics, STATUS answers, the coordinator.endpoint file. See coord.h and coord_internal.h. */
#include "coord_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "base/fs.h"

/* ---- Observability: Prometheus series and the /status document -------------------------
 * Rendered from the loops below (coord_obs_tick, at the top of each loop, so at least every
 * 500 ms and after every message), at most every OBS_EVERY_MS: the HTTP thread only ever
 * reads what was published, never the peers. Seconds since a process was last heard are
 * exact at scrape time in /metrics (ages), as of "time" in /status. */
#define OBS_EVERY_MS 250

struct coord_obs {
    obs_metric *reg_servers, *reg_workers, *live_servers, *live_workers, *done, *progress, *start;
    obs_metric *malformed, *rejected;   /* MSG_REFUSED_METRIC, set from c's counts */
    obs_metric **step, **epoch, **loss; /* (W) */
    obs_metric **heard;                 /* (S + W): servers first */
    int64_t last_ms;                    /* last render; 0: never */
    double start_unix;
};

void coord_obs_free(struct coord_obs *x)
{
    if (!x)
        return;
    free(x->step);
    free(x->epoch);
    free(x->loss);
    free(x->heard);
    free(x);
}

int coord_obs_register(coord *c, pst_err *err)
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
    if (!(x->reg_servers =
              obs_gauge(r, "pstrain_coord_registered", reg_h, "role=\"server\"", err)) ||
        !(x->reg_workers =
              obs_gauge(r, "pstrain_coord_registered", reg_h, "role=\"worker\"", err)) ||
        !(x->live_servers = obs_gauge(r, "pstrain_coord_live", live_h, "role=\"server\"", err)) ||
        !(x->live_workers = obs_gauge(r, "pstrain_coord_live", live_h, "role=\"worker\"", err)) ||
        !(x->done =
              obs_gauge(r, "pstrain_coord_workers_done", "Workers that sent DONE.", NULL, err)) ||
        !(x->progress = obs_gauge(r, "pstrain_coord_progress_ratio",
                                  "Steps the workers reported over the steps of the job, 0..1.",
                                  NULL, err)) ||
        !(x->start =
              obs_gauge(r, "process_start_time_seconds",
                        "Start time of the process since the Unix epoch in seconds.", NULL, err)) ||
        !(x->malformed =
              obs_counter(r, MSG_REFUSED_METRIC, MSG_REFUSED_HELP, "reason=\"malformed\"", err)) ||
        !(x->rejected =
              obs_counter(r, MSG_REFUSED_METRIC, MSG_REFUSED_HELP, "reason=\"refused\"", err)))
        return err->code;
    char lab[64];
    for (int w = 0; w < c->W; w++) {
        snprintf(lab, sizeof lab, "worker=\"%d\"", w);
        if (!(x->step[w] =
                  obs_gauge(r, "pstrain_coord_worker_step",
                            "Steps (clocks) the worker reported done over its run.", lab, err)) ||
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
                                    "it joins).",
                                    lab, err)))
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
                cJSON_AddNumberToObject(e, "clock", (double)p->clock);
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
void coord_obs_tick(coord *c, const char *phase)
{
    c->phase = phase;
    log_limit_tick(c->warn, pst_mono_ms(), 0);
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
    obs_set(x->malformed, (double)c->malformed);
    obs_set(x->rejected, (double)c->rejected);
    char *text = cJSON_PrintUnformatted(doc);
    pst_err e = {0};
    if (!text || obs_publish(c->o->metrics, "/status", "application/json", text, &e))
        log_warn(c->o->lg, "/status not updated: out of memory");
    free(text);
    cJSON_Delete(doc);
}

/* Answers STATUS (`pstrain status`): the status document as the answer's one frame. */
void coord_answer_status(coord *c, const msg_in *in)
{
    coord_counts n;
    cJSON *doc = status_doc(c, NULL, &n);
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    pst_err e = {0};
    if (!text) {
        msg_send_error(c->sock, in->route, in->route_len, ROLE, 0, in->h.request_id, PST_ERR_NOMEM,
                       "out of memory for the status", &e);
        return;
    }
    wire_env h;
    wire_env_init(&h, WIRE_MSG_STATUS, ROLE, 0);
    h.request_id = in->h.request_id;
    net_frame f = {.data = text, .len = strlen(text)};
    if (msg_send(c->sock, in->route, in->route_len, &h, NULL, &f, 1, 0, &e))
        log_debug(c->o->lg, "STATUS answer: %s", e.msg);
    free(text);
}

/* <output.dir>/coordinator.endpoint: where `pstrain status RUN_DIR` finds this job. A
 * wildcard host is written as the loopback (the command runs on this machine). Best
 * effort: a read-only output folder costs only that convenience. */
void coord_write_endpoint_file(coord *c, const char *bound)
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
