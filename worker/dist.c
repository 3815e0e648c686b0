/* worker/dist.c -- see dist.h. */
#include "dist.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/ident.h"
#include "base/clock.h"

#include "ckpt/ckpt.h"
#include "core/metrics.h"
#include "net/net.h"
#include "proto/hb.h"
#include "proto/msg.h"
#include "worker/dataprep.h"
#include "worker/compress.h"
#include "worker/kv.h"
#include "worker/loop.h"
#include "worker/report.h"
#include "worker/sparse_kv.h"
#include "worker/trainer.h"

#define ROLE "worker"
#define PROGRESS_EVERY_MS 2000

typedef struct {
    const wk_dist_options *o;
    cfg_job trainer_job; /* the job as the trainer sees it: see wk_dist_run */
    wk_data data;
    wk_trainer *tr;
    ml_model *model;
    net_ctx *ctx;
    net_sock *coord;
    net_msg *m;
    msg_in *in;
    wk_kv *kv;
    wk_skv *skv; /* the embedding tables' rows (NULL: the model has none) */
    wk_report *rep;
    float *gbuf[2];    /* (P) gradient buffers: the model's own, and a second one when
                           pipelined steps alternate */
    float *gbuf_extra; /* the second buffer, owned here */
    int64_t clock;     /* steps pushed */
    int64_t max_gap;   /* largest clock gap the servers reported */
    /* Clock gaps of the pulls since the epoch began [0] and since the last step record [1]. */
    struct gaps {
        double sum, max;
        int64_t n;
    } gaps[2];
    wk_kv_stats ks_win;      /* traffic when the last step record (or the epoch) began */
    wk_kv_stats ks_epoch[2]; /* ... when the epoch began, and when its steps ended */
    int64_t last_progress_ms;
    double last_record_s; /* when the last progress record went to o->progress_fd */
    int epoch;
    int64_t step;
    double loss;
    wk_cadence cadence;                 /* when a push asks the servers for a checkpoint */
    hb_client *hb;                      /* heartbeats to the coordinator */
    uint64_t hb_version;                /* membership last looked at */
    uint64_t srv_gen[WIRE_MAX_SERVERS]; /* incarnation of each server we talk to */
    char srv_ep[WIRE_MAX_SERVERS][WIRE_ENDPOINT_MAX]; /* scratch */
    net_faults *faults;
    uint64_t generation; /* this process's incarnation (WELCOME) */
    int pipelined;       /* cluster.pipeline, not under bsp */
    int draining;        /* a stop's drain runs (stop_drain): nothing more ends it */
    int finished;        /* DONE went to the coordinator: a later stop has nothing to do */
} worker;

/* ---- Fine-tuning ---------------------------------------------------------------------- */

/* The trainer's update groups into a HELLO, for the coordinator to pass to the servers. */
static int put_groups(worker *w, wire_groups *h, pst_err *err)
{
    int n;
    const opt_group *g = wk_trainer_groups(w->tr, &n);
    const unsigned char *st = wk_trainer_group_state(w->tr);
    if (n > WIRE_MAX_GROUPS)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.layers: %d runs of layers with different "
                           "trainable/lr_mult settings, at most %d in a distributed job",
                           n, WIRE_MAX_GROUPS);
    h->n = n;
    for (int i = 0; i < n; i++) {
        h->offsets[i] = g[i].offset;
        h->mults[i] = g[i].lr_mult;
        h->state[i] = st && st[i];
    }
    h->offsets[n] = n ? g[n - 1].offset + g[n - 1].len : 0;
    return PST_OK;
}

/* What init_from loaded, and what frozen layers save on the wire: their floats are neither
 * pushed nor pulled, 2 x 4 bytes each per step. */
static void log_finetune(const worker *w)
{
    char note[1024];
    if (wk_trainer_finetune_note(w->tr, note, sizeof note))
        log_info(w->o->lg, "%s", note);
    size_t frozen = wk_trainer_frozen_params(w->tr), P = ml_model_nparams(w->model);
    double saved = 2.0 * sizeof(float) * (double)frozen;
    if (frozen)
        log_info(w->o->lg,
                 "frozen: %zu of %zu parameters; %.*f %s per step not sent (push + "
                 "pull)",
                 frozen, P, saved < 1e6 ? 1 : 2, saved < 1e6 ? saved / 1e3 : saved / 1e6,
                 saved < 1e6 ? "kB" : "MB");
}

/* Steps a worker takes per epoch: its partition in batches of accumulate micro-batches. */
static int64_t steps_per_epoch(const worker *w)
{
    int64_t b = (int64_t)w->o->job->train.batch_size * w->o->job->train.accumulate;
    return (ds_count(w->data.train) + b - 1) / b;
}

static int hello(worker *w, wire_welcome *welcome, pst_err *err)
{
    const wk_dist_options *o = w->o;
    wire_env e;
    wire_env_init(&e, WIRE_MSG_HELLO, ROLE, o->rank);
    wire_hello h = {0};
    h.nparams = ml_model_nparams(w->model);
    h.steps = (uint64_t)(steps_per_epoch(w) * o->job->train.epochs);
    h.job_hash = cfg_job_hash(o->job);
    h.pid = (int)getpid();
    if (put_groups(w, &h.groups, err))
        return err->code;
    int rc = msg_register(w->coord, w->m, w->in, &e, &h, o->coordinator, o->job->cluster.timeout_s,
                          o->job->cluster.servers, o->job->cluster.workers, o->stop, err);
    if (rc)
        return rc;
    if (*o->stop)
        return PST_OK;
    *welcome = *w->in->b.welcome;
    w->generation = welcome->generation ? welcome->generation : 1;
    if (welcome->nparams != ml_model_nparams(w->model))
        return pst_err_set(err, PST_ERR_CONFIG,
                           "the job's model has %llu parameters, this worker built %zu",
                           (unsigned long long)welcome->nparams, ml_model_nparams(w->model));
    return PST_OK;
}

/* A request to the coordinator, sent again until `want` answers it or
 * cluster.timeout_s pass. It waits in slices of a second, between which the heartbeat
 * thread's verdict is looked at: a coordinator that is gone (or gave this worker up) ends
 * the wait after cluster.heartbeat_timeout_s, not timeout_s. Errors name the coordinator
 * and what was awaited. */
static int call_coordinator(worker *w, wire_env *h, const wire_body *b, wire_type want,
                            int same_clock, const char *what, pst_err *err)
{
    const wk_dist_options *o = w->o;
    int64_t deadline = net_now_ms() + (int64_t)o->job->cluster.timeout_s * 1000;
    for (;;) {
        int64_t left = deadline - net_now_ms();
        if (left <= 0)
            return pst_err_set(err, PST_ERR_TIMEOUT, "coordinator %s: no %s within %d s",
                               o->coordinator, what, o->job->cluster.timeout_s);
        int rc = msg_call(w->coord, w->m, w->in, h, b, want, same_clock,
                          left < 1000 ? (int)left : 1000, o->stop, err);
        if (rc != PST_ERR_TIMEOUT)
            return rc ? pst_err_prefix(err, "coordinator %s, waiting for %s", o->coordinator, what)
                      : PST_OK;
        if (w->hb && (rc = hb_check(w->hb, err)))
            return pst_err_prefix(err, "waiting for %s", what);
    }
}

/* Waits at barrier `id` until the coordinator says every worker has reached it. */
static int barrier(worker *w, int64_t id, pst_err *err)
{
    const wk_dist_options *o = w->o;
    wire_env h;
    wire_env_init(&h, WIRE_MSG_BARRIER, ROLE, o->rank);
    h.generation = w->generation;
    h.clock = id;
    char what[96];
    snprintf(what, sizeof what, "the release of barrier %lld (another worker stuck or gone?)",
             (long long)id);
    return call_coordinator(w, &h, NULL, WIRE_MSG_BARRIER, 1, what, err);
}

/* Tells the coordinator how far we are, at most every 2 s (heartbeats carry the same
 * figures; these also reach a coordinator that reads only its main socket). DONE waits
 * for the coordinator's ACK, sending again until it comes. Also where the heartbeat
 * thread's findings surface: a coordinator gone or one that gave this worker up. */
static int report_progress(worker *w, wire_type type, double test_accuracy, pst_err *err)
{
    hb_set_clock(w->hb, w->clock);
    hb_set_progress(w->hb, w->epoch, w->step, w->loss);
    int rc = hb_check(w->hb, err);
    if (rc)
        return rc;
    /* A restarted server: talk to its new incarnation. */
    uint64_t version = 0, gen[WIRE_MAX_SERVERS];
    int ns = hb_servers(w->hb, WIRE_MAX_SERVERS, gen, w->srv_ep, &version);
    if (w->kv && version != w->hb_version) {
        w->hb_version = version;
        for (int s = 0; s < ns; s++)
            if (gen[s] > w->srv_gen[s]) {
                if ((rc = wk_kv_reconnect(w->kv, s, w->srv_ep[s], err)))
                    return rc;
                w->srv_gen[s] = gen[s];
            }
    }
    int64_t now = net_now_ms();
    if (type == WIRE_MSG_PROGRESS && now - w->last_progress_ms < PROGRESS_EVERY_MS)
        return PST_OK;
    w->last_progress_ms = now;
    wire_env h;
    wire_env_init(&h, type, ROLE, w->o->rank);
    h.generation = w->generation;
    wire_progress p = {
        .epoch = w->epoch, .step = w->step, .loss = w->loss, .test_accuracy = test_accuracy};
    wire_body b = {.progress = &p};
    if (type == WIRE_MSG_DONE)
        return call_coordinator(w, &h, &b, WIRE_MSG_ACK, 0, "the acknowledgement of DONE", err);
    return msg_send(w->coord, NULL, 0, &h, &b, NULL, 0, w->o->job->cluster.timeout_s * 1000, err);
}

/* The signal of a stop: this process's own, else one the coordinator announced (the job
 * is stopping: a signal reached it or another worker); 0 while none. */
static int stop_signal_of(const worker *w)
{
    return *w->o->stop ? (int)*w->o->stop : hb_stop_signal(w->hb);
}

/* A stop the coordinator announced ends the step loop, or the wait for weights, as this
 * process's own signal does (the loop and the kv client watch that one themselves). */
static int announced_stop(const worker *w, pst_err *err)
{
    if (w->draining || *w->o->stop || !hb_stop_signal(w->hb))
        return PST_OK;
    return pst_err_set(err, PST_ERR_STATE, "the coordinator stops the job (signal %d)",
                       hb_stop_signal(w->hb));
}

static int on_idle(void *ctx, pst_err *err)
{
    int rc = report_progress(ctx, WIRE_MSG_PROGRESS, NAN, err);
    return rc ? rc : announced_stop(ctx, err);
}

static void delay_ms(int ms)
{
    /* Test hook only (a deliberately slow worker), never used to wait for anything. */
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int pull_into_model(worker *w, pst_err *err)
{
    int64_t gap = 0;
    int rc = wk_kv_pull_wait(w->kv, ml_model_params(w->model), &gap, err);
    if (gap > w->max_gap)
        w->max_gap = gap;
    for (int i = 0; i < 2 && !rc; i++) {
        w->gaps[i].sum += (double)gap;
        w->gaps[i].max = (double)gap > w->gaps[i].max ? (double)gap : w->gaps[i].max;
        w->gaps[i].n++;
    }
    return rc;
}

/* The traffic between snapshots a (earlier) and b, with the clock gaps g. */
static void comm_between(const wk_kv_stats *a, const wk_kv_stats *b, const struct gaps *g,
                         wk_comm_stats *c)
{
    met_hist push, pull;
    met_hist_sub(&push, &b->push_lat, &a->push_lat);
    met_hist_sub(&pull, &b->pull_lat, &a->pull_lat);
    *c = (wk_comm_stats){
        .bytes_pushed = b->bytes_pushed - a->bytes_pushed,
        .bytes_pulled = b->bytes_pulled - a->bytes_pulled,
        .push_p50 = met_hist_quantile(&push, 0.5),
        .push_p90 = met_hist_quantile(&push, 0.9),
        .push_p99 = met_hist_quantile(&push, 0.99),
        .pull_p50 = met_hist_quantile(&pull, 0.5),
        .pull_p90 = met_hist_quantile(&pull, 0.9),
        .pull_p99 = met_hist_quantile(&pull, 0.99),
        .gap_mean = g->n ? g->sum / (double)g->n : NAN,
        .gap_max = g->n ? g->max : NAN,
        .wait_s = b->wait_s - a->wait_s,
    };
}

/* A progress record for the launcher (see dist.h); force: even within WK_PROGRESS_MS. */
static void progress_record(worker *w, int64_t step, int64_t nsteps, int force)
{
    const wk_dist_options *o = w->o;
    double now = pst_mono_s();
    if (o->progress_fd < 0 || (!force && now - w->last_record_s < WK_PROGRESS_MS / 1e3))
        return;
    w->last_record_s = now;
    char line[256];
    int n = snprintf(line, sizeof line, "P %d %d %d %lld %lld %lld %lld %.6g %.6g\n", o->rank,
                     w->epoch, o->job->train.epochs, (long long)step, (long long)nsteps,
                     (long long)w->clock, (long long)(steps_per_epoch(w) * o->job->train.epochs),
                     w->loss, wk_trainer_samples_per_s(w->tr));
    /* One write of a short line: atomic on a pipe (< PIPE_BUF), so records of several
     * workers never interleave. EAGAIN (the launcher is behind) drops this record. */
    ssize_t r;
    do
        r = write(o->progress_fd, line, (size_t)n);
    while (r < 0 && errno == EINTR);
}

/* ---- The worker's side of the training loop (worker/loop.h) --------------------------- */

static void dist_begin_epoch(void *ctx, int epoch)
{
    worker *w = ctx;
    w->epoch = epoch;
    wk_kv_get_stats(w->kv, &w->ks_epoch[0]);
    w->ks_win = w->ks_epoch[0];
    memset(w->gaps, 0, sizeof w->gaps);
}

/* The buffer this step writes was last pushed one step ago (two when pipelined); make sure
 * ZeroMQ let go of it. Returns at once in the normal flow. */
static int dist_prepare(void *ctx, const wk_loop_pos *at, pst_err *err)
{
    worker *w = ctx;
    int rc;
    if ((rc = wk_kv_push_released(w->kv, w->clock, err)) ||
        (!w->pipelined && (rc = wk_kv_push_released(w->kv, w->clock + 1, err))))
        return rc;
    ml_model_use_grads(w->model, w->gbuf[w->clock & 1]);
    (void)at;
    return PST_OK;
}

/* The gradient to the servers (flagged for a checkpoint when due) and the new weights
 * back: under bsp before the next step, pipelined during it. */
static int dist_update(void *ctx, const wk_loop_pos *at, int checkpoint, pst_err *err)
{
    worker *w = ctx;
    const pst_test_hooks *hooks = w->o->hooks;
    int rc;
    w->loss = at->loss;
    /* State groups (batchnorm's running statistics) travel as this step's values, taken
     * before a pipelined pull overwrites them with the servers' mean. */
    wk_trainer_state_values(w->tr, w->gbuf[w->clock & 1]);
    /* Pipelined: the weights pulled after the previous push arrive now, after this step's
     * gradient was computed on the ones before. */
    if (w->pipelined && wk_kv_pull_outstanding(w->kv) && (rc = pull_into_model(w, err)))
        return rc;
    if (hooks && hooks->nan_at_clock > 0 && w->clock + 1 == hooks->nan_at_clock)
        w->gbuf[w->clock & 1][0] = NAN; /* test hook: a poisoned gradient */
    if (checkpoint)
        wk_kv_request_checkpoint(w->kv);
    /* The step's row gradients first, acknowledged by every server, then the dense chunks:
     * a step complete on a server has its sparse part taken (ps/sparse.h). */
    for (int t = 0; w->skv && t < ml_model_ntables(w->model); t++)
        if ((rc = wk_skv_push(w->skv, t, ml_model_table_keys(w->model, t),
                              ml_model_table_nkeys(w->model, t), ml_model_table_grads(w->model, t),
                              w->clock, err)))
            return rc;
    if ((rc = wk_kv_push(w->kv, w->gbuf[w->clock & 1], w->clock, err)))
        return rc;
    w->clock++;
    w->step = at->step + 1;
    if ((rc = wk_kv_pull_start(w->kv, w->clock, 0, err)))
        return rc;
    if (!w->pipelined && (rc = pull_into_model(w, err)))
        return rc;
    return PST_OK;
}

static int dist_after_step(void *ctx, const wk_loop_pos *at, pst_err *err)
{
    worker *w = ctx;
    const pst_test_hooks *hooks = w->o->hooks;
    if (hooks && hooks->step_delay_ms > 0)
        delay_ms(hooks->step_delay_ms);
    progress_record(w, at->step + 1, at->nsteps, at->step + 1 == at->nsteps);
    int rc = report_progress(w, WIRE_MSG_PROGRESS, NAN, err);
    return rc ? rc : announced_stop(w, err);
}

static void dist_comm(void *ctx, int epoch, wk_comm_stats *cs)
{
    worker *w = ctx;
    if (epoch) {
        comm_between(&w->ks_epoch[0], &w->ks_epoch[1], &w->gaps[0], cs);
        return;
    }
    wk_kv_stats now;
    wk_kv_get_stats(w->kv, &now);
    comm_between(&w->ks_win, &now, &w->gaps[1], cs);
    w->ks_win = now;
    memset(&w->gaps[1], 0, sizeof w->gaps[1]);
}

static int dist_end_epoch(void *ctx, const wk_epoch_stats *st, pst_err *err)
{
    worker *w = ctx;
    /* Where the epoch's time went: the steps block only in wk_kv_pull_wait (pushes are
     * queued zero-copy), so the rest is computing. */
    wk_kv_get_stats(w->kv, &w->ks_epoch[1]);
    double wait = w->ks_epoch[1].wait_s - w->ks_epoch[0].wait_s;
    log_info(w->o->lg,
             "epoch %d: %.2f s over %lld steps, %.2f s computing, %.2f s waiting "
             "for weights",
             w->epoch, st->seconds, (long long)st->steps, st->seconds - wait, wait);
    /* Evaluate the weights after this epoch's last update, as single-process training
     * does (pipelined: the pull of that update is still in flight). */
    if (!st->interrupted && wk_kv_pull_outstanding(w->kv))
        return pull_into_model(w, err);
    return PST_OK;
}

/* Trains every epoch; returns with the last pull answered. A resumed worker starts at its
 * clock: the epoch and step of it (shuffles depend on (seed, epoch, rank) only, so the
 * batches are those of an uninterrupted run). */
static int train(worker *w, pst_err *err)
{
    const cfg_job *job = w->o->job;
    int64_t per_epoch = steps_per_epoch(w);
    const wk_loop_ops ops = {.begin_epoch = dist_begin_epoch,
                             .prepare = dist_prepare,
                             .update = dist_update,
                             .after_step = dist_after_step,
                             .comm = dist_comm,
                             .end_epoch = dist_end_epoch};
    wk_loop_options lo = {.tr = w->tr,
                          .train = w->data.train,
                          .val = w->data.val,
                          .first_epoch =
                              per_epoch ? (int)(w->clock / per_epoch) + 1 : job->train.epochs + 1,
                          .last_epoch = job->train.epochs,
                          .first_step = per_epoch ? w->clock % per_epoch : 0,
                          .clock = w->clock,
                          .rep = w->rep,
                          .log_every = job->train.log_every,
                          .on_divergence = job->train.on_divergence,
                          .lg = w->o->lg,
                          .stop = w->o->stop,
                          .hooks = w->o->hooks,
                          .cadence = &w->cadence,
                          .ops = &ops,
                          .ctx = w};
    wk_loop_result res;
    return wk_loop_run(&lo, &res, err);
}

/* Worker 0, after every worker is done: the final weights, their test figures, the model
 * file; *verdict: whether the run learned anything (wk_trainer_judge's status, its text in
 * *why). */
static int finish(worker *w, double *test_acc, int *verdict, pst_err *why, pst_err *err)
{
    const wk_dist_options *o = w->o;
    int rc;
    *test_acc = NAN;
    if ((rc = wk_kv_pull_start(w->kv, w->clock, 1, err)) || (rc = pull_into_model(w, err)))
        return rc;
    const ds_dataset *final = w->data.test ? w->data.test : w->data.val;
    if (final) {
        wk_eval ev;
        if ((rc = wk_trainer_evaluate(w->tr, final, &ev, NULL, err)) ||
            (rc = wk_report_final(w->rep, w->data.test ? "test" : "validation", &ev, err)))
            return rc;
        if (ev.classify)
            *test_acc = ev.cls.accuracy;
        *verdict = wk_trainer_judge(w->tr, final, &ev, why);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", o->job->output.dir);
    if ((rc = ckpt_save_model(path, w->model, &o->job->model.spec, w->data.train, &w->data.scaler,
                              err)))
        return rc;
    log_info(o->lg, "final model written to %s", path);
    return PST_OK;
}

/* This worker's partition and the model it trains; one or two gradient buffers. */
static int build_model(worker *w, pst_err *err)
{
    const wk_dist_options *o = w->o;
    const cfg_job *job = o->job;
    int rc;
    if ((rc = wk_data_load(job, job->cluster.workers, o->rank, &w->data, err)))
        return rc;
    /* The servers apply the updates: the trainer here only computes gradients (and clips
     * them), so it is built with plain SGD, which keeps no state, instead of allocating
     * the job's optimizer state for the whole model (4 GB per moment for 1e9 parameters)
     * only to leave it unused. A shallow copy: it shares the job's strings and layers. */
    w->trainer_job = *job;
    w->trainer_job.optimizer.kind = OPT_SGD;
    /* model.keep_zeros: the servers hold the mask (ps/shard.h), learnt from the INIT
     * weights this worker's init_from gives; the trainer's own copy is unused here. */
    if (!(w->tr = wk_trainer_create(&w->trainer_job, w->data.train, o->rank, err)))
        return err->code;
    w->model = wk_trainer_model(w->tr);
    size_t P = ml_model_nparams(w->model);
    /* Unpipelined, a step's gradient is on the wire only until the pull that follows it is
     * answered, so one buffer serves; pipelined steps alternate two. */
    w->gbuf[0] = w->gbuf[1] = ml_model_grads(w->model);
    w->pipelined = job->cluster.pipeline && job->cluster.consistency != CFG_CONS_BSP;
    if (w->pipelined) {
        if (!(w->gbuf_extra = malloc(P * sizeof(float))))
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory for gradients");
        w->gbuf[1] = w->gbuf_extra;
    }
    log_info(o->lg, "partition %d of %d: %lld samples; model of %zu parameters", o->rank,
             job->cluster.workers, (long long)ds_count(w->data.train), P);
    log_finetune(w);
    return PST_OK;
}

/* The rows source of a distributed worker: its servers' tables, at its clock. */
static int pull_rows(void *ctx, int table, const uint64_t *keys, size_t n, float *rows, int train,
                     pst_err *err)
{
    worker *w = ctx;
    return wk_skv_pull(w->skv, table, keys, n, rows, train, w->clock, err);
}

/* A model with embedding tables takes their rows from the servers. */
static int connect_tables(worker *w, const wire_welcome *welcome, pst_err *err)
{
    int T = ml_model_ntables(w->model);
    if (T == 0)
        return PST_OK;
    int *dims = malloc(sizeof *dims * (size_t)T);
    if (!dims)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    for (int t = 0; t < T; t++)
        dims[t] = ml_model_table_info(w->model, t).dim;
    w->skv = wk_skv_create(w->ctx, w->o->rank, welcome, T, dims,
                           w->o->job->cluster.timeout_s * 1000, w->o->lg, w->o->stop, err);
    free(dims);
    if (!w->skv)
        return err->code;
    wk_trainer_set_rows_source(w->tr, &(wk_rows_source){.pull = pull_rows, .ctx = w});
    return PST_OK;
}

/* The transport (fault injection and CURVE as the job says) and the coordinator's
 * connection. */
static int connect_coordinator(worker *w, pst_err *err)
{
    const wk_dist_options *o = w->o;
    const cfg_job *job = o->job;
    int rc;
    char id[PST_TAG_MAX];
    /* The process's tag: a restarted process of the same rank is a new connection (a new
     * incarnation), not the old one back -- also as pid 1 of a container. */
    pst_process_tag(id, sizeof id, "worker", o->rank, NULL);
    net_opts co = {.identity = id};
    if (!(w->ctx = net_ctx_create(1, err)) ||
        net_faults_attach(w->ctx, o->faults, 0x3a11e7ULL + (uint64_t)o->rank * 7919, o->lg,
                          &w->faults, err)) {
        return err->code;
    }
    const cfg_security *sec = &job->security;
    net_curve_files cf = {sec->server_key, sec->server_public, sec->client_key, sec->allow};
    if ((rc = net_ctx_curve(w->ctx, &cf, o->lg, err)))
        return rc;
    if (!(w->m = net_msg_create(err)) ||
        !(w->coord = net_sock_create(w->ctx, NET_DEALER, &co, err)) ||
        (rc = net_sock_connect(w->coord, o->coordinator, err))) {
        return err->code;
    }
    return PST_OK;
}

/* The launcher's progress pipe, made non-blocking, and where this worker starts (a
 * resumed one mid-run): the launcher learns the job's total before the first step ends. */
static int open_progress(worker *w, pst_err *err)
{
    const wk_dist_options *o = w->o;
    int fl = fcntl(o->progress_fd, F_GETFL);
    if (fl < 0 || fcntl(o->progress_fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return pst_err_set(err, PST_ERR_IO, "progress descriptor %d: %s", o->progress_fd,
                           strerror(errno));
    int64_t per_epoch = steps_per_epoch(w);
    w->epoch = per_epoch ? (int)(w->clock / per_epoch) + 1 : 1;
    progress_record(w, per_epoch ? w->clock % per_epoch : 0, per_epoch, 1);
    return PST_OK;
}

/* A resumed job starts at the servers' checkpoint clock; a worker whose steps end before
 * it is done at once (it says DONE and leaves the clock). */
/* A restarted process taking over this rank, after its first pull: the servers took it
 * back at their clock (the smallest their replies report); it continues its partition
 * from there (shuffles depend on (seed, epoch, rank) only, so these are the batches it
 * would have had). */
static int rejoin_at(worker *w, pst_err *err)
{
    const cfg_job *job = w->o->job;
    int64_t per_epoch = steps_per_epoch(w), total = per_epoch * job->train.epochs;
    int64_t c = wk_kv_reply_clock(w->kv);
    w->clock = c < total ? c : total;
    /* Until its first step its heartbeats say where it rejoined (the coordinator names
     * that clock should this incarnation be lost too); the loss is not known yet. */
    hb_set_clock(w->hb, w->clock);
    hb_set_progress(w->hb, per_epoch ? (int)(w->clock / per_epoch) + 1 : 1,
                    per_epoch ? w->clock % per_epoch : 0, NAN);
    /* bsp: killed between its pushes of a step to two servers, the previous incarnation
     * left that step whole on one (which may have updated past it) and missing on the
     * other (which waits for it). It is computed again from the weights of that clock,
     * which every server keeps (srv_shard_weights_of), as in a run without the restart;
     * the first pull got the newest. */
    int rc;
    if (job->cluster.consistency == CFG_CONS_BSP && w->clock < total &&
        ((rc = wk_kv_pull_start_full(w->kv, w->clock, err)) || (rc = pull_into_model(w, err))))
        return rc;
    log_info(w->o->lg,
             "rejoined as incarnation %llu at clock %lld (epoch %lld, step %lld of "
             "it)",
             (unsigned long long)w->generation, (long long)w->clock,
             (long long)(per_epoch ? w->clock / per_epoch + 1 : 1),
             (long long)(per_epoch ? w->clock % per_epoch : 0));
    return PST_OK;
}

static void resume_at(worker *w, int64_t clock)
{
    int64_t per_epoch = steps_per_epoch(w), total = per_epoch * w->o->job->train.epochs;
    w->clock = clock < total ? clock : total;
    if (w->clock == total)
        log_info(w->o->lg, "resuming at clock %lld: this worker's %lld steps are all done",
                 (long long)clock, (long long)total);
    else
        log_info(w->o->lg, "resuming at clock %lld (epoch %lld, step %lld of it)",
                 (long long)w->clock, (long long)(w->clock / per_epoch + 1),
                 (long long)(w->clock % per_epoch));
}

/* A stop (a signal, or the coordinator's announcement), after the step in progress: every
 * push this worker sent is made sure to be taken -- so that no server holds a step of it
 * that another lacks -- then the coordinator hears STOP with the clock reached. Once it has
 * every live worker's, it has the servers write their checkpoints (SHUTDOWN): every shard
 * then holds the same pushes, i.e. the state of one clock (bsp: the last one every worker
 * completed; a worker one step ahead computes that step again on resume, from the same
 * weights, so the resumed run is the uninterrupted one). Each wait is bounded by a quarter
 * of the stop's window (hb_stop_window_ms); what did not happen in time is said. */
static int stop_drain(worker *w)
{
    const wk_dist_options *o = w->o;
    int sig = stop_signal_of(w),
        quarter_ms = hb_stop_window_ms(o->job->cluster.heartbeat_timeout_s) / 4;
    w->draining = 1;
    pst_err e = {0};
    if (o->stopped_by)
        *o->stopped_by = sig;
    /* Without every acknowledgement a server may hold this worker's last step while
     * another lacks it: no STOP then, and the coordinator has the servers write nothing. */
    if (wk_kv_flush(w->kv, quarter_ms, &e)) {
        log_warn(o->lg,
                 "stopping at clock %lld: %s; not saying STOP (the servers write no "
                 "checkpoint of this stop)",
                 (long long)w->clock, e.msg);
        return PST_OK;
    }
    wire_env h;
    wire_env_init(&h, WIRE_MSG_STOP, ROLE, o->rank);
    h.generation = w->generation;
    h.clock = w->clock;
    wire_progress p = {.epoch = w->epoch,
                       .step = w->step,
                       .loss = w->loss,
                       .test_accuracy = NAN,
                       .stop_signal = (uint32_t)sig};
    if (msg_call(w->coord, w->m, w->in, &h, &(wire_body){.progress = &p}, WIRE_MSG_ACK, 1,
                 quarter_ms, NULL, &e))
        log_warn(o->lg, "stopping at clock %lld: coordinator %s: %s", (long long)w->clock,
                 o->coordinator, e.msg);
    else
        log_info(o->lg, "stopped at clock %lld (epoch %d, step %lld of it), every push taken",
                 (long long)w->clock, w->epoch, (long long)w->step);
    return PST_OK;
}

int wk_dist_run(const wk_dist_options *o, pst_err *err)
{
    worker w;
    memset(&w, 0, sizeof w);
    w.o = o;
    const cfg_job *job = o->job;
    int rc;
    wire_welcome *welcome = malloc(sizeof *welcome);
    w.in = malloc(sizeof *w.in);
    if (!welcome || !w.in) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if ((rc = build_model(&w, err)) || (rc = connect_coordinator(&w, err)))
        goto cleanup;
    if ((rc = hello(&w, welcome, err)) || *o->stop)
        goto cleanup;
    hb_options ho = {.ctx = w.ctx,
                     .coordinator = o->coordinator,
                     .role = ROLE,
                     .rank = o->rank,
                     .generation = w.generation,
                     .interval_ms = job->cluster.heartbeat_ms,
                     .timeout_ms = job->cluster.heartbeat_timeout_s * 1000,
                     .lg = o->lg};
    if (!(w.hb = hb_start(&ho, err))) {
        rc = err->code;
        goto cleanup;
    }
    if (welcome->resume)
        resume_at(&w, welcome->resume_clock);
    wk_cadence_init(&w.cadence, &job->checkpoint, o->rank == 0);
    if (!(w.kv = wk_kv_create(w.ctx, o->rank, welcome, job->cluster.timeout_s * 1000, o->lg,
                              o->stop, err))) {
        rc = err->code;
        goto cleanup;
    }
    wk_kv_set_idle(w.kv, on_idle, &w);
    if ((rc = wk_kv_set_compression(w.kv, wk_comp_encoding(job->cluster.compression),
                                    job->cluster.topk_ratio, err)))
        goto cleanup;
    if ((rc = connect_tables(&w, welcome, err)))
        goto cleanup;
    for (int s = 0; s < WIRE_MAX_SERVERS; s++)
        w.srv_gen[s] = 1;
    if (o->rank == 0) {
        if (!(w.rep = (welcome->resume || welcome->rejoin ? wk_report_resume : wk_report_create)(
                  job->output.dir, o->lg, o->progress_out, o->tty, job->train.log_every,
                  job->train.epochs, err))) {
            rc = err->code;
            goto cleanup;
        }
        if ((rc = wk_report_write_job(job->output.dir, job, err)))
            goto cleanup;
        /* Worker 0's seeded initial weights are the servers' starting point, exactly those
         * single-process training starts from; a resumed job's servers have theirs. */
        if (!welcome->resume && !welcome->rejoin &&
            (rc = wk_kv_init(w.kv, ml_model_params(w.model), err)))
            goto cleanup;
    }
    /* The first pull takes every float, frozen ones too, so every worker starts from the
     * servers' weights whatever it loaded itself; later pulls skip frozen ranges. */
    if ((rc = wk_kv_pull_start_full(w.kv, w.clock, err)) || (rc = pull_into_model(&w, err)))
        goto cleanup;
    if (welcome->rejoin) {
        if ((rc = rejoin_at(&w, err)))
            goto cleanup;
    } else if ((rc = barrier(&w, 0, err)))
        goto cleanup;
    if (*o->stop)
        goto cleanup;
    if (o->progress_fd >= 0 && (rc = open_progress(&w, err)))
        goto cleanup;
    log_info(o->lg, "training with %d servers, %s%s", welcome->num_servers,
             cfg_consistency_name(job->cluster.consistency),
             job->cluster.consistency == CFG_CONS_SSP ? " (staleness bound set)" : "");
    if ((rc = train(&w, err)) || *o->stop)
        goto cleanup;
    if ((rc = wk_kv_done(w.kv, err)))
        goto cleanup;
    double test_acc = NAN;
    int verdict = PST_OK;
    pst_err why = {0};
    if (o->rank == 0 && (rc = finish(&w, &test_acc, &verdict, &why, err)))
        goto cleanup;
    wk_kv_stats ks;
    wk_kv_get_stats(w.kv, &ks);
    double steps = w.clock > 0 ? (double)w.clock : 1.0;
    log_info(o->lg,
             "done at clock %lld: %.1f MB pushed, %.1f MB pulled (%s; %.0f and %.0f bytes per "
             "step), %.2f s waiting for weights, largest clock gap %lld, %llu requests sent "
             "again",
             (long long)w.clock, ks.bytes_pushed / 1e6, ks.bytes_pulled / 1e6,
             cfg_compression_name(job->cluster.compression), ks.bytes_pushed / steps,
             ks.bytes_pulled / steps, ks.wait_s, (long long)w.max_gap,
             (unsigned long long)ks.resent);
    rc = report_progress(&w, WIRE_MSG_DONE, test_acc, err);
    w.finished = rc == PST_OK;
    /* The job is over either way; a run that learned nothing fails worker 0 (and so the
     * launcher) after it said DONE, with the model written for a look. */
    if (rc == PST_OK && verdict != PST_OK)
        rc = pst_err_set(err, verdict, "%s", why.msg);

cleanup:
    /* A stop once the servers are known: it ends at one clock (stop_drain). */
    if ((rc == PST_OK || rc == PST_ERR_STATE) && w.kv && w.hb && !w.finished && stop_signal_of(&w))
        rc = stop_drain(&w);
    if (rc == PST_ERR_STATE && *o->stop)
        rc = PST_OK; /* interrupted while waiting: the caller reports the signal */
    wk_report_destroy(w.rep);
    hb_stop(w.hb);
    wk_kv_close(w.kv); /* its release callbacks may still run until the context ends */
    wk_skv_destroy(w.skv);
    net_msg_destroy(w.m);
    net_sock_destroy(w.coord);
    net_ctx_destroy(w.ctx);
    wk_kv_destroy(w.kv);
    net_faults_finish(w.faults, o->lg);
    wk_trainer_destroy(w.tr);
    wk_data_fini(&w.data);
    free(w.gbuf_extra);
    free(welcome);
    free(w.in);
    return rc;
}
