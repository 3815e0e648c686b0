/* job/checks.c -- cfg_job_check: enum values, ranges and cross-field rules. */
#include "job_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

/* Enum fields hold one of their names (a job built or edited in code might not). */
static int check_enums(const cyaml_schema_field_t *fields, const char *base, const char *prefix,
                       pst_err *err)
{
    for (const cyaml_schema_field_t *f = fields; f->key; f++) {
        char path[CFG_PATH_MAX];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", f->key);
        const char *p = base + f->data_offset;
        if (f->value.type == CYAML_MAPPING) {
            int rc = check_enums(f->value.mapping.fields, p, path, err);
            if (rc)
                return rc;
        } else if (f->value.type == CYAML_SEQUENCE) {
            const cyaml_schema_value_t *entry = f->value.sequence.entry;
            uint64_t n = entry->type == CYAML_MAPPING
                             ? cfg_load_uint(base + f->count_offset, f->count_size)
                             : 0; /* a list of numbers has no enum */
            const char *arr;
            memcpy(&arr, p, sizeof arr);
            for (uint64_t i = 0; i < n; i++) {
                char ip[CFG_PATH_MAX + 24];
                snprintf(ip, sizeof ip, "%s.%" PRIu64, path, i);
                int rc = check_enums(entry->mapping.fields, arr + i * entry->data_size, ip, err);
                if (rc)
                    return rc;
            }
        } else if (f->value.type == CYAML_ENUM) {
            int64_t v = cfg_load_int(p, f->value.data_size);
            if (!cfg_enum_name(f->value.enumeration.strings, f->value.enumeration.count, v))
                return pst_err_set(err, PST_ERR_CONFIG, "%s: invalid value %" PRId64, path, v);
        }
    }
    return PST_OK;
}

/* The fine-tuning keys: data.classes, data.limit and the layers' trainable and lr_mult. */
static int check_finetune(const cfg_job *job, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    const cfg_data *d = &job->data;
    if (d->classes_count > 0 && d->task != DS_TASK_CLASSIFY)
        return pst_err_set(err, E, "data.classes: needs data.task classify");
    for (unsigned i = 0; i < d->classes_count; i++) {
        int c = d->classes[i];
        if (c < 0)
            return pst_err_set(err, E, "data.classes: entry %u: class ids are >= 0, got %d", i, c);
        if (d->num_classes > 0 && c >= d->num_classes)
            return pst_err_set(err, E,
                               "data.classes: entry %u: class %d, but data.num_classes "
                               "is %d",
                               i, c, d->num_classes);
        for (unsigned j = 0; j < i; j++)
            if (d->classes[j] == c)
                return pst_err_set(err, E, "data.classes: class %d is listed twice", c);
    }
    if (d->limit < 0)
        return pst_err_set(err, E, "data.limit: must be >= 0 (0 = all), got %d", d->limit);
    const ml_model_spec *m = &job->model.spec;
    unsigned ntrain = 0;
    for (unsigned i = 0; i < m->nlayers; i++) {
        const ml_layer_spec *L = &m->layers[i];
        const char *t = L->ops->name;
        const char *an = strchr("aeiou", t[0]) ? "an" : "a";
        if (!(L->lr_mult >= 0.0f) || !isfinite(L->lr_mult))
            return pst_err_set(err, E,
                               "model.layers.%u.lr_mult: must be >= 0 (0 freezes the "
                               "layer), got %g",
                               i, (double)L->lr_mult);
        if (!L->ops->has_params && !L->trainable)
            return pst_err_set(err, E,
                               "model.layers.%u.trainable: %s %s layer has no "
                               "parameters to freeze",
                               i, an, t);
        if (!L->ops->has_params && L->lr_mult != 1.0f)
            return pst_err_set(err, E,
                               "model.layers.%u.lr_mult: %s %s layer has no "
                               "parameters to scale",
                               i, an, t);
        int kr = ml_layer_key_find(L->ops, "lora_rank"); /* LoRA adapters train when frozen */
        ntrain += L->ops->has_params && (L->trainable || (kr >= 0 && L->val[kr].i > 0)) &&
                  L->lr_mult > 0.0f;
    }
    if (m->nlayers > 0 && ntrain == 0)
        return pst_err_set(err, E,
                           "model.layers: every dense layer is frozen (trainable: false "
                           "or lr_mult: 0 on every layer with parameters); nothing would train");
    return PST_OK;
}

/* format text: a window length; its keys mean nothing to other formats. */
static int check_text(const cfg_data *d, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    if (d->format != CFG_FMT_TEXT) {
        if (d->tokenizer)
            return pst_err_set(err, E, "data.tokenizer: only for format text");
        if (d->context)
            return pst_err_set(err, E, "data.context: only for format text");
        return PST_OK;
    }
    if (d->context < 1 || d->context > (1 << 20))
        return pst_err_set(err, E,
                           "data.context: format text needs 1..1048576 tokens per window "
                           "(a window holds context + 1), got %d",
                           d->context);
    if (d->train_labels || d->test_labels)
        return pst_err_set(err, E, "data.%s: format text has no labels files",
                           d->train_labels ? "train_labels" : "test_labels");
    return PST_OK;
}

/* data: the files the format needs, and ranges. */
static int check_data(const cfg_data *d, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    if (!d->train)
        return pst_err_set(err, E, "data.train: must be set (the training data file)");
    if (d->format == CFG_FMT_IDX && !d->train_labels)
        return pst_err_set(err, E, "data.train_labels: must be set for format idx");
    if (d->test_labels && !d->test)
        return pst_err_set(err, E, "data.test_labels: set without data.test");
    if (d->format == CFG_FMT_IDX && d->test && !d->test_labels)
        return pst_err_set(err, E, "data.test_labels: must be set with data.test for format idx");
    if (d->num_classes < 0)
        return pst_err_set(err, E, "data.num_classes: must be >= 0 (0 = from the data), got %d",
                           d->num_classes);
    if (d->label_index < -1)
        return pst_err_set(err, E, "data.label_index: must be >= -1 (-1 = last), got %d",
                           d->label_index);
    if (d->delimiter && strlen(d->delimiter) != 1)
        return pst_err_set(err, E, "data.delimiter: must be exactly one character, got '%s'",
                           d->delimiter);
    if (d->dim < 0)
        return pst_err_set(err, E, "data.dim: must be >= 0 (0 = from the data), got %d", d->dim);
    if (!(d->validation_split >= 0.0 && d->validation_split < 1.0))
        return pst_err_set(err, E, "data.validation_split: must be in [0, 1), got %g",
                           d->validation_split);
    const cfg_image *im = &d->image;
    if ((im->height || im->width) &&
        (im->height < 1 || im->width < 1 || im->height > 4096 || im->width > 4096))
        return pst_err_set(err, E,
                           "data.image: height and width must both be in [1, 4096], got %d x %d",
                           im->height, im->width);
    if ((im->height || im->width) && d->format != CFG_FMT_IDX)
        return pst_err_set(err, E, "data.image: only for IDX images (data.format idx)");
    int rc = ds_aug_check(&d->augment, NULL, err);
    if (rc)
        return rc;
    if (ds_aug_active(&d->augment) && d->format != CFG_FMT_IDX)
        return pst_err_set(err, E,
                           "data.augment: only for images (data.format idx), the data has no "
                           "height and width");
    return check_text(d, err);
}

/* data: the sparse keys (categorical, crosses, hashing, text_dir) and which format each
 * belongs to. */
static int check_sparse_data(const cfg_data *d, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    int csv = d->format == CFG_FMT_CSV, text = d->format == CFG_FMT_TEXT_DIR;
    if (d->sparse && d->format != CFG_FMT_LIBSVM)
        return pst_err_set(err, E, "data.sparse: needs data.format libsvm");
    if (d->sparse && d->dim != 0)
        return pst_err_set(err, E, "data.dim: sparse libsvm rows have no dense width; leave it 0");
    if (d->categorical_count && !csv)
        return pst_err_set(err, E, "data.categorical: needs data.format csv");
    if (d->crosses_count && !csv)
        return pst_err_set(err, E, "data.crosses: needs data.format csv");
    for (unsigned i = 0; i < d->categorical_count; i++)
        for (unsigned j = 0; j < i; j++)
            if (strcmp(d->categorical[i], d->categorical[j]) == 0)
                return pst_err_set(err, E, "data.categorical: column '%s' is listed twice",
                                   d->categorical[i]);
    for (unsigned i = 0; i < d->crosses_count; i++) {
        const char *x = d->crosses[i], *sep = strstr(x, " x ");
        if (!sep || sep == x || !sep[3])
            return pst_err_set(err, E,
                               "data.crosses: entry %u: '%s' is not 'a x b' (two columns "
                               "around ' x ')",
                               i, x);
    }
    if (d->hash_bits < 0 || d->hash_bits > 63)
        return pst_err_set(err, E, "data.hash_bits: must be in [0, 63] (0 = 64-bit ids), got %d",
                           d->hash_bits);
    int hashed = d->categorical_count || d->crosses_count || text || d->sparse;
    if (!hashed && (d->hash_bits || d->hash_seed))
        return pst_err_set(err, E,
                           "data.%s: needs sparse features (data.categorical or data.crosses "
                           "with csv, data.format text_dir, or data.sparse with libsvm)",
                           d->hash_bits ? "hash_bits" : "hash_seed");
    if (d->ngrams < 1 || d->ngrams > 8)
        return pst_err_set(err, E, "data.ngrams: must be in [1, 8], got %d", d->ngrams);
    const char *text_key = d->ngrams != 1                           ? "ngrams"
                           : d->text_value != DS_TEXT_COUNT         ? "text_value"
                           : d->text_headers != DS_TEXT_HEADERS_ALL ? "text_headers"
                           : d->text_suffix                         ? "text_suffix"
                           : d->text_classes_count                  ? "text_classes"
                                                                    : NULL;
    if (text_key && !text)
        return pst_err_set(err, E, "data.%s: needs data.format text_dir", text_key);
    if (text && d->task != DS_TASK_CLASSIFY)
        return pst_err_set(err, E, "data.task: text_dir documents are classified (classify)");
    if (text && (d->train_labels || d->test_labels))
        return pst_err_set(err, E,
                           "data.%s: text_dir takes its classes from folders, not a labels file",
                           d->train_labels ? "train_labels" : "test_labels");
    if (d->text_classes_count == 1)
        return pst_err_set(err, E, "data.text_classes: one class; list at least two");
    for (unsigned i = 0; i < d->text_classes_count; i++) {
        const char *c = d->text_classes[i], *eq = strchr(c, '=');
        if (!eq || eq == c || strspn(eq + 1, " \t") == strlen(eq + 1))
            return pst_err_set(
                err, E, "data.text_classes: entry %u: '%s' is not 'name=folder folder ...'", i, c);
    }
    return PST_OK;
}

/* model: the layer list, the loss against the task and the output layer, the output's
 * width against the classes. */
static int check_model(const cfg_job *job, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    const cfg_data *d = &job->data;
    int rc;
    const ml_model_spec *m = &job->model.spec;
    if (m->nlayers == 0 || !m->layers)
        return pst_err_set(err, E, "model.layers: must list at least one layer");
    if (job->model.keep_zeros && !job->model.init_from)
        return pst_err_set(err, E,
                           "model.keep_zeros: needs model.init_from (the pruned checkpoint whose "
                           "zeros it keeps)");
    if ((rc = ml_model_spec_check(m, err)))
        return rc;
    const unsigned last = m->nlayers - 1;
    const char *ends_in = ml_activation_name(ml_layer_spec_out_act(&m->layers[last]));
    if (m->loss != ML_LOSS_MSE && d->task != DS_TASK_CLASSIFY)
        return pst_err_set(err, E, "model.loss: %s needs data.task classify (regression: mse)",
                           ml_loss_name(m->loss));
    if (m->loss == ML_LOSS_CCE && strcmp(ends_in, "softmax") != 0)
        return pst_err_set(err, E,
                           "model.loss: categorical_crossentropy needs a softmax output, but "
                           "model.layers.%u ends in %s",
                           last, ends_in);
    if (m->loss == ML_LOSS_BCE && strcmp(ends_in, "sigmoid") != 0)
        return pst_err_set(err, E,
                           "model.loss: binary_crossentropy needs a sigmoid output, but "
                           "model.layers.%u ends in %s",
                           last, ends_in);
    /* With data.classes the labels are renumbered 0..k-1: k is the output's width, set by
     * the width key (dense: units) of the last layer that has one. */
    int want_units = d->classes_count > 0 ? (int)d->classes_count : d->num_classes;
    for (unsigned i = m->nlayers; m->loss == ML_LOSS_CCE && want_units > 0 && i-- > 0;) {
        const ml_layer_spec *L = &m->layers[i];
        if (!L->ops->width_key)
            continue;
        int64_t units = L->val[ml_layer_key_find(L->ops, L->ops->width_key)].i;
        if (units != want_units)
            return pst_err_set(err, E,
                               "model.layers.%u.%s: the output layer has %" PRId64 " units but "
                               "%s is %d",
                               i, L->ops->width_key, units,
                               d->classes_count > 0 ? "the length of data.classes"
                                                    : "data.num_classes",
                               want_units);
        break;
    }
    return PST_OK;
}

void cfg_sparse_table(const cfg_job *job, const char *table, int dim, float init_scale,
                      spt_config *out)
{
    const cfg_sparse *s = &job->sparse;
    spt_config_default(out, dim);
    out->seed = ds_hash64(table, strlen(table), job->seed);
    out->init = (spt_init_kind)s->init;
    out->init_scale = init_scale;
    out->opt = s->opt;
    out->admit_after = s->admit_after < 0 ? 0u : (uint32_t)s->admit_after;
    out->expire_steps = s->expire_steps;
    out->max_rows = s->max_rows < 0 ? 0u : (uint64_t)s->max_rows;
}

int cfg_model_is_sparse(const ml_model_spec *spec)
{
    for (unsigned i = 0; i < spec->nlayers; i++)
        if (spec->layers[i].ops->sparse)
            return 1;
    return 0;
}

/* sparse: the tables' rule and bounds (checked as core/sptable.h checks a table, with a
 * stand-in row width), and data that has sparse features when a layer reads them. */
static int check_sparse(const cfg_job *job, pst_err *err)
{
    const cfg_sparse *s = &job->sparse;
    if (s->admit_after < 0 || s->max_rows < 0)
        return pst_err_set(err, PST_ERR_CONFIG, "sparse.%s: must be >= 0, got %lld",
                           s->admit_after < 0 ? "admit_after" : "max_rows",
                           (long long)(s->admit_after < 0 ? s->admit_after : s->max_rows));
    spt_config c;
    cfg_sparse_table(job, "check", 1, 0.05f, &c);
    int rc = spt_config_check(&c, err);
    if (rc && err) {
        /* "optimizer.lr: ..." and "admit_after: ..." are this section's sparse.lr and
         * sparse.admit_after. */
        pst_err e = *err;
        const char *m = e.msg;
        if (strncmp(m, "optimizer.", 10) == 0)
            m += 10;
        return pst_err_set(err, rc, "sparse.%s", m);
    }
    if (rc)
        return rc;
    const cfg_data *d = &job->data;
    int has_sparse = (d->format == CFG_FMT_LIBSVM && d->sparse) || d->categorical_count > 0 ||
                     d->crosses_count > 0 || d->format == CFG_FMT_TEXT_DIR;
    if (cfg_model_is_sparse(&job->model.spec) && !has_sparse)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.layers: a layer reads the sparse features, but the data has "
                           "none (data.sparse: true for libsvm, data.categorical for csv, or "
                           "data.format: text_dir)");
    return PST_OK;
}

/* train and output. */
static int check_train(const cfg_job *job, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    const cfg_train *t = &job->train;
    if (t->batch_size < 1)
        return pst_err_set(err, E, "train.batch_size: must be >= 1, got %d", t->batch_size);
    if (t->epochs < 1)
        return pst_err_set(err, E, "train.epochs: must be >= 1, got %d", t->epochs);
    if (t->threads < 1)
        return pst_err_set(err, E, "train.threads: must be >= 1, got %d", t->threads);
    if (t->log_every < 0)
        return pst_err_set(err, E, "train.log_every: must be >= 0 (0 = per epoch), got %d",
                           t->log_every);
    if (t->accumulate < 1 || t->accumulate > (1 << 20))
        return pst_err_set(err, E, "train.accumulate: must be in [1, 1048576], got %d",
                           t->accumulate);
    if (t->accumulate > 1 && cfg_model_is_sparse(&job->model.spec))
        return pst_err_set(err, E,
                           "train.accumulate: not for models with embedding tables (their "
                           "rows update per batch)");
    if (!job->output.dir)
        return pst_err_set(err, E, "output.dir: must be set");
    return PST_OK;
}

/* cluster and checkpoint. */
static int check_cluster(const cfg_job *job, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    const cfg_cluster *c = &job->cluster;
    if (c->servers < 1 || c->servers > 64)
        return pst_err_set(err, E, "cluster.servers: must be in [1, 64], got %d", c->servers);
    if (c->workers < 1 || c->workers > 4096)
        return pst_err_set(err, E, "cluster.workers: must be in [1, 4096], got %d", c->workers);
    if (c->staleness < 0)
        return pst_err_set(err, E, "cluster.staleness: must be >= 0, got %d", c->staleness);
    if (c->timeout_s < 1)
        return pst_err_set(err, E, "cluster.timeout_s: must be >= 1, got %d", c->timeout_s);
    if (c->heartbeat_ms < 10 || c->heartbeat_ms > 60000)
        return pst_err_set(err, E, "cluster.heartbeat_ms: must be in [10, 60000], got %d",
                           c->heartbeat_ms);
    if (c->heartbeat_timeout_s < 1 || (int64_t)c->heartbeat_timeout_s * 1000 < 2 * c->heartbeat_ms)
        return pst_err_set(err, E,
                           "cluster.heartbeat_timeout_s: must be >= 1 and at least two "
                           "heartbeats (%d ms each), got %d",
                           c->heartbeat_ms, c->heartbeat_timeout_s);
    if (c->max_restarts < 0 || c->max_restarts > 1000)
        return pst_err_set(err, E, "cluster.max_restarts: must be in [0, 1000], got %d",
                           c->max_restarts);
    if (!(c->delay_compensation >= 0.0f) || !isfinite(c->delay_compensation))
        return pst_err_set(err, E, "cluster.delay_compensation: must be >= 0 (0 = off), got %g",
                           (double)c->delay_compensation);
    if (!(c->topk_ratio > 0.0f && c->topk_ratio <= 1.0f))
        return pst_err_set(err, E, "cluster.topk_ratio: must be in (0, 1], got %g",
                           (double)c->topk_ratio);
    if (c->metrics_port < 0 || c->metrics_port + c->servers > 65535)
        return pst_err_set(err, E,
                           "cluster.metrics_port: must be 0 (off) or a port with room "
                           "for the %d servers after it (<= %d), got %d",
                           c->servers, 65535 - c->servers, c->metrics_port);

    const cfg_checkpoint *k = &job->checkpoint;
    if (k->every_steps < 0)
        return pst_err_set(err, E, "checkpoint.every_steps: must be >= 0 (0 = off), got %d",
                           k->every_steps);
    if (!(k->every_seconds >= 0.0))
        return pst_err_set(err, E, "checkpoint.every_seconds: must be >= 0 (0 = off), got %g",
                           k->every_seconds);
    if (k->keep < 1)
        return pst_err_set(err, E, "checkpoint.keep: must be >= 1, got %d", k->keep);
    return PST_OK;
}

int cfg_job_is_library(const cfg_job *job) { return job->model.external != 0; }

/* model.external: the workers' model is their own; pstrain's layers and data have no
 * place in the job. */
static int check_library(const cfg_job *job, pst_err *err)
{
    if (job->model.spec.nlayers > 0)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.external: the workers declare the model (libpstrain); "
                           "model.layers must be left out");
    if (job->data.train)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "model.external: the workers bring their own data; data.train must "
                           "be left out");
    return PST_OK;
}

int cfg_job_check(const cfg_job *job, pst_err *err)
{
    assert(job);
    int rc = check_enums(cfg_job_fields, (const char *)job, "", err);
    if (rc)
        return rc;
    if (!job->name || !job->name[0])
        return pst_err_set(err, PST_ERR_CONFIG, "name: must be set");
    /* A library job's model and data are the workers' own (cfg_job_is_library). */
    int lib = cfg_job_is_library(job);
    if ((lib && (rc = check_library(job, err))) || (!lib && (rc = check_data(&job->data, err))) ||
        (rc = check_sparse_data(&job->data, err)) || (!lib && (rc = check_model(job, err))) ||
        (rc = check_finetune(job, err)) || (rc = opt_config_check(&job->optimizer, err)) ||
        (rc = check_sparse(job, err)) || (rc = check_train(job, err)))
        return rc;
    return check_cluster(job, err);
}
