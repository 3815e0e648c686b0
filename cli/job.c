/* cli/job.c -- loading a job file and applying command-line overrides. */
#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "net/net.h"
#include "proto/hb.h"

extern const char pst_default_job[];
extern const size_t pst_default_job_len;

/* Shorthand flags users expect, mapped to job keys (args.h: spec.job). Their values are
 * checked by kind when parsed, and then by cfg_override as the key's. */
/* The shorthand's help is the key it sets (and what it means where the key does not say). */
#define JOB_OPT(NAME, KIND, META, KEY)                                                             \
    {                                                                                              \
        .name = NAME, .kind = KIND, .meta = META, .help = KEY, .key = KEY                          \
    }
const cli_opt cli_job_opts[] = {
    JOB_OPT("epochs", CLI_INT, "N", "train.epochs"),
    JOB_OPT("batch-size", CLI_INT, "N", "train.batch_size"),
    JOB_OPT("threads", CLI_INT, "N", "train.threads"),
    JOB_OPT("lr", CLI_NUM, "X", "optimizer.lr"),
    JOB_OPT("optimizer", CLI_STR, "NAME", "optimizer.name"),
    JOB_OPT("seed", CLI_I64, "N", "seed"),
    JOB_OPT("output", CLI_STR, "DIR", "output.dir"),
    JOB_OPT("train", CLI_STR, "PATH", "data.train"),
    JOB_OPT("test", CLI_STR, "PATH", "data.test"),
    JOB_OPT("name", CLI_STR, "NAME", "name"),
    JOB_OPT("servers", CLI_INT, "N", "cluster.servers"),
    JOB_OPT("workers", CLI_INT, "N", "cluster.workers"),
    {.name = "consistency",
     .kind = CLI_CHOICE,
     .meta = "bsp|ssp|asp",
     .choices = "bsp|ssp|asp",
     .help = "cluster.consistency",
     .key = "cluster.consistency"},
    JOB_OPT("staleness", CLI_INT, "N", "cluster.staleness"),
    {.name = "resume",
     .kind = CLI_STR,
     .meta = "DIR",
     .key = "checkpoint.resume",
     .help = "checkpoint.resume: continue from the newest complete\ncheckpoint in DIR"},
    {.name = "freeze",
     .kind = CLI_STR,
     .meta = "LAYER,...",
     .key = "freeze",
     .help = "model.layers.N.trainable false for each LAYER, by its\nindex in model.layers "
             "or by name (dense_0, head)"},
    {0}};

int cli_exit_code(int status)
{
    switch (status) {
    case PST_OK: return EXIT_OK;
    case PST_ERR_ARG:
    case PST_ERR_CONFIG: return EXIT_USAGE;
    case PST_ERR_DATA: return EXIT_DATA;
    case PST_ERR_IO: return EXIT_IO;
    case PST_ERR_TIMEOUT:
    case PST_ERR_NET: return EXIT_RETRIABLE;
    case PST_ERR_DIVERGED: return EXIT_DIVERGED;
    default: return EXIT_FAILURE_RUNTIME;
    }
}

int cli_stop_exit_code(int sig)
{
    if (sig == HB_STOP_RETRIABLE)
        return EXIT_RETRIABLE; /* the coordinator ended the job retriably, with a checkpoint */
    return sig == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
}

void openblas_threads(int n) { openblas_set_num_threads(n); }

/* Data paths written in a job file are relative to the file's folder, so a job and its
 * data can move together; paths given as flags stay relative to the working directory. */
static int resolve_data_paths(cfg_job *job, const char *job_path, pst_err *err)
{
    const char *slash = strrchr(job_path, '/');
    if (!slash)
        return PST_OK; /* the file is in the working directory */
    int dlen = (int)(slash - job_path);
    static const char *const keys[] = {
        "data.train",          "data.train_labels",   "data.test",
        "data.test_labels",    "security.server_key", "security.server_public",
        "security.client_key", "security.allow",      "data.tokenizer"};
    const char *vals[] = {
        job->data.train,          job->data.train_labels,   job->data.test,
        job->data.test_labels,    job->security.server_key, job->security.server_public,
        job->security.client_key, job->security.allow,      job->data.tokenizer};
    for (int i = 0; i < 9; i++) {
        if (!vals[i] || !vals[i][0] || vals[i][0] == '/')
            continue;
        char full[4096];
        if (snprintf(full, sizeof full, "%.*s/%s", dlen, job_path, vals[i]) >= (int)sizeof full)
            return pst_err_set(err, PST_ERR_CONFIG, "%s: %s: path too long", job_path, keys[i]);
        int rc = cfg_override(job, keys[i], full, err);
        if (rc)
            return rc;
    }
    return PST_OK;
}

/* --freeze A,B,...: each item a layer's index in model.layers or its name (the name it is
 * given, or the model's default "dense_<k>" for the k-th dense layer); sets
 * model.layers.N.trainable false. The job-file form is `trainable: false` on the layer. */
static int freeze_layers(cfg_job *job, const char *list, pst_err *err)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf)
        return pst_err_set(err, PST_ERR_ARG, "--freeze: list too long");
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        int found = -1;
        char *end;
        long idx = strtol(item, &end, 10);
        if (*item && !*end) {
            if (idx < 0 || idx >= (long)job->model.spec.nlayers)
                return pst_err_set(err, PST_ERR_ARG,
                                   "--freeze: layer %ld does not exist (the "
                                   "model has %u layers)",
                                   idx, job->model.spec.nlayers);
            found = (int)idx;
        } else {
            const ml_model_spec *m = &job->model.spec;
            for (unsigned l = 0; l < m->nlayers && found < 0; l++) {
                char name[ML_NAME_MAX + 1];
                ml_layer_spec_name(m, l, name, sizeof name);
                if (m->layers[l].ops->has_params && strcmp(name, item) == 0)
                    found = (int)l;
            }
            if (found < 0)
                return pst_err_set(err, PST_ERR_ARG, "--freeze: no dense layer named '%s'", item);
        }
        char key[64];
        snprintf(key, sizeof key, "model.layers.%d.trainable", found);
        int rc = cfg_override(job, key, "false", err);
        if (rc)
            return pst_err_prefix(err, "--freeze %s", item);
    }
    return PST_OK;
}

int cli_check_security(const cfg_job *job, const char *role, pst_err *err)
{
    const cfg_security *s = &job->security;
    if (!s->server_key && !s->server_public && !s->client_key && !s->allow)
        return PST_OK;
    int listens = !role || strcmp(role, "worker") != 0;
    int connects = !role || strcmp(role, "coordinator") != 0;
    const char *who = role ? role : "a job";
    if (listens && !s->server_key)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "security: %s needs security.server_key "
                           "(the listening side's secret key)",
                           who);
    if (listens && !s->allow)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "security: %s needs security.allow (the client "
                           "public keys it accepts)",
                           who);
    if (connects && !s->server_public)
        return pst_err_set(err, PST_ERR_CONFIG, "security: %s needs security.server_public", who);
    if (connects && !s->client_key && !s->server_key)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "security: %s needs security.client_key (its "
                           "own secret key)",
                           who);
    net_curve_files f = {s->server_key, s->server_public, s->client_key, s->allow};
    return net_curve_check(&f, err);
}

int cli_job_absolute(cfg_job *job, pst_err *err)
{
    static const char *const keys[] = {"data.train",          "data.train_labels",
                                       "data.test",           "data.test_labels",
                                       "model.init_from",     "output.dir",
                                       "checkpoint.dir",      "checkpoint.resume",
                                       "security.server_key", "security.server_public",
                                       "security.client_key", "security.allow"};
    const char *vals[] = {job->data.train,          job->data.train_labels,
                          job->data.test,           job->data.test_labels,
                          job->model.init_from,     job->output.dir,
                          job->checkpoint.dir,      job->checkpoint.resume,
                          job->security.server_key, job->security.server_public,
                          job->security.client_key, job->security.allow};
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return pst_err_set(err, PST_ERR_IO, "the working directory: path too long or removed");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = vals[i];
        if (!v || !v[0] || v[0] == '/')
            continue;
        while (v[0] == '.' && v[1] == '/')
            v += 2;
        char full[8200];
        if (snprintf(full, sizeof full, "%s/%s", cwd, v) >= (int)sizeof full)
            return pst_err_set(err, PST_ERR_CONFIG, "%s: path too long", keys[i]);
        int rc = cfg_override(job, keys[i], full, err);
        if (rc)
            return rc;
    }
    return PST_OK;
}

int cli_load_job(cfg_job **job, const char *path, const cli_override *ov, int nov, pst_err *err)
{
    int rc =
        path ? cfg_job_load_file(job, path, err)
             : cfg_job_load_string(job, pst_default_job, pst_default_job_len, "<default job>", err);
    if (rc)
        return rc;
    if (path && (rc = resolve_data_paths(*job, path, err)))
        goto fail;
    for (int i = 0; i < nov; i++) {
        if (strcmp(ov[i].key, "freeze") == 0) {
            if ((rc = freeze_layers(*job, ov[i].value, err)))
                goto fail;
            continue;
        }
        rc = cfg_override(*job, ov[i].key, ov[i].value, err);
        if (rc) {
            pst_err_prefix(err, "--%s", ov[i].flag);
            rc = PST_ERR_ARG;
            goto fail;
        }
    }
    rc = cfg_job_check(*job, err);
    if (rc == PST_OK)
        return PST_OK;
fail:
    cfg_job_free(*job);
    *job = NULL;
    return rc;
}
