/* cli/rundir.c -- a run owns its checkpoint folder, whichever command wrote it before.
 *
 * `pstrain train` writes ckpt-<step>/ folders, a distributed run's servers
 * server-<rank>-clock-<c>.safetensors, both into checkpoint.dir (default
 * <output.dir>/checkpoints), and each kind sets aside only its own kind when a fresh run
 * starts (ckpt_set_aside, issue 19). Runs of the other kind were left in place, so
 * `pstrain consolidate` assembled an older distributed run's shards after a `pstrain
 * train` run of the same name. cli_run_claim sets aside the other kinds too, into the same
 * previous-run/ folder, so a run's folder holds only that run's checkpoints. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "ckpt/ckpt.h"

#define SHARD_SUFFIX ".safetensors"
#define MAX_RANKS 1024

/* The ranks r of dir's entries server-<r>-clock-<c>.safetensors, ascending, at most
 * MAX_RANKS (ranks[r] = 1). A folder that does not exist has none. */
static int shard_ranks(const char *dir, unsigned char *ranks, pst_err *err)
{
    memset(ranks, 0, MAX_RANKS);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT
                   ? PST_OK
                   : pst_err_set(err, PST_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        int r, n = 0;
        if (sscanf(e->d_name, "server-%d-clock-%n", &r, &n) == 1 && n > 0 && r >= 0 &&
            r < MAX_RANKS)
            ranks[r] = 1;
    }
    closedir(d);
    return PST_OK;
}

/* Sets aside prefix/suffix entries of dir; adds how many to *moved. */
static int aside(const char *dir, const char *prefix, const char *suffix, int *moved, pst_err *err)
{
    int n = 0, rc = ckpt_set_aside(dir, prefix, suffix, &n, err);
    *moved += n;
    return rc;
}

/* Whether this run would set aside anything of dir (the loop of cli_run_claim, dry). */
static int others_in(const char *dir, const unsigned char *ranks, int servers, int *any,
                     pst_err *err)
{
    *any = 0;
    for (int r = servers; r < MAX_RANKS; r++)
        *any |= ranks[r];
    int n = 0, rc = PST_OK;
    int64_t tag;
    if (servers > 0 && (rc = ckpt_list(dir, "ckpt-", "", &tag, 1, &n, err)) == PST_OK)
        *any |= n > 0;
    return rc;
}

/* Empties dir/previous-run of every kind of checkpoint (what a run earlier still left). */
static int clear_aside(const char *dir, unsigned char *ranks, pst_err *err)
{
    char prev[4200], prefix[48];
    int gone, rc;
    snprintf(prev, sizeof prev, "%s/" CKPT_ASIDE, dir);
    if ((rc = shard_ranks(prev, ranks, err)))
        return rc;
    for (int r = 0; !rc && r < MAX_RANKS; r++) {
        snprintf(prefix, sizeof prefix, "server-%d-clock-", r);
        if (ranks[r])
            rc = ckpt_drop_aside(dir, prefix, SHARD_SUFFIX, &gone, err);
    }
    return rc ? rc : ckpt_drop_aside(dir, "ckpt-", "", &gone, err);
}

int cli_run_claim(const cfg_job *job, int servers, const log_ctx *lg, pst_err *err)
{
    if (job->checkpoint.resume && job->checkpoint.resume[0])
        return PST_OK; /* a resumed run continues the folder's run */
    char dir[4096], prefix[48];
    cfg_checkpoint_dir(job, dir, sizeof dir);
    unsigned char *ranks = malloc(MAX_RANKS), *prev = malloc(MAX_RANKS);
    int moved = 0, any = 0, rc = PST_OK;
    if (!ranks || !prev) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if ((rc = shard_ranks(dir, ranks, err)) || (rc = others_in(dir, ranks, servers, &any, err)) ||
        !any)
        goto cleanup;
    /* previous-run/ is to hold the one run before this, not a mix with one earlier still. */
    if ((rc = clear_aside(dir, prev, err)))
        goto cleanup;
    /* servers == 0: a single-process run, every shard is another run's; else a
     * distributed run's servers set aside their own ranks' shards themselves, and the
     * single-process checkpoints are another run's. */
    for (int r = servers; !rc && r < MAX_RANKS; r++) {
        if (!ranks[r])
            continue;
        snprintf(prefix, sizeof prefix, "server-%d-clock-", r);
        rc = aside(dir, prefix, SHARD_SUFFIX, &moved, err);
    }
    if (!rc && servers > 0)
        rc = aside(dir, "ckpt-", "", &moved, err);
    if (rc == PST_OK && moved)
        log_warn(lg,
                 "%s holds %d checkpoint(s) of another run (%s): moved to %s/" CKPT_ASIDE
                 " (--resume %s/" CKPT_ASIDE " continues that run), so that this run's folder "
                 "holds only its own",
                 dir, moved,
                 servers > 0 ? "`pstrain train`, or more servers" : "a distributed run's shards",
                 dir, dir);
cleanup:
    free(ranks);
    free(prev);
    return rc;
}
