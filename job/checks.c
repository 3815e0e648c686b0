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
        ntrain += L->ops->has_params && L->trainable && L->lr_mult > 0.0f;
    }
    if (m->nlayers > 0 && ntrain == 0)
        return pst_err_set(err, E,
                           "model.layers: every dense layer is frozen (trainable: false "
                           "or lr_mult: 0 on every layer with parameters); nothing would train");
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

int cfg_job_check(const cfg_job *job, pst_err *err)
{
    assert(job);
    int rc = check_enums(cfg_job_fields, (const char *)job, "", err);
    if (rc)
        return rc;
    if (!job->name || !job->name[0])
        return pst_err_set(err, PST_ERR_CONFIG, "name: must be set");
    if ((rc = check_data(&job->data, err)) || (rc = check_model(job, err)) ||
        (rc = check_finetune(job, err)) || (rc = opt_config_check(&job->optimizer, err)) ||
        (rc = check_train(job, err)))
        return rc;
    return check_cluster(job, err);
}
