/* base/err.h -- status codes and the error message that travels with them.
 *
 * Library code never prints and never exits: a failing function returns a non-zero
 * pst_status and, when the caller passed a pst_err, fills it with one line that names
 * what failed and where ("train.csv:12: field 3 'abc' is not a number"). Only main()
 * prints it and chooses the exit code. Bugs (broken invariants) assert instead. */
#ifndef PSTRAIN_BASE_ERR_H
#define PSTRAIN_BASE_ERR_H

#include <stddef.h>

typedef enum {
    PST_OK = 0,
    PST_ERR_ARG,     /* bad argument or flag */
    PST_ERR_NOMEM,   /* allocation failed or size overflows */
    PST_ERR_IO,      /* open/read/write failed */
    PST_ERR_DATA,    /* malformed input data */
    PST_ERR_CONFIG,  /* bad job file or override */
    PST_ERR_NUMERIC, /* NaN/Inf where a finite value is needed */
    PST_ERR_STATE,   /* call not valid in the object's current state */
    PST_ERR_TIMEOUT, /* a peer did not answer in time (retriable) */
    PST_ERR_PEER,    /* a peer refused a request or sent a bad message */
    PST_ERR_NET,     /* a socket operation failed */
    PST_ERR_DIVERGED /* training diverged or sits at chance, and the job asked to stop
                        (train.on_divergence: stop) */
} pst_status;

typedef struct {
    int code;      /* a pst_status; PST_OK when nothing failed */
    char msg[512]; /* one line, no trailing newline */
} pst_err;

/* Records code and a printf-style message in err (err may be NULL) and returns code,
 * so a failure path reads: return pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno)); */
int pst_err_set(pst_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message, for adding context on the way up. */
int pst_err_prefix(pst_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void pst_err_clear(pst_err *err);

/* Short stable name of a code ("io", "data", ...). */
const char *pst_status_name(int code);

#endif
