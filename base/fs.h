/* base/fs.h -- the few file-system operations that must be done carefully, done once.
 *
 * A file that another process (or a later run) trusts is never seen half-written: it is
 * written as PATH.tmp.PID in the same folder, flushed and fsync'ed, renamed over PATH
 * (atomic on POSIX), and then the folder itself is fsync'ed, since rename(2) is atomic but
 * not durable until the folder entry reaches the disk.
 *
 *   fs_atomic a;
 *   if ((rc = fs_atomic_open(&a, path, 0644, err)))
 *       return rc;
 *   fprintf(a.f, ...);                    // or fwrite
 *   return fs_atomic_commit(&a, FS_REPLACE, err);   // or fs_atomic_abort(&a)
 *
 * Every function returns a pst_status and names the path in err. */
#ifndef PSTRAIN_BASE_FS_H
#define PSTRAIN_BASE_FS_H

#include <stdio.h>
#include <sys/types.h>

#include "base/err.h"

/* mkdir -p: creates path and every missing folder above it (mode 0777 before umask). */
int fs_mkdirs(const char *path, pst_err *err);

/* fsync of the folder that holds path ("." for a bare name). File systems that cannot
 * sync a folder (EINVAL) are not an error. */
int fs_sync_parent(const char *path, pst_err *err);

/* Removes a file, or a folder and the plain files in it (not recursive below that). A
 * path that does not exist is not an error. */
int fs_remove(const char *path, pst_err *err);

/* An atomic write in progress; caller-owned storage, filled by fs_atomic_open. */
typedef struct {
    FILE *f;         /* write here */
    char path[4096]; /* the final name */
    char tmp[4160];  /* PATH.tmp.PID while open */
} fs_atomic;

typedef enum {
    FS_REPLACE = 0, /* an existing PATH is replaced */
    FS_EXCLUSIVE    /* an existing PATH is kept and the commit fails (never clobbers) */
} fs_commit_mode;

/* Creates PATH.tmp.PID with mode (O_EXCL: a planted file or link is refused). */
int fs_atomic_open(fs_atomic *a, const char *path, mode_t mode, pst_err *err);
/* Flushes, fsyncs, closes and moves the file into place, then syncs the folder. On any
 * failure the temporary file is removed and PATH is as it was. */
int fs_atomic_commit(fs_atomic *a, fs_commit_mode mode, pst_err *err);
/* Closes and removes the temporary file; PATH is untouched. Safe after a failed open. */
void fs_atomic_abort(fs_atomic *a);

/* The whole file at path in a malloc'd buffer (*out, *len bytes; a NUL follows, not
 * counted; an empty file is fine). PST_ERR_IO naming the path, or PST_ERR_NOMEM. */
int fs_read_all(const char *path, char **out, size_t *len, pst_err *err);

/* An advisory lock on a run folder, so that two jobs never write one: flock(2) on
 * DIR/.pstrain.lock (created with the folder if missing), held until fs_unlock or the
 * process ends (the kernel drops it for a killed process, so a stale file never blocks).
 * The file says who holds it -- `who`, the pid, the host and since when -- and a refused
 * caller's error (PST_ERR_CONFIG) quotes that. Not inherited by child processes. */
#define FS_LOCK_NAME ".pstrain.lock"
typedef struct {
    int fd; /* -1: not held */
} fs_lock;

int fs_lock_dir(fs_lock *l, const char *dir, const char *who, pst_err *err);
void fs_unlock(fs_lock *l);

#endif
