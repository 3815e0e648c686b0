/* base/log.c -- see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
    for (int i = 0; i <= LOG_DEBUG; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void log_init(log_ctx *lg, const char *role, int rank, FILE *out)
{
    if (rank >= 0)
        snprintf(lg->who, sizeof lg->who, "%s[%d]", role, rank);
    else
        snprintf(lg->who, sizeof lg->who, "%s", role);
    lg->out = out ? out : stderr;
    lg->level = LOG_INFO;
    const char *env = getenv("PSTRAIN_LOG");
    int lvl = env ? log_level_parse(env) : -1;
    if (lvl >= 0)
        lg->level = (log_level)lvl;
}

void log_msg(const log_ctx *lg, log_level level, const char *fmt, ...)
{
    if (level > lg->level)
        return;
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, lg->who, level_names[level]);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line so lines of processes sharing a terminal do not interleave. */
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len] = '\n';
        line[len + 1] = '\0';
    }
    fputs(line, lg->out);
    fflush(lg->out);
}
