/* cli/progress.c -- the progress view of `pstrain local` (progress.h). */
#define _GNU_SOURCE /* pipe2, fopencookie */
#include "cli/progress.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

/* A worker's latest progress record (worker/dist.h). */
typedef struct {
    int seen, epoch, epochs;
    long long step, steps, clock, total;
    double loss, sps;
} view_record;

/* Children's output taken through a pipe (live mode): whole lines go on to fd `out`. */
typedef struct {
    int fd;  /* read end; -1: not forwarded, or closed at EOF */
    int out; /* STDOUT_FILENO or STDERR_FILENO */
    size_t len;
    char buf[8192]; /* the start of a line not yet complete */
} view_fwd;

struct cli_view {
    const log_ctx *lg;  /* plain progress lines */
    int prog_r, prog_w; /* the workers' progress pipe */
    view_record *rec;   /* (W) by worker rank */
    int nworkers;
    char pbuf[512]; /* a record not yet complete */
    size_t plen;
    int live;                 /* stderr is a terminal: one line, redrawn */
    int cols;                 /* the terminal's width */
    view_fwd fwd[2];          /* live: children's stdout [0] (when a terminal too) and stderr [1] */
    int child_out, child_err; /* their write ends, the children's fd 1 and 2; -1: inherit */
    FILE *logf;               /* live: the launcher's own log stream (log_write) */
    char line[256];           /* the progress text last drawn */
    int shown;                /* line is on the screen */
    long long last_draw_ms, t0_ms, next_plain_ms;
    long long done0; /* steps done at t0_ms, for the rate */
    int plain_epoch; /* last epoch a plain line was logged for */
    int finished;    /* the every-step-done line was drawn/logged */
};

int cli_progress_fd(int *fd, pst_err *err)
{
    *fd = -1;
    const char *s = getenv(CLI_PROGRESS_ENV);
    if (!s)
        return PST_OK;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    struct stat st;
    if (end == s || *end != '\0' || errno || v < 0 || v > INT_MAX || fstat((int)v, &st) != 0 ||
        !S_ISFIFO(st.st_mode))
        return pst_err_set(err, PST_ERR_ARG,
                           CLI_PROGRESS_ENV "=%s: not an open pipe (it is "
                                            "set by pstrain local for its workers)",
                           s);
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
static void emit(cli_view *v, int fd, const char *p, size_t n)
{
    if (v->shown)
        write_all(STDERR_FILENO, "\r\033[K", 4);
    write_all(fd, p, n);
    if (v->shown)
        write_all(STDERR_FILENO, v->line, strlen(v->line));
}

/* The launcher's own log lines in live mode (a fopencookie stream; log.c flushes once a
 * line). */
static ssize_t log_write(void *cookie, const char *buf, size_t n)
{
    emit(cookie, STDERR_FILENO, buf, n);
    return (ssize_t)n;
}

/* Reads what is there from f and passes its whole lines on; at EOF (or flush) the rest too. */
static void forward(cli_view *v, view_fwd *f, int flush)
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
            emit(v, f->out, f->buf, whole);
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
static void show_progress(cli_view *v)
{
    int known = 0, epoch = 0, epochs = 0, busy = 0, nloss = 0;
    long long done = 0, total = 0;
    double loss = 0, sps = 0;
    for (int i = 0; i < v->nworkers; i++) {
        const view_record *r = &v->rec[i];
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
    total += (long long)(v->nworkers - known) * (total / known);
    char lossbuf[32] = "-";
    if (nloss)
        snprintf(lossbuf, sizeof lossbuf, "%.4f", loss / nloss);
    long long now = pst_mono_ms();
    if (v->t0_ms == 0) {
        v->t0_ms = now;
        v->done0 = done;
    }
    double rate =
        now > v->t0_ms && done > v->done0 ? (done - v->done0) / ((now - v->t0_ms) / 1e3) : NAN;
    char eta[32];
    fmt_eta(eta, sizeof eta, (double)(total - done) / rate);
    int all = done >= total && known == v->nworkers;
    char text[200];
    snprintf(text, sizeof text,
             "epoch %d/%d  step %lld/%lld (%d%%)  loss %s  %.0f samples/s  "
             "ETA %s",
             epoch, epochs, done, total, total ? (int)(100 * done / total) : 0, lossbuf, sps,
             all ? "0s" : eta);
    if (v->live) {
        if (!(all && !v->finished) && now - v->last_draw_ms < CLI_VIEW_REDRAW_MS)
            return;
        v->last_draw_ms = now;
        /* One screen row: a wrapped line could not be redrawn in place. */
        int w = v->cols > 8 ? v->cols - 1 : 79;
        snprintf(v->line, sizeof v->line, "\r\033[K%.*s", w, text);
        write_all(STDERR_FILENO, v->line, strlen(v->line));
        v->shown = 1;
    } else if (epoch > v->plain_epoch || now >= v->next_plain_ms || (all && !v->finished)) {
        v->plain_epoch = epoch;
        v->next_plain_ms = now + CLI_VIEW_PLAIN_EVERY_MS;
        if (v->lg)
            log_info(v->lg, "progress: %s", text);
    }
    v->finished |= all;
}

/* Reads the workers' records that are there and shows the result. */
static void read_progress(cli_view *v)
{
    int got = 0;
    while (v->prog_r >= 0) {
        ssize_t r = read(v->prog_r, v->pbuf + v->plen, sizeof v->pbuf - 1 - v->plen);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0 || errno != EAGAIN) { /* every writer is gone */
                close(v->prog_r);
                v->prog_r = -1;
            }
            break;
        }
        v->plen += (size_t)r;
        v->pbuf[v->plen] = '\0';
        char *p = v->pbuf, *nl;
        while ((nl = strchr(p, '\n'))) {
            *nl = '\0';
            view_record rec = {.seen = 1};
            int rank;
            if (sscanf(p, "P %d %d %d %lld %lld %lld %lld %lf %lf", &rank, &rec.epoch, &rec.epochs,
                       &rec.step, &rec.steps, &rec.clock, &rec.total, &rec.loss, &rec.sps) == 9 &&
                rank >= 0 && rank < v->nworkers) {
                v->rec[rank] = rec;
                got = 1;
            }
            p = nl + 1;
        }
        v->plen = strlen(p);
        if (v->plen == sizeof v->pbuf - 1) /* no newline in a whole buffer: not a record */
            v->plen = 0;
        memmove(v->pbuf, p, v->plen);
    }
    if (got)
        show_progress(v);
}

/* The pipes and the log stream; -1 with errno set. */
static int view_open(cli_view *v)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    v->prog_r = p[0];
    v->prog_w = p[1];
    /* The workers' end blocks no worker: each makes it non-blocking itself. */
    if (fcntl(v->prog_w, F_SETFL, 0) != 0)
        return -1;
    v->live = isatty(STDERR_FILENO);
    if (!v->live)
        return 0;
    struct winsize ws;
    v->cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 80;
    for (int k = isatty(STDOUT_FILENO) ? 0 : 1; k < 2; k++) {
        if (pipe2(p, O_CLOEXEC) != 0)
            return -1;
        v->fwd[k].fd = p[0];
        v->fwd[k].out = k ? STDERR_FILENO : STDOUT_FILENO;
        *(k ? &v->child_err : &v->child_out) = p[1];
        if (fcntl(p[0], F_SETFL, O_NONBLOCK) != 0)
            return -1;
    }
    cookie_io_functions_t io = {.write = log_write};
    if (!(v->logf = fopencookie(v, "w", io)))
        return -1;
    setvbuf(v->logf, NULL, _IOLBF, 0);
    return 0;
}

cli_view *cli_view_create(int workers, pst_err *err)
{
    cli_view *v = calloc(1, sizeof *v);
    if (!v || !(v->rec = calloc((size_t)workers, sizeof *v->rec))) {
        free(v);
        pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        return NULL;
    }
    v->nworkers = workers;
    v->prog_r = v->prog_w = v->fwd[0].fd = v->fwd[1].fd = v->child_out = v->child_err = -1;
    if (view_open(v) != 0) {
        pst_err_set(err, PST_ERR_IO, "%s", strerror(errno));
        cli_view_destroy(v);
        return NULL;
    }
    return v;
}

void cli_view_destroy(cli_view *v)
{
    if (!v)
        return;
    if (v->logf)
        fclose(v->logf);
    int fds[] = {v->prog_r, v->prog_w, v->fwd[0].fd, v->fwd[1].fd, v->child_out, v->child_err};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(v->rec);
    free(v);
}

FILE *cli_view_log_stream(cli_view *v) { return v->logf; }
void cli_view_set_log(cli_view *v, const log_ctx *lg) { v->lg = lg; }
int cli_view_progress_w(const cli_view *v) { return v->prog_w; }
int cli_view_child_out(const cli_view *v) { return v->child_out; }
int cli_view_child_err(const cli_view *v) { return v->child_err; }

void cli_view_close_child_ends(cli_view *v)
{
    int *fds[] = {&v->prog_w, &v->child_out, &v->child_err};
    for (int i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
}

void cli_view_poll_fds(const cli_view *v, struct pollfd *pf)
{
    pf[0] = (struct pollfd){.fd = v->prog_r, .events = POLLIN};
    pf[1] = (struct pollfd){.fd = v->fwd[0].fd, .events = POLLIN};
    pf[2] = (struct pollfd){.fd = v->fwd[1].fd, .events = POLLIN};
}

void cli_view_on_poll(cli_view *v, const struct pollfd *pf)
{
    if (pf[0].revents)
        read_progress(v);
    for (int k = 0; k < 2; k++)
        if (pf[1 + k].revents)
            forward(v, &v->fwd[k], 0);
}

void cli_view_finish(cli_view *v)
{
    read_progress(v);
    for (int k = 0; k < 2; k++)
        forward(v, &v->fwd[k], 1);
    if (v->shown) {
        write_all(STDERR_FILENO, "\r\033[K", 4);
        v->shown = 0;
    }
}
