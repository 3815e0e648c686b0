/* cli/supervise.h -- a job's processes started from one binary and supervised until every
 * one has ended (the supervision of `pstrain local`).
 *
 * Child 0 is the rendezvous (the coordinator): it starts first with the write end of a
 * pipe as fd 3 and must write one line -- its endpoint -- there within ready_ms; the
 * others start once it has (their argv may point into the endpoint buffer, filled by
 * then). Every other child starts with its own fd3 (a worker: the progress pipe) or none.
 *
 * Supervision is signal driven: SIGCHLD, SIGINT and SIGTERM stay blocked while children
 * run and are read from a signalfd, polled together with the progress view's pipes
 * (cli/progress.h); waitpid(WNOHANG) then collects whoever ended. The first failure (or
 * a stop signal) sends SIGTERM to all the others, and SIGKILL to any still running after
 * the grace period; a second stop signal sends SIGKILL at once. A child other than child 0
 * that fails retriably (exit 75, or killed by a signal) is started again, up to
 * max_restarts times each; past that, a worker (leave_behind) is left behind while the
 * job goes on, any other ends it. Every path reaps every child, and each child has
 * PR_SET_PDEATHSIG(SIGTERM), so even a SIGKILLed launcher leaves no orphans. */
#ifndef PSTRAIN_CLI_SUPERVISE_H
#define PSTRAIN_CLI_SUPERVISE_H

#include <signal.h>

#include "base/log.h"
#include "cli/progress.h"

/* The descriptor number a child gets its fd3 as: always this number, so the command
 * lines are the same in every run (the lowest fd after stdin, stdout and stderr). */
#define CLI_SUP_FD 3

typedef struct {
    const char *name; /* "coordinator", "server[0]", "worker[3]": names it in log lines */
    char **argv;      /* NULL-terminated; borrowed */
    char **envp;      /* NULL: the launcher's environment; borrowed */
    int progress;     /* gets the view's progress pipe as fd 3 */
    int leave_behind; /* a worker: past its restarts, the job goes on without it */
} cli_sup_child;

typedef struct {
    const char *exe;           /* what every child runs */
    long grace_ms;             /* SIGTERM -> SIGKILL */
    long ready_ms;             /* child 0 start -> endpoint line */
    int max_restarts;          /* per child, child 0 excepted */
    long hang_ms;              /* a child stopped (SIGSTOP) this long is killed and, while
                                  it has restarts left, replaced; 0: never */
    const log_ctx *lg;         /* the launcher's log lines; borrowed */
    cli_view *view;            /* the progress view; borrowed, not NULL */
    const cli_sup_child *kids; /* (nkids), [0] the rendezvous; borrowed */
    int nkids;
    char *ep; /* child 0's endpoint line goes here (epcap bytes) */
    size_t epcap;
} cli_sup_options;

/* Starts every child, supervises them until all have ended and returns the launcher's
 * exit code: 0 when every child exited 0 (workers left behind excepted), else the code
 * of the first failure (128+SIG for a signal; 1 when a child could not be started or
 * child 0 reported no endpoint), or 130/143 for a stop signal. Child 0's own failure is
 * the exit code whichever child ended first; once child 0 has exited 0 (the job is over)
 * the others have grace_ms to end, then are stopped without changing the exit code. *stop is main()'s signal
 * flag (a signal may reach another thread's handler rather than the signalfd). */
int cli_sup_run(const cli_sup_options *o, const volatile sig_atomic_t *stop);

#endif
