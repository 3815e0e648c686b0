/* worker/local_ckpt.c -- see local_ckpt.h. */
#include "local_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "ckpt/ckpt.h"

#define PREFIX "ckpt-"
#define MAX_LISTED 64

struct wk_local_ckpt {
    const cfg_job *job;
    const wk_data *data;
    const log_ctx *lg;
    char dir[4096];
    uint64_t hash;     /* cfg_job_hash: only the same job resumes */
    int64_t last_step; /* step of the newest checkpoint, -1: none yet */
    int aside;         /* an earlier run's checkpoints wait in CKPT_ASIDE for our first */
};

wk_local_ckpt *wk_local_ckpt_create(const cfg_job *job, const wk_data *data, const log_ctx *lg,
                                    pst_err *err)
{
    wk_local_ckpt *k = calloc(1, sizeof *k);
    if (!k) {
        pst_err_set(err, PST_ERR_NOMEM, "checkpoints: out of memory");
        return NULL;
    }
    *k = (wk_local_ckpt){
        .job = job, .data = data, .lg = lg, .hash = cfg_job_hash(job), .last_step = -1};
    cfg_checkpoint_dir(job, k->dir, sizeof k->dir);
    return k;
}

void wk_local_ckpt_destroy(wk_local_ckpt *k) { free(k); }

const char *wk_local_ckpt_dir(const wk_local_ckpt *k) { return k->dir; }
int64_t wk_local_ckpt_last(const wk_local_ckpt *k) { return k->last_step; }

int wk_local_ckpt_write(wk_local_ckpt *k, wk_trainer *tr, int epoch_done, const char *why,
                        pst_err *err)
{
    int64_t step = wk_trainer_step(tr);
    if (step == k->last_step)
        return PST_OK;
    char path[4200], tmp[4300], file[4400];
    snprintf(path, sizeof path, "%s/" PREFIX "%lld", k->dir, (long long)step);
    int rc;
    if ((rc = fs_mkdirs(k->dir, err)) || (rc = ckpt_dir_begin(path, tmp, sizeof tmp, err)))
        return rc;
    snprintf(file, sizeof file, "%s/model.safetensors", tmp);
    if (!(rc = ckpt_save_model(file, wk_trainer_model(tr), &k->job->model.spec, k->data->train,
                               &k->data->scaler, err))) {
        snprintf(file, sizeof file, "%s/optimizer.safetensors", tmp);
        rc = wk_trainer_save_state(tr, file, epoch_done, k->hash, err);
    }
    if (!rc) {
        snprintf(file, sizeof file, "%s/" WK_TABLES_FILE, tmp);
        rc = wk_trainer_save_tables(tr, file, err);
    }
    if (!rc)
        rc = ckpt_dir_commit(tmp, path, err);
    if (rc) {
        ckpt_dir_abort(tmp);
        return rc;
    }
    k->last_step = step;
    pst_err e2 = {0};
    if (ckpt_prune(k->dir, PREFIX, "", k->job->checkpoint.keep, &e2))
        log_warn(k->lg, "removing old checkpoints: %s", e2.msg);
    int removed = 0;
    if (k->aside && ckpt_drop_aside(k->dir, PREFIX, "", &removed, &e2))
        log_warn(k->lg, "removing the earlier run's checkpoints: %s", e2.msg);
    else if (k->aside)
        log_info(k->lg, "removed the %d checkpoint(s) of the earlier run from %s/" CKPT_ASIDE,
                 removed, k->dir);
    k->aside = 0;
    if (why)
        log_info(k->lg, "checkpoint (%s) at step %lld: %s", why, (long long)step, path);
    else
        log_debug(k->lg, "checkpoint at step %lld: %s", (long long)step, path);
    return PST_OK;
}

int wk_local_ckpt_clear_newer(wk_local_ckpt *k, pst_err *err)
{
    if (k->last_step >= 0)
        return ckpt_remove_newer(k->dir, PREFIX, "", k->last_step, err);
    int moved, rc = ckpt_set_aside(k->dir, PREFIX, "", &moved, err);
    if (rc == PST_OK && moved) {
        k->aside = 1;
        log_warn(k->lg,
                 "%s holds %d checkpoint(s) of an earlier run: moved to %s/" CKPT_ASIDE
                 " (--resume continues that run from there), removed once this run has "
                 "written its first",
                 k->dir, moved, k->dir);
    }
    return rc;
}

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The checkpoint folders of `from`, newest first, into tags (*n of them); *single: `from`
 * is itself one checkpoint. */
static int list_candidates(const char *from, char *dir, size_t cap, int64_t *tags, int *n,
                           int *single, pst_err *err)
{
    char one[4300];
    snprintf(one, sizeof one, "%s/optimizer.safetensors", from);
    *n = 0;
    if ((*single = is_file(one))) {
        *n = 1;
        return PST_OK;
    }
    int rc;
    snprintf(dir, cap, "%s", from);
    if ((rc = ckpt_list(dir, PREFIX, "", tags, MAX_LISTED, n, err)))
        return rc;
    if (*n == 0) {
        snprintf(dir, cap, "%s/checkpoints", from);
        if ((rc = ckpt_list(dir, PREFIX, "", tags, MAX_LISTED, n, err)))
            return rc;
    }
    if (*n == 0)
        return pst_err_set(err, PST_ERR_IO,
                           "--resume %s: no checkpoint there (folders " PREFIX
                           "<step> holding model.safetensors and optimizer.safetensors)",
                           from);
    return PST_OK;
}

int wk_local_ckpt_resume(wk_local_ckpt *k, const char *from, wk_trainer *tr, wk_resume *at,
                         pst_err *err)
{
    char dir[4200], opt_path[4400], model_path[4400];
    int64_t tags[MAX_LISTED];
    int n, single, rc;
    if ((rc = list_candidates(from, dir, sizeof dir, tags, &n, &single, err)))
        return rc;
    pst_err first = {0};
    for (int i = 0; i < n; i++) {
        char cp[4300];
        if (single)
            snprintf(cp, sizeof cp, "%s", from);
        else
            snprintf(cp, sizeof cp, "%s/" PREFIX "%lld", dir, (long long)tags[i]);
        snprintf(model_path, sizeof model_path, "%s/model.safetensors", cp);
        snprintf(opt_path, sizeof opt_path, "%s/optimizer.safetensors", cp);
        pst_err e = {0};
        rc = wk_trainer_restore(tr, model_path, opt_path, k->hash, at, &e);
        /* The embedding tables after the weights: a folder whose tables do not load is
         * skipped like any damaged one, and the next restores the weights again. */
        if (rc == PST_OK) {
            char tab_path[4400];
            snprintf(tab_path, sizeof tab_path, "%s/" WK_TABLES_FILE, cp);
            rc = wk_trainer_load_tables(tr, tab_path, &e);
        }
        if (rc == PST_OK) {
            if (i > 0)
                log_warn(k->lg, "resuming from the older checkpoint %s", cp);
            log_info(k->lg, "resuming from %s: epoch %d, %lld of its steps done, update %lld", cp,
                     at->epoch, (long long)at->done, (long long)wk_trainer_step(tr));
            k->last_step = wk_trainer_step(tr);
            return PST_OK;
        }
        if (rc == PST_ERR_CONFIG || rc == PST_ERR_NOMEM) /* another job's: older ones too */
            return pst_err_set(err, rc, "%s", e.msg);
        log_warn(k->lg, "checkpoint %s is not usable: %s", cp, e.msg);
        if (i == 0)
            first = e;
    }
    return pst_err_set(err, PST_ERR_DATA,
                       "--resume %s: no complete checkpoint (%d damaged; the "
                       "newest: %.300s)",
                       from, n, first.msg);
}
