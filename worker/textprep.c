/* worker/textprep.c -- see textprep.h. */
#include "textprep.h"

#include <stdio.h>
#include <string.h>

#include "dataprep.h"

int wk_text_load(const cfg_job *job, int nparts, int part, const log_ctx *log, wk_text *d,
                 pst_err *err)
{
    const cfg_data *dc = &job->data;
    char cache[4096];
    ds_windows *all = NULL;
    int rc = PST_OK;
    memset(d, 0, sizeof *d);
    if (dc->format != CFG_FMT_TEXT)
        return pst_err_set(err, PST_ERR_CONFIG, "data.format: token windows need format text");
    if ((size_t)snprintf(cache, sizeof cache, "%s/token-cache",
                         job->output.dir ? job->output.dir : ".") >= sizeof cache)
        return pst_err_set(err, PST_ERR_CONFIG, "output.dir: path too long");
    ds_textwin_options o = {
        .tokenizer = dc->tokenizer, .context = dc->context, .cache_dir = cache, .log = log};
    if (!(all = ds_textwin_load(dc->train, &o, NULL, err)))
        return err ? err->code : PST_ERR_DATA;
    ds_windows *train = all;
    if (dc->validation_split > 0.0) {
        if ((rc = ds_windows_split(all, dc->validation_split, job->seed, &train, &d->val, err)))
            goto fail;
        ds_windows_destroy(all);
        all = NULL;
    } else {
        all = NULL;
    }
    d->train = train;
    /* nparts 1 is the one partition: all windows in the shuffled order. */
    ds_windows *mine = ds_windows_partition(d->train, nparts, part, job->seed, err);
    if (!mine) {
        rc = err ? err->code : PST_ERR_NOMEM;
        goto fail;
    }
    ds_windows_destroy(d->train);
    d->train = mine;
    if (dc->test && dc->test[0] && !(d->test = ds_textwin_load(dc->test, &o, NULL, err))) {
        rc = err ? err->code : PST_ERR_DATA;
        goto fail;
    }
    return PST_OK;
fail:
    ds_windows_destroy(all);
    wk_text_fini(d);
    return rc;
}

void wk_text_fini(wk_text *d)
{
    ds_windows_destroy(d->train);
    ds_windows_destroy(d->val);
    ds_windows_destroy(d->test);
    memset(d, 0, sizeof *d);
}

ds_dataset *wk_windows_dataset(const ds_windows *w, pst_err *err)
{
    int64_t n = ds_windows_count(w);
    int t = ds_windows_context(w);
    ds_dataset *ds = ds_create(n, t, DS_TASK_REGRESS, 0, t, err);
    if (!ds)
        return NULL;
    const int32_t *tok = ds_windows_tokens(w); /* (N, T + 1) */
    float *x = ds_x(ds), *y = ds_targets(ds);  /* (N, T) each */
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < t; j++) {
            /* ids < 2^24 are exact in a float (tok/ refuses larger vocabularies) */
            x[i * t + j] = (float)tok[i * (t + 1) + j];
            y[i * t + j] = (float)tok[i * (t + 1) + j + 1];
        }
    return ds;
}

/* *out = the dataset of *w (NULL stays NULL); *w is freed either way. */
static int to_dataset(ds_windows **w, ds_dataset **out, pst_err *err)
{
    *out = NULL;
    if (!*w)
        return PST_OK;
    *out = wk_windows_dataset(*w, err);
    ds_windows_destroy(*w);
    *w = NULL;
    return *out ? PST_OK : (err ? err->code : PST_ERR_NOMEM);
}

int wk_text_data_load(const cfg_job *job, int nparts, int part, const log_ctx *log, wk_data *d,
                      pst_err *err)
{
    wk_text tx;
    memset(d, 0, sizeof *d);
    int rc = wk_text_load(job, nparts, part, log, &tx, err);
    if (rc)
        return rc;
    if ((rc = to_dataset(&tx.train, &d->train, err)) || (rc = to_dataset(&tx.val, &d->val, err)) ||
        (rc = to_dataset(&tx.test, &d->test, err)) ||
        (rc = ds_scaler_fit(&d->scaler, DS_SCALE_NONE, d->train, err))) {
        wk_text_fini(&tx);
        wk_data_fini(d);
    }
    return rc;
}
