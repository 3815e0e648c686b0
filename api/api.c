/* api/api.c -- include/pstrain/pstrain.h: options, the job, tensors and the order of
 * calls. The network side is join.c; the client underneath is worker/kv.c, the same one
 * pstrain's own workers use. */
#include "api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/hb.h"

/* pstrain.h repeats base/err.h's codes for programs that see only the public header. */
_Static_assert(PST_ERR_DIVERGED == 11 && PST_ERR_STATE == 7 && sizeof(pst_err) == 516,
               "include/pstrain/pstrain.h and base/err.h must agree");

PST_API const char *pst_status_str(int code) { return pst_status_name(code); }

/* ---- Options and the job --------------------------------------------------------------- */

static int parse_rank(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0 || v > 1000000)
        return -1;
    *out = (int)v;
    return 0;
}

/* Rank and coordinator from the options, else the environment (as `pstrain worker` and
 * `pstrain server`). */
int api_resolve_node(int rank_in, const char *coordinator, int *rank, char *ep_out, size_t cap,
                     pst_err *err)
{
    const char *e;
    *rank = rank_in;
    if (*rank < 0 && ((e = getenv("PSTRAIN_RANK")) || (e = getenv("JOB_COMPLETION_INDEX"))) &&
        parse_rank(e, rank))
        return pst_err_set(err, PST_ERR_ARG, "rank from the environment: '%s' is not a rank", e);
    if (*rank < 0)
        return pst_err_set(err, PST_ERR_ARG, "no rank: set the options' rank or PSTRAIN_RANK");
    const char *ep = coordinator;
    char buf[WIRE_ENDPOINT_MAX];
    if (!ep && !(ep = getenv("PSTRAIN_COORDINATOR"))) {
        const char *uri = getenv("DMLC_PS_ROOT_URI"), *port = getenv("DMLC_PS_ROOT_PORT");
        if (uri && port) {
            snprintf(buf, sizeof buf, "tcp://%s:%s", uri, port);
            ep = buf;
        }
    }
    if (!ep)
        return pst_err_set(err, PST_ERR_ARG,
                           "no coordinator: set the options' coordinator or PSTRAIN_COORDINATOR");
    if (strlen(ep) >= cap)
        return pst_err_set(err, PST_ERR_ARG, "coordinator endpoint too long: '%.40s...'", ep);
    snprintf(ep_out, cap, "%s", ep);
    return PST_OK;
}

/* The job file with the environment's overrides, then the caller's; checked again after. */
int api_load_job(cfg_job **job, const char *path, const char *const *keys,
                 const char *const *values, int noverrides, pst_err *err)
{
    if (!path && !(path = getenv("PSTRAIN_JOB")))
        return pst_err_set(err, PST_ERR_ARG,
                           "no job file: set the options' job_path or PSTRAIN_JOB");
    int rc = cfg_job_load_file(job, path, err);
    if (rc)
        return rc;
    static const char *const env[][2] = {{"PSTRAIN_NUM_SERVERS", "cluster.servers"},
                                         {"DMLC_NUM_SERVER", "cluster.servers"},
                                         {"PSTRAIN_NUM_WORKERS", "cluster.workers"},
                                         {"DMLC_NUM_WORKER", "cluster.workers"},
                                         {"PSTRAIN_SERVER_KEY", "security.server_key"},
                                         {"PSTRAIN_SERVER_PUBLIC", "security.server_public"},
                                         {"PSTRAIN_CLIENT_KEY", "security.client_key"},
                                         {"PSTRAIN_ALLOW", "security.allow"}};
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++) {
        const char *v = getenv(env[i][0]);
        if (v && (rc = cfg_override(*job, env[i][1], v, err)))
            return pst_err_prefix(err, "%s", env[i][0]);
    }
    if (noverrides < 0 || (noverrides > 0 && (!keys || !values)))
        return pst_err_set(err, PST_ERR_ARG, "options: %d overrides without keys/values",
                           noverrides);
    for (int i = 0; i < noverrides; i++) {
        if (!keys[i] || !values[i])
            return pst_err_set(err, PST_ERR_ARG, "options: override %d is NULL", i);
        if ((rc = cfg_override(*job, keys[i], values[i], err)))
            return pst_err_prefix(err, "override %s", keys[i]);
    }
    return cfg_job_check(*job, err);
}

static int load_job(pst_worker *w, const pst_options *o, pst_err *err)
{
    int rc = api_load_job(&w->job, o->job_path, o->keys, o->values, o->noverrides, err);
    if (rc)
        return rc;
    if (w->rank >= w->job->cluster.workers)
        return pst_err_set(err, PST_ERR_ARG, "rank %d but the job has %d workers", w->rank,
                           w->job->cluster.workers);
    return PST_OK;
}

PST_API int pst_worker_create(pst_worker **out, const pst_options *o, pst_err *err)
{
    if (!out)
        return pst_err_set(err, PST_ERR_ARG, "pst_worker_create: out is NULL");
    *out = NULL;
    if (!o)
        return pst_err_set(err, PST_ERR_ARG, "pst_worker_create: options are NULL");
    if (o->steps < 0)
        return pst_err_set(err, PST_ERR_ARG, "pst_options.steps: must be >= 0, got %lld",
                           (long long)o->steps);
    pst_worker *w = calloc(1, sizeof *w);
    if (!w)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    int rc;
    w->pull_clock = -1;
    w->steps = o->steps;
    if ((rc = api_resolve_node(o->rank, o->coordinator, &w->rank, w->coordinator,
                               sizeof w->coordinator, err)) ||
        (rc = load_job(w, o, err))) {
        pst_worker_destroy(w);
        return rc;
    }
    log_init(&w->lg, "worker", w->rank, stderr);
    if (o->quiet)
        w->lg.level = LOG_WARN;
    *out = w;
    return PST_OK;
}

PST_API void pst_worker_destroy(pst_worker *w)
{
    if (!w)
        return;
    api_disconnect(w);
    cfg_job_free(w->job);
    free(w->t);
    free(w->weights);
    free(w->grads);
    free(w);
}

/* ---- Tensors ----------------------------------------------------------------------------- */

static const api_tensor *find(const pst_worker *w, const char *name)
{
    for (int i = 0; name && i < w->ntensors; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return &w->t[i];
    return NULL;
}

/* "no tensor 'x' (declared: a, b, ...)" -- the names a caller may have meant. */
static int unknown(const pst_worker *w, const char *fn, const char *name, pst_err *err)
{
    char list[256] = "";
    size_t n = 0;
    for (int i = 0; i < w->ntensors && n + 1 < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", w->t[i].name);
    if (!name)
        return pst_err_set(err, PST_ERR_ARG, "%s: tensor name is NULL", fn);
    return pst_err_set(err, PST_ERR_ARG, "%s: no tensor '%.128s' (declared: %s)", fn, name,
                       w->ntensors ? list : "none");
}

static const char *state_name(api_state s)
{
    static const char *const n[] = {"before pst_join", "joined", "after pst_finish",
                                    "after a failure"};
    return n[s];
}

static int want_state(const pst_worker *w, api_state s, const char *fn, pst_err *err)
{
    if (!w)
        return pst_err_set(err, PST_ERR_ARG, "%s: worker is NULL", fn);
    if (w->state != s)
        return pst_err_set(err, PST_ERR_STATE, "%s: not valid %s (only %s)", fn,
                           state_name(w->state), state_name(s));
    return PST_OK;
}

PST_API int pst_tensor_declare(pst_worker *w, const char *name, int ndim, const int64_t *shape,
                               pst_err *err)
{
    int rc = want_state(w, API_CREATED, "pst_tensor_declare", err);
    if (rc)
        return rc;
    if (!name || !name[0] || strlen(name) >= PST_NAME_MAX)
        return pst_err_set(err, PST_ERR_ARG, "pst_tensor_declare: name must be 1 to %d bytes",
                           PST_NAME_MAX - 1);
    if (find(w, name))
        return pst_err_set(err, PST_ERR_ARG, "pst_tensor_declare: tensor '%s' declared twice",
                           name);
    if (ndim < 1 || ndim > PST_MAX_DIMS || !shape)
        return pst_err_set(err, PST_ERR_ARG,
                           "pst_tensor_declare: '%s': %d dimensions (1 to %d, shape not NULL)",
                           name, ndim, PST_MAX_DIMS);
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        /* Each factor below 2^31 and the product below 2^40 floats: no size_t overflow. */
        if (shape[d] < 1 || shape[d] > INT32_MAX || numel > ((size_t)1 << 40) / (size_t)shape[d])
            return pst_err_set(err, PST_ERR_ARG,
                               "pst_tensor_declare: '%s': dimension %d is %lld (1 and up; at "
                               "most 2^40 floats in all)",
                               name, d, (long long)shape[d]);
        numel *= (size_t)shape[d];
    }
    if (w->nparams + numel > ((size_t)1 << 40))
        return pst_err_set(err, PST_ERR_ARG, "pst_tensor_declare: '%s': model over 2^40 floats",
                           name);
    if (w->ntensors == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        api_tensor *t = realloc(w->t, sizeof *t * (size_t)cap);
        if (!t)
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        w->t = t;
        w->cap = cap;
    }
    /* The flat weights grow with each tensor (pst_tensor_set before join writes there). */
    float *nw = realloc(w->weights, (w->nparams + numel) * sizeof(float));
    if (!nw)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory for '%s' (%zu floats)", name, numel);
    w->weights = nw;
    memset(nw + w->nparams, 0, numel * sizeof(float));
    api_tensor *t = &w->t[w->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof *shape * (size_t)ndim);
    t->offset = w->nparams;
    t->numel = numel;
    w->nparams += numel;
    return PST_OK;
}

PST_API int pst_tensor_count(const pst_worker *w) { return w ? w->ntensors : 0; }

static void fill_info(const api_tensor *t, pst_tensor_info *info)
{
    memset(info, 0, sizeof *info);
    info->name = t->name;
    info->ndim = t->ndim;
    memcpy(info->shape, t->shape, sizeof t->shape);
    info->offset = t->offset;
    info->numel = t->numel;
}

PST_API int pst_tensor_info_at(const pst_worker *w, int i, pst_tensor_info *info, pst_err *err)
{
    if (!w || !info)
        return pst_err_set(err, PST_ERR_ARG, "pst_tensor_info_at: worker or info is NULL");
    if (i < 0 || i >= w->ntensors)
        return pst_err_set(err, PST_ERR_ARG, "pst_tensor_info_at: index %d of %d tensors", i,
                           w->ntensors);
    fill_info(&w->t[i], info);
    return PST_OK;
}

PST_API int pst_tensor_find(const pst_worker *w, const char *name, pst_tensor_info *info,
                            pst_err *err)
{
    if (!w || !info)
        return pst_err_set(err, PST_ERR_ARG, "pst_tensor_find: worker or info is NULL");
    const api_tensor *t = find(w, name);
    if (!t)
        return unknown(w, "pst_tensor_find", name, err);
    fill_info(t, info);
    return PST_OK;
}

/* The tensor for a copy of n floats through buf: known, n its size, buf given. */
static int copy_target(const pst_worker *w, const char *fn, const char *name, const void *buf,
                       size_t n, const api_tensor **out, pst_err *err)
{
    if (!w)
        return pst_err_set(err, PST_ERR_ARG, "%s: worker is NULL", fn);
    if (!(*out = find(w, name)))
        return unknown(w, fn, name, err);
    if (n != (*out)->numel)
        return pst_err_set(err, PST_ERR_ARG, "%s: '%s' has %zu floats, not %zu", fn, name,
                           (*out)->numel, n);
    if (!buf)
        return pst_err_set(err, PST_ERR_ARG, "%s: '%s': buffer is NULL", fn, name);
    return PST_OK;
}

PST_API int pst_tensor_set(pst_worker *w, const char *name, const float *src, size_t n,
                           pst_err *err)
{
    const api_tensor *t;
    int rc = copy_target(w, "pst_tensor_set", name, src, n, &t, err);
    if (rc)
        return rc;
    memcpy(w->weights + t->offset, src, n * sizeof(float));
    return PST_OK;
}

PST_API int pst_tensor_get(const pst_worker *w, const char *name, float *dst, size_t n,
                           pst_err *err)
{
    const api_tensor *t;
    int rc = copy_target(w, "pst_tensor_get", name, dst, n, &t, err);
    if (rc)
        return rc;
    memcpy(dst, w->weights + t->offset, n * sizeof(float));
    return PST_OK;
}

static int viewable(const pst_worker *w)
{
    return w && (w->state == API_JOINED || w->state == API_FINISHED) && w->grads;
}

PST_API float *pst_tensor_weights(pst_worker *w, const char *name)
{
    const api_tensor *t = viewable(w) ? find(w, name) : NULL;
    return t ? w->weights + t->offset : NULL;
}

PST_API float *pst_tensor_grad(pst_worker *w, const char *name)
{
    const api_tensor *t = viewable(w) ? find(w, name) : NULL;
    return t ? w->grads + t->offset : NULL;
}

PST_API float *pst_weights(pst_worker *w) { return viewable(w) ? w->weights : NULL; }
PST_API float *pst_grads(pst_worker *w) { return viewable(w) ? w->grads : NULL; }
PST_API size_t pst_nparams(const pst_worker *w) { return w ? w->nparams : 0; }

/* ---- The job ------------------------------------------------------------------------------- */

PST_API const char *pst_consistency(const pst_worker *w, int *staleness)
{
    if (staleness)
        *staleness =
            w && w->job->cluster.consistency == CFG_CONS_SSP ? w->job->cluster.staleness : 0;
    return w ? cfg_consistency_name(w->job->cluster.consistency) : NULL;
}

PST_API int pst_rank(const pst_worker *w) { return w ? w->rank : -1; }
PST_API int pst_num_workers(const pst_worker *w) { return w ? w->job->cluster.workers : 0; }
PST_API int64_t pst_clock(const pst_worker *w) { return w ? w->clock : -1; }

PST_API int pst_join(pst_worker *w, pst_err *err)
{
    int rc = want_state(w, API_CREATED, "pst_join", err);
    if (rc)
        return rc;
    if (w->ntensors == 0)
        return pst_err_set(err, PST_ERR_STATE, "pst_join: no tensor declared");
    if (!(w->grads = calloc(w->nparams, sizeof(float))))
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory for %zu gradients", w->nparams);
    if ((rc = api_join(w, err))) {
        w->state = API_FAILED;
        api_disconnect(w);
        return rc;
    }
    w->state = API_JOINED;
    return PST_OK;
}

/* ---- Push, pull, wait ---------------------------------------------------------------------- */

/* Handles: (clock + 1) << 1 | is_pull, so 0 is never one. */
static pst_req req_of(int64_t clock, int pull)
{
    return ((uint64_t)(clock + 1) << 1) | (pull != 0);
}

/* A failure on the wire leaves the worker unusable: its servers may hold half a step. */
static int failed(pst_worker *w, int rc)
{
    if (rc && rc != PST_ERR_ARG && rc != PST_ERR_STATE)
        w->state = API_FAILED;
    return rc;
}

PST_API int pst_push(pst_worker *w, pst_req *req, pst_err *err)
{
    int rc = want_state(w, API_JOINED, "pst_push", err);
    if (rc)
        return rc;
    if (!req)
        return pst_err_set(err, PST_ERR_ARG, "pst_push: req is NULL");
    /* The kv client keeps two pushed buffers in flight (by clock parity); one buffer here,
     * so the push before this one must be released first. */
    if (w->clock > w->pushes_released && (rc = wk_kv_push_released(w->kv, w->clock - 1, err)))
        return failed(w, rc);
    w->pushes_released = w->clock;
    if ((rc = wk_kv_push(w->kv, w->grads, w->clock, err)))
        return failed(w, rc);
    *req = req_of(w->clock, 0);
    w->clock++;
    hb_set_clock(w->hb, w->clock);
    return PST_OK;
}

PST_API int pst_pull(pst_worker *w, pst_req *req, pst_err *err)
{
    int rc = want_state(w, API_JOINED, "pst_pull", err);
    if (rc)
        return rc;
    if (!req)
        return pst_err_set(err, PST_ERR_ARG, "pst_pull: req is NULL");
    if (w->pull_clock >= 0)
        return pst_err_set(err, PST_ERR_STATE,
                           "pst_pull: the pull of clock %lld is outstanding (pst_wait it first)",
                           (long long)w->pull_clock);
    if ((rc = wk_kv_pull_start(w->kv, w->clock, 0, err)))
        return failed(w, rc);
    w->pull_clock = w->clock;
    *req = req_of(w->clock, 1);
    return PST_OK;
}

PST_API int pst_wait(pst_worker *w, pst_req req, pst_err *err)
{
    int rc = want_state(w, API_JOINED, "pst_wait", err);
    if (rc)
        return rc;
    int64_t clock = (int64_t)(req >> 1) - 1;
    int pull = (int)(req & 1);
    if (req == 0 || clock >= w->clock + (pull ? 1 : 0))
        return pst_err_set(err, PST_ERR_STATE, "pst_wait: %llu is not a request of this worker",
                           (unsigned long long)req);
    if (!pull) {
        if (clock < w->pushes_released)
            return PST_OK; /* an older push: released before a later one was sent */
        if ((rc = wk_kv_push_released(w->kv, clock, err)))
            return failed(w, rc);
        w->pushes_released = clock + 1;
        return PST_OK;
    }
    if (w->pull_clock < 0 || clock != w->pull_clock)
        return pst_err_set(err, PST_ERR_STATE, "pst_wait: the pull of clock %lld %s",
                           (long long)clock,
                           w->pull_clock < 0 ? "was waited for already" : "is not outstanding");
    rc = wk_kv_pull_wait(w->kv, w->weights, NULL, err);
    w->pull_clock = -1;
    /* The gradient buffer is free again once the last push is released (at once in the
     * normal flow: the reply implies it was sent; a lost push is sent again from it). */
    if (rc == PST_OK && w->clock > w->pushes_released &&
        (rc = wk_kv_push_released(w->kv, w->clock - 1, err)) == PST_OK)
        w->pushes_released = w->clock;
    return failed(w, rc);
}

PST_API int pst_checkpoint(pst_worker *w, pst_err *err)
{
    int rc = want_state(w, API_JOINED, "pst_checkpoint", err);
    if (rc)
        return rc;
    wk_kv_request_checkpoint(w->kv);
    return PST_OK;
}

PST_API void pst_progress(pst_worker *w, int epoch, int64_t step, double loss)
{
    if (!w)
        return;
    w->epoch = epoch;
    w->step = step;
    w->loss = loss;
    if (w->hb)
        hb_set_progress(w->hb, epoch, step, loss);
}

PST_API int pst_finish(pst_worker *w, pst_err *err)
{
    int rc = want_state(w, API_JOINED, "pst_finish", err);
    if (rc)
        return rc;
    if (w->pull_clock >= 0)
        return pst_err_set(err, PST_ERR_STATE,
                           "pst_finish: the pull of clock %lld is outstanding (pst_wait it first)",
                           (long long)w->pull_clock);
    if ((rc = api_finish(w, err)))
        return failed(w, rc);
    w->state = API_FINISHED;
    return PST_OK;
}
