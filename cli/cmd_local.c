/* cli/cmd_local.c -- `pstrain local`: the whole job on this machine, one OS process per
 * role, started from this same binary and supervised until every one has ended.
 *
 *   pstrain coordinator [JOB] --bind tcp://127.0.0.1:0 --ready-fd 3 [overrides]
 *                                                                    -> writes "EP\n" to fd 3
 *   pstrain server [JOB] --rank i --coordinator EP [overrides]      i = 0..S-1
 *   pstrain worker [JOB] --rank i --coordinator EP [overrides]      i = 0..W-1
 *
 * Supervision is signal driven: SIGCHLD, SIGINT and SIGTERM stay blocked while children
 * run and are read from a signalfd, polled together with the progress and output pipes;
 * waitpid(WNOHANG) then collects whoever ended.
 * The first failure (or a stop signal) sends SIGTERM to all the others, and SIGKILL to
 * any still running after the grace period. Every path reaps every child, and each child
 * has PR_SET_PDEATHSIG(SIGTERM), so even a SIGKILLed launcher leaves no orphans.
 *
 * Progress: every worker writes short records to a pipe the launcher passes as fd 3 and
 * names in PSTRAIN_PROGRESS_FD (format in worker/dist.h); the launcher sums them into one
 * view of the job. On a terminal it draws that as ONE line, redrawn in place, and takes
 * the children's stdout/stderr through pipes of its own so that it can lift the line off
 * before each whole line of theirs (and its own) and put it back after; no worker draws a
 * bar. Elsewhere (CI, Kubernetes logs) the children write straight to its stderr, as
 * without progress, and the launcher logs a plain "progress:" line at each new epoch,
 * every PLAIN_EVERY_MS, and when every step is done. */
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
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "base/log.h"

/* The coordinator's --ready-fd: always this number, so its command line is the same in
 * every run (the lowest fd after stdin, stdout and stderr). */
#define READY_FD 3
#define STR_(x) #x
#define STR(x) STR_(x)
#define DEFAULT_GRACE_S 10.0
#define DEFAULT_READY_S 30.0
/* Longest single wait. Signals are blocked only in this thread: OpenBLAS starts its own
 * threads when the library loads, and a signal for the process may be taken by one of
 * them instead of reaching the signalfd (SIGCHLD is then discarded,
 * SIGINT/SIGTERM run main()'s handler, which sets *stop). Waking at least this often
 * bounds how late such a signal is noticed; it is a safety net, not the mechanism. */
#define WAKE_MS 1000
#define PROGRESS_ENV "PSTRAIN_PROGRESS_FD"
#define REDRAW_MS 100       /* the live line is redrawn at most this often */
#define PLAIN_EVERY_MS 10000 /* a plain progress line at least this often */

extern char **environ;

/* Process counts: cluster.servers and cluster.workers (--servers / --workers). */
static void job_counts(const cfg_job *job, int *servers, int *workers, int *max_restarts)
{
    *servers = job->cluster.servers;
    *workers = job->cluster.workers;
    *max_restarts = job->cluster.max_restarts;
}

typedef enum { CHILD_NEW = 0, CHILD_RUNNING, CHILD_ENDED } child_state;

typedef struct {
    char name[32];   /* "coordinator", "server[0]", "worker[3]": names it in log lines */
    char rank[16];   /* the --rank value */
    char **argv;     /* NULL-terminated; points into the launcher's argv block */
    int worker;      /* gets the progress pipe */
    pid_t pid;       /* valid from CHILD_RUNNING on */
    int status;      /* wait status, valid in CHILD_ENDED */
    child_state state;
    int is_worker;
    int restarts;    /* times it was started again after failing */
    int gone;        /* a worker that failed for good: the job goes on without it */
} lc_child;

/* A worker's latest progress record (worker/dist.h). */
typedef struct {
    int seen, epoch, epochs;
    long long step, steps, clock, total;
    double loss, sps;
} lc_record;

/* Children's output taken through a pipe (live mode): whole lines go on to fd `out`. */
typedef struct {
    int fd;            /* read end; -1: not forwarded, or closed at EOF */
    int out;           /* STDOUT_FILENO or STDERR_FILENO */
    size_t len;
    char buf[8192];    /* the start of a line not yet complete */
} lc_fwd;

typedef struct {
    log_ctx lg;
    const char *exe;    /* what every child runs */
    long grace_ms;      /* SIGTERM -> SIGKILL */
    long ready_ms;      /* coordinator start -> endpoint line */
    long max_fd;        /* for the close-fds fallback when close_range is missing */
    pid_t self;         /* our pid, for the child's PDEATHSIG race check */
    sigset_t waitset;   /* SIGCHLD, SIGINT, SIGTERM: blocked, read from sigfd */
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
    int max_restarts;   /* cluster.max_restarts: per worker */
    int workers_gone;   /* workers that failed for good while the job went on */
    char ep[256];       /* the coordinator's endpoint */
    /* Progress (see the top of this file). */
    int sigfd;          /* signalfd of waitset: waited on together with the pipes */
    int prog_r, prog_w; /* the workers' progress pipe; prog_w closes once they started */
    lc_record *rec;     /* (W) by worker rank */
    int nworkers;
    char pbuf[512];     /* a record not yet complete */
    size_t plen;
    int live;           /* stderr is a terminal: one line, redrawn */
    int cols;           /* the terminal's width */
    lc_fwd fwd[2];      /* live: children's stdout [0] (when a terminal too) and stderr [1] */
    int child_out, child_err; /* their write ends, the children's fd 1 and 2; -1: inherit */
    FILE *logf;         /* live: the launcher's own log stream (log_write) */
    char line[256];     /* the progress text last drawn */
    int shown;          /* line is on the screen */
    long long last_draw_ms, t0_ms, next_plain_ms;
    long long done0;    /* steps done at t0_ms, for the rate */
    int plain_epoch;    /* last epoch a plain line was logged for */
    int finished;       /* the every-step-done line was drawn/logged */
    char **env_worker;  /* environ with PSTRAIN_PROGRESS_FD=3, for the workers */
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
            "Progress: on a terminal, one line for the whole job (epoch, steps of all\n"
            "workers, loss, samples/s, ETA), redrawn in place below the logs; otherwise a\n"
            "plain \"progress:\" log line at each epoch and every %g s.\n"
            "\n"
            "Exit status:\n"
            "  0        the job finished: every process exited 0, except workers that\n"
            "           failed with a retriable status (75, or killed by a signal) and\n"
            "           were left behind (named in the last line)\n"
            "  N        the first process to fail exited with code N, or 128+SIG if signal\n"
            "           SIG killed it; all others are then sent SIGTERM, and SIGKILL if\n"
            "           still running %g s later\n"
            "Restarts: a worker or server that fails with a retriable status is started again\n"
            "(same rank; it rejoins the job: a server recovers its shard from its newest\n"
            "checkpoint) up to cluster.max_restarts times each. After that, the job goes on\n"
            "without a worker (the coordinator drops it after cluster.heartbeat_timeout_s);\n"
            "a server's failure ends the job.\n"
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
            "PSTRAIN_LOCAL_GRACE_S (the %g s before SIGKILL),\n"
            "PSTRAIN_LOCAL_READY_TIMEOUT_S (the %g s for the endpoint).\n"
            "\n"
            "options:\n"
            "  -h, --help   this text\n"
            "  --metrics-port N   Prometheus endpoints: the coordinator's /metrics and /status\n"
            "               on port N, server r's /metrics on N + 1 + r (the same as\n"
            "               --cluster.metrics_port N; docs/observability.md)\n"
            "\n%s",
            DEFAULT_READY_S, PLAIN_EVERY_MS / 1000.0, DEFAULT_GRACE_S, DEFAULT_GRACE_S,
            DEFAULT_GRACE_S, DEFAULT_READY_S,
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

int cli_progress_fd(int *fd, pst_err *err)
{
    *fd = -1;
    const char *s = getenv(PROGRESS_ENV);
    if (!s)
        return PST_OK;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    struct stat st;
    if (end == s || *end != '\0' || errno || v < 0 || v > INT_MAX || fstat((int)v, &st) != 0 ||
        !S_ISFIFO(st.st_mode))
        return pst_err_set(err, PST_ERR_ARG, PROGRESS_ENV "=%s: not an open pipe (it is set by "
                           "pstrain local for its workers)", s);
    *fd = (int)v;
    return PST_OK;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return; /* the terminal is gone: nothing else to tell it */
        p += r;
        n -= (size_t)r;
    }
}

/* Writes n bytes of whole lines to fd with the live line lifted off and put back. */
static void emit(launcher *l, int fd, const char *p, size_t n)
{
    if (l->shown)
        write_all(STDERR_FILENO, "\r\033[K", 4);
    write_all(fd, p, n);
    if (l->shown)
        write_all(STDERR_FILENO, l->line, strlen(l->line));
}

/* The launcher's own log lines in live mode (a fopencookie stream; log.c flushes once a
 * line). */
static ssize_t log_write(void *cookie, const char *buf, size_t n)
{
    emit(cookie, STDERR_FILENO, buf, n);
    return (ssize_t)n;
}

/* Reads what is there from f and passes its whole lines on; at EOF (or flush) the rest too. */
static void forward(launcher *l, lc_fwd *f, int flush)
{
    while (f->fd >= 0) {
        ssize_t r = read(f->fd, f->buf + f->len, sizeof f->buf - f->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != EAGAIN) /* cannot happen on a pipe we own: treat as EOF */
            r = 0;
        if (r == 0) {
            close(f->fd);
            f->fd = -1;
            flush = 1;
        }
        if (r > 0)
            f->len += (size_t)r;
        size_t whole = f->len;
        if (f->len < sizeof f->buf && !flush)
            while (whole > 0 && f->buf[whole - 1] != '\n')
                whole--;
        if (whole > 0) {
            emit(l, f->out, f->buf, whole);
            memmove(f->buf, f->buf + whole, f->len - whole);
            f->len -= whole;
        }
        if (r < 0) /* EAGAIN: all read */
            return;
    }
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0)
        snprintf(buf, n, "?");
    else if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

/* Sums the workers' records into the job's progress and shows it: the live line, or a
 * plain log line when due. */
static void show_progress(launcher *l)
{
    int known = 0, epoch = 0, epochs = 0, busy = 0, nloss = 0;
    long long done = 0, total = 0;
    double loss = 0, sps = 0;
    for (int i = 0; i < l->nworkers; i++) {
        const lc_record *r = &l->rec[i];
        if (!r->seen)
            continue;
        known++;
        done += r->clock;
        total += r->total;
        if (r->step > 0 && r->clock > 0) { /* a loss measured, not the initial 0 */
            loss += r->loss;
            nloss++;
        }
        epochs = r->epochs > epochs ? r->epochs : epochs;
        sps += r->sps;
        if (r->clock < r->total) /* the job is at the epoch of its slowest worker */
            epoch = busy++ == 0 || r->epoch < epoch ? r->epoch : epoch;
    }
    if (known == 0)
        return;
    if (!busy)
        epoch = epochs;
    /* Workers not heard from yet: as many steps as the average of those heard from. */
    total += (long long)(l->nworkers - known) * (total / known);
    char lossbuf[32] = "-";
    if (nloss)
        snprintf(lossbuf, sizeof lossbuf, "%.4f", loss / nloss);
    long long now = now_ms();
    if (l->t0_ms == 0) {
        l->t0_ms = now;
        l->done0 = done;
    }
    double rate = now > l->t0_ms && done > l->done0 ? (done - l->done0) / ((now - l->t0_ms) / 1e3)
                                                    : NAN;
    char eta[32];
    fmt_eta(eta, sizeof eta, (double)(total - done) / rate);
    int all = done >= total && known == l->nworkers;
    char text[200];
    snprintf(text, sizeof text, "epoch %d/%d  step %lld/%lld (%d%%)  loss %s  %.0f samples/s  "
             "ETA %s", epoch, epochs, done, total, total ? (int)(100 * done / total) : 0, lossbuf,
             sps, all ? "0s" : eta);
    if (l->live) {
        if (!(all && !l->finished) && now - l->last_draw_ms < REDRAW_MS)
            return;
        l->last_draw_ms = now;
        /* One screen row: a wrapped line could not be redrawn in place. */
        int w = l->cols > 8 ? l->cols - 1 : 79;
        snprintf(l->line, sizeof l->line, "\r\033[K%.*s", w, text);
        write_all(STDERR_FILENO, l->line, strlen(l->line));
        l->shown = 1;
    } else if (epoch > l->plain_epoch || now >= l->next_plain_ms || (all && !l->finished)) {
        l->plain_epoch = epoch;
        l->next_plain_ms = now + PLAIN_EVERY_MS;
        log_info(&l->lg, "progress: %s", text);
    }
    l->finished |= all;
}

/* Reads the workers' records that are there and shows the result. */
static void read_progress(launcher *l)
{
    int got = 0;
    while (l->prog_r >= 0) {
        ssize_t r = read(l->prog_r, l->pbuf + l->plen, sizeof l->pbuf - 1 - l->plen);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0 || errno != EAGAIN) { /* every writer is gone */
                close(l->prog_r);
                l->prog_r = -1;
            }
            break;
        }
        l->plen += (size_t)r;
        l->pbuf[l->plen] = '\0';
        char *p = l->pbuf, *nl;
        while ((nl = strchr(p, '\n'))) {
            *nl = '\0';
            lc_record v = {.seen = 1};
            int rank;
            if (sscanf(p, "P %d %d %d %lld %lld %lld %lld %lf %lf", &rank, &v.epoch, &v.epochs,
                       &v.step, &v.steps, &v.clock, &v.total, &v.loss, &v.sps) == 9 &&
                rank >= 0 && rank < l->nworkers) {
                l->rec[rank] = v;
                got = 1;
            }
            p = nl + 1;
        }
        l->plen = strlen(p);
        if (l->plen == sizeof l->pbuf - 1) /* no newline in a whole buffer: not a record */
            l->plen = 0;
        memmove(l->pbuf, p, l->plen);
    }
    if (got)
        show_progress(l);
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

/* main()'s handler sets *stop when a stop signal reaches it rather than the signalfd. */
static void check_stop_flag(launcher *l, const volatile sig_atomic_t *stop)
{
    sig_atomic_t sig = *stop;
    if (sig && !l->stop_seen) {
        l->stop_seen = 1;
        on_stop_signal(l, (int)sig);
    }
}

static int spawn(launcher *l, lc_child *c, int ready_fd);

/* Whether a failed worker's status says trying again may help: a lost peer or a timeout
 * (75), a crash or a kill (a signal) may pass; a failed run (1: diverged, refused
 * gradients), bad configuration, data or files (2, 3, 4) will not, and a worker that
 * exited 130/143 was asked to stop (the job stops with it). */
static int retriable(int st)
{
    if (WIFSIGNALED(st))
        return 1;
    return WIFEXITED(st) && WEXITSTATUS(st) == EXIT_RETRIABLE;
}

static void child_ended(launcher *l, lc_child *c)
{
    char how[64];
    describe(c->status, how, sizeof how);
    int ok = WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
    /* Servers are started again too (they recover their shard from their newest
     * checkpoint); the coordinator is not. */
    if (!ok && !l->stopping && c != &l->kids[0] && retriable(c->status) &&
        c->restarts < l->max_restarts) {
        c->restarts++;
        log_warn(&l->lg, "%s (pid %d) %s; starting it again (restart %d of %d), it rejoins "
                 "the job", c->name, (int)c->pid, how, c->restarts, l->max_restarts);
        if (spawn(l, c, c->worker ? l->prog_w : -1) == 0)
            return;
    }
    if (!ok && !l->stopping && c->is_worker && retriable(c->status)) {
        c->gone = 1;
        l->workers_gone++;
        log_warn(&l->lg, "%s (pid %d) %s; the job goes on without it%s", c->name, (int)c->pid,
                 how, l->max_restarts ? " (no restarts left)" : "");
        return;
    }
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

/* Waits up to ms for SIGCHLD, SIGINT or SIGTERM (through the signalfd) or for progress
 * or output of the children; acts on a stop signal and passes output on. */
static void wait_signal(launcher *l, long long ms)
{
    if (ms > WAKE_MS)
        ms = WAKE_MS;
    if (ms < 0)
        ms = 0;
    struct pollfd pf[4] = {{.fd = l->sigfd, .events = POLLIN},
                           {.fd = l->prog_r, .events = POLLIN},
                           {.fd = l->fwd[0].fd, .events = POLLIN},
                           {.fd = l->fwd[1].fd, .events = POLLIN}};
    if (poll(pf, 4, (int)ms) <= 0)
        return;
    struct signalfd_siginfo si;
    if (pf[0].revents)
        while (read(l->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
            if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM)
                on_stop_signal(l, (int)si.ssi_signo);
    if (pf[1].revents)
        read_progress(l);
    for (int k = 0; k < 2; k++)
        if (pf[2 + k].revents)
            forward(l, &l->fwd[k], 0);
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

    /* Live progress: output goes through the launcher (dup2 clears close-on-exec). */
    if ((l->child_out >= 0 && dup2(l->child_out, STDOUT_FILENO) < 0) ||
        (l->child_err >= 0 && dup2(l->child_err, STDERR_FILENO) < 0)) {
        e = errno;
        goto fail;
    }
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
    execve(l->exe, c->argv, c->worker && l->env_worker ? l->env_worker : environ);
    e = errno;
fail:
    if (write(err_fd, &e, sizeof e) < 0) {
        /* nothing more to do: the launcher sees no report, and the exit code 127 */
    }
    _exit(127);
}

/* Starts child c; ready_fd (or -1) becomes its READY_FD (a worker's: the progress pipe). On failure logs why, leaves no
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

/* The write ends of the progress and output pipes, which the children inherit. */
static void close_child_ends(launcher *l)
{
    int *fds[] = {&l->prog_w, &l->child_out, &l->child_err};
    for (int i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
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
            if (spawn(l, &l->kids[i], l->kids[i].worker ? l->prog_w : -1) != 0) {
                begin_stop(l, EXIT_FAILURE_RUNTIME);
                break;
            }
        }
    }
    /* Only the children hold the write ends now: their exits show as EOF. Unless a worker
     * may be started again: then they stay open for it until the end. */
    if (l->max_restarts == 0)
        close_child_ends(l);
    supervise(l, stop);
    close_child_ends(l);
    /* Every child has ended: what they wrote last, then the line off the screen. */
    read_progress(l);
    for (int k = 0; k < 2; k++)
        forward(l, &l->fwd[k], 1);
    if (l->shown) {
        write_all(STDERR_FILENO, "\r\033[K", 4);
        l->shown = 0;
    }
    sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    if (l->exit_code < 0 && l->workers_gone) {
        char list[512];
        size_t n = 0;
        list[0] = '\0';
        for (int i = 0; i < l->nkids && n < sizeof list; i++)
            if (l->kids[i].gone)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "",
                                      l->kids[i].name);
        log_warn(&l->lg, "job finished without %s: the other %d processes exited 0", list,
                 l->nkids - l->workers_gone);
        return EXIT_OK;
    }
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
        c->worker = i > servers;
        int rank = i == 0 ? -1 : i <= servers ? i - 1 : i - 1 - servers;
        if (rank < 0)
            snprintf(c->name, sizeof c->name, "%s", role);
        else
            snprintf(c->name, sizeof c->name, "%s[%d]", role, rank);
        snprintf(c->rank, sizeof c->rank, "%d", rank);
        c->is_worker = i > servers;
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
    /* The workers' environment: ours, with the progress descriptor named. */
    size_t n = 0;
    while (environ[n])
        n++;
    if (!(l->env_worker = calloc(n + 2, sizeof *l->env_worker)))
        return -1;
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
        if (strncmp(environ[j], PROGRESS_ENV "=", sizeof PROGRESS_ENV) != 0)
            l->env_worker[k++] = environ[j];
    l->env_worker[k] = (char *)PROGRESS_ENV "=" STR(READY_FD);
    return 0;
}

/* The progress pipe, the signalfd, and on a terminal the output pipes and the log stream.
 * Returns -1 with errno set. */
static int progress_init(launcher *l, int workers)
{
    int p[2];
    if (!(l->rec = calloc((size_t)workers, sizeof *l->rec)))
        return -1;
    l->nworkers = workers;
    if ((l->sigfd = signalfd(-1, &l->waitset, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
        pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    l->prog_r = p[0];
    l->prog_w = p[1];
    /* The workers' end blocks no worker: each makes it non-blocking itself. */
    if (fcntl(l->prog_w, F_SETFL, 0) != 0)
        return -1;
    l->live = isatty(STDERR_FILENO);
    if (!l->live)
        return 0;
    struct winsize ws;
    l->cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 80;
    for (int k = isatty(STDOUT_FILENO) ? 0 : 1; k < 2; k++) {
        if (pipe2(p, O_CLOEXEC) != 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) != 0)
            return -1;
        l->fwd[k].fd = p[0];
        l->fwd[k].out = k ? STDERR_FILENO : STDOUT_FILENO;
        *(k ? &l->child_err : &l->child_out) = p[1];
    }
    cookie_io_functions_t io = {.write = log_write};
    if (!(l->logf = fopencookie(l, "w", io)))
        return -1;
    setvbuf(l->logf, NULL, _IOLBF, 0);
    return 0;
}

static void progress_fini(launcher *l)
{
    if (l->logf)
        fclose(l->logf);
    int fds[] = {l->sigfd, l->prog_r, l->prog_w, l->fwd[0].fd, l->fwd[1].fd, l->child_out,
                 l->child_err};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(l->rec);
    free(l->env_worker);
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
    /* --metrics-port N is each process's own port for `pstrain server` and `coordinator`;
     * here, where all share one host, it is the job's base port (cluster.metrics_port):
     * the coordinator on N, server r on N + 1 + r. */
    for (int i = 0; i < nrest; i++)
        if (strcmp(rest[i], "--metrics-port") == 0)
            rest[i] = (char *)"--cluster.metrics_port";

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
    int servers, workers, max_restarts;
    job_counts(job, &servers, &workers, &max_restarts);
    cfg_job_free(job);
    if (servers < 1 || workers < 1 || servers > INT_MAX / 2 - 1 || workers > INT_MAX / 2 - 1) {
        fprintf(stderr, "pstrain local: the job has %d server(s) and %d worker(s); it needs at "
                        "least one of each\n", servers, workers);
        return EXIT_USAGE;
    }

    launcher l;
    memset(&l, 0, sizeof l);
    l.exit_code = -1;
    l.max_restarts = max_restarts;
    l.sigfd = l.prog_r = l.prog_w = l.fwd[0].fd = l.fwd[1].fd = l.child_out = l.child_err = -1;
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

    int code;
    if (launcher_init(&l, path, rest, nrest, servers, workers) != 0) {
        fprintf(stderr, "pstrain local: out of memory for %d processes\n", l.nkids);
        code = EXIT_FAILURE_RUNTIME;
    } else if (progress_init(&l, workers) != 0) {
        fprintf(stderr, "pstrain local: cannot set up the progress pipes: %s\n",
                strerror(errno));
        code = EXIT_FAILURE_RUNTIME;
    } else {
        log_init(&l.lg, "local", -1, l.logf ? l.logf : stderr);
        code = launcher_run(&l, stop, servers, workers);
    }
    progress_fini(&l);
    free(l.argvs);
    free(l.kids);
    return code;
}
