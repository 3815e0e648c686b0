/* cli/progress.h -- the progress view of `pstrain local`: one line for the whole job,
 * drawn from the records its workers write on a pipe.
 *
 * Every worker writes short records to a pipe the launcher passes as fd 3 and names in
 * PSTRAIN_PROGRESS_FD (format in worker/dist.h); the view sums them into one view of the
 * job. On a terminal it draws that as ONE line, redrawn in place, and takes the children's
 * stdout/stderr through pipes of its own so that it can lift the line off before each
 * whole line of theirs (and the launcher's own, through cli_view_log_stream) and put it
 * back after; no worker draws a bar. Elsewhere (CI, Kubernetes logs) the children write
 * straight to the launcher's stderr, as without progress, and the view logs a plain
 * "progress:" line at each new epoch, every CLI_VIEW_PLAIN_EVERY_MS, and when every step
 * is done.
 *
 * Single-threaded: the supervisor (cli/supervise.h) polls the view's descriptors and
 * calls cli_view_on_poll; nothing here blocks. */
#ifndef PSTRAIN_CLI_PROGRESS_H
#define PSTRAIN_CLI_PROGRESS_H

#include <poll.h>
#include <stdio.h>

#include "base/err.h"
#include "base/log.h"

#define CLI_PROGRESS_ENV "PSTRAIN_PROGRESS_FD"
#define CLI_VIEW_REDRAW_MS 100        /* the live line is redrawn at most this often */
#define CLI_VIEW_PLAIN_EVERY_MS 10000 /* a plain progress line at least this often */
#define CLI_VIEW_NFDS 3               /* descriptors cli_view_poll_fds fills */

typedef struct cli_view cli_view;

/* The progress pipe for `workers` workers and, when stderr is a terminal, the output
 * pipes and the log stream. NULL with err set (errno's text) on failure. */
cli_view *cli_view_create(int workers, pst_err *err);
/* Closes every descriptor the view holds; NULL is a no-op. */
void cli_view_destroy(cli_view *v);

/* The stream the launcher's own log lines go to (live: through the view, which lifts the
 * line off first); NULL when not live (write to stderr). Owned by the view. */
FILE *cli_view_log_stream(cli_view *v);
/* Where the plain "progress:" lines go (borrowed; set before the first poll). */
void cli_view_set_log(cli_view *v, const log_ctx *lg);

/* The workers' end of the progress pipe (their fd 3), and the write ends that become
 * every child's stdout and stderr (-1: the child inherits the launcher's). -1 once
 * closed. */
int cli_view_progress_w(const cli_view *v);
int cli_view_child_out(const cli_view *v);
int cli_view_child_err(const cli_view *v);
/* Closes those write ends in the launcher: once only children hold them, their exits
 * show as EOF. */
void cli_view_close_child_ends(cli_view *v);

/* Fills pf[0..CLI_VIEW_NFDS) with the descriptors to wait on (fd -1: none), and acts on
 * what poll reported in them: records read and shown, output passed on. */
void cli_view_poll_fds(const cli_view *v, struct pollfd *pf);
void cli_view_on_poll(cli_view *v, const struct pollfd *pf);
/* Every child has ended: reads what they wrote last, then takes the line off the screen. */
void cli_view_finish(cli_view *v);

/* The worker side: the descriptor pstrain local hands its workers for progress records,
 * from environment variable PSTRAIN_PROGRESS_FD: *fd = -1 when unset; PST_ERR_ARG when
 * it is set but not an open pipe. */
int cli_progress_fd(int *fd, pst_err *err);

#endif
