/* cli/cmd_train.c -- `pstrain train`: single-process training of a job. */
#include <cblas.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/ckpt.h"
#include "core/log.h"
#include "worker/dataprep.h"
#include "worker/report.h"
#include "worker/trainer.h"

static void train_usage(FILE *f)
{
    fprintf(f,
            "usage: pstrain train [JOB.yaml] [--KEY VALUE ...] [--print-config]\n"
            "\n"
            "Trains the job's model in this process and evaluates it. Without JOB.yaml it\n"
            "runs the default job: a 784-256-128-10 MLP on Fashion-MNIST (Debian's\n"
            "dataset-fashion-mnist), 5 epochs of Adam.\n"
            "\n"
            "Writes per-epoch metrics to OUTPUT_DIR/metrics.csv and metrics.jsonl; logs go to\n"
            "stderr, the final confusion matrix to stdout. Environment: PSTRAIN_LOG=debug|info|"
            "warn|error.\n"
            "\n"
            "options:\n"
            "  --print-config   print the effective job (file + overrides) as YAML and exit\n"
            "  -h, --help       this text\n"
            "\n%s",
            cli_override_help);
}


int cmd_train(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    const char *path = NULL;
    int print_config = 0;
    char *rest[256];
    int nrest = 0;
    /* The job file, if any, comes first; everything after it is flags. */
    int i0 = 0;
    if (argc > 0 && argv[0][0] != '-')
        path = argv[i0++];
    for (int i = i0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            train_usage(stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--print-config") == 0)
            print_config = 1;
        else if (nrest < (int)(sizeof rest / sizeof rest[0]))
            rest[nrest++] = argv[i];
        else {
            fprintf(stderr, "pstrain train: too many arguments\n");
            return EXIT_USAGE;
        }
    }

    log_ctx lg;
    log_init(&lg, "train", -1, stderr);
    pst_err err = {0};
    cfg_job *job = NULL;
    wk_data data = {0};
    wk_trainer *tr = NULL;
    wk_report *rep = NULL;
    met_confusion *cm = NULL;
    int rc = cli_load_job(&job, path, nrest, rest, &err);
    if (rc) {
        fprintf(stderr, "pstrain train: %s\n", err.msg);
        return cli_exit_code(rc);
    }
    if (print_config) {
        rc = cfg_job_print(job, stdout, &err);
        goto done;
    }
    openblas_threads(job->train.threads);
    log_info(&lg, "job '%s' from %s", job->name, path ? path : "the built-in default");

    if ((rc = wk_data_load(job, 1, 0, &data, &err)))
        goto done;
    log_info(&lg, "data: %lld training, %lld validation, %lld test samples of %d features",
             (long long)ds_count(data.train), data.val ? (long long)ds_count(data.val) : 0LL,
             data.test ? (long long)ds_count(data.test) : 0LL, ds_dim(data.train));
    tr = wk_trainer_create(job, data.train, 0, &err);
    if (!tr) {
        rc = err.code;
        goto done;
    }
    log_info(&lg, "model: %zu parameters, optimizer %s lr %g, batch %d, %d epoch(s)",
             ml_model_nparams(wk_trainer_model(tr)), opt_kind_name(job->optimizer.kind),
             (double)job->optimizer.lr, job->train.batch_size, job->train.epochs);
    rep = wk_report_create(job->output.dir, &lg, stderr, isatty(STDERR_FILENO),
                           job->train.log_every, job->train.epochs, &err);
    if (!rep) {
        rc = err.code;
        goto done;
    }
    for (int e = 1; e <= job->train.epochs; e++) {
        wk_epoch_stats st;
        wk_eval val;
        if ((rc = wk_trainer_epoch(tr, data.train, e, wk_report_progress, rep, stop, &st, &err)))
            goto done;
        if (data.val && (rc = wk_trainer_evaluate(tr, data.val, &val, NULL, &err)))
            goto done;
        if ((rc = wk_report_epoch(rep, e, &st, data.val ? &val : NULL, &err)))
            goto done;
        if (st.interrupted)
            break;
    }
    if (*stop) {
        log_warn(&lg, "stopped by signal %d; metrics so far are in %s", (int)*stop,
                 job->output.dir);
        goto done;
    }
    const ds_dataset *final = data.test ? data.test : data.val;
    if (final) {
        wk_eval ev;
        int classify = ds_task_of(final) == DS_TASK_CLASSIFY;
        if (classify) {
            int k = ml_model_out_dim(wk_trainer_model(tr));
            cm = met_confusion_create(k == 1 ? 2 : k, &err);
            if (!cm) {
                rc = err.code;
                goto done;
            }
        }
        if ((rc = wk_trainer_evaluate(tr, final, &ev, cm, &err)))
            goto done;
        if ((rc = wk_report_final(rep, data.test ? "test" : "validation", &ev, &err)))
            goto done;
        if (cm) {
            const char *names[256];
            int nc = met_confusion_nclasses(cm), have = 0;
            for (int c = 0; c < nc && c < 256; c++)
                have |= (names[c] = ds_class_name(data.train, c)) != NULL;
            printf("Evaluation on the %s set: ", data.test ? "test" : "validation");
            met_confusion_print(cm, have && nc <= 256 ? names : NULL, stdout);
        }
    }
    char model_path[4096];
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", job->output.dir);
    if ((rc = ckpt_save_model(model_path, wk_trainer_model(tr), &job->model, data.train,
                              &data.scaler, &err)))
        goto done;
    log_info(&lg, "done; model in %s, metrics in %s", model_path, job->output.dir);

done:
    if (rc)
        fprintf(stderr, "pstrain train: %s\n", err.msg);
    met_confusion_destroy(cm);
    wk_report_destroy(rep);
    wk_trainer_destroy(tr);
    wk_data_fini(&data);
    cfg_job_free(job);
    if (rc)
        return cli_exit_code(rc);
    return *stop ? cli_stop_exit_code(*stop) : EXIT_OK;
}
