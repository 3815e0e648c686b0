/* base/log.h -- log lines that say when, who and how bad.
 *
 *   2026-11-29T10:04:05.123Z worker[1] info: epoch 1/5 loss 0.4213 ...
 *
 * A log_ctx is owned by the process's main() and passed down; there is no global logger.
 * The level threshold comes from PSTRAIN_LOG (error|warn|info|debug), default info. */
#ifndef PSTRAIN_BASE_LOG_H
#define PSTRAIN_BASE_LOG_H

#include <stdio.h>

typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } log_level;

typedef struct {
    char who[40];    /* "train", "server[0]", "worker[3]" */
    log_level level; /* lines above this level are dropped */
    FILE *out;       /* stderr unless redirected */
} log_ctx;

/* role "worker", rank 3 -> who "worker[3]"; rank < 0 -> who "worker". Reads PSTRAIN_LOG. */
void log_init(log_ctx *lg, const char *role, int rank, FILE *out);
/* Parses "debug" etc.; returns -1 for an unknown name. */
int log_level_parse(const char *name);
void log_msg(const log_ctx *lg, log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(lg, ...) log_msg((lg), LOG_ERROR, __VA_ARGS__)
#define log_warn(lg, ...) log_msg((lg), LOG_WARN, __VA_ARGS__)
#define log_info(lg, ...) log_msg((lg), LOG_INFO, __VA_ARGS__)
#define log_debug(lg, ...) log_msg((lg), LOG_DEBUG, __VA_ARGS__)

#endif
