/* cli/supervise.c -- starting, watching, restarting and stopping a job's processes
 * (supervise.h). */
#define _GNU_SOURCE /* ppoll, pipe2, close_range: Linux-only, like PR_SET_PDEATHSIG */
#include "cli/supervise.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

#include "cli/cli.h"

/* Longest single wait. Signals are blocked only in this thread: OpenBLAS starts its own
 * threads when the library loads, and a signal for the process may be taken by one of
 * them instead of reaching the signalfd (SIGCHLD is then discarded,
 * SIGINT/SIGTERM run main()'s handler, which sets *stop). Waking at least this often
 * bounds how late such a signal is noticed; it is a safety net, not the mechanism. */
#define WAKE_MS 1000

extern char **environ;

typedef enum { CHILD_NEW = 0, CHILD_RUNNING, CHILD_ENDED } child_state;

/* A child's run-time state; spec is the caller's description. */
typedef struct {
    const cli_sup_child *spec;
    pid_t pid;  /* valid from CHILD_RUNNING on */
    int status; /* wait status, valid in CHILD_ENDED */
    child_state state;
    int restarts;         /* times it was started again after failing */
    int gone;             /* a worker that failed for good: the job goes on without it */
    long long stopped_ms; /* since when it was seen stopped (state T); 0: running */
} sup_kid;

typedef struct {
    const cli_sup_options *o;
    const log_ctx *lg;
    cli_view *view;
    long max_fd;      /* for the close-fds fallback when close_range is missing */
    pid_t self;       /* our pid, for the child's PDEATHSIG race check */
    sigset_t waitset; /* SIGCHLD, SIGINT, SIGTERM: blocked, read from sigfd */
    sigset_t oldmask; /* the caller's mask: restored in every child and on return */
    int sigfd;        /* signalfd of waitset: waited on together with the view's pipes */
    sup_kid *kids;    /* (o->nkids) */
    int running;      /* children started and not yet reaped */
    int starting;     /* child 0 has not yet reported its endpoint */
    int stop_seen;    /* *stop has been acted on (the handler path counts once) */
    int stopping;     /* SIGTERM sent to all; SIGKILL at deadline_ms */
    int killed;       /* SIGKILL sent to all still running */
    long long deadline_ms;
    int exit_code;         /* decided by the first event (failure or stop signal), or the
                           coordinator's failure; -1: none */
    int by_signal;         /* the launcher was asked to stop */
    long long finished_ms; /* when child 0 exited 0 (the job is over); 0: not yet */
    int stragglers;        /* still running grace_ms after that: stopped */
    int workers_gone;      /* workers that failed for good while the job went on */
} sup;

static struct timespec ms_timespec(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    return ts;
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
static int signal_all(sup *s, int sig)
{
    int n = 0;
    for (int i = 0; i < s->o->nkids; i++)
        if (s->kids[i].state == CHILD_RUNNING) {
            kill(s->kids[i].pid, sig);
            if (sig == SIGTERM)
                kill(s->kids[i].pid, SIGCONT);
            n++;
        }
    return n;
}

/* Records the first event's exit code and sends SIGTERM to everyone still running. */
static void begin_stop(sup *s, int code)
{
    if (s->exit_code < 0)
        s->exit_code = code;
    if (s->stopping)
        return;
    s->stopping = 1;
    s->deadline_ms = pst_mono_ms() + s->o->grace_ms;
    int n = signal_all(s, SIGTERM);
    if (n > 0)
        log_info(s->lg, "sent SIGTERM to %d process(es); SIGKILL to any still running in %g s", n,
                 s->o->grace_ms / 1000.0);
}

static void kill_rest(sup *s, const char *why)
{
    for (int i = 0; i < s->o->nkids; i++) {
        sup_kid *c = &s->kids[i];
        if (c->state == CHILD_RUNNING)
            log_warn(s->lg, "%s (pid %d) %s; sending SIGKILL", c->spec->name, (int)c->pid, why);
    }
    signal_all(s, SIGKILL);
    s->killed = 1;
}

static void on_stop_signal(sup *s, int sig)
{
    s->by_signal = 1;
    if (!s->stopping) {
        log_warn(s->lg, "received %s; stopping %d process(es)", sig_name(sig), s->running);
        begin_stop(s, sig == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT);
    } else if (!s->killed) {
        kill_rest(s, sig == SIGTERM ? "is still running at a second SIGTERM"
                                    : "is still running at a second SIGINT");
    }
}

/* main()'s handler sets *stop when a stop signal reaches it rather than the signalfd. */
static void check_stop_flag(sup *s, const volatile sig_atomic_t *stop)
{
    sig_atomic_t sig = *stop;
    if (sig && !s->stop_seen) {
        s->stop_seen = 1;
        on_stop_signal(s, (int)sig);
    }
}

static int spawn(sup *s, sup_kid *c, int ready_fd);

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

static void child_ended(sup *s, sup_kid *c)
{
    char how[64];
    describe(c->status, how, sizeof how);
    int ok = WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
    /* The coordinator knows why a job failed; the others, told that it was aborted, only
     * that it was, and one of them may end first: the coordinator's own failure is the
     * job's exit code (not its 130/143 when the launcher stopped it). */
    int code = WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
    if (c == &s->kids[0] && code > 0 && code != EXIT_SIGTERM && code != EXIT_SIGINT &&
        !s->by_signal)
        s->exit_code = code;
    /* Servers are started again too (they recover their shard from their newest
     * checkpoint); the coordinator is not. */
    if (!ok && !s->stopping && c != &s->kids[0] && retriable(c->status) &&
        c->restarts < s->o->max_restarts) {
        c->restarts++;
        log_warn(s->lg,
                 "%s (pid %d) %s; starting it again (restart %d of %d), it rejoins "
                 "the job",
                 c->spec->name, (int)c->pid, how, c->restarts, s->o->max_restarts);
        if (spawn(s, c, c->spec->progress ? cli_view_progress_w(s->view) : -1) == 0)
            return;
    }
    if (!ok && !s->stopping && c->spec->leave_behind && retriable(c->status)) {
        c->gone = 1;
        s->workers_gone++;
        log_warn(s->lg, "%s (pid %d) %s; the job goes on without it%s", c->spec->name, (int)c->pid,
                 how, s->o->max_restarts ? " (no restarts left)" : "");
        return;
    }
    if (s->stopping) {
        log_debug(s->lg, "%s (pid %d) %s", c->spec->name, (int)c->pid, how);
    } else if (s->starting && c == &s->kids[0]) {
        /* Even a clean exit is a failure before the coordinator has said where it is. */
        log_error(s->lg, "%s (pid %d) %s before reporting its endpoint", c->spec->name, (int)c->pid,
                  how);
        begin_stop(s, ok ? EXIT_FAILURE_RUNTIME : status_code(c->status));
    } else if (ok) {
        log_info(s->lg, "%s (pid %d) exited 0", c->spec->name, (int)c->pid);
        if (c == &s->kids[0])
            s->finished_ms = pst_mono_ms();
    } else {
        log_error(s->lg, "%s (pid %d) %s", c->spec->name, (int)c->pid, how);
        begin_stop(s, status_code(c->status));
    }
}

/* Collects every child that has ended, without blocking. */
static void reap(sup *s)
{
    for (int i = 0; i < s->o->nkids; i++) {
        sup_kid *c = &s->kids[i];
        if (c->state != CHILD_RUNNING)
            continue;
        int st;
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        /* Only ECHILD can fail here, and launcher_run's SIGCHLD = SIG_DFL rules it out. */
        assert(r >= 0);
        if (r == c->pid) {
            c->status = st;
            c->state = CHILD_ENDED;
            s->running--;
            child_ended(s, c);
        }
    }
}

/* Waits up to ms for SIGCHLD, SIGINT or SIGTERM (through the signalfd) or for progress
 * or output of the children; acts on a stop signal and passes output on. */
static void wait_signal(sup *s, long long ms)
{
    if (ms > WAKE_MS)
        ms = WAKE_MS;
    if (ms < 0)
        ms = 0;
    struct pollfd pf[1 + CLI_VIEW_NFDS] = {{.fd = s->sigfd, .events = POLLIN}};
    cli_view_poll_fds(s->view, pf + 1);
    if (poll(pf, 1 + CLI_VIEW_NFDS, (int)ms) <= 0)
        return;
    struct signalfd_siginfo si;
    if (pf[0].revents)
        while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
            if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM)
                on_stop_signal(s, (int)si.ssi_signo);
    cli_view_on_poll(s->view, pf + 1);
}

/* Runs in the child between fork and exec: async-signal-safe calls only (the launcher
 * may have other threads). Reports an exec failure's errno on err_fd. */
__attribute__((noreturn)) static void child_exec(const sup *s, const sup_kid *c, int ready_fd,
                                                 int child_out, int child_err, int err_fd)
{
    int e;
    /* Die with the launcher; if it is already gone, PDEATHSIG came too late for us. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
        e = errno;
        goto fail;
    }
    if (getppid() != s->self) {
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
    sigprocmask(SIG_SETMASK, &s->oldmask, NULL);

    /* Live progress: output goes through the launcher (dup2 clears close-on-exec). */
    if ((child_out >= 0 && dup2(child_out, STDOUT_FILENO) < 0) ||
        (child_err >= 0 && dup2(child_err, STDERR_FILENO) < 0)) {
        e = errno;
        goto fail;
    }
    /* Keep err_fd out of the way of CLI_SUP_FD, then put the ready pipe there. */
    if (err_fd == CLI_SUP_FD) {
        int moved = fcntl(err_fd, F_DUPFD_CLOEXEC, CLI_SUP_FD + 1);
        if (moved < 0) {
            e = errno;
            goto fail;
        }
        err_fd = moved;
    }
    int first_other = CLI_SUP_FD;
    if (ready_fd >= 0) {
        if ((ready_fd == CLI_SUP_FD ? fcntl(CLI_SUP_FD, F_SETFD, 0) : dup2(ready_fd, CLI_SUP_FD)) <
            0) {
            e = errno;
            goto fail;
        }
        first_other = CLI_SUP_FD + 1;
    }
    /* Every other descriptor closes at exec (err_fd must stay open until then). */
    if (close_range((unsigned)first_other, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        for (long fd = first_other; fd < s->max_fd; fd++)
            fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    execve(s->o->exe, c->spec->argv, c->spec->envp ? c->spec->envp : environ);
    e = errno;
fail:
    if (write(err_fd, &e, sizeof e) < 0) {
        /* nothing more to do: the launcher sees no report, and the exit code 127 */
    }
    _exit(127);
}

/* Starts child c; ready_fd (or -1) becomes its CLI_SUP_FD (a worker's: the progress pipe). On failure logs why, leaves no
 * process behind and returns -1. */
static int spawn(sup *s, sup_kid *c, int ready_fd)
{
    int ep[2]; /* exec report: EOF means execv succeeded, an int is its errno */
    const int out = cli_view_child_out(s->view), errfd = cli_view_child_err(s->view);
    if (pipe2(ep, O_CLOEXEC) != 0) {
        log_error(s->lg, "cannot start %s: pipe: %s", c->spec->name, strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(ep[0]);
        close(ep[1]);
        log_error(s->lg, "cannot start %s: fork: %s", c->spec->name, strerror(e));
        return -1;
    }
    if (pid == 0)
        child_exec(s, c, ready_fd, out, errfd, ep[1]);
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
        s->running++;
        log_debug(s->lg, "started %s (pid %d)", c->spec->name, (int)pid);
        return 0;
    }
    /* The child is exiting with 127; collect it before saying why. */
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    log_error(s->lg, "cannot start %s: %s: %s", c->spec->name, s->o->exe,
              n == (ssize_t)sizeof child_errno ? strerror(child_errno) : "no exec report");
    return -1;
}

enum { READY_OK, READY_EOF, READY_TIMEOUT, READY_STOP, READY_BAD, READY_ERR };

/* Reads the coordinator's endpoint line from rfd into s->o->ep before the ready deadline.
 * Waits in ppoll with SIGINT and SIGTERM unblocked, so that main()'s handler runs and
 * sets *stop; SIGCHLD stays blocked (the coordinator's exit shows as EOF instead). */
static int read_endpoint(sup *s, int rfd, const volatile sig_atomic_t *stop, int *err)
{
    sigset_t mask = s->oldmask;
    sigaddset(&mask, SIGCHLD);
    sigdelset(&mask, SIGINT);
    sigdelset(&mask, SIGTERM);
    long long deadline = pst_mono_ms() + s->o->ready_ms;
    size_t len = 0;
    for (;;) {
        if (*stop)
            return READY_STOP;
        long long left = deadline - pst_mono_ms();
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
        ssize_t r = read(rfd, s->o->ep + len, s->o->epcap - 1 - len);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            *err = errno;
            return READY_ERR;
        }
        s->o->ep[len + (size_t)r] = '\0';
        char *nl = memchr(s->o->ep + len, '\n', (size_t)r);
        len += (size_t)r;
        if (r == 0 && len == 0)
            return READY_EOF;
        if (nl || r == 0) { /* a whole line, or a last line without its newline */
            if (nl)
                *nl = '\0';
            if (s->o->ep[0] == '\0')
                return READY_BAD;
            for (const char *p = s->o->ep; *p; p++)
                if (*p <= ' ' || *p > '~')
                    return READY_BAD;
            return READY_OK;
        }
        if (len == s->o->epcap - 1)
            return READY_BAD;
    }
}

/* Starts the coordinator and learns its endpoint. Returns 0 when the servers and
 * workers may start; otherwise the stop has begun (or nothing was started). */
static int start_coordinator(sup *s, const volatile sig_atomic_t *stop)
{
    sup_kid *coord = &s->kids[0];
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        log_error(s->lg, "cannot start coordinator: pipe: %s", strerror(errno));
        s->exit_code = EXIT_FAILURE_RUNTIME;
        return -1;
    }
    if (spawn(s, coord, p[1]) != 0) {
        close(p[0]);
        close(p[1]);
        s->exit_code = EXIT_FAILURE_RUNTIME;
        return -1;
    }
    /* Only the coordinator holds the write end now: its exit shows as EOF. */
    close(p[1]);
    s->starting = 1;
    int err = 0;
    int r = read_endpoint(s, p[0], stop, &err);
    close(p[0]);
    switch (r) {
    case READY_OK:
        s->starting = 0;
        log_info(s->lg, "coordinator (pid %d) is at %s", (int)coord->pid, s->o->ep);
        return 0;
    case READY_STOP: check_stop_flag(s, stop); return -1;
    case READY_TIMEOUT:
        log_error(s->lg,
                  "coordinator (pid %d) did not report its endpoint on --ready-fd within %g s",
                  (int)coord->pid, s->o->ready_ms / 1000.0);
        break;
    case READY_BAD:
        for (char *q = s->o->ep; *q; q++)
            if (*q < ' ' || *q > '~')
                *q = '?';
        log_error(s->lg,
                  "coordinator (pid %d) wrote '%.80s' on --ready-fd; expected one line like "
                  "tcp://127.0.0.1:PORT",
                  (int)coord->pid, s->o->ep);
        break;
    case READY_ERR:
        log_error(s->lg, "reading the coordinator's endpoint: %s", strerror(err));
        break;
    case READY_EOF: {
        /* It closed the pipe: almost always because it is exiting. Give it the grace
         * period to finish, so the message can say how it ended (child_ended logs it). */
        long long deadline = pst_mono_ms() + s->o->grace_ms;
        for (;;) {
            check_stop_flag(s, stop);
            reap(s);
            if (s->stopping)
                return -1;
            long long left = deadline - pst_mono_ms();
            if (left <= 0)
                break;
            wait_signal(s, left);
        }
        log_error(s->lg, "coordinator (pid %d) closed --ready-fd without reporting an endpoint",
                  (int)coord->pid);
        break;
    }
    }
    begin_stop(s, EXIT_FAILURE_RUNTIME);
    return -1;
}

/* Child 0 has finished the job, and grace_ms later these still run: processes it gave
 * up on (a paused worker declared lost, one cut off). The job's result is child 0's:
 * they are stopped without it changing the exit code. */
static void end_stragglers(sup *s)
{
    char list[512];
    size_t n = 0;
    list[0] = '\0';
    for (int i = 0; i < s->o->nkids && n < sizeof list; i++)
        if (s->kids[i].state == CHILD_RUNNING)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s (pid %d)", n ? ", " : "",
                                  s->kids[i].spec->name, (int)s->kids[i].pid);
    log_warn(s->lg, "the job finished %g s ago, but %s still run%s: stopping %s",
             s->o->grace_ms / 1000.0, list, s->running == 1 ? "s" : "",
             s->running == 1 ? "it" : "them");
    s->stragglers = s->running;
    s->stopping = 1;
    s->deadline_ms = pst_mono_ms() + s->o->grace_ms;
    signal_all(s, SIGTERM);
}

/* Whether process pid is stopped (SIGSTOP, Ctrl-Z: state T in /proc/PID/stat, the
 * character after the command's closing parenthesis). */
static int is_stopped(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'T';
}

/* Hung children: one stopped for hang_ms cannot answer, and the coordinator has fenced it
 * by then (it refuses that incarnation): SIGKILL, and child_ended starts a new one of the
 * same rank, which rejoins as a crashed one does. Only while it has restarts left: past
 * them a stopped worker is left to the coordinator (lost), as without restarts. */
static void kill_hung(sup *s)
{
    if (s->o->hang_ms <= 0 || s->stopping || s->finished_ms)
        return;
    long long now = pst_mono_ms();
    for (int i = 1; i < s->o->nkids; i++) {
        sup_kid *c = &s->kids[i];
        if (c->state != CHILD_RUNNING || c->restarts >= s->o->max_restarts || !is_stopped(c->pid)) {
            c->stopped_ms = 0;
            continue;
        }
        if (!c->stopped_ms)
            c->stopped_ms = now;
        if (now - c->stopped_ms < s->o->hang_ms)
            continue;
        log_warn(s->lg,
                 "%s (pid %d) has been stopped for %.1f s: it cannot answer and the "
                 "coordinator has fenced it; sending SIGKILL so that a new one takes its rank",
                 c->spec->name, (int)c->pid, (now - c->stopped_ms) / 1000.0);
        kill(c->pid, SIGKILL);
        c->stopped_ms = 0;
    }
}

/* Waits until every started child has been reaped, stopping them all at the first
 * failure or stop signal and escalating to SIGKILL after the grace period. */
static void supervise(sup *s, const volatile sig_atomic_t *stop)
{
    for (;;) {
        /* Stop signals first: children that die of the same Ctrl-C must not count as
         * failures. */
        check_stop_flag(s, stop);
        reap(s);
        if (s->running == 0)
            return;
        kill_hung(s);
        long long wait = WAKE_MS;
        if (s->finished_ms && !s->stopping) {
            long long left = s->finished_ms + s->o->grace_ms - pst_mono_ms();
            if (left <= 0) {
                end_stragglers(s);
                continue;
            }
            wait = left;
        }
        if (s->stopping && !s->killed) {
            long long left = s->deadline_ms - pst_mono_ms();
            if (left <= 0) {
                char why[64];
                snprintf(why, sizeof why, "did not exit within %g s of SIGTERM",
                         s->o->grace_ms / 1000.0);
                kill_rest(s, why);
                continue;
            }
            wait = left;
        }
        wait_signal(s, wait);
    }
}

/* Starts child 0, then the others once it has reported its endpoint, supervises them all
 * and returns the exit code (see cli_sup_run). */
static int sup_run(sup *s, const volatile sig_atomic_t *stop)
{
    /* SIGCHLD ignored (a disposition that survives exec, so our own parent may have
     * left it so) would make the kernel reap the children and hide their exit codes. */
    struct sigaction dfl, old_chld;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &old_chld);
    sigprocmask(SIG_BLOCK, &s->waitset, &s->oldmask);
    if (start_coordinator(s, stop) == 0) {
        for (int i = 1; i < s->o->nkids; i++) {
            check_stop_flag(s, stop);
            if (s->stopping)
                break;
            if (spawn(s, &s->kids[i],
                      s->kids[i].spec->progress ? cli_view_progress_w(s->view) : -1) != 0) {
                begin_stop(s, EXIT_FAILURE_RUNTIME);
                break;
            }
        }
    }
    /* Only the children hold the write ends now: their exits show as EOF. Unless a worker
     * may be started again: then they stay open for it until the end. */
    if (s->o->max_restarts == 0)
        cli_view_close_child_ends(s->view);
    supervise(s, stop);
    cli_view_close_child_ends(s->view);
    /* Every child has ended: what they wrote last, then the line off the screen. */
    cli_view_finish(s->view);
    sigprocmask(SIG_SETMASK, &s->oldmask, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    if (s->exit_code < 0 && s->workers_gone) {
        char list[512];
        size_t n = 0;
        list[0] = '\0';
        for (int i = 0; i < s->o->nkids && n < sizeof list; i++)
            if (s->kids[i].gone)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "",
                                      s->kids[i].spec->name);
        log_warn(s->lg, "job finished without %s: the other %d processes exited 0", list,
                 s->o->nkids - s->workers_gone);
        return EXIT_OK;
    }
    if (s->exit_code < 0 && s->stragglers) {
        log_warn(s->lg, "job finished; %d process(es) still running after it were stopped",
                 s->stragglers);
        return EXIT_OK;
    }
    if (s->exit_code < 0) {
        log_info(s->lg, "job finished: all %d processes exited 0", s->o->nkids);
        return EXIT_OK;
    }
    int started = 0;
    for (int i = 0; i < s->o->nkids; i++)
        started += s->kids[i].state == CHILD_ENDED;
    log_info(s->lg, "all processes have ended (%d of %d had started); exit code %d", started,
             s->o->nkids, s->exit_code);
    return s->exit_code;
}
int cli_sup_run(const cli_sup_options *o, const volatile sig_atomic_t *stop)
{
    sup s = {.o = o, .lg = o->lg, .view = o->view, .exit_code = -1, .sigfd = -1};
    s.self = getpid();
    s.max_fd = sysconf(_SC_OPEN_MAX);
    if (s.max_fd < 0 || s.max_fd > 1L << 20)
        s.max_fd = 1L << 20;
    sigemptyset(&s.waitset);
    sigaddset(&s.waitset, SIGCHLD);
    sigaddset(&s.waitset, SIGINT);
    sigaddset(&s.waitset, SIGTERM);
    if (!(s.kids = calloc((size_t)o->nkids, sizeof *s.kids))) {
        log_error(s.lg, "out of memory for %d processes", o->nkids);
        return EXIT_FAILURE_RUNTIME;
    }
    for (int i = 0; i < o->nkids; i++)
        s.kids[i].spec = &o->kids[i];
    if ((s.sigfd = signalfd(-1, &s.waitset, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        log_error(s.lg, "cannot start: signalfd: %s", strerror(errno));
        free(s.kids);
        return EXIT_FAILURE_RUNTIME;
    }
    int code = sup_run(&s, stop);
    close(s.sigfd);
    free(s.kids);
    return code;
}
