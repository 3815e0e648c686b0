/* worker/dataprep.c -- see dataprep.h. */
#include "dataprep.h"
#include "textprep.h"

#include "data/sparse.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static ds_dataset *load_file(const cfg_data *dc, const char *path, const char *labels_path,
                             pst_err *err)
{
    switch (dc->format) {
    case CFG_FMT_IDX:
        return ds_load_idx_fit(path, labels_path, dc->num_classes, dc->image.height,
                               dc->image.width,
                               dc->image.fit == CFG_FIT_RESIZE ? DS_FIT_RESIZE : DS_FIT_PAD, err);
    case CFG_FMT_CSV: {
        ds_csv_options o = {
            .delimiter = dc->delimiter && dc->delimiter[0] ? dc->delimiter[0] : ',',
            .header = dc->header == CFG_HEADER_YES  ? 1
                      : dc->header == CFG_HEADER_NO ? 0
                                                    : -1,
            .label_name = dc->label,
            .label_index = dc->label_index,
            .task = dc->task,
            .nclasses = dc->num_classes,
            .categorical = (const char *const *)dc->categorical,
            .ncategorical = (int)dc->categorical_count,
            .crosses = (const char *const *)dc->crosses,
            .ncrosses = (int)dc->crosses_count,
            .hash_bits = dc->hash_bits,
            .hash_seed = dc->hash_seed,
        };
        return ds_load_csv(path, &o, err);
    }
    case CFG_FMT_LIBSVM:
        if (dc->sparse) {
            ds_sparse_options o = {
                .task = dc->task,
                .nclasses = dc->num_classes,
                .id_space = dc->hash_bits ? UINT64_C(1) << dc->hash_bits : 0,
            };
            return ds_load_libsvm_sparse(path, &o, err);
        }
        return ds_load_libsvm(path, dc->dim, dc->task, dc->num_classes, err);
    case CFG_FMT_TEXT_DIR: {
        ds_text_options o = {
            .ngrams = dc->ngrams,
            .value = dc->text_value,
            .headers = dc->text_headers,
            .hash_bits = dc->hash_bits,
            .seed = dc->hash_seed,
            .suffix = dc->text_suffix,
            .classes = (const char *const *)dc->text_classes,
            .nclasses = (int)dc->text_classes_count,
        };
        return ds_load_text_dir(path, &o, err);
    }
    case CFG_FMT_TEXT: {
        /* One text file whole (eval tools, a test text): windows, no cache. */
        ds_textwin_options o = {.tokenizer = dc->tokenizer, .context = dc->context};
        ds_windows *w = ds_textwin_load(path, &o, NULL, err);
        if (!w)
            return NULL;
        ds_dataset *ds = wk_windows_dataset(w, err);
        ds_windows_destroy(w);
        return ds;
    }
    }
    pst_err_set(err, PST_ERR_CONFIG, "data.format: unknown format %d", (int)dc->format);
    return NULL;
}

ds_dataset *wk_data_load_file(const cfg_data *dc, const char *path, const char *labels_path,
                              pst_err *err)
{
    ds_dataset *ds = load_file(dc, path, labels_path, err);
    /* A NaN or Inf in a data file is bad data (exit code 3), not a diverged run. */
    if (!ds && err && err->code == PST_ERR_NUMERIC)
        err->code = PST_ERR_DATA;
    return ds;
}

/* Replaces *ds by the subset ds_filter_classes keeps (no-op for NULL). */
static int keep_classes(ds_dataset **ds, const cfg_data *dc, const char *what, pst_err *err)
{
    if (!*ds)
        return PST_OK;
    for (unsigned i = 0; i < dc->classes_count; i++)
        if (dc->classes[i] >= ds_nclasses(*ds))
            return pst_err_set(err, PST_ERR_CONFIG,
                               "data.classes: class %d, but %s has %d "
                               "classes (0..%d)",
                               dc->classes[i], what, ds_nclasses(*ds), ds_nclasses(*ds) - 1);
    ds_dataset *kept = ds_filter_classes(*ds, dc->classes, (int)dc->classes_count, err);
    if (!kept)
        return err ? err->code : PST_ERR_NOMEM;
    ds_destroy(*ds);
    *ds = kept;
    return PST_OK;
}

/* data.classes and data.limit: the subsets a fine-tuning job trains and tests on. The
 * classes are renumbered 0..k-1 in the job's order in every set; the limit keeps a
 * seeded, stratified random subset of the training split (ds_sample). */
static int select_samples(const cfg_data *dc, uint64_t seed, wk_data *d, pst_err *err)
{
    int rc;
    if (dc->classes_count > 0) {
        /* Errors name the file holding the labels. */
        int idx = dc->format == CFG_FMT_IDX;
        const char *train = idx && dc->train_labels ? dc->train_labels : dc->train;
        const char *test = idx && dc->test_labels ? dc->test_labels : dc->test;
        if ((rc = keep_classes(&d->train, dc, train, err)) ||
            (rc = keep_classes(&d->val, dc, train, err)) ||
            (rc = keep_classes(&d->test, dc, test, err)))
            return rc;
        if (ds_count(d->train) == 0)
            return pst_err_set(err, PST_ERR_DATA,
                               "data.classes: %s has no training sample of "
                               "the classes listed",
                               train);
    }
    if (dc->limit > 0 && dc->limit < ds_count(d->train)) {
        /* A seeded, stratified random subset: the first rows of a file sorted by class
         * would all be of one class. Salted so that it is not the validation split's
         * permutation again. */
        ds_dataset *some = ds_sample(d->train, dc->limit, seed ^ 0x6c696d6974ULL, err);
        if (!some)
            return err ? err->code : PST_ERR_NOMEM;
        ds_destroy(d->train);
        d->train = some;
    }
    return PST_OK;
}

/* Says which classes have no training sample (a class id the file skips, a class only
 * the test file holds) and when only one class has any: such a model can only learn to
 * predict that class. */
static void warn_classes(const ds_dataset *train, const log_ctx *lg)
{
    int k = ds_nclasses(train);
    if (!lg || ds_task_of(train) != DS_TASK_CLASSIFY || k < 1)
        return;
    int64_t *count = calloc((size_t)k, sizeof *count);
    if (!count)
        return;
    ds_class_counts(train, count);
    char list[200];
    size_t n = 0;
    int empty = 0, present = 0, only = -1;
    list[0] = '\0';
    for (int c = 0; c < k; c++) {
        if (count[c] > 0) {
            present++;
            only = c;
            continue;
        }
        if (empty++ < 10 && n + 16 < sizeof list)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%d", empty > 1 ? ", " : "", c);
    }
    if (empty > 10)
        snprintf(list + n, sizeof list - n, " and %d more", empty - 10);
    if (empty)
        log_warn(lg, "%d of the %d classes (ids 0..%d) %s no training sample: class%s %s", empty, k,
                 k - 1, empty > 1 ? "have" : "has", empty > 1 ? "es" : "", list);
    if (present == 1) {
        const char *name = ds_class_name(train, only);
        log_warn(lg,
                 "the training data holds a single class (%d%s%s): the model can only learn "
                 "to predict it",
                 only, name ? " " : "", name ? name : "");
    }
    free(count);
}

int wk_data_load(const cfg_job *job, int nparts, int part, wk_data *d, pst_err *err)
{
    /* Distributed workers all draw the same data: worker 0 alone says what it sees. */
    log_ctx lg;
    log_init(&lg, "worker", part, stderr);
    return wk_data_load_log(job, nparts, part, part == 0 ? &lg : NULL, d, err);
}

/* Integer class ids of the test file beyond the training file's: classes of the
 * training data with no samples (as a missing lower id is), which warn_classes names. */
static int widen_to_test(wk_data *d)
{
    int kt = ds_nclasses(d->test), k = ds_nclasses(d->train);
    /* Named classes were aligned to the training file's (kt == k) or refused. */
    if (ds_task_of(d->test) != DS_TASK_CLASSIFY || kt <= k)
        return PST_OK;
    int rc = ds_widen_classes(d->train, kt, NULL);
    if (!rc && d->val)
        rc = ds_widen_classes(d->val, kt, NULL);
    return rc;
}

int wk_data_load_log(const cfg_job *job, int nparts, int part, const log_ctx *lg, wk_data *d,
                     pst_err *err)
{
    const cfg_data *dc = &job->data;
    ds_dataset *all = NULL;
    int rc;
    memset(d, 0, sizeof *d);
    if (cfg_job_is_library(job))
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.external: a job for programs that use libpstrain as workers "
                           "(include/pstrain/pstrain.h, "
                           "docs/library.md), not for pstrain's own");
    if (dc->format == CFG_FMT_TEXT)
        return wk_text_data_load(job, nparts, part, lg, d, err);

    all = wk_data_load_file(dc, dc->train, dc->train_labels, err);
    if (!all)
        return err ? err->code : PST_ERR_DATA;
    if (dc->validation_split > 0.0) {
        rc = ds_split(all, dc->validation_split, job->seed, &d->train, &d->val, err);
        if (rc)
            goto fail;
        ds_destroy(all);
        all = NULL;
    } else {
        d->train = all;
        all = NULL;
    }
    if (dc->test && dc->test[0]) {
        d->test = wk_data_load_file(dc, dc->test, dc->test_labels, err);
        if (!d->test) {
            rc = err ? err->code : PST_ERR_DATA;
            goto fail;
        }
        if ((rc = ds_align_classes(d->test, d->train, dc->test, err)))
            goto fail;
        if (dc->num_classes == 0 && (rc = widen_to_test(d))) {
            rc = pst_err_set(err, rc, "%s: cannot widen the classes", dc->test);
            goto fail;
        }
        if (ds_dim(d->test) != ds_dim(d->train)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %d features, but the training data has %d",
                             dc->test, ds_dim(d->test), ds_dim(d->train));
            goto fail;
        }
        if (ds_task_of(d->test) == DS_TASK_CLASSIFY &&
            ds_nclasses(d->test) > ds_nclasses(d->train)) {
            rc = pst_err_set(err, PST_ERR_DATA, "%s: %d classes, but the training data has %d",
                             dc->test, ds_nclasses(d->test), ds_nclasses(d->train));
            goto fail;
        }
    }
    /* Test labels were aligned to the training file's classes above, so one list of class
     * ids means the same classes in every set. */
    if ((rc = select_samples(dc, job->seed, d, err)))
        goto fail;
    warn_classes(d->train, lg);
    /* The scaler is fitted on the whole training split, so every worker applies the same
     * transform whatever its partition. */
    rc = ds_scaler_fit(&d->scaler, dc->scale, d->train, err);
    if (rc)
        goto fail;
    if (nparts == 1) {
        /* The whole set, in the partition's order, without holding it twice. */
        if ((rc = ds_shuffle_inplace(d->train, job->seed, err)))
            goto fail;
    } else {
        ds_dataset *mine = ds_partition(d->train, nparts, part, job->seed, err);
        if (!mine) {
            rc = err ? err->code : PST_ERR_NOMEM;
            goto fail;
        }
        ds_destroy(d->train);
        d->train = mine;
    }
    ds_dataset *sets[3] = {d->train, d->val, d->test};
    for (int i = 0; i < 3; i++)
        if (sets[i] && (rc = ds_scaler_apply(&d->scaler, sets[i], err)))
            goto fail;
    return PST_OK;

fail:
    ds_destroy(all);
    wk_data_fini(d);
    return rc;
}

void wk_data_fini(wk_data *d)
{
    ds_destroy(d->train);
    ds_destroy(d->val);
    ds_destroy(d->test);
    ds_scaler_fini(&d->scaler);
    memset(d, 0, sizeof *d);
}
