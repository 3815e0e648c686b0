/* ckpt/folders.c -- checkpoint folders: listing, pruning and clearing entries <prefix><N><suffix>,
 * and folders written atomically (begin, commit, abort). */
#include "ckpt.h"

#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Checkpoint folders ------------------------------------------------------------------ */

/* If name is prefix N suffix (N decimal, no sign, at most 18 digits), stores N and
 * returns 1; with tmp, the name must instead continue with ".tmp." after the suffix (a
 * write that never finished). */
static int parse_entry(const char *name, const char *prefix, const char *suffix, int tmp,
                       int64_t *tag)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    if (strncmp(name, prefix, pl) != 0)
        return 0;
    const char *d = name + pl;
    size_t nd = 0;
    int64_t v = 0;
    while (d[nd] >= '0' && d[nd] <= '9' && nd < 18)
        v = v * 10 + (d[nd++] - '0');
    if (nd == 0 || (d[nd] >= '0' && d[nd] <= '9') || strncmp(d + nd, suffix, sl) != 0)
        return 0;
    const char *rest = d + nd + sl;
    if (tmp ? strncmp(rest, ".tmp.", 5) != 0 : rest[0] != '\0')
        return 0;
    *tag = v;
    return 1;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Every tag of dir's entries prefix N suffix, newest first, in a malloc'ed array. */
static int list_all(const char *dir, const char *prefix, const char *suffix, int64_t **tags, int *n,
                    pst_err *err)
{
    *tags = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT
                   ? PST_OK
                   : pst_err_set(err, PST_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    int cap = 0, rc = PST_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t tag;
        if (!parse_entry(e->d_name, prefix, suffix, 0, &tag))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *t = realloc(*tags, (size_t)cap * sizeof *t);
            if (!t) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            *tags = t;
        }
        (*tags)[(*n)++] = tag;
    }
    closedir(d);
    if (rc) {
        free(*tags);
        *tags = NULL;
        *n = 0;
        return rc;
    }
    if (*n)
        qsort(*tags, (size_t)*n, sizeof **tags, cmp_desc);
    return PST_OK;
}

int ckpt_list(const char *dir, const char *prefix, const char *suffix, int64_t *tags, int max,
              int *n, pst_err *err)
{
    int64_t *all;
    int total;
    int rc = list_all(dir, prefix, suffix, &all, &total, err);
    if (rc)
        return rc;
    *n = total < max ? total : max;
    if (*n)
        memcpy(tags, all, (size_t)*n * sizeof *tags);
    free(all);
    return PST_OK;
}

int ckpt_prune(const char *dir, const char *prefix, const char *suffix, int keep, pst_err *err)
{
    int64_t *all;
    int total;
    int rc = list_all(dir, prefix, suffix, &all, &total, err);
    char p[4352];
    for (int i = keep; i < total && !rc; i++) {
        snprintf(p, sizeof p, "%s/%s%" PRId64 "%s", dir, prefix, all[i], suffix);
        rc = fs_remove(p, err);
    }
    free(all);
    if (rc)
        return rc;
    /* Leftovers of writes that never finished (a crash between create and rename). This
     * process's own are in progress elsewhere on the call stack, never here. */
    DIR *d = opendir(dir);
    if (!d)
        return PST_OK;
    char own[32];
    snprintf(own, sizeof own, ".tmp.%ld", (long)getpid());
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        int64_t tag;
        size_t len = strlen(e->d_name), ol = strlen(own);
        if (!parse_entry(e->d_name, prefix, suffix, 1, &tag) ||
            (len >= ol && strcmp(e->d_name + len - ol, own) == 0))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        rc = fs_remove(p, err);
    }
    closedir(d);
    return rc;
}

int ckpt_remove_newer(const char *dir, const char *prefix, const char *suffix, int64_t after,
                      pst_err *err)
{
    int64_t *all;
    int total;
    int rc = list_all(dir, prefix, suffix, &all, &total, err);
    char p[4352];
    for (int i = 0; i < total && !rc && all[i] > after; i++) {
        snprintf(p, sizeof p, "%s/%s%" PRId64 "%s", dir, prefix, all[i], suffix);
        rc = fs_remove(p, err);
    }
    free(all);
    return rc;
}

/* Removes every entry prefix N suffix of dir; *n: how many. */
static int remove_all(const char *dir, const char *prefix, const char *suffix, int *n, pst_err *err)
{
    int64_t *all;
    int total;
    int rc = list_all(dir, prefix, suffix, &all, &total, err);
    char p[4352];
    *n = 0;
    for (int i = 0; i < total && !rc; i++) {
        snprintf(p, sizeof p, "%s/%s%" PRId64 "%s", dir, prefix, all[i], suffix);
        if (!(rc = fs_remove(p, err)))
            (*n)++;
    }
    free(all);
    return rc;
}

int ckpt_set_aside(const char *dir, const char *prefix, const char *suffix, int *moved,
                   pst_err *err)
{
    int64_t *all;
    int total, old;
    *moved = 0;
    int rc = list_all(dir, prefix, suffix, &all, &total, err);
    if (rc || total == 0)
        return rc;
    char aside[4200], from[4352], to[4352];
    snprintf(aside, sizeof aside, "%s/" CKPT_ASIDE, dir);
    if ((rc = fs_mkdirs(aside, err)) || (rc = remove_all(aside, prefix, suffix, &old, err)))
        goto cleanup;
    for (int i = 0; i < total; i++) {
        snprintf(from, sizeof from, "%s/%s%" PRId64 "%s", dir, prefix, all[i], suffix);
        snprintf(to, sizeof to, "%s/%s%" PRId64 "%s", aside, prefix, all[i], suffix);
        if (rename(from, to) != 0) {
            rc = pst_err_set(err, PST_ERR_IO, "cannot move %s to %s: %s", from, aside,
                             strerror(errno));
            goto cleanup;
        }
        (*moved)++;
    }
    /* Both folders' entries changed: make the moves durable before training relies on
     * them. */
    if ((rc = fs_sync_parent(to, err)) == PST_OK)
        rc = fs_sync_parent(from, err);
cleanup:
    free(all);
    return rc;
}

int ckpt_drop_aside(const char *dir, const char *prefix, const char *suffix, int *removed,
                    pst_err *err)
{
    char aside[4200];
    snprintf(aside, sizeof aside, "%s/" CKPT_ASIDE, dir);
    int rc = remove_all(aside, prefix, suffix, removed, err);
    if (rc == PST_OK)
        rmdir(aside); /* fails while other servers' entries are still there: fine */
    return rc;
}

int ckpt_dir_begin(const char *path, char *tmp, size_t cap, pst_err *err)
{
    if (snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid()) >= (int)cap)
        return pst_err_set(err, PST_ERR_ARG, "%s: path too long", path);
    int rc = fs_remove(tmp, err);
    if (rc)
        return rc;
    if (mkdir(tmp, 0777) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot create folder: %s", tmp, strerror(errno));
    return PST_OK;
}

int ckpt_dir_commit(const char *tmp, const char *path, pst_err *err)
{
    /* rename(2) replaces only an empty folder; an older folder of the same name (a run
     * resumed from before it) goes first. */
    int rc = fs_remove(path, err);
    if (rc)
        return rc;
    if (rename(tmp, path) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s: cannot finish writing: %s", path, strerror(errno));
    return fs_sync_parent(path, err);
}

void ckpt_dir_abort(const char *tmp) { fs_remove(tmp, NULL); }
