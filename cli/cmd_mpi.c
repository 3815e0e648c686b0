/* cli/cmd_mpi.c -- `pstrain mpi`: the processes of a distributed job started by mpirun.
 *
 *   mpirun -np N pstrain mpi [JOB.yaml] [--servers S] [--KEY VALUE ...]          (SPMD)
 *   mpirun -np 1 pstrain mpi --role coordinator : -np S pstrain mpi --role server \
 *        : -np W pstrain mpi --role worker                                         (MPMD)
 *
 * MPI only starts the processes and tells them who they are; it carries no training
 * traffic. Every rank checks its own arguments, then one MPI_Allgather shares each rank's
 * verdict, role and host, so that a bad flag on any rank stops all of them at once instead
 * of leaving the others waiting on the coordinator. Rank 0 (or the coordinator rank) binds
 * the coordinator to a port the kernel chooses and MPI_Bcast sends "tcp://HOST:PORT" to the
 * others; after that the job runs exactly as `pstrain local` runs it, over ZeroMQ, and the
 * only MPI call left is MPI_Finalize. Each rank exits with its role's exit code; mpirun
 * returns non-zero when any rank does. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "cli/cli.h"
#include "base/log.h"
#include "ps/coord.h"
#include "ps/server.h"
#include "worker/dist.h"

enum { ROLE_ANY = -1, ROLE_COORD = 0, ROLE_SERVER = 1, ROLE_WORKER = 2 };
static const char *const role_names[] = {"coordinator", "server", "worker"};

#define HOST_LEN 256
#define EP_LEN 300
/* How long rank 0 waits for its own coordinator to bind: a local bind, so seconds would
 * already mean something is wrong. */
#define BIND_WAIT_MS 30000

typedef struct {
    const char *job_path;
    int role;              /* ROLE_ANY: chosen by rank (SPMD) */
    const char *bind;      /* NULL: 127.0.0.1 on one host, 0.0.0.0 across hosts */
    const char *advertise; /* NULL: the bind address, or the host name across hosts */
    cli_args args;         /* the job file and overrides */
} mpi_args;

/* The launch as every rank works it out (agree_roles). */
typedef struct {
    int counts[3];       /* ranks per role */
    int one_host;        /* every rank on this host */
    int role, role_rank; /* this rank's role, and its rank among that role's ranks */
    int coord_rank;      /* the world rank of the coordinator */
} mpi_plan;

/* What every rank tells every other before anything starts. */
typedef struct {
    int code; /* this rank's exit code so far: 0 = ready */
    int role;
    int servers; /* cluster.servers of its job (SPMD: all must agree) */
    char host[HOST_LEN];
} rank_info;

static const char mpi_synopsis[] =
    "usage: mpirun -np N pstrain mpi [JOB.yaml] [--servers S] [--KEY VALUE ...]\n"
    "       mpirun -np 1 pstrain mpi [JOB.yaml] --role coordinator \\\n"
    "            : -np S pstrain mpi [JOB.yaml] --role server \\\n"
    "            : -np W pstrain mpi [JOB.yaml] --role worker\n"
    "\n"
    "Runs a distributed job as the ranks of an MPI launch (mpirun, a hostfile, a batch\n"
    "scheduler). Without --role, rank 0 is the coordinator, ranks 1..S the servers and\n"
    "the other N-1-S ranks the workers (S = cluster.servers, default 2); with --role\n"
    "on every rank, the counts are how many ranks chose each role. cluster.servers and\n"
    "cluster.workers are set from those counts whatever the job file says. The ranks\n"
    "exchange only the coordinator's address over MPI; training traffic is ZeroMQ.\n"
    "Without JOB.yaml it runs the default job.\n";
static const char mpi_epilog[] =
    "Exit status: each rank exits with its role's code (see pstrain --help of\n"
    "coordinator, server, worker; 143 when stopped by SIGTERM); a bad flag or job\n"
    "file on any rank makes every rank exit with that rank's code before anything\n"
    "starts.\n";

/* Parses the arguments into a (job overrides in a->args). Returns PST_OK,
 * CLI_ARGS_HELP (help printed), or PST_ERR_ARG with err set. */
static int parse_mpi(int argc, char **argv, mpi_args *a, pst_err *err)
{
    memset(a, 0, sizeof *a);
    a->role = ROLE_ANY;
    const cli_opt opts[] = {
        {.name = "role",
         .kind = CLI_CHOICE,
         .dest = &a->role,
         .meta = "R",
         .choices = "coordinator|server|worker",
         .help = "coordinator, server or worker (MPMD launches)"},
        {.name = "bind",
         .kind = CLI_STR,
         .dest = &a->bind,
         .meta = "HOST",
         .help = "interface the coordinator and servers listen on (default\n127.0.0.1 when all "
                 "ranks share one host, else 0.0.0.0)"},
        {.name = "advertise",
         .kind = CLI_STR,
         .dest = &a->advertise,
         .meta = "HOST",
         .help = "address other ranks use to reach this rank (default: the\nbind address, or "
                 "this host's name when binding 0.0.0.0)"},
        {0}};
    const cli_spec spec = {.cmd = "mpi",
                           .synopsis = mpi_synopsis,
                           .opts = opts,
                           .epilog = mpi_epilog,
                           .job = 1,
                           .max_pos = 1};
    int rc = cli_args_parse(&spec, argc, argv, &a->args, err);
    if (rc == CLI_ARGS_HELP)
        cli_args_usage(&spec, stdout);
    a->job_path = a->args.npos ? a->args.pos[0] : NULL;
    return rc;
}

/* The coordinator runs in a thread of rank 0 so that the main thread -- the only one that
 * calls MPI -- can publish its endpoint, which it learns through ready_fd. */
typedef struct {
    coord_options o;
    pst_err err;
    int rc;
    atomic_int done;
} coord_thread;

static void *coord_main(void *p)
{
    coord_thread *t = p;
    t->rc = coord_run(&t->o, &t->err);
    atomic_store(&t->done, 1);
    return NULL;
}

/* Reads the endpoint line from fd until the coordinator writes it or ends without.
 * Returns 0 with ep filled, or -1. */
static int read_endpoint(int fd, coord_thread *t, char *ep, size_t n)
{
    size_t len = 0;
    for (int waited = 0; waited < BIND_WAIT_MS;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 100);
        if (pr < 0 && errno != EINTR)
            return -1;
        if (pr > 0) {
            ssize_t r = read(fd, ep + len, n - 1 - len);
            if (r <= 0)
                return -1;
            len += (size_t)r;
            ep[len] = '\0';
            char *nl = strchr(ep, '\n');
            if (nl) {
                *nl = '\0';
                return 0;
            }
            if (len == n - 1)
                return -1;
            continue;
        }
        if (atomic_load(&t->done))
            return -1;
        waited += 100;
    }
    return -1;
}

/* Rank r's role: by position in an SPMD launch, by its --role in an MPMD one. */
static int role_of(const rank_info *all, int r, int spmd, int servers)
{
    if (!spmd)
        return all[r].role;
    return r == 0 ? ROLE_COORD : r <= servers ? ROLE_SERVER : ROLE_WORKER;
}

/* What every rank decides from the same table (so all agree on the roles, or all stop
 * with the same code): this rank's role, its rank among that role's ranks, the counts.
 * Returns 0, or the exit code with why filled. */
static int agree_roles(const rank_info *all, int nranks, int rank, mpi_plan *pl, char *why,
                       size_t whycap)
{
    memset(pl, 0, sizeof *pl);
    int code = EXIT_OK;
    int *counts = pl->counts;
    for (int r = 0; r < nranks && !code; r++)
        if (all[r].code) {
            code = all[r].code;
            snprintf(why, whycap, "rank %d rejected its arguments", r);
        }
    int one_host = 1, spmd = all[0].role == ROLE_ANY;
    for (int r = 0; r < nranks && !code; r++) {
        one_host &= strcmp(all[r].host, all[0].host) == 0;
        if ((all[r].role == ROLE_ANY) != spmd) {
            code = EXIT_USAGE;
            snprintf(why, whycap, "give --role to every rank or to none (rank %d)", r);
        } else if (spmd && all[r].servers != all[0].servers) {
            code = EXIT_USAGE;
            snprintf(why, whycap, "rank %d has %d servers, rank 0 has %d", r, all[r].servers,
                     all[0].servers);
        } else if (!spmd)
            counts[all[r].role]++;
    }
    if (!code && spmd) {
        counts[ROLE_COORD] = 1;
        counts[ROLE_SERVER] = all[0].servers;
        counts[ROLE_WORKER] = nranks - 1 - all[0].servers;
    }
    if (!code && (counts[ROLE_COORD] != 1 || counts[ROLE_SERVER] < 1 || counts[ROLE_WORKER] < 1)) {
        code = EXIT_USAGE;
        snprintf(why, whycap,
                 "%d ranks make %d coordinator(s), %d server(s) and %d worker(s); a job needs "
                 "1, at least 1 and at least 1",
                 nranks, counts[ROLE_COORD], counts[ROLE_SERVER], counts[ROLE_WORKER]);
    }
    /* This rank's role and its rank among that role's ranks (world order). */
    int role = ROLE_COORD, role_rank = 0, coord_rank = 0;
    for (int r = 0; r < nranks && !code; r++) {
        int rr = role_of(all, r, spmd, counts[ROLE_SERVER]);
        coord_rank = rr == ROLE_COORD ? r : coord_rank;
        if (r == rank)
            role = rr;
    }
    for (int r = 0; r < rank && !code; r++)
        role_rank += role_of(all, r, spmd, counts[ROLE_SERVER]) == role;
    pl->one_host = one_host;
    pl->role = role;
    pl->role_rank = role_rank;
    pl->coord_rank = coord_rank;
    return code;
}

/* This rank's part of the job, once all agree: the coordinator in a thread (its endpoint
 * broadcast to the others), a server or a worker. Returns a pst_status. */
static int run_rank(const mpi_args *a, const mpi_plan *pl, const char *host, const cfg_job *job,
                    const log_ctx *lg, const volatile sig_atomic_t *stop, pst_err *err)
{
    int rc = PST_OK;
    const char *bind = a->bind ? a->bind : pl->one_host ? "127.0.0.1" : "0.0.0.0";
    const char *advertise = a->advertise ? a->advertise : strcmp(bind, "0.0.0.0") ? bind : host;

    coord_thread ct = {.rc = 0};
    pthread_t tid;
    int started = 0, fds[2] = {-1, -1};
    char ep[EP_LEN] = "", bound[EP_LEN] = "";
    if (pl->role == ROLE_COORD) {
        char bind_ep[EP_LEN];
        snprintf(bind_ep, sizeof bind_ep, "tcp://%s:0", bind);
        if (pipe(fds)) {
            rc = pst_err_set(err, PST_ERR_IO, "pipe: %s", strerror(errno));
        } else {
            ct.o = (coord_options){.bind = bind_ep,
                                   .ready_fd = fds[1],
                                   .job = job,
                                   .lg = lg,
                                   .stop = stop,
                                   .faults = getenv("PSTRAIN_FAULTS")};
            atomic_init(&ct.done, 0);
            if (pthread_create(&tid, NULL, coord_main, &ct)) {
                close(fds[1]);
                rc = pst_err_set(err, PST_ERR_IO, "cannot start the coordinator thread");
            } else
                started = 1;
        }
        if (started && read_endpoint(fds[0], &ct, bound, sizeof bound) == 0) {
            /* The kernel chose the port; others reach it at the advertised host. */
            const char *port = strrchr(bound, ':');
            snprintf(ep, sizeof ep, "tcp://%s%s", advertise, port ? port : ":0");
            log_info(lg, "coordinator endpoint for the other ranks: %s", ep);
        } else if (started && !atomic_load(&ct.done))
            log_error(lg, "the coordinator did not bind within %d s", BIND_WAIT_MS / 1000);
        if (fds[0] >= 0)
            close(fds[0]);
    }
    /* An empty endpoint tells the others the coordinator did not start. */
    MPI_Bcast(ep, (int)sizeof ep, MPI_CHAR, pl->coord_rank, MPI_COMM_WORLD);

    if (pl->role != ROLE_COORD) {
        if (!ep[0])
            rc = pst_err_set(err, PST_ERR_IO, "the coordinator (rank %d) did not start",
                             pl->coord_rank);
        else if (pl->role == ROLE_SERVER) {
            srv_options o = {.rank = pl->role_rank,
                             .coordinator = ep,
                             .bind_host = bind,
                             .advertise = advertise,
                             .job = job,
                             .lg = lg,
                             .stop = stop,
                             .faults = getenv("PSTRAIN_FAULTS")};
            rc = srv_run(&o, err);
        } else {
            openblas_threads(job->train.threads);
            wk_dist_options o = {.rank = pl->role_rank,
                                 .coordinator = ep,
                                 .job = job,
                                 .lg = lg,
                                 .stop = stop,
                                 .progress_out = stderr,
                                 .tty = isatty(STDERR_FILENO),
                                 .faults = getenv("PSTRAIN_FAULTS")};
            rc = wk_dist_run(&o, err);
        }
    }
    if (started) {
        pthread_join(tid, NULL);
        if (!bound[0])
            close(fds[1]); /* coord_run closes ready_fd only once it has written to it */
        if (!rc)
            rc = ct.rc;
        if (ct.rc)
            *err = ct.err;
    }
    return rc;
}

int cmd_mpi(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    mpi_args a;
    pst_err err = {0};
    int p = parse_mpi(argc, argv, &a, &err);
    if (p == CLI_ARGS_HELP) {
        cli_args_fini(&a.args);
        return EXIT_OK;
    }
    /* Only this thread calls MPI; rank 0's coordinator thread never does. */
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "pstrain mpi: MPI_Init failed\n");
        cli_args_fini(&a.args);
        return EXIT_FAILURE_RUNTIME;
    }
    int rank, nranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    rank_info *all = calloc((size_t)nranks, sizeof *all);
    rank_info me = {.code = EXIT_OK, .role = a.role};
    cfg_job *job = NULL;
    /* The job's overrides, and room for the launch's counts after them (they win). */
    cli_override *ov = calloc((size_t)a.args.nov + 2, sizeof *ov);
    int nov = a.args.nov;
    if (p == PST_OK && !ov)
        p = pst_err_set(&err, PST_ERR_NOMEM, "out of memory");
    if (p != PST_OK) {
        fprintf(stderr, "pstrain mpi[%d]: %s\n", rank, err.msg);
        me.code = cli_exit_code(p);
    } else {
        memcpy(ov, a.args.ov, (size_t)nov * sizeof *ov);
        int rc = cli_load_job(&job, a.job_path, ov, nov, &err);
        if (rc) {
            fprintf(stderr, "pstrain mpi[%d]: %s\n", rank, err.msg);
            me.code = cli_exit_code(rc);
        } else
            me.servers = job->cluster.servers;
        cfg_job_free(job);
        job = NULL;
    }
    if (gethostname(me.host, sizeof me.host - 1))
        snprintf(me.host, sizeof me.host, "localhost");
    if (!all) {
        fprintf(stderr, "pstrain mpi[%d]: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, EXIT_FAILURE_RUNTIME);
    }
    MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, MPI_COMM_WORLD);

    mpi_plan plan;
    char why[200] = "";
    int code = agree_roles(all, nranks, rank, &plan, why, sizeof why);
    if (code) {
        if (me.code == EXIT_OK && rank == 0)
            fprintf(stderr, "pstrain mpi: %s\n", why);
        free(all);
        free(ov);
        cli_args_fini(&a.args);
        MPI_Finalize();
        return code;
    }

    /* The job with the counts the launch gave: appended last, so they win. */
    char sbuf[64], wbuf[64];
    snprintf(sbuf, sizeof sbuf, "%d", plan.counts[ROLE_SERVER]);
    snprintf(wbuf, sizeof wbuf, "%d", plan.counts[ROLE_WORKER]);
    ov[nov++] = (cli_override){"cluster.servers", "cluster.servers", sbuf};
    ov[nov++] = (cli_override){"cluster.workers", "cluster.workers", wbuf};
    int rc = cli_load_job(&job, a.job_path, ov, nov, &err);
    free(ov);
    cli_args_fini(&a.args); /* what is still used points into argv */
    if (rc == PST_OK && (rc = cli_check_security(job, role_names[plan.role], &err))) {
        cfg_job_free(job);
        job = NULL;
    }
    if (rc)
        fprintf(stderr, "pstrain mpi[%d]: %s\n", rank, err.msg);
    /* The counts can make a job invalid that was valid before (e.g. more workers than
     * rows): every rank learns it before the coordinator starts waiting for them. */
    int bad = rc ? cli_exit_code(rc) : 0, any_bad = 0;
    MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any_bad) {
        cfg_job_free(job);
        free(all);
        MPI_Finalize();
        return bad ? bad : any_bad;
    }
    log_ctx lg;
    log_init(&lg, role_names[plan.role], plan.role == ROLE_COORD ? -1 : plan.role_rank, stderr);
    rc = run_rank(&a, &plan, me.host, job, &lg, stop, &err);
    if (rc)
        log_error(&lg, "%s", err.msg);
    cfg_job_free(job);
    free(all);
    MPI_Finalize();
    /* A stop signal wins over an error it caused (a peer that stopped first and closed
     * its socket): every rank of a cancelled job says 143, whichever ends first. */
    if (*stop) {
        log_warn(&lg, "stopped by signal %d", (int)*stop);
        return cli_stop_exit_code(*stop);
    }
    return rc ? cli_exit_code(rc) : EXIT_OK;
}
