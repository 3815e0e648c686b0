/* ps/srv_ckpt.c -- see srv_ckpt.h. */
#include "srv_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "ckpt/ckpt.h"
#include "ckpt/sparse.h"

#define CKPT_KIND "shard"
#define CKPT_SUFFIX ".safetensors"

struct srv_ckpt {
    int rank;
    const cfg_job *job;
    const log_ctx *lg;
    char ckdir[4096];      /* where this server writes them */
    char resume_dir[4200]; /* where it resumes from (checkpoint.resume, or its checkpoints/) */
    int nckpt;             /* complete checkpoints found there, clocks newest first */
    int64_t ckpt_clocks[WIRE_MAX_CKPTS];
    int ckpt_any;      /* they are of an all-frozen shard: any of them is any clock's */
    struct ckpt_want { /* checkpoints asked for: of `clock`, once `worker`'s step is in */
        int64_t clock;
        int worker;
    } want[8];
    int nwant;
    int64_t ckpt_last; /* clock of the newest checkpoint written or resumed from, -1 */
    int aside;         /* an earlier run's files wait in CKPT_ASIDE for our first */
    int64_t lost;      /* steps of updates lost in restarts of this server (cumulative) */
    obs_metric *mx_count, *mx_age, *mx_clock; /* NULL: metrics off */
    srv_sparse *sparse; /* the server's embedding tables, written beside the shard */
};

static void ckpt_prefix(const srv_ckpt *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "server-%d-clock-", c->rank);
}

static void job_hash_text(const cfg_job *job, char *buf, size_t cap)
{
    snprintf(buf, cap, "%016llx", (unsigned long long)cfg_job_hash(job));
}

srv_ckpt *srv_ckpt_create(int rank, const cfg_job *job, const log_ctx *lg, obs_metric *count,
                          obs_metric *age, obs_metric *clock, pst_err *err)
{
    srv_ckpt *c = calloc(1, sizeof *c);
    if (!c) {
        pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->rank = rank;
    c->job = job;
    c->lg = lg;
    c->ckpt_last = -1;
    c->mx_count = count;
    c->mx_age = age;
    c->mx_clock = clock;
    cfg_checkpoint_dir(job, c->ckdir, sizeof c->ckdir);
    return c;
}

void srv_ckpt_destroy(srv_ckpt *c) { free(c); }
const char *srv_ckpt_dir(const srv_ckpt *c) { return c->ckdir; }
int64_t srv_ckpt_last(const srv_ckpt *c) { return c->ckpt_last; }

void srv_ckpt_set_sparse(srv_ckpt *c, srv_sparse *sp) { c->sparse = sp; }

/* The tables' file of a clock: tables-server-<rank>-clock-<c>.safetensors (ckpt/sparse.h),
 * a prefix of its own so that the shard files alone mark complete checkpoints. */
static void tables_prefix(const srv_ckpt *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "tables-server-%d-clock-", c->rank);
}

/* ckpt_sparse_table views of the server's tables into tabs (ntables). */
static int table_views(const srv_ckpt *c, ckpt_sparse_table **tabs, pst_err *err)
{
    int n = srv_sparse_ntables(c->sparse);
    if (!(*tabs = calloc((size_t)n, sizeof **tabs)))
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        (*tabs)[i] =
            (ckpt_sparse_table){srv_sparse_name(c->sparse, i), srv_sparse_table(c->sparse, i)};
    return PST_OK;
}

/* Before the shard's file (which marks the checkpoint complete): the tables'. */
static int write_tables(srv_ckpt *c, int64_t clock, pst_err *err)
{
    if (!c->sparse)
        return PST_OK;
    char prefix[48], path[4400];
    tables_prefix(c, prefix, sizeof prefix);
    snprintf(path, sizeof path, "%s/%s%lld" CKPT_SUFFIX, c->ckdir, prefix, (long long)clock);
    ckpt_sparse_table *tabs = NULL;
    int rc = fs_mkdirs(c->ckdir, err);
    if (!rc && !(rc = table_views(c, &tabs, err)))
        rc = ckpt_sparse_save(path, tabs, srv_sparse_ntables(c->sparse), err);
    free(tabs);
    return rc;
}

static int restore_tables(srv_ckpt *c, int64_t clock, pst_err *err)
{
    if (!c->sparse)
        return PST_OK;
    char prefix[48], path[4400];
    tables_prefix(c, prefix, sizeof prefix);
    snprintf(path, sizeof path, "%s/%s%lld" CKPT_SUFFIX, c->resume_dir, prefix, (long long)clock);
    ckpt_sparse_table *tabs = NULL;
    int rc = table_views(c, &tabs, err);
    if (!rc)
        rc = ckpt_sparse_load(path, tabs, srv_sparse_ntables(c->sparse), err);
    free(tabs);
    if (!rc)
        srv_sparse_restore_clock(c->sparse, clock);
    return rc;
}
void srv_ckpt_note_lost(srv_ckpt *c, int64_t steps) { c->lost += steps > 0 ? steps : 0; }

int srv_ckpt_found(const srv_ckpt *c, int64_t *clocks, int *any)
{
    memcpy(clocks, c->ckpt_clocks, sizeof c->ckpt_clocks);
    *any = c->ckpt_any;
    return c->nckpt;
}

int srv_ckpt_remove_newer(srv_ckpt *c, int64_t keep_upto, pst_err *err)
{
    char prefix[48];
    ckpt_prefix(c, prefix, sizeof prefix);
    if (keep_upto >= 0)
        return ckpt_remove_newer(c->ckdir, prefix, CKPT_SUFFIX, keep_upto, err);
    int moved, rc = ckpt_set_aside(c->ckdir, prefix, CKPT_SUFFIX, &moved, err);
    if (rc == PST_OK && moved) {
        c->aside = 1;
        log_warn(c->lg,
                 "%s holds %d checkpoint(s) of this server from an earlier run: moved "
                 "to %s/" CKPT_ASIDE " (--resume continues that run from there), removed once "
                 "this run has written its first",
                 c->ckdir, moved, c->ckdir);
    }
    return rc;
}

/* Each worker's clock at the checkpoint ("worker_clock.<k>"): under ssp and asp they
 * differ from the checkpoint's clock, and a resume, which starts every worker there,
 * skips or repeats the difference (see report_worker_clocks). */
static int put_worker_clocks(const srv_ckpt *c, ckpt_state *st, const srv_shard *sh, pst_err *err)
{
    char key[48];
    int rc = PST_OK;
    for (int w = 0; w < c->job->cluster.workers && !rc; w++) {
        snprintf(key, sizeof key, "worker_clock.%d", w);
        rc = ckpt_state_set_int(st, key, srv_shard_worker_clock(sh, w), err);
    }
    return rc;
}

/* On resume at `clock`: says how many steps each worker whose clock at the checkpoint
 * differs skips (it was behind: a worker lost early skips everything it had left) or
 * repeats (it was ahead). Said by each server with trainable parameters (a frozen shard's
 * clocks never move); checkpoints written before these were kept say nothing. */
static void report_worker_clocks(const srv_ckpt *c, const ckpt_state *st, int64_t clock)
{
    char line[768];
    size_t n = 0;
    int64_t skipped = 0;
    line[0] = '\0';
    for (int w = 0; w < c->job->cluster.workers; w++) {
        char key[48];
        int64_t at;
        pst_err ignore = {0};
        snprintf(key, sizeof key, "worker_clock.%d", w);
        if (ckpt_state_get_int(st, key, &at, &ignore) != PST_OK || at == clock)
            continue;
        if (at < clock)
            skipped += clock - at;
        if (n < sizeof line)
            n += (size_t)snprintf(line + n, sizeof line - n, "%sworker[%d] was at %lld and %s %lld",
                                  n ? "; " : "", w, (long long)at, at < clock ? "skips" : "repeats",
                                  (long long)(at < clock ? clock - at : at - clock));
    }
    /* bsp: a worker ahead (a stop caught it one step on) computes that step again from
     * the same weights -- the resumed run is the uninterrupted one, nothing to warn of. */
    if (n && !skipped && c->job->cluster.consistency == CFG_CONS_BSP)
        log_info(c->lg, "resuming every worker at clock %lld: %s (bsp: the same steps again)",
                 (long long)clock, line);
    else if (n)
        log_warn(c->lg, "resuming every worker at clock %lld (steps per worker): %s%s",
                 (long long)clock, line,
                 skipped ? " -- the skipped steps' batches are not trained in this run" : "");
}

/* The shard's weights and optimizer state. An empty shard (a server of a sparse model with
 * fewer dense floats than servers) has no tensors to write (a checkpoint tensor is never
 * empty): its file holds the metadata, the optimizer's kind and step, and marks the tables'
 * checkpoint complete as any shard's does. */
static int put_dense(const srv_ckpt *c, ckpt_state *st, srv_shard *sh, pst_err *err)
{
    uint64_t base = srv_shard_base(sh), len = srv_shard_len(sh);
    opt_kind kind = c->job->optimizer.kind;
    int rc;
    if (len > 0 &&
        !(rc = ckpt_state_add_tensor(st, "weights", srv_shard_weights(sh, base), len, err)))
        rc = ckpt_state_add_opt(st, kind, srv_shard_opt(sh), err);
    else if (len == 0 && !(rc = ckpt_state_set_str(st, "opt.kind", opt_kind_name(kind), err)))
        rc = ckpt_state_set_int(st, "opt.t", opt_state_step(srv_shard_opt(sh)), err);
    return rc;
}

int srv_ckpt_write(srv_ckpt *c, srv_shard *sh, int64_t clock, pst_err *err)
{
    char prefix[48], path[4400], hash[24];
    ckpt_prefix(c, prefix, sizeof prefix);
    snprintf(path, sizeof path, "%s/%s%lld" CKPT_SUFFIX, c->ckdir, prefix, (long long)clock);
    job_hash_text(c->job, hash, sizeof hash);
    uint64_t base = srv_shard_base(sh), len = srv_shard_len(sh);
    ckpt_state *st = ckpt_state_create(CKPT_KIND, err);
    if (!st)
        return err->code;
    int rc;
    if ((rc = ckpt_state_set_str(st, "job_hash", hash, err)) ||
        (rc = ckpt_state_set_int(st, "rank", c->rank, err)) ||
        (rc = ckpt_state_set_int(st, "servers", c->job->cluster.servers, err)) ||
        (rc = ckpt_state_set_int(st, "workers", c->job->cluster.workers, err)) ||
        (rc = ckpt_state_set_int(st, "offset", (int64_t)base, err)) ||
        (rc = ckpt_state_set_int(st, "len", (int64_t)len, err)) ||
        (rc = ckpt_state_set_int(st, "clock", clock, err)) ||
        (rc = ckpt_state_set_int(st, "trainable", (int64_t)srv_shard_trainable(sh), err)) ||
        (rc = ckpt_state_set_str(st, "consistency",
                                 cfg_consistency_name(c->job->cluster.consistency), err)) ||
        (rc = put_dense(c, st, sh, err)) || (rc = put_worker_clocks(c, st, sh, err)) ||
        (rc = ckpt_state_set_int(st, "steps_lost", c->lost, err)) ||
        (rc = fs_mkdirs(c->ckdir, err)) || (rc = write_tables(c, clock, err)) ||
        (rc = ckpt_state_save(st, path, err)))
        goto cleanup;
    c->ckpt_last = clock;
    obs_add(c->mx_count, 1);
    obs_set_time(c->mx_age, obs_now());
    obs_set(c->mx_clock, (double)clock);
    log_info(c->lg, "checkpoint of clock %lld: %s", (long long)clock, path);
    pst_err e2 = {0};
    if (ckpt_prune(c->ckdir, prefix, CKPT_SUFFIX, c->job->checkpoint.keep, &e2))
        log_warn(c->lg, "removing old checkpoints: %s", e2.msg);
    char tprefix[48];
    tables_prefix(c, tprefix, sizeof tprefix);
    if (c->sparse && ckpt_prune(c->ckdir, tprefix, CKPT_SUFFIX, c->job->checkpoint.keep, &e2))
        log_warn(c->lg, "removing old table checkpoints: %s", e2.msg);
    int removed = 0;
    if (c->aside && ckpt_drop_aside(c->ckdir, prefix, CKPT_SUFFIX, &removed, &e2))
        log_warn(c->lg, "removing the earlier run's checkpoints: %s", e2.msg);
    else if (c->aside)
        log_info(c->lg, "removed the %d checkpoint(s) of the earlier run from %s/" CKPT_ASIDE,
                 removed, c->ckdir);
    c->aside = 0;
cleanup:
    ckpt_state_destroy(st);
    return rc;
}

/* Loads this server's checkpoint file of `clock` and checks it belongs to this job, rank
 * and clock, with an optimizer state and weights of its own length. */
static int load_checkpoint(const srv_ckpt *c, const char *path, int64_t clock, ckpt_state **out,
                           pst_err *err)
{
    const cfg_job *job = c->job;
    ckpt_state *st = NULL;
    int rc = ckpt_state_load(path, CKPT_KIND, &st, err);
    if (rc)
        return rc;
    const char *hash, *cons;
    char want[24];
    job_hash_text(job, want, sizeof want);
    int64_t rank, servers, workers, at, len;
    const float *w;
    if ((rc = ckpt_state_get_str(st, "job_hash", &hash, err)) ||
        (rc = ckpt_state_get_str(st, "consistency", &cons, err)) ||
        (rc = ckpt_state_get_int(st, "rank", &rank, err)) ||
        (rc = ckpt_state_get_int(st, "servers", &servers, err)) ||
        (rc = ckpt_state_get_int(st, "workers", &workers, err)) ||
        (rc = ckpt_state_get_int(st, "clock", &at, err)) ||
        (rc = ckpt_state_get_int(st, "len", &len, err)))
        goto fail;
    if (strcmp(hash, want) != 0) {
        rc = pst_err_set(err, PST_ERR_CONFIG,
                         "%s: written by another job (model, optimizer, "
                         "cluster or training settings differ)",
                         path);
        goto fail;
    }
    if (rank != c->rank || servers != job->cluster.servers || workers != job->cluster.workers ||
        at != clock || len < 0) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: holds server %lld of %lld (%lld workers) at "
                         "clock %lld, not what its name says",
                         path, (long long)rank, (long long)servers, (long long)workers,
                         (long long)at);
        goto fail;
    }
    /* An empty shard's file has no tensors (put_dense). */
    if (len > 0 && ((rc = ckpt_state_get_tensor(st, "weights", (size_t)len, &w, err)) ||
                    (rc = ckpt_state_check_opt(st, job->optimizer.kind, (size_t)len, err))))
        goto fail;
    *out = st;
    return PST_OK;
fail:
    ckpt_state_destroy(st);
    return rc;
}

/* Before HELLO: the clocks of this server's complete checkpoints in the resume folder
 * (checkpoint.resume, or the checkpoints/ folder inside it), newest first. A damaged one
 * is left out with a warning naming it; the coordinator then picks another clock. */
int srv_ckpt_scan(srv_ckpt *c, const char *from, pst_err *err)
{
    char prefix[48], path[4400];
    int64_t tags[64];
    int n = 0, rc;
    ckpt_prefix(c, prefix, sizeof prefix);
    snprintf(c->resume_dir, sizeof c->resume_dir, "%s", from);
    if ((rc = ckpt_list(c->resume_dir, prefix, CKPT_SUFFIX, tags, 64, &n, err)))
        return rc;
    if (n == 0) {
        snprintf(c->resume_dir, sizeof c->resume_dir, "%s/checkpoints", from);
        if ((rc = ckpt_list(c->resume_dir, prefix, CKPT_SUFFIX, tags, 64, &n, err)))
            return rc;
    }
    c->nckpt = 0;
    for (int i = 0; i < n && c->nckpt < WIRE_MAX_CKPTS; i++) {
        snprintf(path, sizeof path, "%s/%s%lld" CKPT_SUFFIX, c->resume_dir, prefix,
                 (long long)tags[i]);
        ckpt_state *st = NULL;
        pst_err e = {0};
        int64_t trainable = 1, len = 1;
        if (load_checkpoint(c, path, tags[i], &st, &e) == PST_OK &&
            ckpt_state_get_int(st, "trainable", &trainable, &e) == PST_OK &&
            ckpt_state_get_int(st, "len", &len, &e) == PST_OK) {
            c->ckpt_clocks[c->nckpt++] = tags[i];
            /* An empty shard's clocks move (its tables change): not "all frozen". */
            c->ckpt_any |= trainable == 0 && len > 0;
        } else
            log_warn(c->lg, "checkpoint %s is not usable: %s", path, e.msg);
        ckpt_state_destroy(st);
    }
    if (c->nckpt == 0)
        log_warn(c->lg, "no complete checkpoint of server %d in %s", c->rank, from);
    else
        log_info(c->lg, "%d complete checkpoint(s) in %s, the newest of clock %lld", c->nckpt,
                 c->resume_dir, (long long)c->ckpt_clocks[0]);
    return PST_OK;
}

/* After WELCOME of a resumed job: the shard from the checkpoint of `clock`, which must
 * cover exactly this server's range. Nothing changes unless all of it loads. */
int srv_ckpt_restore(srv_ckpt *c, srv_shard *sh, int64_t clock, pst_err *err)
{
    char prefix[48], path[4400];
    ckpt_prefix(c, prefix, sizeof prefix);
    int64_t file_clock = clock; /* an all-frozen shard's newest stands for any clock */
    int have = 0;
    for (int i = 0; i < c->nckpt; i++)
        have |= c->ckpt_clocks[i] == clock;
    if (!have && c->ckpt_any && c->nckpt > 0)
        file_clock = c->ckpt_clocks[0];
    snprintf(path, sizeof path, "%s/%s%lld" CKPT_SUFFIX, c->resume_dir, prefix,
             (long long)file_clock);
    ckpt_state *st = NULL;
    int rc = load_checkpoint(c, path, file_clock, &st, err);
    if (rc)
        return rc;
    int64_t off, len;
    const float *w;
    uint64_t base = srv_shard_base(sh), slen = srv_shard_len(sh);
    int64_t trainable;
    if ((rc = ckpt_state_get_int(st, "offset", &off, err)) ||
        (rc = ckpt_state_get_int(st, "len", &len, err)) ||
        (rc = ckpt_state_get_int(st, "trainable", &trainable, err)))
        goto cleanup;
    if (file_clock != clock && (trainable != 0 || srv_shard_trainable(sh) != 0 || slen == 0)) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: of clock %lld, not %lld, and the shard is not "
                         "all frozen",
                         path, (long long)file_clock, (long long)clock);
        goto cleanup;
    }
    if (off != (int64_t)base || len != (int64_t)slen) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: holds parameters [%lld, %lld) but this "
                         "server's shard is [%llu, %llu)",
                         path, (long long)off, (long long)(off + len), (unsigned long long)base,
                         (unsigned long long)(base + slen));
        goto cleanup;
    }
    /* The tables first: ckpt_sparse_load changes nothing unless every table loads. */
    static const float no_floats[1]; /* an empty shard's weights */
    w = no_floats;
    if ((len > 0 && (rc = ckpt_state_get_tensor(st, "weights", (size_t)len, &w, err))) ||
        (rc = restore_tables(c, file_clock, err)) || (rc = srv_shard_restore(sh, w, clock, err)))
        goto cleanup;
    int64_t opt_t = 0;
    if (len > 0)
        ckpt_state_restore_opt(st, c->job->optimizer.kind, srv_shard_opt(sh));
    else if (ckpt_state_get_int(st, "opt.t", &opt_t, NULL) == PST_OK && opt_t >= 0)
        opt_state_set_step(srv_shard_opt(sh), opt_t);
    if (file_clock == clock && (trainable != 0 || len == 0))
        report_worker_clocks(c, st, clock);
    int64_t lost = 0;
    pst_err none = {0};
    if (ckpt_state_get_int(st, "steps_lost", &lost, &none) == PST_OK && lost > 0) {
        c->lost = lost; /* later checkpoints of this timeline lack them too */
        log_warn(c->lg,
                 "%s lacks the updates of %lld step(s) that a restart of this server lost: "
                 "the model resumed from it combines shards at different steps",
                 path, (long long)lost);
    }
    c->ckpt_last = clock;
    obs_set(c->mx_clock, (double)clock);
    log_info(c->lg, "resumed from %s (clock %lld, %lld optimizer steps)", path, (long long)clock,
             (long long)opt_state_step(srv_shard_opt(sh)));
cleanup:
    ckpt_state_destroy(st);
    return rc;
}

/* A flagged push: remembers the checkpoint it asks for (several workers flag the same
 * clock; under bsp at most one clock is pending, since the next one's pushes wait for this
 * one's update). */
void srv_ckpt_want(srv_ckpt *c, int worker, int64_t clock)
{
    if (clock == c->ckpt_last)
        return;
    for (int i = 0; i < c->nwant; i++)
        if (c->want[i].clock == clock)
            return;
    if (c->nwant < (int)(sizeof c->want / sizeof c->want[0]))
        c->want[c->nwant++] = (struct ckpt_want){clock, worker};
    else
        log_warn(c->lg, "checkpoint of clock %lld not taken: %d others are pending",
                 (long long)clock, c->nwant);
}

/* After each worker message: the checkpoints asked for whose step is now applied. */
int srv_ckpt_maybe(srv_ckpt *c, srv_shard *sh, pst_err *err)
{
    /* An all-frozen shard's one checkpoint, as soon as it has its weights. */
    if (c->job->checkpoint.enabled && c->ckpt_last < 0 && srv_shard_trainable(sh) == 0 &&
        srv_shard_len(sh) > 0 && srv_shard_initialized(sh))
        return srv_ckpt_write(c, sh, srv_shard_clock(sh), err);
    int keep = 0, rc = PST_OK;
    for (int i = 0; i < c->nwant; i++) {
        struct ckpt_want w = c->want[i];
        if (rc || !srv_shard_applied(sh, w.worker, w.clock))
            c->want[keep++] = w;
        else if (w.clock != c->ckpt_last)
            rc = srv_ckpt_write(c, sh, w.clock, err);
    }
    c->nwant = keep;
    return rc;
}
