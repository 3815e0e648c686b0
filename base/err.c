/* base/err.c -- see err.h. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int pst_err_set(pst_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int pst_err_prefix(pst_err *err, const char *fmt, ...)
{
    if (!err)
        return PST_OK;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    size_t used = (size_t)n < sizeof err->msg ? (size_t)n : sizeof err->msg - 1;
    /* Append ": old", truncating the old message if the whole line does not fit. */
    size_t room = sizeof err->msg - used;
    if (room > 1) {
        err->msg[used] = ':';
        err->msg[used + 1] = '\0';
        if (room > 2) {
            err->msg[used + 1] = ' ';
            size_t len = strnlen(old, sizeof old);
            size_t take = len < room - 3 ? len : room - 3;
            memcpy(err->msg + used + 2, old, take);
            err->msg[used + 2 + take] = '\0';
        }
    }
    return err->code;
}

void pst_err_clear(pst_err *err)
{
    if (err) {
        err->code = PST_OK;
        err->msg[0] = '\0';
    }
}

const char *pst_status_name(int code)
{
    switch (code) {
    case PST_OK: return "ok";
    case PST_ERR_ARG: return "argument";
    case PST_ERR_NOMEM: return "memory";
    case PST_ERR_IO: return "io";
    case PST_ERR_DATA: return "data";
    case PST_ERR_CONFIG: return "config";
    case PST_ERR_NUMERIC: return "numeric";
    case PST_ERR_DIVERGED: return "diverged";
    case PST_ERR_STATE: return "state";
    case PST_ERR_TIMEOUT: return "timeout";
    case PST_ERR_PEER: return "peer";
    case PST_ERR_NET: return "network";
    default: return "unknown";
    }
}
