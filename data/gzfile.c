/* data/gzfile.c -- text data files read through zlib, so a gzipped CSV or libsvm file
 * (moons.csv.gz) loads as the plain one does, as IDX files already do. gzread passes a
 * file that is not gzip through unchanged, so every text file goes this way. */
#define _GNU_SOURCE /* fopencookie */
#include "data_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

static ssize_t gz_cookie_read(void *cookie, char *buf, size_t size)
{
    gzFile g = cookie;
    int n = gzread(g, buf, size > INT_MAX ? INT_MAX : (unsigned)size);
    if (n < 0) {
        int zerr;
        gzerror(g, &zerr);
        /* Z_BUF_ERROR: the file ends inside the compressed stream (truncated). */
        errno = zerr == Z_ERRNO ? errno : EBADMSG;
        return -1;
    }
    return n;
}

static int gz_cookie_close(void *cookie) { return gzclose(cookie) == Z_OK ? 0 : EOF; }

FILE *ds_fopen_text(const char *path, pst_err *err)
{
    gzFile g = gzopen(path, "rb");
    if (!g) {
        pst_err_set(err, PST_ERR_IO, "%s: %s", path, errno ? strerror(errno) : "cannot open");
        return NULL;
    }
    gzbuffer(g, 1 << 17);
    cookie_io_functions_t io = {.read = gz_cookie_read, .close = gz_cookie_close};
    FILE *f = fopencookie(g, "r", io);
    if (!f) {
        pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        gzclose(g);
    }
    return f;
}
