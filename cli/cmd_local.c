/* cli/cmd_local.c -- `pstrain local`: the whole job on this machine, one OS process per
 * role, started from this same binary and supervised until every one has ended.
 *
 *   pstrain coordinator [JOB] --bind tcp://127.0.0.1:0 --ready-fd 3 [overrides]
 *                                                                    -> writes "EP\n" to fd 3
 *   pstrain server [JOB] --rank i --coordinator EP [overrides]      i = 0..S-1
 *   pstrain worker [JOB] --rank i --coordinator EP [overrides]      i = 0..W-1
 *   or, for a library job (model.external), the program after "--":
 *   PSTRAIN_RANK=i PSTRAIN_COORDINATOR=EP PROGRAM [ARGS]            i = 0..W-1
 *
 * This file is the launch plan: which processes, with which command lines and
 * environment. Starting, watching, restarting and stopping them is cli/supervise.c; the
 * one progress line drawn from the workers' records is cli/progress.c. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "cli/supervise.h"
#include "ckpt/ckpt.h"
#include "base/fs.h"
#include "base/log.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_GRACE_S 10.0
#define DEFAULT_READY_S 30.0
#define PLAIN_EVERY_MS CLI_VIEW_PLAIN_EVERY_MS

extern char **environ;

#define COORD_ENV "PSTRAIN_COORDINATOR="
#define RANK_ENV "PSTRAIN_RANK="

/* The processes of the job and their command lines. */
typedef struct {
    cli_sup_child *kids; /* (nkids): [0] coordinator, [1..S] servers, [S+1..S+W] workers */
    int nkids;
    char (*names)[32];    /* (nkids) the kids' names */
    char (*ranks)[16];    /* (nkids) their --rank values */
    char **argvs;         /* one block holding every child's argv */
    char **env_worker;    /* environ with PSTRAIN_PROGRESS_FD=3, for the workers */
    char **env_prog;      /* (W) blocks: environ + rank + coordinator, for program workers */
    char (*rank_env)[32]; /* (W) "PSTRAIN_RANK=i" */
    /* "PSTRAIN_COORDINATOR=EP": the endpoint (ep) is filled before the others start. */
    char coord_env[sizeof COORD_ENV - 1 + 256];
    char *ep; /* coord_env + strlen(COORD_ENV) */
} local_plan;

/* The help above the options list; %g fields are filled by local_synopsis. */
static const char synopsis_fmt[] =
    "usage: pstrain local [JOB.yaml] [--servers S] [--workers W] [--KEY VALUE ...]\n"
    "                     [-- PROGRAM [ARGS ...]]\n"
    "\n"
    "Runs the whole job on this machine, as separate processes of this binary, and\n"
    "supervises them until all have ended:\n"
    "  pstrain coordinator [JOB.yaml] --bind tcp://127.0.0.1:0 --ready-fd 3   1 process\n"
    "  pstrain server [JOB.yaml] --rank i --coordinator ENDPOINT    i = 0..S-1\n"
    "  pstrain worker [JOB.yaml] --rank i --coordinator ENDPOINT    i = 0..W-1\n"
    "A library job (model.external: the workers are programs using libpstrain)\n"
    "names its workers' program after \"--\": each is started as\n"
    "  PSTRAIN_RANK=i PSTRAIN_COORDINATOR=ENDPOINT PROGRAM [ARGS ...]\n"
    "(PROGRAM found in PATH; the options before \"--\" go to the coordinator and\n"
    "servers only, the program reads the job file it is given itself).\n"
    "The coordinator starts first; the servers and workers start once it has written\n"
    "its endpoint (it has %g s). S and W are the job's cluster.servers and\n"
    "cluster.workers (default 2 and 2). Every option other than --help is passed\n"
    "unchanged to every process; it is checked here first, so a typo fails once,\n"
    "before anything starts. Without JOB.yaml it runs the default job.\n"
    "\n"
    "Logs: every process writes to this stderr; each line names its process\n"
    "(coordinator, server[0], worker[1], ...); this launcher's lines say \"local\".\n"
    "Progress: on a terminal, one line for the whole job (epoch, steps of all\n"
    "workers, loss, samples/s, ETA), redrawn in place below the logs; otherwise a\n"
    "plain \"progress:\" log line at each epoch and every %g s.\n"
    "\n"
    "Exit status:\n"
    "  0        the job finished: every process exited 0, except workers that\n"
    "           failed with a retriable status (75, or killed by a signal) and\n"
    "           were left behind (named in the last line), and processes still\n"
    "           running %g s after the coordinator finished (paused, cut off), which\n"
    "           are then stopped\n"
    "  N        the coordinator failed with code N, or else the first process to\n"
    "           fail exited with code N, or 128+SIG if signal SIG killed it; all\n"
    "           others are then sent SIGTERM, and SIGKILL if still running %g s later\n"
    "Restarts: a worker or server that fails with a retriable status is started again\n"
    "(same rank; it rejoins the job: a server recovers its shard from its newest\n"
    "checkpoint) up to cluster.max_restarts times each. After that, the job goes on\n"
    "without a worker (the coordinator drops it after cluster.heartbeat_timeout_s);\n"
    "a server's failure ends the job. One stopped (SIGSTOP) past\n"
    "cluster.heartbeat_timeout_s is fenced by the coordinator, killed and started again\n"
    "the same way.\n"
    "A worker that exits with any other code (1: the run failed; 2, 3, 4: bad\n"
    "configuration, data or files; 130/143: stopped) ends the job.\n"
    "  1        a process could not be started, or the coordinator reported no\n"
    "           endpoint in time\n"
    "  2        bad option or job file\n"
    "  130/143  stopped by SIGINT (Ctrl-C) / SIGTERM: every process is sent SIGTERM\n"
    "           and SIGKILL %g s later; a second Ctrl-C sends SIGKILL at once\n"
    "No process outlives the launcher: should it be killed, each gets SIGTERM.\n"
    "\n"
    "Environment: PSTRAIN_LOG=debug|info|warn|error. For tests only:\n"
    "PSTRAIN_LOCAL_EXE (program to start instead of this binary),\n"
    "PSTRAIN_LOCAL_GRACE_S (the %g s before SIGKILL and after the job),\n"
    "PSTRAIN_LOCAL_READY_TIMEOUT_S (the %g s for the endpoint).\n";

/* The synopsis with the defaults filled in, into buf. */
static const char *local_synopsis(char *buf, size_t n)
{
    snprintf(buf, n, synopsis_fmt, DEFAULT_READY_S, PLAIN_EVERY_MS / 1000.0, DEFAULT_GRACE_S,
             DEFAULT_GRACE_S, DEFAULT_GRACE_S, DEFAULT_GRACE_S, DEFAULT_READY_S);
    return buf;
}

/* Seconds from environment variable NAME (default def) as milliseconds, at least 1.
 * Returns -1 if it is set but not a positive number. */
static int env_ms(const char *name, double def, long *ms)
{
    const char *s = getenv(name);
    double v = def;
    if (s) {
        char *end;
        errno = 0;
        v = strtod(s, &end);
        if (end == s || *end != '\0' || errno || !isfinite(v) || v <= 0 || v > 1e6)
            return -1;
    }
    *ms = (long)ceil(v * 1000.0);
    return 0;
}

/* Fills the children's names and argv: "pstrain ROLE [JOB] <role flags> <overrides>".
 * Returns -1 when out of memory. */
static int plan_init(local_plan *p, const char *path, char **rest, int nrest, int servers,
                     int workers, char **prog)
{
    p->nkids = 1 + servers + workers;
    size_t stride = (size_t)nrest + 10; /* argv0, role, path, 6 role flags, NULL */
    p->kids = calloc((size_t)p->nkids, sizeof *p->kids);
    p->names = calloc((size_t)p->nkids, sizeof *p->names);
    p->ranks = calloc((size_t)p->nkids, sizeof *p->ranks);
    p->argvs = calloc((size_t)p->nkids, stride * sizeof *p->argvs);
    size_t n = 0;
    while (environ[n])
        n++;
    p->env_worker = calloc(n + 2, sizeof *p->env_worker);
    p->env_prog = calloc((size_t)workers * (n + 3), sizeof *p->env_prog);
    p->rank_env = calloc((size_t)workers, sizeof *p->rank_env);
    if (!p->kids || !p->names || !p->ranks || !p->argvs || !p->env_worker || !p->env_prog ||
        !p->rank_env)
        return -1;
    memcpy(p->coord_env, COORD_ENV, sizeof COORD_ENV);
    p->ep = p->coord_env + sizeof COORD_ENV - 1;
    /* The workers' environment: ours, with the progress descriptor named. */
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
        if (strncmp(environ[j], CLI_PROGRESS_ENV "=", sizeof CLI_PROGRESS_ENV) != 0)
            p->env_worker[k++] = environ[j];
    p->env_worker[k] = (char *)CLI_PROGRESS_ENV "=" STR(CLI_SUP_FD);
    for (int i = 0; i < p->nkids; i++) {
        cli_sup_child *c = &p->kids[i];
        char **a = c->argv = p->argvs + (size_t)i * stride;
        const char *role = i == 0 ? "coordinator" : i <= servers ? "server" : "worker";
        int rank = i == 0 ? -1 : i <= servers ? i - 1 : i - 1 - servers;
        if (rank < 0)
            snprintf(p->names[i], sizeof p->names[i], "%s", role);
        else
            snprintf(p->names[i], sizeof p->names[i], "%s[%d]", role, rank);
        snprintf(p->ranks[i], sizeof p->ranks[i], "%d", rank);
        c->name = p->names[i];
        c->progress = c->leave_behind = i > servers;
        c->envp = c->progress ? p->env_worker : NULL;
        if (prog && i > servers) {
            /* A library program: its own command line; the rank and endpoint come in
             * its environment, which pst_join reads (include/pstrain/pstrain.h). It
             * writes no progress records. */
            char **e = p->env_prog + (size_t)rank * (n + 3);
            size_t m = 0;
            for (size_t j = 0; j < n; j++)
                if (strncmp(environ[j], RANK_ENV, sizeof RANK_ENV - 1) != 0 &&
                    strncmp(environ[j], COORD_ENV, sizeof COORD_ENV - 1) != 0)
                    e[m++] = environ[j];
            snprintf(p->rank_env[rank], sizeof p->rank_env[rank], RANK_ENV "%d", rank);
            e[m++] = p->rank_env[rank];
            e[m++] = p->coord_env;
            c->exe = prog[0];
            c->argv = prog;
            c->envp = e;
            c->progress = 0;
            continue;
        }
        int m = 0;
        a[m++] = (char *)"pstrain";
        a[m++] = (char *)role;
        if (path)
            a[m++] = (char *)path;
        if (rank < 0) {
            /* Loopback and a port the kernel picks: jobs on one machine never collide. */
            a[m++] = (char *)"--bind";
            a[m++] = (char *)"tcp://127.0.0.1:0";
            a[m++] = (char *)"--ready-fd";
            a[m++] = (char *)STR(CLI_SUP_FD);
        } else {
            a[m++] = (char *)"--rank";
            a[m++] = p->ranks[i];
            a[m++] = (char *)"--coordinator";
            a[m++] = p->ep; /* filled in before any server or worker starts */
        }
        for (int j = 0; j < nrest; j++)
            a[m++] = rest[j];
        a[m] = NULL;
    }
    return 0;
}

static void plan_fini(local_plan *p)
{
    free(p->kids);
    free(p->names);
    free(p->ranks);
    free(p->argvs);
    free(p->env_worker);
    free(p->env_prog);
    free(p->rank_env);
}

/* The run's folder, claimed before any process starts (cli_run_claim): the checkpoints
 * there that the servers would not set aside -- a `pstrain train` run's -- are. While
 * another job holds the folder nothing is moved; the coordinator then refuses the job
 * with the holder's name. */
static int claim_folder(const cfg_job *job, pst_err *err)
{
    fs_lock lock = {-1};
    log_ctx lg;
    log_init(&lg, "local", -1, stderr);
    pst_err busy = {0};
    if (fs_lock_dir(&lock, job->output.dir, "pstrain local", &busy) != PST_OK)
        return PST_OK;
    int rc = cli_run_claim(job, job->cluster.servers, &lg, err);
    fs_unlock(&lock);
    return rc;
}

/* What the end of the job needs of it (the job itself is freed before the run). */
typedef struct {
    int sparse;      /* the model has embedding tables */
    int checkpoints; /* checkpoint.enabled: the servers write their final checkpoints */
    int servers;
    char ckdir[4096];  /* checkpoint.dir */
    char tables[4300]; /* output.dir/tables.safetensors */
} local_end;

static void end_init(local_end *e, const cfg_job *job)
{
    e->sparse = !cfg_job_is_library(job) && cfg_model_is_sparse(&job->model.spec);
    e->checkpoints = job->checkpoint.enabled;
    e->servers = job->cluster.servers;
    cfg_checkpoint_dir(job, e->ckdir, sizeof e->ckdir);
    char model[4200];
    snprintf(model, sizeof model, "%s/model.safetensors", job->output.dir);
    cli_tables_path(model, e->tables, sizeof e->tables);
}

/* The clock of every server's final checkpoint: each one's newest, which are all one
 * (*clock -1 and a warning in why when not: a server did not write its final one). */
static int final_clock(const local_end *e, int64_t *clock, char *why, size_t cap, pst_err *err)
{
    *clock = -1;
    for (int s = 0; s < e->servers; s++) {
        char prefix[48];
        int64_t c;
        int n = 0, rc;
        snprintf(prefix, sizeof prefix, "server-%d-clock-", s);
        if ((rc = ckpt_list(e->ckdir, prefix, ".safetensors", &c, 1, &n, err)))
            return rc;
        if (n == 0 || (s > 0 && c != *clock)) {
            if (n == 0)
                snprintf(why, cap, "server %d has no checkpoint in %s", s, e->ckdir);
            else
                snprintf(why, cap,
                         "server %d's newest checkpoint in %s is of clock %lld, server 0's of "
                         "clock %lld",
                         s, e->ckdir, (long long)c, (long long)*clock);
            *clock = -1;
            return PST_OK;
        }
        *clock = c;
    }
    return PST_OK;
}

/* After a distributed sparse run that finished: the tables beside worker 0's final model,
 * output.dir/tables.safetensors, merged from the servers' final checkpoints (at SHUTDOWN
 * each writes its shard and tables of the end-of-run clock, after worker 0's final pull:
 * no update comes after the last step, so they are the weights and rows of its model).
 * Without them (checkpoint.enabled off, a server's final checkpoint missing) a tables file
 * of an earlier run there is removed, so that eval never pairs the model with other rows.
 * Returns an exit code. */
static int end_tables(const local_end *e, log_ctx *lg)
{
    pst_err err = {0};
    char why[4400] = "checkpoint.enabled is off: the servers wrote no final checkpoint";
    int64_t clock = -1;
    int rc = e->checkpoints ? final_clock(e, &clock, why, sizeof why, &err) : PST_OK;
    if (!rc && clock >= 0 &&
        !(rc = cli_merge_tables(e->ckdir, e->servers, clock, e->tables, &err))) {
        log_info(
            lg, "embedding tables of clock %lld, merged from the %d servers' final checkpoints: %s",
            (long long)clock, e->servers, e->tables);
        return EXIT_OK;
    }
    if (rc) {
        log_error(lg, "writing the model's embedding tables: %s", err.msg);
        return cli_exit_code(rc);
    }
    if (unlink(e->tables) == 0)
        log_warn(lg, "removed %s, of an earlier run", e->tables);
    log_warn(lg, "no embedding tables beside the model (%s); `pstrain eval` cannot read it", why);
    return EXIT_OK;
}

int cmd_local(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    /* --metrics-port N is each process's own port for `pstrain server` and `coordinator`;
     * here, where all share one host, it is the job's base port (cluster.metrics_port):
     * the coordinator on N, server r on N + 1 + r. The children get it as that key. */
    const cli_opt opts[] = {
        {.name = "metrics-port",
         .kind = CLI_INT,
         .meta = "N",
         .lo = 0,
         .hi = 65535,
         .key = "cluster.metrics_port",
         .help = "Prometheus endpoints: the coordinator's /metrics and /status\non port N, "
                 "server r's /metrics on N + 1 + r (the same as\n--cluster.metrics_port N; "
                 "docs/observability.md)"},
        {0}};
    char synopsis[4096];
    const cli_spec spec = {.cmd = "local",
                           .synopsis = local_synopsis(synopsis, sizeof synopsis),
                           .opts = opts,
                           .job = 1,
                           .max_pos = 1};
    /* A library job's workers: the program after the first "--". */
    char **prog = NULL;
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--") == 0) {
            prog = argv + i + 1;
            argc = i;
            break;
        }
    if (prog && !prog[0]) {
        fprintf(stderr, "pstrain local: no program after \"--\"\n");
        return EXIT_USAGE;
    }
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    const char *path = args.npos ? args.pos[0] : NULL;

    /* Load the job here too: for the counts, and so that a bad option fails once,
     * before any process starts. */
    pst_err err = {0};
    cfg_job *job = NULL;
    int rc = cli_load_job(&job, path, args.ov, args.nov, &err);
    int loaded = rc == PST_OK;
    if (rc == PST_OK && !prog != !cfg_job_is_library(job))
        rc = pst_err_set(&err, PST_ERR_ARG,
                         prog ? "a program after \"--\" is for a library job "
                                "(model.external); this job's workers are pstrain's own"
                              : "the job's model is external (model.external): give its "
                                "workers' program after \"--\" (pstrain local --help)");
    if (rc == PST_OK)
        rc = cli_check_security(job, NULL, &err);
    if (rc == PST_OK)
        rc = claim_folder(job, &err);
    if (rc && loaded)
        cfg_job_free(job);
    if (rc) {
        fprintf(stderr, "pstrain local: %s\n", err.msg);
        cli_args_fini(&args);
        return cli_exit_code(rc);
    }
    const int servers = job->cluster.servers, workers = job->cluster.workers;
    /* A process stopped past the heartbeat timeout has been fenced by the coordinator
     * (ps/coord_members.c): one second later it is killed and replaced. */
    cli_sup_options so = {.max_restarts = job->cluster.max_restarts,
                          .hang_ms = (job->cluster.heartbeat_timeout_s + 1) * 1000L};
    local_end end;
    end_init(&end, job);
    cfg_job_free(job);
    if (servers < 1 || workers < 1 || servers > INT_MAX / 2 - 1 || workers > INT_MAX / 2 - 1) {
        fprintf(stderr,
                "pstrain local: the job has %d server(s) and %d worker(s); it needs at "
                "least one of each\n",
                servers, workers);
        cli_args_fini(&args);
        return EXIT_USAGE;
    }
    if (env_ms("PSTRAIN_LOCAL_GRACE_S", DEFAULT_GRACE_S, &so.grace_ms) ||
        env_ms("PSTRAIN_LOCAL_READY_TIMEOUT_S", DEFAULT_READY_S, &so.ready_ms)) {
        fprintf(stderr, "pstrain local: PSTRAIN_LOCAL_GRACE_S and PSTRAIN_LOCAL_READY_TIMEOUT_S "
                        "must be positive numbers of seconds\n");
        cli_args_fini(&args);
        return EXIT_USAGE;
    }
    const char *exe = getenv("PSTRAIN_LOCAL_EXE");
    so.exe = exe && exe[0] ? exe : "/proc/self/exe";

    local_plan plan;
    memset(&plan, 0, sizeof plan);
    cli_view *view = NULL;
    int code;
    if (plan_init(&plan, path, args.raw, args.nraw, servers, workers, prog) != 0) {
        fprintf(stderr, "pstrain local: out of memory for %d processes\n", plan.nkids);
        code = EXIT_FAILURE_RUNTIME;
    } else if (!(view = cli_view_create(workers, &err))) {
        fprintf(stderr, "pstrain local: cannot set up the progress pipes: %s\n", err.msg);
        code = EXIT_FAILURE_RUNTIME;
    } else {
        log_ctx lg;
        FILE *logf = cli_view_log_stream(view);
        log_init(&lg, "local", -1, logf ? logf : stderr);
        cli_view_set_log(view, &lg);
        so.lg = &lg;
        so.view = view;
        so.kids = plan.kids;
        so.nkids = plan.nkids;
        so.ep = plan.ep;
        so.epcap = sizeof plan.coord_env - (sizeof COORD_ENV - 1);
        log_info(&lg, "starting coordinator, %d server(s) and %d worker(s)", servers, workers);
        code = cli_sup_run(&so, stop);
        if (code == EXIT_OK && end.sparse)
            code = end_tables(&end, &lg);
    }
    cli_view_destroy(view);
    plan_fini(&plan);
    cli_args_fini(&args);
    return code;
}
