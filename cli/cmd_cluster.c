/* cli/cmd_cluster.c -- `pstrain coordinator`, `pstrain server`, `pstrain worker`: the
 * processes of a distributed job, each started by hand, by `pstrain local`, by a cluster
 * script or by Kubernetes. Settings come from flags, else from environment variables
 * (PSTRAIN_*, and the names ps-lite and Kubernetes users already set). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "base/log.h"
#include "obs/obs.h"
#include "proto/hb.h"
#include "ps/coord.h"
#include "ps/server.h"
#include "worker/dist.h"

typedef struct {
    const char *job_path;
    int rank; /* -1: not given */
    const char *coordinator;
    const char *bind;
    const char *advertise;
    int ready_fd;
    int port;         /* a server's port; 0: any free one */
    int metrics_port; /* --metrics-port: this process's Prometheus port, 0 = off;
                               -1: not given (cluster.metrics_port decides) */
    cli_args args;    /* the job file and overrides */
    char coord_buf[300];
    char bind_buf[300];
    char adv_buf[256];
    cli_override tf_over[2]; /* cluster.servers/workers from TF_CONFIG */
    char tf_val[2][16];
    int ntf;
} node_args;

static const char env_help[] =
    "environment (flags win):\n"
    "  PSTRAIN_RANK, JOB_COMPLETION_INDEX (Kubernetes Indexed Job)      --rank\n"
    "  PSTRAIN_COORDINATOR, or DMLC_PS_ROOT_URI + DMLC_PS_ROOT_PORT      --coordinator\n"
    "  PSTRAIN_BIND                                                      --bind\n"
    "  PSTRAIN_ADVERTISE                                                 --advertise\n"
    "  PSTRAIN_PORT                                                      --port\n"
    "  PSTRAIN_NUM_SERVERS or DMLC_NUM_SERVER, PSTRAIN_NUM_WORKERS or DMLC_NUM_WORKER\n"
    "                                                   --cluster.servers, --cluster.workers\n"
    "  PSTRAIN_SERVER_KEY, PSTRAIN_SERVER_PUBLIC, PSTRAIN_CLIENT_KEY, PSTRAIN_ALLOW\n"
    "                      --security.server_key, .server_public, .client_key, .allow\n"
    "                      (CURVE keys, docs/security.md; \"\" unsets the job file's)\n"
    "  TF_CONFIG (TensorFlow/TFJob JSON, used for what the above leave unset):\n"
    "    task.index --rank; cluster.chief[0] or cluster.coordinator[0] --coordinator;\n"
    "    len(cluster.ps), len(cluster.worker) --cluster.servers, --cluster.workers;\n"
    "    a server's cluster.ps[index] HOST:PORT --advertise, --port (--bind 0.0.0.0);\n"
    "    the coordinator binds the port of its own entry. task.type must match the\n"
    "    command: ps = server, worker = worker, chief or coordinator = coordinator\n"
    "  PSTRAIN_LOG=debug|info|warn|error\n";

static const char coord_synopsis[] =
    "usage: pstrain coordinator [JOB.yaml] [--bind ENDPOINT] [--ready-fd FD] "
    "[--KEY VALUE ...]\n\n"
    "The rendezvous of a distributed job: waits for cluster.servers servers and\n"
    "cluster.workers workers, sends them the shard map, follows the workers and\n"
    "stops the servers when all workers are done. Holds no parameters.\n";
static const char server_synopsis[] =
    "usage: pstrain server [JOB.yaml] --rank R --coordinator tcp://HOST:PORT [--KEY VALUE "
    "...]\n\n"
    "A parameter server: holds a shard of the model, applies the optimizer to\n"
    "pushed gradients and answers pulls under the job's consistency model.\n";
static const char worker_synopsis[] =
    "usage: pstrain worker [JOB.yaml] --rank R --coordinator tcp://HOST:PORT [--KEY VALUE "
    "...]\n\n"
    "A worker: trains on its partition of the data, pushing gradients to the\n"
    "servers and pulling weights. Worker 0 also evaluates and writes metrics.\n";
static const char node_epilog[] =
    "All processes of a job must run the same job (file and overrides); the\n"
    "coordinator refuses a process whose model or settings differ.\n\n";

static int parse_int(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0 || v > 1000000)
        return -1;
    *out = (int)v;
    return 0;
}

/* Splits "HOST:PORT" (TF_CONFIG's address form) at its last colon. */
static int split_host_port(const char *addr, char *host, size_t cap, int *port)
{
    const char *c = strrchr(addr, ':');
    if (!c || c == addr || (size_t)(c - addr) >= cap || parse_int(c + 1, port) || *port > 65535)
        return -1;
    memcpy(host, addr, (size_t)(c - addr));
    host[c - addr] = '\0';
    return 0;
}

/* A TF_CONFIG list ("ps", "worker", ...): NULL when absent; -1 in *bad when it is not an
 * array of "HOST:PORT" strings. */
static const cJSON *tf_list(const cJSON *cluster, const char *name, int *bad)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(cluster, name), *it;
    if (!l)
        return NULL;
    char host[256];
    int port;
    if (!cJSON_IsArray(l))
        *bad = -1;
    cJSON_ArrayForEach(it, l) if (!cJSON_IsString(it) ||
                                  split_host_port(it->valuestring, host, sizeof host, &port)) *bad =
        -1;
    return l;
}

/* TensorFlow's TF_CONFIG, as Kubeflow's TFJob sets it: {"cluster": {"chief" or
 * "coordinator": ["HOST:PORT"], "ps": [...], "worker": [...]}, "task": {"type": T,
 * "index": I}}. Fills only what the flags and the other variables left unset (they win);
 * the counts become job overrides placed before the environment's (a->tf_over). */
static int tf_config(const char *role, const char *json, node_args *a, pst_err *err)
{
    int rc = -1, bad = 0;
    cJSON *root = cJSON_Parse(json);
    const cJSON *cluster = cJSON_GetObjectItemCaseSensitive(root, "cluster");
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(task, "type");
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(task, "index");
    if (!root || !cJSON_IsObject(root)) {
        pst_err_set(err, PST_ERR_ARG, "TF_CONFIG is not a JSON object");
        goto cleanup;
    }
    if (!cJSON_IsObject(cluster) || !cJSON_IsObject(task) || !cJSON_IsString(type) ||
        !cJSON_IsNumber(index) || index->valuedouble < 0 || index->valuedouble > 1000000 ||
        index->valuedouble != (double)index->valueint) {
        pst_err_set(err, PST_ERR_ARG,
                    "TF_CONFIG needs \"cluster\": {...} and \"task\": {\"type\": \"ps\"|"
                    "\"worker\"|\"chief\", \"index\": N}");
        goto cleanup;
    }
    const char *t = type->valuestring;
    int is_server = !strcmp(role, "server"), is_worker = !strcmp(role, "worker");
    const char *want = is_server ? "ps" : is_worker ? "worker" : "chief";
    if (is_server   ? strcmp(t, "ps")
        : is_worker ? strcmp(t, "worker")
                    : strcmp(t, "chief") && strcmp(t, "coordinator")) {
        pst_err_set(err, PST_ERR_ARG,
                    "TF_CONFIG: task.type is '%s' but this is `pstrain %s` "
                    "(task.type '%s')",
                    t, role, want);
        goto cleanup;
    }
    const cJSON *chief = tf_list(cluster, "chief", &bad);
    if (!chief)
        chief = tf_list(cluster, "coordinator", &bad);
    const cJSON *ps = tf_list(cluster, "ps", &bad), *wk = tf_list(cluster, "worker", &bad);
    if (bad) {
        pst_err_set(err, PST_ERR_ARG, "TF_CONFIG: cluster lists must hold \"HOST:PORT\" strings");
        goto cleanup;
    }
    const cJSON *own = is_server ? ps : is_worker ? wk : chief;
    int idx = index->valueint, nown = own ? cJSON_GetArraySize(own) : 0;
    if (own && idx >= nown) {
        pst_err_set(err, PST_ERR_ARG, "TF_CONFIG: task.index %d but cluster.%s has %d entries", idx,
                    own == chief ? t : want, nown);
        goto cleanup;
    }
    if (!is_server && !is_worker) {
        /* The coordinator listens on its own entry's port, on every interface. */
        char host[256];
        int port;
        if (!a->bind && own &&
            !split_host_port(cJSON_GetArrayItem(own, idx)->valuestring, host, sizeof host, &port)) {
            snprintf(a->bind_buf, sizeof a->bind_buf, "tcp://0.0.0.0:%d", port);
            a->bind = a->bind_buf;
        }
    } else if (a->rank < 0)
        a->rank = idx;
    if (!a->coordinator && chief && cJSON_GetArraySize(chief) > 0) {
        snprintf(a->coord_buf, sizeof a->coord_buf, "tcp://%s",
                 cJSON_GetArrayItem(chief, 0)->valuestring);
        a->coordinator = a->coord_buf;
    }
    if (is_server && own) {
        /* This server's entry is the address the others dial: advertise it, listen on its
         * port on every interface (a pod's own name may not resolve to the pod itself). */
        int port;
        if (!split_host_port(cJSON_GetArrayItem(own, idx)->valuestring, a->adv_buf,
                             sizeof a->adv_buf, &port)) {
            if (!a->advertise)
                a->advertise = a->adv_buf;
            if (!a->port)
                a->port = port;
            if (!a->bind)
                a->bind = "0.0.0.0";
        }
    }
    const cJSON *lists[2] = {ps, wk};
    static const char *const keys[2] = {"cluster.servers", "cluster.workers"};
    for (int k = 0; k < 2; k++)
        if (lists[k]) {
            snprintf(a->tf_val[a->ntf], sizeof a->tf_val[0], "%d", cJSON_GetArraySize(lists[k]));
            a->tf_over[a->ntf] = (cli_override){keys[k], keys[k], a->tf_val[a->ntf]};
            a->ntf++;
        }
    rc = 0;
cleanup:
    cJSON_Delete(root);
    return rc;
}

static int node_env(const char *role, node_args *a, pst_err *err);

/* The role's options and job overrides, then the gaps filled from the environment.
 * Returns -1 to go on, else the exit code (help or a usage error printed). Options that a
 * role does not use are accepted but not listed (help NULL), as before the table. */
static int parse_node(const char *role, int argc, char **argv, node_args *a)
{
    memset(a, 0, sizeof *a);
    a->rank = -1;
    a->ready_fd = -1;
    a->metrics_port = -1;
    const int coord = !strcmp(role, "coordinator"), server = !strcmp(role, "server");
    const cli_opt rank = {.name = "rank",
                          .kind = CLI_INT,
                          .dest = &a->rank,
                          .meta = "R",
                          .lo = 0,
                          .hi = 1000000,
                          .help = coord    ? NULL
                                  : server ? "this process's rank among the servers (from 0)"
                                           : "this process's rank among the workers (from 0)"};
    const cli_opt coordinator = {.name = "coordinator",
                                 .kind = CLI_STR,
                                 .dest = &a->coordinator,
                                 .meta = "ENDPOINT",
                                 .help = coord ? NULL : "the coordinator's address"};
    const cli_opt bind = {
        .name = "bind",
        .kind = CLI_STR,
        .dest = &a->bind,
        .meta = coord ? "ENDPOINT" : "HOST",
        .help = coord    ? "where to listen (default tcp://0.0.0.0:7070; port 0 = any)"
                : server ? "interface to listen on (default 127.0.0.1;\n0.0.0.0 for all)"
                         : NULL};
    const cli_opt advertise = {
        .name = "advertise",
        .kind = CLI_STR,
        .dest = &a->advertise,
        .meta = "HOST",
        .help = server ? "address workers should use (default: the bind\naddress, or the host "
                         "name when binding 0.0.0.0)"
                       : NULL};
    const cli_opt ready = {.name = "ready-fd",
                           .kind = CLI_INT,
                           .dest = &a->ready_fd,
                           .meta = "FD",
                           .lo = 0,
                           .hi = 1000000,
                           .help = coord ? "write the bound endpoint to this descriptor (launchers)"
                                         : NULL};
    const cli_opt port = {.name = "port",
                          .kind = CLI_INT,
                          .dest = &a->port,
                          .meta = "N",
                          .lo = 0,
                          .hi = 65535,
                          .help = "port to listen on (default 0: any free port)"};
    const cli_opt metrics = {
        .name = "metrics-port",
        .kind = CLI_INT,
        .dest = &a->metrics_port,
        .meta = "N",
        .lo = 0,
        .hi = 65535,
        .help = coord ? "serve Prometheus /metrics and the /status JSON on port N\n"
                        "(default: cluster.metrics_port; 0 = off)"
                      : "serve Prometheus /metrics on port N (default:\n"
                        "cluster.metrics_port + 1 + rank; 0 = off)"};
    cli_opt opts[8];
    int n = 0;
    if (coord) {
        opts[n++] = bind;
        opts[n++] = ready;
        opts[n++] = metrics;
        opts[n++] = rank;
        opts[n++] = coordinator;
        opts[n++] = advertise;
    } else {
        opts[n++] = rank;
        opts[n++] = coordinator;
        opts[n++] = bind;
        opts[n++] = advertise;
        if (server) {
            opts[n++] = port;
            opts[n++] = metrics;
        }
        opts[n++] = ready;
    }
    opts[n] = (cli_opt){0};
    char epilog[4096];
    snprintf(epilog, sizeof epilog, "%s%s", node_epilog, env_help);
    const cli_spec spec = {.cmd = role,
                           .synopsis = coord    ? coord_synopsis
                                       : server ? server_synopsis
                                                : worker_synopsis,
                           .opts = opts,
                           .epilog = epilog,
                           .job = 1,
                           .max_pos = 1};
    int ec = cli_parse(&spec, argc, argv, &a->args);
    if (ec >= 0)
        return ec;
    a->job_path = a->args.npos ? a->args.pos[0] : NULL;
    pst_err err = {0};
    if (node_env(role, a, &err)) {
        fprintf(stderr, "pstrain %s: %s\n", role, err.msg);
        cli_args_fini(&a->args);
        return EXIT_USAGE;
    }
    return -1;
}

/* Fills what the flags left unset from the environment and TF_CONFIG; checks that a
 * server or worker has its rank and coordinator. Returns 0, or -1 with err set. */
static int node_env(const char *role, node_args *a, pst_err *err)
{
    const char *e;
    if (a->rank < 0 && ((e = getenv("PSTRAIN_RANK")) || (e = getenv("JOB_COMPLETION_INDEX"))) &&
        parse_int(e, &a->rank))
        return pst_err_set(err, PST_ERR_ARG, "rank from the environment: '%s' is not a rank", e),
               -1;
    if (!a->coordinator) {
        const char *uri = getenv("DMLC_PS_ROOT_URI"), *port = getenv("DMLC_PS_ROOT_PORT");
        if ((e = getenv("PSTRAIN_COORDINATOR")))
            a->coordinator = e;
        else if (uri && port) {
            snprintf(a->coord_buf, sizeof a->coord_buf, "tcp://%s:%s", uri, port);
            a->coordinator = a->coord_buf;
        }
    }
    if (!a->bind && (e = getenv("PSTRAIN_BIND")))
        a->bind = e;
    if (!a->advertise && (e = getenv("PSTRAIN_ADVERTISE")))
        a->advertise = e;
    if (!a->port && strcmp(role, "server") == 0 && (e = getenv("PSTRAIN_PORT")) &&
        (parse_int(e, &a->port) || a->port > 65535))
        return pst_err_set(err, PST_ERR_ARG, "PSTRAIN_PORT: '%s' is not a port", e), -1;
    if ((e = getenv("TF_CONFIG")) && tf_config(role, e, a, err))
        return -1;
    if (strcmp(role, "coordinator") == 0) {
        if (!a->bind) {
            const char *port = getenv("DMLC_PS_ROOT_PORT");
            snprintf(a->bind_buf, sizeof a->bind_buf, "tcp://0.0.0.0:%s", port ? port : "7070");
            a->bind = a->bind_buf;
        }
    } else {
        if (a->rank < 0)
            return pst_err_set(err, PST_ERR_ARG, "%s: --rank is required (or PSTRAIN_RANK)", role),
                   -1;
        if (!a->coordinator)
            return pst_err_set(err, PST_ERR_ARG,
                               "%s: --coordinator is required (or PSTRAIN_COORDINATOR)", role),
                   -1;
        if (!a->bind)
            a->bind = "127.0.0.1";
    }
    return 0;
}

#define ENV_OVERRIDES 8

/* Job overrides from the environment, applied before the command line's: appended to
 * out[*n..]. */
static void env_overrides(cli_override *out, int *n)
{
    static const struct {
        const char *var, *key;
    } vars[ENV_OVERRIDES] = {{"PSTRAIN_NUM_SERVERS", "cluster.servers"},
                             {"DMLC_NUM_SERVER", "cluster.servers"},
                             {"PSTRAIN_NUM_WORKERS", "cluster.workers"},
                             {"DMLC_NUM_WORKER", "cluster.workers"},
                             {"PSTRAIN_SERVER_KEY", "security.server_key"},
                             {"PSTRAIN_SERVER_PUBLIC", "security.server_public"},
                             {"PSTRAIN_CLIENT_KEY", "security.client_key"},
                             {"PSTRAIN_ALLOW", "security.allow"}};
    for (size_t i = 0; i < ENV_OVERRIDES; i++) {
        const char *v = getenv(vars[i].var);
        if (v)
            out[(*n)++] = (cli_override){vars[i].key, vars[i].key, v};
    }
}

/* The Prometheus endpoint of a server or the coordinator, when its port is not 0: the
 * interface it binds for its own traffic (the coordinator's "tcp://HOST:PORT" host). */
static int start_metrics(const char *role, const node_args *a, const cfg_job *job,
                         obs_registry **reg, obs_http **http, const log_ctx *lg, pst_err *err)
{
    int is_server = strcmp(role, "server") == 0;
    int port = a->metrics_port >= 0 ? a->metrics_port
                                    : obs_port_for(job->cluster.metrics_port, is_server, a->rank);
    if (port == 0)
        return PST_OK;
    char host[256];
    snprintf(host, sizeof host, "%s", a->bind);
    if (!is_server) {
        const char *h = strstr(a->bind, "://");
        h = h ? h + 3 : a->bind;
        const char *colon = strrchr(h, ':');
        size_t n = colon ? (size_t)(colon - h) : strlen(h);
        snprintf(host, sizeof host, "%.*s", (int)(n < sizeof host ? n : sizeof host - 1), h);
    }
    if (!(*reg = obs_registry_create(err)) || !(*http = obs_http_start(*reg, host, port, err)))
        return err->code;
    log_info(lg, "metrics on http://%s:%d/metrics%s", host, port, is_server ? "" : " and /status");
    return PST_OK;
}

static int run_node(const char *role, int argc, char **argv, const volatile sig_atomic_t *stop)
{
    node_args a;
    pst_err err = {0};
    int ec = parse_node(role, argc, argv, &a);
    if (ec >= 0)
        return ec;
    cli_override *ov = calloc((size_t)(a.ntf + ENV_OVERRIDES + a.args.nov) + 1, sizeof *ov);
    if (!ov) {
        fprintf(stderr, "pstrain %s: out of memory\n", role);
        cli_args_fini(&a.args);
        return EXIT_FAILURE_RUNTIME;
    }
    int n = 0;
    for (int i = 0; i < a.ntf; i++)
        ov[n++] = a.tf_over[i];
    env_overrides(ov, &n);
    for (int i = 0; i < a.args.nov; i++)
        ov[n++] = a.args.ov[i];
    cfg_job *job = NULL;
    int rc = cli_load_job(&job, a.job_path, ov, n, &err);
    free(ov);
    cli_args_fini(&a.args); /* what is still used points into argv */
    if (rc == PST_OK && (rc = cli_check_security(job, role, &err))) {
        cfg_job_free(job);
        job = NULL;
    }
    if (rc) {
        fprintf(stderr, "pstrain %s: %s\n", role, err.msg);
        return cli_exit_code(rc);
    }
    log_ctx lg;
    int is_coord = strcmp(role, "coordinator") == 0;
    log_init(&lg, role, is_coord ? -1 : a.rank, stderr);
    obs_registry *metrics = NULL;
    obs_http *http = NULL;
    int stopped_by = 0; /* the signal of a stop the process ended with, its own or the job's */
    if (strcmp(role, "worker") != 0 && !(is_coord ? 0 : a.rank >= job->cluster.servers) &&
        (rc = start_metrics(role, &a, job, &metrics, &http, &lg, &err))) {
        /* Before anything joins the job: one line, and no process half started. */
        fprintf(stderr, "pstrain %s: %s\n", role, err.msg);
        obs_registry_destroy(metrics);
        cfg_job_free(job);
        return cli_exit_code(rc);
    }
    if (strcmp(role, "server") == 0) {
        if (a.rank >= job->cluster.servers)
            rc = pst_err_set(&err, PST_ERR_ARG, "--rank %d but the job has %d servers", a.rank,
                             job->cluster.servers);
        else {
            srv_options o = {.rank = a.rank,
                             .coordinator = a.coordinator,
                             .bind_host = a.bind,
                             .advertise = a.advertise,
                             .port = a.port,
                             .job = job,
                             .lg = &lg,
                             .stop = stop,
                             .faults = getenv("PSTRAIN_FAULTS"),
                             .metrics = metrics,
                             .stopped_by = &stopped_by};
            rc = srv_run(&o, &err);
        }
    } else if (strcmp(role, "worker") == 0) {
        if (a.rank >= job->cluster.workers)
            rc = pst_err_set(&err, PST_ERR_ARG, "--rank %d but the job has %d workers", a.rank,
                             job->cluster.workers);
        else {
            openblas_threads(job->train.threads);
            wk_dist_options o = {.rank = a.rank,
                                 .coordinator = a.coordinator,
                                 .job = job,
                                 .lg = &lg,
                                 .stop = stop,
                                 .progress_out = stderr,
                                 .tty = isatty(STDERR_FILENO),
                                 .progress_fd = -1,
                                 .faults = getenv("PSTRAIN_FAULTS"),
                                 .stopped_by = &stopped_by};
            /* pstrain local draws the job's progress from every worker's records: then
             * no worker draws a bar of its own (cmd_local.c). */
            if ((rc = cli_progress_fd(&o.progress_fd, &err)) == PST_OK && o.progress_fd >= 0)
                o.tty = 0;
            pst_test_hooks hooks;
            o.hooks = cli_test_hooks(&hooks, a.rank);
            if (rc == PST_OK)
                rc = wk_dist_run(&o, &err);
        }
    } else {
        coord_options o = {.bind = a.bind,
                           .ready_fd = a.ready_fd,
                           .job = job,
                           .lg = &lg,
                           .stop = stop,
                           .faults = getenv("PSTRAIN_FAULTS"),
                           .metrics = metrics,
                           .stopped_by = &stopped_by};
        rc = coord_run(&o, &err);
    }
    if (rc)
        log_error(&lg, "%s", err.msg);
    obs_http_stop(http);
    obs_registry_destroy(metrics);
    cfg_job_free(job);
    if (rc)
        return cli_exit_code(rc);
    if (*stop || stopped_by) {
        int sig = *stop ? (int)*stop : stopped_by;
        if (sig == HB_STOP_RETRIABLE)
            log_warn(&lg, "stopped: the coordinator ends the job retriably (exit 75; "
                          "continue it with --resume)");
        else
            log_warn(&lg, "stopped by signal %d%s", sig, *stop ? "" : " (the job's stop)");
        return cli_stop_exit_code(sig);
    }
    return EXIT_OK;
}

int cmd_server(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    return run_node("server", argc, argv, stop);
}

int cmd_worker(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    return run_node("worker", argc, argv, stop);
}

int cmd_coordinator(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    return run_node("coordinator", argc, argv, stop);
}
