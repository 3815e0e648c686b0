/* cli/eval_sparse.c -- `pstrain eval`/`predict` of a model with embedding tables (cli.h).
 *
 * Such a model's model.safetensors holds its dense weights alone. The table rows are in
 * tables.safetensors beside it (cli/cmd_train.c at the end of a run, worker/local_ckpt.c in
 * every checkpoint folder, cli/cmd_local.c at the end of a distributed run, merged from the
 * servers' checkpoints), or NAME.tables.safetensors beside another NAME.safetensors
 * (pstrain consolidate's; cli_tables_path), and how a data file's features become ids -- libsvm ids, hashed
 * CSV columns and crosses, text_dir n-grams, data.hash_bits and hash_seed -- is the run's
 * job. So DATA is read with the job's data section, as the training worker read its test
 * file, and the model runs in a trainer of the job (worker/trainer.h) holding those tables,
 * read only: the forward pass of the run's own final evaluation. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "worker/dataprep.h"
#include "worker/trainer.h"

struct cli_sparse {
    cfg_job *job;   /* the run's; borrowed by tr */
    wk_trainer *tr; /* its model: ck's dense weights and the tables */
};

/* The job's data section with src's label column over it (cli.h says which flags count). */
static int data_section(const cfg_job *job, const cli_data_src *src, cfg_data *dc, pst_err *err)
{
    *dc = job->data; /* a shallow copy: its strings stay the job's (or src's) */
    if (src->format >= 0 && src->format != (int)dc->format)
        return pst_err_set(err, PST_ERR_ARG,
                           "--format %s: this model reads its data as its run did (data.format "
                           "%s, with its feature ids and hashing)",
                           cfg_format_name((cfg_format)src->format), cfg_format_name(dc->format));
    int relabel = src->label || src->label_index != -1;
    if (!relabel)
        return PST_OK;
    if (dc->format != CFG_FMT_CSV)
        return pst_err_set(err, PST_ERR_ARG,
                           "--label, --label-index and --no-label are for CSV data; this model's "
                           "run read %s",
                           cfg_format_name(dc->format));
    dc->label = (char *)src->label;
    if (!src->label)
        dc->label_index = src->label_index;
    return PST_OK;
}

/* The run's job (job.yaml) and tables file for the model file model_path. */
static int run_files(const char *model_path, char *jobp, char *tables, size_t cap, pst_err *err)
{
    char model[PATH_MAX + 32];
    struct stat st;
    int rc = cli_model_paths(model_path, model, jobp, cap, err);
    if (rc)
        return rc;
    if (!jobp[0])
        return pst_err_set(err, PST_ERR_IO,
                           "%s: a model with embedding tables is read with its run's job, but "
                           "there is no job.yaml beside it (or two folders up)",
                           model_path);
    cli_tables_path(model_path, tables, cap);
    if (stat(tables, &st) != 0 || !S_ISREG(st.st_mode))
        return pst_err_set(err, PST_ERR_IO,
                           "%s: no such file: the model's embedding tables (pstrain train and "
                           "local write them beside model.safetensors, consolidate beside its "
                           "model file)",
                           tables);
    return PST_OK;
}

void cli_tables_path(const char *model_path, char *buf, size_t cap)
{
    const char *slash = strrchr(model_path, '/');
    const char *base = slash ? slash + 1 : model_path;
    int dir = slash ? (int)(slash - model_path) : 1;
    size_t n = strlen(base), sfx = strlen(".safetensors");
    int stem = (int)(n > sfx && strcmp(base + n - sfx, ".safetensors") == 0 ? n - sfx : n);
    if (strcmp(base, "model.safetensors") == 0)
        snprintf(buf, cap, "%.*s/" WK_TABLES_FILE, dir, slash ? model_path : ".");
    else
        snprintf(buf, cap, "%.*s/%.*s.tables.safetensors", dir, slash ? model_path : ".", stem,
                 base);
}

int cli_sparse_open(cli_sparse **out, const char *model_path, const ckpt_model *ck,
                    const cli_data_src *src, int batch, ds_dataset **ds, pst_err *err)
{
    char jobp[PATH_MAX + 32], tables[PATH_MAX + 32];
    cfg_data dc;
    cli_sparse *s = NULL;
    *out = NULL;
    *ds = NULL;
    int rc = run_files(model_path, jobp, tables, sizeof jobp, err);
    if (rc)
        return rc;
    if (!(s = calloc(1, sizeof *s)))
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    if ((rc = cli_load_job(&s->job, jobp, NULL, 0, err)) ||
        (rc = data_section(s->job, src, &dc, err)))
        goto fail;
    if (!(*ds = wk_data_load_file(&dc, src->data, src->labels, err))) {
        rc = err->code ? err->code : PST_ERR_DATA;
        goto fail;
    }
    if ((rc = cli_eval_fit(*ds, src->data, src->label_index == DS_CSV_NO_LABEL, ck, err)) ||
        (rc = ds_scaler_apply(ckpt_model_scaler(ck), *ds, err)))
        goto fail;
    /* The trainer's model is built from the job for eval's batch; its seeded weights are
     * then replaced by ck's, so a pretrained model.init_from is not read again. */
    s->job->train.batch_size = batch;
    free(s->job->model.init_from);
    s->job->model.init_from = NULL;
    if (!(s->tr = wk_trainer_create(s->job, *ds, 0, err))) {
        rc = err->code;
        goto fail;
    }
    if ((rc = ckpt_load_into(model_path, wk_trainer_model(s->tr), NULL, err)) ||
        (rc = wk_trainer_load_tables(s->tr, tables, err)))
        goto fail;
    *out = s;
    return PST_OK;
fail:
    ds_destroy(*ds);
    *ds = NULL;
    cli_sparse_close(s);
    return rc;
}

ml_model *cli_sparse_model(cli_sparse *s) { return wk_trainer_model(s->tr); }

const float *cli_sparse_forward(void *ctx, const ds_dataset *ds, int64_t lo, int n, pst_err *err)
{
    cli_sparse *s = ctx;
    return wk_trainer_predict(s->tr, ds, lo, n, err);
}

void cli_sparse_close(cli_sparse *s)
{
    if (!s)
        return;
    wk_trainer_destroy(s->tr);
    cfg_job_free(s->job);
    free(s);
}
