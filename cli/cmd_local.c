/* cli/cmd_local.c -- `pstrain local`: the whole job on this machine, one OS process per
 * role, started from this same binary and supervised until every one has ended.
 *
 *   pstrain coordinator [JOB] --bind tcp://127.0.0.1:0 --ready-fd 3 [overrides]
 *                                                                    -> writes "EP\n" to fd 3
 *   pstrain server [JOB] --rank i --coordinator EP [overrides]      i = 0..S-1
 *   pstrain worker [JOB] --rank i --coordinator EP [overrides]      i = 0..W-1
 *
 * Supervision is signal driven: SIGCHLD, SIGINT and SIGTERM stay blocked while children
 * run and are taken with sigtimedwait; waitpid(WNOHANG) then collects whoever ended.
 * The first failure (or a stop signal) sends SIGTERM to all the others, and SIGKILL to
 * any still running after the grace period. Every path reaps every child, and each child
 * has PR_SET_PDEATHSIG(SIGTERM), so even a SIGKILLed launcher leaves no orphans. */
#define _GNU_SOURCE /* ppoll, pipe2, close_range: Linux-only, like PR_SET_PDEATHSIG */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"

/* The coordinator's --ready-fd: always this number, so its command line is the same in
 * every run (the lowest fd after stdin, stdout and stderr). */
#define READY_FD 3
#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_GRACE_S 10.0
#define DEFAULT_READY_S 30.0
/* Longest single wait. Signals are blocked only in this thread: OpenBLAS starts its own
 * threads when the library loads, and a signal that arrives while this thread is not
 * inside sigtimedwait/ppoll may be taken by one of them (SIGCHLD is then discarded,
 * SIGINT/SIGTERM run main()'s handler, which sets *stop). Waking at least this often
 * bounds how late such a signal is noticed; it is a safety net, not the mechanism. */
#define WAKE_MS 1000

/* Process counts: cluster.servers and cluster.workers (--servers / --workers). */
static void job_counts(const cfg_job *job, int *servers, int *workers)
{
    *servers = job->cluster.servers;
    *workers = job->cluster.workers;
}

typedef enum { CHILD_NEW = 0, CHILD_RUNNING, CHILD_ENDED } child_state;

typedef struct {
    char name[32];   /* "coordinator", "server[0]", "worker[3]": names it in log lines */
    char rank[16];   /* the --rank value */
    char **argv;     /* NULL-terminated; points into the launcher's argv block */
    pid_t pid;       /* valid from CHILD_RUNNING on */
    int status;      /* wait status, valid in CHILD_ENDED */
    child_state state;
} lc_child;

typedef struct {
    log_ctx lg;
    const char *exe;    /* what every child runs */
    long grace_ms;      /* SIGTERM -> SIGKILL */
    long ready_ms;      /* coordinator start -> endpoint line */
    long max_fd;        /* for the close-fds fallback when close_range is missing */
    pid_t self;         /* our pid, for the child's PDEATHSIG race check */
    sigset_t waitset;   /* SIGCHLD, SIGINT, SIGTERM: blocked, taken by sigtimedwait */
    sigset_t oldmask;   /* the caller's mask: restored in every child and on return */
    lc_child *kids;     /* [0] coordinator, [1..S] servers, [S+1..S+W] workers */
    char **argvs;       /* one block holding every child's argv */
    int nkids;
    int running;        /* children started and not yet reaped */
    int starting;       /* the coordinator has not yet reported its endpoint */
    int stop_seen;      /* *stop has been acted on (the handler path counts once) */
    int stopping;       /* SIGTERM sent to all; SIGKILL at deadline_ms */
    int killed;         /* SIGKILL sent to all still running */
    long long deadline_ms;
    int exit_code;      /* decided by the first event (failure or stop signal); -1: none */
    char ep[256];       /* the coordinator's endpoint */
} launcher;

static void local_usage(FILE *f)
{
    fprintf(f,
            "usage: pstrain local [JOB.yaml] [--servers S] [--workers W] [--KEY VALUE ...]\n"
            "\n"
            "Runs the whole job on this machine, as separate processes of this binary, and\n"
            "supervises them until all have ended:\n"
            "  pstrain coordinator [JOB.yaml] --bind tcp://127.0.0.1:0 --ready-fd 3   1 process\n"
            "  pstrain server [JOB.yaml] --rank i --coordinator ENDPOINT    i = 0..S-1\n"
            "  pstrain worker [JOB.yaml] --rank i --coordinator ENDPOINT    i = 0..W-1\n"
            "The coordinator starts first; the servers and workers start once it has written\n"
            "its endpoint (it has %g s). S and W are the job's cluster.servers and\n"
            "cluster.workers (default 2 and 2). Every option other than --help is passed\n"
            "unchanged to every process; it is checked here first, so a typo fails once,\n"
            "before anything starts. Without JOB.yaml it runs the default job.\n"
            "\n"
            "Logs: every process writes to this stderr; each line names its process\n"
            "(coordinator, server[0], worker[1], ...); this launcher's lines say \"local\".\n"
            "\n"
            "Exit status:\n"
            "  0        every process exited 0\n"
            "  N        the first process to fail exited with code N, or 128+SIG if signal\n"
            "           SIG killed it; all others are then sent SIGTERM, and SIGKILL if\n"
            "           still running %g s later\n"
            "  1        a process could not be started, or the coordinator reported no\n"
            "           endpoint in time\n"
            "  2        bad option or job file\n"
            "  130/143  stopped by SIGINT (Ctrl-C) / SIGTERM: every process is sent SIGTERM\n"
            "           and SIGKILL %g s later; a second Ctrl-C sends SIGKILL at once\n"
            "No process outlives the launcher: should it be killed, each gets SIGTERM.\n"
            "\n"
            "Environment: PSTRAIN_LOG=debug|info|warn|error. For tests only:\n"
            "PSTRAIN_LOCAL_EXE (program to start instead of this binary),\n"
            "PSTRAIN_LOCAL_GRACE_S (the %g s before SIGKILL),\n"
            "PSTRAIN_LOCAL_READY_TIMEOUT_S (the %g s for the endpoint).\n"
            "\n"
            "options:\n"
            "  -h, --help   this text\n"
            "\n%s",
            DEFAULT_READY_S, DEFAULT_GRACE_S, DEFAULT_GRACE_S, DEFAULT_GRACE_S, DEFAULT_READY_S,
            cli_override_help);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timespec ms_timespec(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    return ts;
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

/* The exit code a wait status stands for, as a shell reports it. */
static int status_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
}

static const char *describe(int st, char *buf, size_t n)
{
    if (WIFEXITED(st))
        snprintf(buf, n, "exited with code %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, n, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(buf, n, "ended with wait status 0x%x", (unsigned)st);
    return buf;
}

static const char *sig_name(int sig) { return sig == SIGTERM ? "SIGTERM" : "SIGINT"; }

/* Sends sig to every running child; returns how many. SIGCONT follows so that a stopped
 * child (Ctrl-Z, a debugger) acts on it now rather than when resumed. */
static int signal_all(launcher *l, int sig)
{
    int n = 0;
    for (int i = 0; i < l->nkids; i++)
        if (l->kids[i].state == CHILD_RUNNING) {
            kill(l->kids[i].pid, sig);
            if (sig == SIGTERM)
                kill(l->kids[i].pid, SIGCONT);
            n++;
        }
    return n;
}

/* Records the first event's exit code and sends SIGTERM to everyone still running. */
static void begin_stop(launcher *l, int code)
{
    if (l->exit_code < 0)
        l->exit_code = code;
    if (l->stopping)
        return;
    l->stopping = 1;
    l->deadline_ms = now_ms() + l->grace_ms;
    int n = signal_all(l, SIGTERM);
    if (n > 0)
        log_info(&l->lg, "sent SIGTERM to %d process(es); SIGKILL to any still running in %g s",
                 n, l->grace_ms / 1000.0);
}

static void kill_rest(launcher *l, const char *why)
{
    for (int i = 0; i < l->nkids; i++) {
        lc_child *c = &l->kids[i];
        if (c->state == CHILD_RUNNING)
            log_warn(&l->lg, "%s (pid %d) %s; sending SIGKILL", c->name, (int)c->pid, why);
    }
    signal_all(l, SIGKILL);
    l->killed = 1;
}

static void on_stop_signal(launcher *l, int sig)
{
    if (!l->stopping) {
        log_warn(&l->lg, "received %s; stopping %d process(es)", sig_name(sig), l->running);
        begin_stop(l, sig == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT);
    } else if (!l->killed) {
        kill_rest(l, sig == SIGTERM ? "is still running at a second SIGTERM"
                                    : "is still running at a second SIGINT");
    }
}

/* main()'s handler sets *stop when a stop signal reaches it rather than sigtimedwait. */
static void check_stop_flag(launcher *l, const volatile sig_atomic_t *stop)
{
    sig_atomic_t sig = *stop;
    if (sig && !l->stop_seen) {
        l->stop_seen = 1;
        on_stop_signal(l, (int)sig);
    }
}

static void child_ended(launcher *l, lc_child *c)
{
    char how[64];
    describe(c->status, how, sizeof how);
    int ok = WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
    if (l->stopping) {
        log_debug(&l->lg, "%s (pid %d) %s", c->name, (int)c->pid, how);
    } else if (l->starting && c == &l->kids[0]) {
        /* Even a clean exit is a failure before the coordinator has said where it is. */
        log_error(&l->lg, "%s (pid %d) %s before reporting its endpoint", c->name, (int)c->pid,
                  how);
        begin_stop(l, ok ? EXIT_FAILURE_RUNTIME : status_code(c->status));
    } else if (ok) {
        log_info(&l->lg, "%s (pid %d) exited 0", c->name, (int)c->pid);
    } else {
        log_error(&l->lg, "%s (pid %d) %s", c->name, (int)c->pid, how);
        begin_stop(l, status_code(c->status));
    }
}

/* Collects every child that has ended, without blocking. */
static void reap(launcher *l)
{
    for (int i = 0; i < l->nkids; i++) {
        lc_child *c = &l->kids[i];
        if (c->state != CHILD_RUNNING)
            continue;
        int st;
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        /* Only ECHILD can fail here, and launcher_run's SIGCHLD = SIG_DFL rules it out. */
        assert(r >= 0);
        if (r == c->pid) {
            c->status = st;
            c->state = CHILD_ENDED;
            l->running--;
            child_ended(l, c);
        }
    }
}

/* Waits up to ms for SIGCHLD, SIGINT or SIGTERM and acts on a stop signal. */
static void wait_signal(launcher *l, long long ms)
{
    if (ms > WAKE_MS)
        ms = WAKE_MS;
    if (ms < 0)
        ms = 0;
    struct timespec ts = ms_timespec(ms);
    int sig = sigtimedwait(&l->waitset, NULL, &ts);
    if (sig == SIGINT || sig == SIGTERM)
        on_stop_signal(l, sig);
}

/* Runs in the child between fork and exec: async-signal-safe calls only (the launcher
 * may have other threads). Reports an exec failure's errno on err_fd. */
__attribute__((noreturn)) static void child_exec(const launcher *l, const lc_child *c,
                                                 int ready_fd, int err_fd)
{
    int e;
    /* Die with the launcher; if it is already gone, PDEATHSIG came too late for us. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
        e = errno;
        goto fail;
    }
    if (getppid() != l->self) {
        e = ESRCH;
        goto fail;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGCHLD, &dfl, NULL);
    sigprocmask(SIG_SETMASK, &l->oldmask, NULL);

    /* Keep err_fd out of the way of READY_FD, then put the ready pipe there. */
    if (err_fd == READY_FD) {
        int moved = fcntl(err_fd, F_DUPFD_CLOEXEC, READY_FD + 1);
        if (moved < 0) {
            e = errno;
            goto fail;
        }
        err_fd = moved;
    }
    int first_other = READY_FD;
    if (ready_fd >= 0) {
        if ((ready_fd == READY_FD ? fcntl(READY_FD, F_SETFD, 0) : dup2(ready_fd, READY_FD)) < 0) {
            e = errno;
            goto fail;
        }
        first_other = READY_FD + 1;
    }
    /* Every other descriptor closes at exec (err_fd must stay open until then). */
    if (close_range((unsigned)first_other, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        for (long fd = first_other; fd < l->max_fd; fd++)
            fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    execv(l->exe, c->argv);
    e = errno;
fail:
    if (write(err_fd, &e, sizeof e) < 0) {
        /* nothing more to do: the launcher sees no report, and the exit code 127 */
    }
    _exit(127);
}

/* Starts child c; ready_fd (or -1) becomes its READY_FD. On failure logs why, leaves no
 * process behind and returns -1. */
static int spawn(launcher *l, lc_child *c, int ready_fd)
{
    int ep[2]; /* exec report: EOF means execv succeeded, an int is its errno */
    if (pipe2(ep, O_CLOEXEC) != 0) {
        log_error(&l->lg, "cannot start %s: pipe: %s", c->name, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(ep[0]);
        close(ep[1]);
        log_error(&l->lg, "cannot start %s: fork: %s", c->name, strerror(e));
        return -1;
    }
    if (pid == 0)
        child_exec(l, c, ready_fd, ep[1]);
    close(ep[1]);
    int child_errno = 0;
    ssize_t n;
    do
        n = read(ep[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    close(ep[0]);
    if (n == 0) {
        c->pid = pid;
        c->state = CHILD_RUNNING;
        l->running++;
        log_debug(&l->lg, "started %s (pid %d)", c->name, (int)pid);
        return 0;
    }
    /* The child is exiting with 127; collect it before saying why. */
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    log_error(&l->lg, "cannot start %s: %s: %s", c->name, l->exe,
              n == (ssize_t)sizeof child_errno ? strerror(child_errno) : "no exec report");
    return -1;
}

enum { READY_OK, READY_EOF, READY_TIMEOUT, READY_STOP, READY_BAD, READY_ERR };

/* Reads the coordinator's endpoint line from rfd into l->ep before the ready deadline.
 * Waits in ppoll with SIGINT and SIGTERM unblocked, so that main()'s handler runs and
 * sets *stop; SIGCHLD stays blocked (the coordinator's exit shows as EOF instead). */
static int read_endpoint(launcher *l, int rfd, const volatile sig_atomic_t *stop, int *err)
{
    sigset_t mask = l->oldmask;
    sigaddset(&mask, SIGCHLD);
    sigdelset(&mask, SIGINT);
    sigdelset(&mask, SIGTERM);
    long long deadline = now_ms() + l->ready_ms;
    size_t len = 0;
    for (;;) {
        if (*stop)
            return READY_STOP;
        long long left = deadline - now_ms();
        if (left <= 0)
            return READY_TIMEOUT;
        struct timespec ts = ms_timespec(left < WAKE_MS ? left : WAKE_MS);
        struct pollfd pfd = {.fd = rfd, .events = POLLIN};
        int n = ppoll(&pfd, 1, &ts, &mask);
        if (n < 0 && errno != EINTR) {
            *err = errno;
            return READY_ERR;
        }
        if (n <= 0)
            continue;
        ssize_t r = read(rfd, l->ep + len, sizeof l->ep - 1 - len);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            *err = errno;
            return READY_ERR;
        }
        l->ep[len + (size_t)r] = '\0';
        char *nl = memchr(l->ep + len, '\n', (size_t)r);
        len += (size_t)r;
        if (r == 0 && len == 0)
            return READY_EOF;
        if (nl || r == 0) { /* a whole line, or a last line without its newline */
            if (nl)
                *nl = '\0';
            if (l->ep[0] == '\0')
                return READY_BAD;
            for (const char *p = l->ep; *p; p++)
                if (*p <= ' ' || *p > '~')
                    return READY_BAD;
            return READY_OK;
        }
        if (len == sizeof l->ep - 1)
            return READY_BAD;
    }
}

/* Starts the coordinator and learns its endpoint. Returns 0 when the servers and
 * workers may start; otherwise the stop has begun (or nothing was started). */
static int start_coordinator(launcher *l, const volatile sig_atomic_t *stop)
{
    lc_child *coord = &l->kids[0];
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        log_error(&l->lg, "cannot start coordinator: pipe: %s", strerror(errno));
        l->exit_code = EXIT_FAILURE_RUNTIME;
        return -1;
    }
    if (spawn(l, coord, p[1]) != 0) {
        close(p[0]);
        close(p[1]);
        l->exit_code = EXIT_FAILURE_RUNTIME;
        return -1;
    }
    /* Only the coordinator holds the write end now: its exit shows as EOF. */
    close(p[1]);
    l->starting = 1;
    int err = 0;
    int r = read_endpoint(l, p[0], stop, &err);
    close(p[0]);
    switch (r) {
    case READY_OK:
        l->starting = 0;
        log_info(&l->lg, "coordinator (pid %d) is at %s", (int)coord->pid, l->ep);
        return 0;
    case READY_STOP:
        check_stop_flag(l, stop);
        return -1;
    case READY_TIMEOUT:
        log_error(&l->lg, "coordinator (pid %d) did not report its endpoint on --ready-fd within %g s",
                  (int)coord->pid, l->ready_ms / 1000.0);
        break;
    case READY_BAD:
        for (char *q = l->ep; *q; q++)
            if (*q < ' ' || *q > '~')
                *q = '?';
        log_error(&l->lg,
                  "coordinator (pid %d) wrote '%.80s' on --ready-fd; expected one line like "
                  "tcp://127.0.0.1:PORT",
                  (int)coord->pid, l->ep);
        break;
    case READY_ERR:
        log_error(&l->lg, "reading the coordinator's endpoint: %s", strerror(err));
        break;
    case READY_EOF: {
        /* It closed the pipe: almost always because it is exiting. Give it the grace
         * period to finish, so the message can say how it ended (child_ended logs it). */
        long long deadline = now_ms() + l->grace_ms;
        for (;;) {
            check_stop_flag(l, stop);
            reap(l);
            if (l->stopping)
                return -1;
            long long left = deadline - now_ms();
            if (left <= 0)
                break;
            wait_signal(l, left);
        }
        log_error(&l->lg, "coordinator (pid %d) closed --ready-fd without reporting an endpoint",
                  (int)coord->pid);
        break;
    }
    }
    begin_stop(l, EXIT_FAILURE_RUNTIME);
    return -1;
}

/* Waits until every started child has been reaped, stopping them all at the first
 * failure or stop signal and escalating to SIGKILL after the grace period. */
static void supervise(launcher *l, const volatile sig_atomic_t *stop)
{
    for (;;) {
        /* Stop signals first: children that die of the same Ctrl-C must not count as
         * failures. */
        check_stop_flag(l, stop);
        reap(l);
        if (l->running == 0)
            return;
        long long wait = WAKE_MS;
        if (l->stopping && !l->killed) {
            long long left = l->deadline_ms - now_ms();
            if (left <= 0) {
                char why[64];
                snprintf(why, sizeof why, "did not exit within %g s of SIGTERM",
                         l->grace_ms / 1000.0);
                kill_rest(l, why);
                continue;
            }
            wait = left;
        }
        wait_signal(l, wait);
    }
}

static int launcher_run(launcher *l, const volatile sig_atomic_t *stop, int servers,
                        int workers)
{
    /* SIGCHLD ignored (a disposition that survives exec, so our own parent may have
     * left it so) would make the kernel reap the children and hide their exit codes. */
    struct sigaction dfl, old_chld;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &old_chld);
    sigprocmask(SIG_BLOCK, &l->waitset, &l->oldmask);
    log_info(&l->lg, "starting coordinator, %d server(s) and %d worker(s)", servers, workers);
    if (start_coordinator(l, stop) == 0) {
        for (int i = 1; i < l->nkids; i++) {
            check_stop_flag(l, stop);
            if (l->stopping)
                break;
            if (spawn(l, &l->kids[i], -1) != 0) {
                begin_stop(l, EXIT_FAILURE_RUNTIME);
                break;
            }
        }
    }
    supervise(l, stop);
    sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    if (l->exit_code < 0) {
        log_info(&l->lg, "job finished: all %d processes exited 0", l->nkids);
        return EXIT_OK;
    }
    int started = 0;
    for (int i = 0; i < l->nkids; i++)
        started += l->kids[i].state == CHILD_ENDED;
    log_info(&l->lg, "all processes have ended (%d of %d had started); exit code %d", started,
             l->nkids, l->exit_code);
    return l->exit_code;
}

/* Fills the children's names and argv: "pstrain ROLE [JOB] <role flags> <overrides>". */
static int launcher_init(launcher *l, const char *path, char **rest, int nrest, int servers,
                         int workers)
{
    l->nkids = 1 + servers + workers;
    size_t stride = (size_t)nrest + 10; /* argv0, role, path, 6 role flags, NULL */
    l->kids = calloc((size_t)l->nkids, sizeof *l->kids);
    l->argvs = calloc((size_t)l->nkids, stride * sizeof *l->argvs);
    if (!l->kids || !l->argvs)
        return -1;
    for (int i = 0; i < l->nkids; i++) {
        lc_child *c = &l->kids[i];
        char **a = c->argv = l->argvs + (size_t)i * stride;
        const char *role = i == 0 ? "coordinator" : i <= servers ? "server" : "worker";
        int rank = i == 0 ? -1 : i <= servers ? i - 1 : i - 1 - servers;
        if (rank < 0)
            snprintf(c->name, sizeof c->name, "%s", role);
        else
            snprintf(c->name, sizeof c->name, "%s[%d]", role, rank);
        snprintf(c->rank, sizeof c->rank, "%d", rank);
        int k = 0;
        a[k++] = (char *)"pstrain";
        a[k++] = (char *)role;
        if (path)
            a[k++] = (char *)path;
        if (rank < 0) {
            /* Loopback and a port the kernel picks: jobs on one machine never collide. */
            a[k++] = (char *)"--bind";
            a[k++] = (char *)"tcp://127.0.0.1:0";
            a[k++] = (char *)"--ready-fd";
            a[k++] = (char *)STR(READY_FD);
        } else {
            a[k++] = (char *)"--rank";
            a[k++] = c->rank;
            a[k++] = (char *)"--coordinator";
            a[k++] = l->ep; /* filled in before any server or worker starts */
        }
        for (int j = 0; j < nrest; j++)
            a[k++] = rest[j];
        a[k] = NULL;
    }
    return 0;
}

int cmd_local(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    const char *path = NULL;
    /* The job file, if any, comes first; everything after it goes to every child. */
    int i0 = 0;
    if (argc > 0 && argv[0][0] != '-')
        path = argv[i0++];
    for (int i = i0; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            local_usage(stdout);
            return EXIT_OK;
        }
    char **rest = argv + i0;
    int nrest = argc - i0;

    /* Load the job here too: for the counts, and so that a bad option fails once,
     * before any process starts. */
    pst_err err = {0};
    cfg_job *job = NULL;
    int rc = cli_load_job(&job, path, nrest, rest, &err);
    if (rc) {
        fprintf(stderr, "pstrain local: %s\n", err.msg);
        return cli_exit_code(rc);
    }
    if ((rc = cli_check_security(job, NULL, &err))) {
        fprintf(stderr, "pstrain local: %s\n", err.msg);
        cfg_job_free(job);
        return cli_exit_code(rc);
    }
    int servers, workers;
    job_counts(job, &servers, &workers);
    cfg_job_free(job);
    if (servers < 1 || workers < 1 || servers > INT_MAX / 2 - 1 || workers > INT_MAX / 2 - 1) {
        fprintf(stderr, "pstrain local: the job has %d server(s) and %d worker(s); it needs at "
                        "least one of each\n", servers, workers);
        return EXIT_USAGE;
    }

    launcher l;
    memset(&l, 0, sizeof l);
    l.exit_code = -1;
    if (env_ms("PSTRAIN_LOCAL_GRACE_S", DEFAULT_GRACE_S, &l.grace_ms) ||
        env_ms("PSTRAIN_LOCAL_READY_TIMEOUT_S", DEFAULT_READY_S, &l.ready_ms)) {
        fprintf(stderr, "pstrain local: PSTRAIN_LOCAL_GRACE_S and PSTRAIN_LOCAL_READY_TIMEOUT_S "
                        "must be positive numbers of seconds\n");
        return EXIT_USAGE;
    }
    const char *exe = getenv("PSTRAIN_LOCAL_EXE");
    l.exe = exe && exe[0] ? exe : "/proc/self/exe";
    l.self = getpid();
    l.max_fd = sysconf(_SC_OPEN_MAX);
    if (l.max_fd < 0 || l.max_fd > 1L << 20)
        l.max_fd = 1L << 20;
    sigemptyset(&l.waitset);
    sigaddset(&l.waitset, SIGCHLD);
    sigaddset(&l.waitset, SIGINT);
    sigaddset(&l.waitset, SIGTERM);
    log_init(&l.lg, "local", -1, stderr);

    int code;
    if (launcher_init(&l, path, rest, nrest, servers, workers) != 0) {
        fprintf(stderr, "pstrain local: out of memory for %d processes\n", l.nkids);
        code = EXIT_FAILURE_RUNTIME;
    } else {
        code = launcher_run(&l, stop, servers, workers);
    }
    free(l.argvs);
    free(l.kids);
    return code;
}
