/* cli/gnuplot.h -- running gnuplot for `pstrain plot` and `pstrain explain`.
 *
 * A command writes its whole gnuplot script (data inline as datablocks) through a callback;
 * the script goes to gnuplot's stdin from an unlinked temp file, and gnuplot is started
 * with posix_spawn, no shell. User text reaches a script only through cli_gp_sanitise or
 * inside a single-quoted string the caller has checked for quotes and line breaks.
 * gnuplot is an optional dependency (Debian gnuplot-nox). */
#ifndef PSTRAIN_CLI_GNUPLOT_H
#define PSTRAIN_CLI_GNUPLOT_H

#include <stddef.h>
#include <stdio.h>

/* 1 and buf = the full path of the executable `name` found on PATH; 0 when none. */
int cli_gp_find(const char *name, char *buf, size_t size);

/* Runs gnuplot (its path) on the script write(s, ctx) writes; gnuplot's stdout and
 * stderr are ours. Messages start "pstrain CMD: ". Returns an EXIT_* code (cli/cli.h). */
int cli_gp_run(const char *cmd, const char *gnuplot, void (*write)(FILE *s, const void *ctx),
               const void *ctx);

/* dst = src with every character outside [A-Za-z0-9 _.+-] replaced by '?', cut to n - 1. */
void cli_gp_sanitise(char *dst, size_t n, const char *src);

#endif
