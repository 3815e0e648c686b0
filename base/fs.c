/* base/fs.c -- see fs.h. */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int fs_mkdirs(const char *path, pst_err *err)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf)
        return pst_err_set(err, PST_ERR_ARG, "bad folder path '%.80s'", path);
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return pst_err_set(err, PST_ERR_IO, "%s: cannot create folder: %s", buf,
                               strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot create folder: %s", buf, strerror(errno));
    return PST_OK;
}

int fs_sync_parent(const char *path, pst_err *err)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot open its folder to sync it: %s", path,
                           strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot sync its folder: %s", path, strerror(e));
    return PST_OK;
}

int fs_remove(const char *path, pst_err *err)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? PST_OK
                               : pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return pst_err_set(err, PST_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        return PST_OK;
    }
    DIR *d = opendir(path);
    if (!d)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct dirent *e;
    int rc = PST_OK;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4352];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (unlink(p) != 0 && errno != ENOENT)
            rc = pst_err_set(err, PST_ERR_IO, "%s: cannot remove: %s", p, strerror(errno));
    }
    closedir(d);
    if (!rc && rmdir(path) != 0)
        rc = pst_err_set(err, PST_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return rc;
}

int fs_atomic_open(fs_atomic *a, const char *path, mode_t mode, pst_err *err)
{
    memset(a, 0, sizeof *a);
    if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path)
        return pst_err_set(err, PST_ERR_ARG, "%.80s...: path too long", path);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld", path, (long)getpid());
    /* A temporary file of this pid left by a killed earlier process goes first. */
    if (unlink(a->tmp) != 0 && errno != ENOENT)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot remove: %s", a->tmp, strerror(errno));
    int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot create: %s", a->tmp, strerror(errno));
    a->f = fdopen(fd, "w");
    if (!a->f) {
        int e = errno;
        close(fd);
        unlink(a->tmp);
        pst_err_set(err, PST_ERR_IO, "%s: cannot open: %s", a->tmp, strerror(e));
        a->tmp[0] = '\0';
        return err ? err->code : PST_ERR_IO;
    }
    return PST_OK;
}

int fs_atomic_commit(fs_atomic *a, fs_commit_mode mode, pst_err *err)
{
    if (!a->f)
        return pst_err_set(err, PST_ERR_STATE, "%s: not open for writing", a->path);
    int bad = fflush(a->f) != 0 || ferror(a->f) || fsync(fileno(a->f)) != 0;
    int e = errno;
    if (fclose(a->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    a->f = NULL;
    if (bad) {
        unlink(a->tmp);
        return pst_err_set(err, PST_ERR_IO, "%s: write failed: %s", a->path, strerror(e));
    }
    if (mode == FS_EXCLUSIVE) {
        /* link(2) fails with EEXIST instead of replacing: no window where PATH is clobbered. */
        int rc = link(a->tmp, a->path);
        e = errno;
        unlink(a->tmp);
        if (rc != 0)
            return pst_err_set(err, PST_ERR_IO, "%s: cannot create: %s", a->path, strerror(e));
    } else if (rename(a->tmp, a->path) != 0) {
        e = errno;
        unlink(a->tmp);
        return pst_err_set(err, PST_ERR_IO, "%s: cannot finish writing: %s", a->path, strerror(e));
    }
    return fs_sync_parent(a->path, err);
}

void fs_atomic_abort(fs_atomic *a)
{
    if (a->f) {
        fclose(a->f);
        a->f = NULL;
    }
    if (a->tmp[0])
        unlink(a->tmp);
}

/* What the lock file says of its holder, on one line, or "(unknown)". */
static void read_holder(int fd, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap - 1, 0);
    if (n <= 0) {
        snprintf(buf, cap, "(unknown)");
        return;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

int fs_lock_dir(fs_lock *l, const char *dir, const char *who, pst_err *err)
{
    char path[4200];
    l->fd = -1;
    int rc = fs_mkdirs(dir, err);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/" FS_LOCK_NAME, dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char holder[256];
        read_holder(fd, holder, sizeof holder);
        close(fd);
        if (e == EWOULDBLOCK)
            return pst_err_set(err, PST_ERR_CONFIG,
                               "%s is in use by another job: %s (%s); "
                               "wait for it to end or give this job another output.dir",
                               dir, holder, path);
        return pst_err_set(err, PST_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
    }
    char host[256] = "?", line[700], when[32];
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    int n = snprintf(line, sizeof line, "%s, pid %ld on %s since %s\n", who, (long)getpid(), host,
                     when);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return pst_err_set(err, PST_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    l->fd = fd;
    return PST_OK;
}

void fs_unlock(fs_lock *l)
{
    if (l->fd >= 0)
        close(l->fd); /* drops the flock */
    l->fd = -1;
}

int fs_read_all(const char *path, char **out, size_t *len, pst_err *err)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = PST_OK;
    for (;;) {
        if (cap - n < 65536) {
            size_t nc = cap ? 2 * cap : 1 << 20;
            char *nb = realloc(buf, nc + 1);
            if (!nb) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory reading it", path);
                goto cleanup;
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        rc = pst_err_set(err, PST_ERR_IO, "%s: read error: %s", path, strerror(errno));
        goto cleanup;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
cleanup:
    free(buf);
    fclose(f);
    return rc;
}
