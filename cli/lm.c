/* cli/lm.c -- a trained language model for `pstrain eval` on text and `pstrain generate`:
 * where its weights and tokenizer are, and its loss and perplexity on a text.
 *
 * A language model is a checkpoint whose loss is sequence_crossentropy (core/gpt2.h): it
 * reads (N, T) ids and gives logits (N, T*V). Its tokenizer is the job's data.tokenizer
 * (none: bytes), found through the run's job.yaml. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "data/textwin.h"
#include "worker/textprep.h"

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

int cli_model_paths(const char *what, char *model, char *job, size_t cap, pst_err *err)
{
    struct stat st;
    job[0] = '\0';
    if (stat(what, &st) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s: %s", what, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        /* A Hugging Face folder (pstrain export) is read as a folder: ckpt_load builds
         * the model from its config.json. */
        snprintf(model, cap, "%s/config.json", what);
        if (!is_file(model))
            snprintf(model, cap, "%s/model.safetensors", what);
        else
            snprintf(model, cap, "%s", what);
        snprintf(job, cap, "%s/job.yaml", what);
        if (!is_file(job))
            snprintf(job, cap, "%s/../../job.yaml", what);
        if (!is_file(job))
            job[0] = '\0';
        return PST_OK;
    }
    if (has_suffix(what, ".yaml") || has_suffix(what, ".yml")) {
        snprintf(job, cap, "%s", what);
        model[0] = '\0'; /* the job's output.dir names it */
        return PST_OK;
    }
    snprintf(model, cap, "%s", what);
    const char *slash = strrchr(what, '/');
    int dir = slash ? (int)(slash - what) : 1;
    snprintf(job, cap, "%.*s/job.yaml", dir, slash ? what : ".");
    /* Only a checkpoint folder's model looks two levels up: another folder's would find
     * any job.yaml there (the working directory's, for runs/x/model.safetensors). */
    const char *base = what;
    for (const char *p = what; slash && p < slash; p++)
        if (*p == '/')
            base = p + 1;
    if (!is_file(job) && slash && strncmp(base, "ckpt-", 5) == 0)
        snprintf(job, cap, "%.*s/../../job.yaml", dir, what);
    /* A model in a run's checkpoints folder (pstrain consolidate's model-clock-C): one up. */
    if (!is_file(job) && slash && (size_t)(slash - base) == strlen("checkpoints") &&
        strncmp(base, "checkpoints", strlen("checkpoints")) == 0)
        snprintf(job, cap, "%.*s/../job.yaml", dir, what);
    if (!is_file(job))
        job[0] = '\0';
    return PST_OK;
}

int cli_lm_open(cli_lm *lm, const char *what, const char *tokenizer, int max_batch, pst_err *err)
{
    return cli_lm_open_loaded(lm, what, NULL, tokenizer, max_batch, err);
}

int cli_lm_open_loaded(cli_lm *lm, const char *what, ckpt_model *ck, const char *tokenizer,
                       int max_batch, pst_err *err)
{
    char model[PATH_MAX + 32], jobp[PATH_MAX + 32];
    cfg_job *job = NULL;
    memset(lm, 0, sizeof *lm);
    lm->ck = ck; /* lm's from here on */
    int rc = cli_model_paths(what, model, jobp, sizeof model, err);
    /* A user's job file resolves its paths from its folder, as training did; a run's
     * job.yaml holds absolute ones. */
    if (rc || (jobp[0] && (rc = cli_load_job(&job, jobp, NULL, 0, err))))
        goto fail;
    if (!model[0])
        snprintf(model, sizeof model, "%s/model.safetensors", job->output.dir);
    const char *tk = tokenizer ? tokenizer : job ? job->data.tokenizer : NULL;
    if (tk && tk[0] && !(lm->tokenizer = strdup(tk)))
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    cfg_job_free(job);
    if (rc || (rc = lm->ck ? ckpt_model_set_max_batch(lm->ck, max_batch, err)
                           : ckpt_load(model, max_batch, &lm->ck, err)))
        goto fail;
    ml_model *net = ckpt_model_net(lm->ck);
    if (ckpt_model_spec(lm->ck)->loss != ML_LOSS_SEQ_CCE) {
        rc = pst_err_set(err, PST_ERR_CONFIG,
                         "%s: not a language model (its loss is %s, not sequence_crossentropy)",
                         model, ml_loss_name(ckpt_model_spec(lm->ck)->loss));
        goto fail;
    }
    lm->context = ml_model_in_dim(net);
    lm->vocab = ml_model_out_dim(net) / lm->context;
    snprintf(lm->model_path, sizeof lm->model_path, "%s", model);
    return PST_OK;
fail:
    cli_lm_close(lm);
    return rc;
}

void cli_lm_close(cli_lm *lm)
{
    ckpt_model_destroy(lm->ck);
    free(lm->tokenizer);
    memset(lm, 0, sizeof *lm);
}

int cli_lm_is_model(const char *what, ckpt_model **ck)
{
    char model[PATH_MAX + 32], jobp[PATH_MAX + 32];
    pst_err err = {0};
    *ck = NULL;
    if (cli_model_paths(what, model, jobp, sizeof model, &err))
        return 0;
    if (!model[0]) /* a job file: eval's other data take a checkpoint */
        return 1;
    if (ckpt_load(model, 1, ck, &err))
        return 0;
    return ckpt_model_spec(*ck)->loss == ML_LOSS_SEQ_CCE;
}

int cli_lm_eval(cli_lm *lm, const char *text, int batch, const volatile sig_atomic_t *stop,
                cli_lm_figures *out, pst_err *err)
{
    ds_textwin_options o = {.tokenizer = lm->tokenizer, .context = lm->context};
    ds_windows *w = ds_textwin_load(text, &o, NULL, err);
    ds_dataset *ds = NULL;
    int32_t *lab = NULL;
    int rc = PST_OK;
    memset(out, 0, sizeof *out);
    if (!w)
        return err ? err->code : PST_ERR_DATA;
    if (ds_windows_vocab(w) > lm->vocab) {
        rc = pst_err_set(err, PST_ERR_CONFIG,
                         "%s: the tokenizer has %d tokens, the model %d (another tokenizer "
                         "than the model's?)",
                         text, ds_windows_vocab(w), lm->vocab);
        goto cleanup;
    }
    ml_model *net = ckpt_model_net(lm->ck);
    const int T = lm->context;
    if (!(ds = wk_windows_dataset(w, err)) || !(lab = malloc(sizeof *lab * (size_t)batch * T))) {
        rc = ds ? pst_err_set(err, PST_ERR_NOMEM, "out of memory") : err->code;
        goto cleanup;
    }
    int64_t n = ds_count(ds);
    const float *x = ds_x_const(ds), *y = ds_targets_const(ds);
    double sum = 0.0; /* of window losses, each the mean over its T tokens */
    for (int64_t lo = 0; lo < n && !*stop; lo += batch) {
        int b = (int)(n - lo < batch ? n - lo : batch);
        for (size_t i = 0; i < (size_t)b * T; i++)
            lab[i] = (int32_t)y[(size_t)lo * T + i];
        ml_model_forward(net, x + (size_t)lo * T, b);
        sum += ml_model_loss(net, lab, NULL, b) * b;
    }
    out->windows = n;
    out->tokens = n * T;
    out->loss = sum / (double)n;
    out->perplexity = exp(out->loss);
cleanup:
    free(lab);
    ds_destroy(ds);
    ds_windows_destroy(w);
    return rc;
}
