/* api/join.c -- a library worker's side of the job's protocol: registration (HELLO ->
 * WELCOME), heartbeats, the kv client, rank 0's INIT, the first pull and barrier 0, and
 * at the end DONE. The same steps and messages as worker/dist.c's wk_dist_run, over the
 * same client (worker/kv.c); what a library worker leaves out: data, evaluation, metrics
 * files and the final model file (the program owns its model), rejoining after a restart
 * and talking to a restarted server (a failure ends the worker: PST_ERR_* to the caller). */
#include "api_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/ident.h"
#include "proto/hb.h"
#include "worker/compress.h"

#define ROLE "worker"

static int connect_coordinator(pst_worker *w, pst_err *err)
{
    int rc;
    char id[PST_TAG_MAX];
    pst_process_tag(id, sizeof id, "worker", w->rank, NULL);
    net_opts co = {.identity = id};
    if (!(w->ctx = net_ctx_create(1, err)))
        return err->code;
    const cfg_security *sec = &w->job->security;
    net_curve_files cf = {sec->server_key, sec->server_public, sec->client_key, sec->allow};
    if ((rc = net_ctx_curve(w->ctx, &cf, &w->lg, err)))
        return rc;
    if (!(w->m = net_msg_create(err)) ||
        !(w->coord = net_sock_create(w->ctx, NET_DEALER, &co, err)) ||
        (rc = net_sock_connect(w->coord, w->coordinator, err)))
        return err->code;
    return PST_OK;
}

/* HELLO with the declared model's size; the coordinator compares it with the other
 * workers' and sends the shard map. One update group: every float at multiplier 1. */
static int hello(pst_worker *w, wire_welcome *welcome, pst_err *err)
{
    const cfg_job *job = w->job;
    wire_env e;
    wire_env_init(&e, WIRE_MSG_HELLO, ROLE, w->rank);
    wire_hello h = {0};
    h.nparams = w->nparams;
    h.steps = (uint64_t)w->steps;
    h.job_hash = cfg_job_hash(job);
    h.pid = (int)getpid();
    int rc = msg_register(w->coord, w->m, w->in, &e, &h, w->coordinator, job->cluster.timeout_s,
                          job->cluster.servers, job->cluster.workers, &w->stop, err);
    if (rc)
        return rc;
    *welcome = *w->in->b.welcome;
    w->generation = welcome->generation ? welcome->generation : 1;
    if (welcome->nparams != w->nparams)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "the job's model has %llu parameters, this worker declared %zu",
                           (unsigned long long)welcome->nparams, w->nparams);
    if (welcome->rejoin)
        return pst_err_set(err, PST_ERR_STATE,
                           "the coordinator takes this worker as a restarted rank %d, which a "
                           "library worker cannot continue (start the job again)",
                           w->rank);
    return PST_OK;
}

/* A request to the coordinator sent again until answered, within cluster.timeout_s, the
 * heartbeat thread's verdict looked at every second (as worker/dist.c). */
static int call_coordinator(pst_worker *w, wire_env *h, const wire_body *b, wire_type want,
                            int same_clock, const char *what, pst_err *err)
{
    int64_t deadline = net_now_ms() + (int64_t)w->job->cluster.timeout_s * 1000;
    for (;;) {
        int64_t left = deadline - net_now_ms();
        if (left <= 0)
            return pst_err_set(err, PST_ERR_TIMEOUT, "coordinator %s: no %s within %d s",
                               w->coordinator, what, w->job->cluster.timeout_s);
        int rc = msg_call(w->coord, w->m, w->in, h, b, want, same_clock,
                          left < 1000 ? (int)left : 1000, &w->stop, err);
        if (rc != PST_ERR_TIMEOUT)
            return rc ? pst_err_prefix(err, "coordinator %s, waiting for %s", w->coordinator, what)
                      : PST_OK;
        if (w->hb && (rc = hb_check(w->hb, err)))
            return pst_err_prefix(err, "waiting for %s", what);
    }
}

int api_idle(void *ctx, pst_err *err)
{
    pst_worker *w = ctx;
    hb_set_clock(w->hb, w->clock);
    int rc = hb_check(w->hb, err);
    if (rc)
        return rc;
    if (hb_stop_signal(w->hb))
        return pst_err_set(err, PST_ERR_STATE, "the coordinator stops the job (signal %d)",
                           hb_stop_signal(w->hb));
    return PST_OK;
}

int api_join(pst_worker *w, pst_err *err)
{
    const cfg_job *job = w->job;
    int rc;
    wire_welcome *welcome = malloc(sizeof *welcome);
    if (!welcome || !(w->in = malloc(sizeof *w->in))) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if ((rc = connect_coordinator(w, err)) || (rc = hello(w, welcome, err)))
        goto cleanup;
    hb_options ho = {.ctx = w->ctx,
                     .coordinator = w->coordinator,
                     .role = ROLE,
                     .rank = w->rank,
                     .generation = w->generation,
                     .interval_ms = job->cluster.heartbeat_ms,
                     .timeout_ms = job->cluster.heartbeat_timeout_s * 1000,
                     .lg = &w->lg};
    if (!(w->hb = hb_start(&ho, err))) {
        rc = err->code;
        goto cleanup;
    }
    if (!(w->kv = wk_kv_create(w->ctx, w->rank, welcome, job->cluster.timeout_s * 1000, &w->lg,
                               &w->stop, err))) {
        rc = err->code;
        goto cleanup;
    }
    wk_kv_set_idle(w->kv, api_idle, w);
    if ((rc = wk_kv_set_compression(w->kv, wk_comp_encoding(job->cluster.compression),
                                    job->cluster.topk_ratio, err)))
        goto cleanup;
    if (welcome->resume)
        w->clock = welcome->resume_clock;
    w->pushes_released = w->clock;
    /* Rank 0's weights are the servers' starting point (a resumed job's servers have
     * theirs); then every worker pulls them, so all start alike. */
    if (w->rank == 0 && !welcome->resume && (rc = wk_kv_init(w->kv, w->weights, err)))
        goto cleanup;
    if ((rc = wk_kv_pull_start_full(w->kv, w->clock, err)) ||
        (rc = wk_kv_pull_wait(w->kv, w->weights, NULL, err)))
        goto cleanup;
    wire_env h;
    wire_env_init(&h, WIRE_MSG_BARRIER, ROLE, w->rank);
    h.generation = w->generation;
    h.clock = 0;
    if ((rc = call_coordinator(w, &h, NULL, WIRE_MSG_BARRIER, 1,
                               "the release of barrier 0 (another worker stuck or gone?)", err)))
        goto cleanup;
    log_info(&w->lg, "joined: %zu parameters in %d tensors, %d servers, %s, clock %lld", w->nparams,
             w->ntensors, welcome->num_servers, cfg_consistency_name(job->cluster.consistency),
             (long long)w->clock);

cleanup:
    free(welcome);
    return rc;
}

/* DONE to every server (once every push is taken), rank 0's final pull (answered once
 * every worker is done), DONE to the coordinator. */
int api_finish(pst_worker *w, pst_err *err)
{
    int rc;
    if ((rc = wk_kv_done(w->kv, err)))
        return rc;
    if (w->rank == 0 && ((rc = wk_kv_pull_start(w->kv, w->clock, 1, err)) ||
                         (rc = wk_kv_pull_wait(w->kv, w->weights, NULL, err))))
        return rc;
    hb_set_clock(w->hb, w->clock);
    wire_env h;
    wire_env_init(&h, WIRE_MSG_DONE, ROLE, w->rank);
    h.generation = w->generation;
    wire_progress p = {.epoch = w->epoch, .step = w->step, .loss = w->loss, .test_accuracy = NAN};
    wire_body b = {.progress = &p};
    if ((rc = call_coordinator(w, &h, &b, WIRE_MSG_ACK, 0, "the acknowledgement of DONE", err)))
        return rc;
    log_info(&w->lg, "done at clock %lld", (long long)w->clock);
    return PST_OK;
}

void api_disconnect(pst_worker *w)
{
    hb_stop(w->hb);
    w->hb = NULL;
    wk_kv_close(w->kv); /* its release callbacks may still run until the context ends */
    net_msg_destroy(w->m);
    w->m = NULL;
    net_sock_destroy(w->coord);
    w->coord = NULL;
    net_ctx_destroy(w->ctx);
    w->ctx = NULL;
    wk_kv_destroy(w->kv);
    w->kv = NULL;
    free(w->in);
    w->in = NULL;
}
