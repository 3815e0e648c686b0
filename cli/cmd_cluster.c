/* cli/cmd_cluster.c -- `pstrain coordinator`, `pstrain server`, `pstrain worker`: the
 * processes of a distributed job, each started by hand, by `pstrain local`, by a cluster
 * script or by Kubernetes. Settings come from flags, else from environment variables
 * (PSTRAIN_*, and the names ps-lite and Kubernetes users already set). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"
#include "ps/coord.h"
#include "ps/server.h"
#include "worker/dist.h"

typedef struct {
    const char *job_path;
    int rank;               /* -1: not given */
    const char *coordinator;
    const char *bind;
    const char *advertise;
    int ready_fd;
    char *rest[256];        /* job overrides */
    int nrest;
    char coord_buf[300];
    char bind_buf[300];
} node_args;

static const char env_help[] =
    "environment (flags win):\n"
    "  PSTRAIN_RANK, JOB_COMPLETION_INDEX (Kubernetes Indexed Job)      --rank\n"
    "  PSTRAIN_COORDINATOR, or DMLC_PS_ROOT_URI + DMLC_PS_ROOT_PORT      --coordinator\n"
    "  PSTRAIN_BIND                                                      --bind\n"
    "  PSTRAIN_ADVERTISE                                                 --advertise\n"
    "  PSTRAIN_NUM_SERVERS or DMLC_NUM_SERVER, PSTRAIN_NUM_WORKERS or DMLC_NUM_WORKER\n"
    "                                                   --cluster.servers, --cluster.workers\n"
    "  PSTRAIN_LOG=debug|info|warn|error\n";

static void node_usage(const char *role, FILE *f)
{
    if (strcmp(role, "coordinator") == 0)
        fprintf(f,
                "usage: pstrain coordinator [JOB.yaml] [--bind ENDPOINT] [--ready-fd FD] "
                "[--KEY VALUE ...]\n\n"
                "The rendezvous of a distributed job: waits for cluster.servers servers and\n"
                "cluster.workers workers, sends them the shard map, follows the workers and\n"
                "stops the servers when all workers are done. Holds no parameters.\n\n"
                "  --bind ENDPOINT   where to listen (default tcp://0.0.0.0:7070; port 0 = any)\n"
                "  --ready-fd FD     write the bound endpoint to this descriptor (launchers)\n");
    else
        fprintf(f,
                "usage: pstrain %s [JOB.yaml] --rank R --coordinator tcp://HOST:PORT [--KEY VALUE "
                "...]\n\n%s\n\n"
                "  --rank R               this process's rank among the %ss (from 0)\n"
                "  --coordinator ENDPOINT the coordinator's address\n"
                "%s",
                role,
                strcmp(role, "server") == 0
                    ? "A parameter server: holds a shard of the model, applies the optimizer to\n"
                      "pushed gradients and answers pulls under the job's consistency model."
                    : "A worker: trains on its partition of the data, pushing gradients to the\n"
                      "servers and pulling weights. Worker 0 also evaluates and writes metrics.",
                role,
                strcmp(role, "server") == 0
                    ? "  --bind HOST            interface to listen on (default 127.0.0.1;\n"
                      "                         0.0.0.0 for all)\n"
                      "  --advertise HOST       address workers should use (default: the bind\n"
                      "                         address, or the host name when binding 0.0.0.0)\n"
                    : "");
    fprintf(f, "\nAll processes of a job must run the same job (file and overrides); the\n"
               "coordinator refuses a process whose model or settings differ.\n\n%s\n%s",
            env_help, cli_override_help);
}

static int parse_int(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0 || v > 1000000)
        return -1;
    *out = (int)v;
    return 0;
}

/* Splits argv into the node's own flags and job overrides, then fills gaps from the
 * environment. Returns 0, 1 for --help, or -1 with err set. */
static int parse_node(const char *role, int argc, char **argv, node_args *a, pst_err *err)
{
    memset(a, 0, sizeof *a);
    a->rank = -1;
    a->ready_fd = -1;
    int i = 0;
    if (argc > 0 && argv[0][0] != '-')
        a->job_path = argv[i++];
    for (; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help"))
            return 1;
        int takes = !strcmp(f, "--rank") || !strcmp(f, "--coordinator") ||
                    !strcmp(f, "--bind") || !strcmp(f, "--advertise") || !strcmp(f, "--ready-fd");
        if (takes && !v)
            return pst_err_set(err, PST_ERR_ARG, "%s needs a value", f), -1;
        if (!strcmp(f, "--rank")) {
            if (parse_int(v, &a->rank))
                return pst_err_set(err, PST_ERR_ARG, "--rank: '%s' is not a rank", v), -1;
        } else if (!strcmp(f, "--ready-fd")) {
            if (parse_int(v, &a->ready_fd))
                return pst_err_set(err, PST_ERR_ARG, "--ready-fd: '%s' is not a descriptor", v),
                       -1;
        } else if (!strcmp(f, "--coordinator"))
            a->coordinator = v;
        else if (!strcmp(f, "--bind"))
            a->bind = v;
        else if (!strcmp(f, "--advertise"))
            a->advertise = v;
        else {
            if (a->nrest == (int)(sizeof a->rest / sizeof a->rest[0]))
                return pst_err_set(err, PST_ERR_ARG, "too many arguments"), -1;
            a->rest[a->nrest++] = argv[i];
            continue;
        }
        i++;
    }
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

/* Job overrides from the environment, applied before the command line's. */
static int env_overrides(char **out, char (*buf)[64], int *n)
{
    static const struct {
        const char *var, *key;
    } vars[] = {{"PSTRAIN_NUM_SERVERS", "cluster.servers"}, {"DMLC_NUM_SERVER", "cluster.servers"},
                {"PSTRAIN_NUM_WORKERS", "cluster.workers"}, {"DMLC_NUM_WORKER", "cluster.workers"}};
    int k = 0;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i].var);
        if (!v)
            continue;
        snprintf(buf[k], 64, "--%s=%s", vars[i].key, v);
        out[(*n)++] = buf[k++];
    }
    return k;
}

static int run_node(const char *role, int argc, char **argv, const volatile sig_atomic_t *stop)
{
    node_args a;
    pst_err err = {0};
    int p = parse_node(role, argc, argv, &a, &err);
    if (p == 1) {
        node_usage(role, stdout);
        return EXIT_OK;
    }
    if (p < 0) {
        fprintf(stderr, "pstrain %s: %s\n", role, err.msg);
        return EXIT_USAGE;
    }
    char *args[300];
    char envbuf[4][64];
    int n = 0;
    env_overrides(args, envbuf, &n);
    for (int i = 0; i < a.nrest; i++)
        args[n++] = a.rest[i];
    cfg_job *job = NULL;
    int rc = cli_load_job(&job, a.job_path, n, args, &err);
    if (rc) {
        fprintf(stderr, "pstrain %s: %s\n", role, err.msg);
        return cli_exit_code(rc);
    }
    log_ctx lg;
    int is_coord = strcmp(role, "coordinator") == 0;
    log_init(&lg, role, is_coord ? -1 : a.rank, stderr);
    if (strcmp(role, "server") == 0) {
        if (a.rank >= job->cluster.servers)
            rc = pst_err_set(&err, PST_ERR_ARG, "--rank %d but the job has %d servers", a.rank,
                             job->cluster.servers);
        else {
            srv_options o = {.rank = a.rank, .coordinator = a.coordinator, .bind_host = a.bind,
                             .advertise = a.advertise, .job = job, .lg = &lg, .stop = stop};
            rc = srv_run(&o, &err);
        }
    } else if (strcmp(role, "worker") == 0) {
        if (a.rank >= job->cluster.workers)
            rc = pst_err_set(&err, PST_ERR_ARG, "--rank %d but the job has %d workers", a.rank,
                             job->cluster.workers);
        else {
            openblas_threads(job->train.threads);
            wk_dist_options o = {.rank = a.rank, .coordinator = a.coordinator, .job = job,
                                 .lg = &lg, .stop = stop, .progress_out = stderr,
                                 .tty = isatty(STDERR_FILENO)};
            /* Test hook: make one worker slow (tests of the staleness bound). */
            const char *slow = getenv("PSTRAIN_TEST_SLOW_WORKER");
            const char *ms = getenv("PSTRAIN_TEST_STEP_DELAY_MS");
            if (slow && ms && atoi(slow) == a.rank)
                o.step_delay_ms = atoi(ms);
            /* Test hook: stop (SIGTERM) after this many steps, as `pstrain train` does. */
            const char *stop_after = getenv("PSTRAIN_TEST_STOP_AFTER_STEPS");
            if (stop_after)
                o.stop_after_clock = atoll(stop_after);
            rc = wk_dist_run(&o, &err);
        }
    } else {
        coord_options o = {.bind = a.bind, .ready_fd = a.ready_fd, .job = job, .lg = &lg,
                           .stop = stop};
        rc = coord_run(&o, &err);
    }
    if (rc)
        log_error(&lg, "%s", err.msg);
    cfg_job_free(job);
    if (rc)
        return cli_exit_code(rc);
    if (*stop) {
        log_warn(&lg, "stopped by signal %d", (int)*stop);
        return cli_stop_exit_code(*stop);
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
