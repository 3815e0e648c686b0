/* cli/cmd_train.c -- `pstrain train`: single-process training of a job. */
#include <cblas.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "cli/cli.h"
#include "ckpt/ckpt.h"
#include "base/log.h"
#include "worker/dataprep.h"
#include "worker/local_ckpt.h"
#include "worker/loop.h"
#include "worker/report.h"
#include "worker/trainer.h"

static const char train_synopsis[] =
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
    "Checkpoints (model + optimizer state) go to checkpoint.dir (default\n"
    "OUTPUT_DIR/checkpoints) at every epoch's end, every checkpoint.every_steps steps\n"
    "or every_seconds seconds, and when a signal stops the run; --resume DIR continues\n"
    "from the newest complete one in DIR, giving the weights of an uninterrupted run.\n";

/* What a single process adds to the loop: its own checkpoints. */
typedef struct {
    wk_trainer *tr;
    wk_local_ckpt *ck;
} train_ctx;

static int train_checkpoint(void *ctx, int epoch_done, const char *why, pst_err *err)
{
    train_ctx *t = ctx;
    return wk_local_ckpt_write(t->ck, t->tr, epoch_done, why, err);
}

/* The final evaluation on the test set (else the validation set), with its confusion
 * matrix on stdout; *ev (ev->n 0: neither set). */
static int final_eval(wk_trainer *tr, const wk_data *data, wk_report *rep, wk_eval *ev,
                      pst_err *err)
{
    const ds_dataset *final = data->test ? data->test : data->val;
    memset(ev, 0, sizeof *ev);
    if (!final)
        return PST_OK;
    met_confusion *cm = NULL;
    int rc;
    if (ds_task_of(final) == DS_TASK_CLASSIFY) {
        int k = ml_model_out_dim(wk_trainer_model(tr));
        if (!(cm = met_confusion_create(k == 1 ? 2 : k, err)))
            return err->code;
    }
    if ((rc = wk_trainer_evaluate(tr, final, ev, cm, err)) ||
        (rc = wk_report_final(rep, data->test ? "test" : "validation", ev, err)))
        goto cleanup;
    if (cm) {
        const char *names[256];
        int nc = met_confusion_nclasses(cm), have = 0;
        for (int c = 0; c < nc && c < 256; c++)
            have |= (names[c] = ds_class_name(data->train, c)) != NULL;
        printf("Evaluation on the %s set: ", data->test ? "test" : "validation");
        met_confusion_print(cm, have && nc <= 256 ? names : NULL, stdout);
    }
cleanup:
    met_confusion_destroy(cm);
    return rc;
}

static void log_model(const log_ctx *lg, const cfg_job *job, wk_trainer *tr)
{
    size_t P = ml_model_nparams(wk_trainer_model(tr));
    int tables = ml_model_ntables(wk_trainer_model(tr)) > 0;
    char acc[48] = "";
    if (job->train.accumulate > 1)
        snprintf(acc, sizeof acc, " x %d accumulated", job->train.accumulate);
    log_info(lg, "model: %zu %sparameters, optimizer %s lr %g, batch %d%s, %d epoch(s)", P,
             tables ? "dense " : "", opt_kind_name(job->optimizer.kind), (double)job->optimizer.lr,
             job->train.batch_size, acc, job->train.epochs);
    char note[1024];
    if (wk_trainer_finetune_note(tr, note, sizeof note))
        log_info(lg, "%s", note);
    if (wk_trainer_tables_note(tr, note, sizeof note))
        log_info(lg, "%s", note);
    if (wk_trainer_frozen_params(tr))
        log_info(lg, "frozen: %zu of %zu parameters are not trained", wk_trainer_frozen_params(tr),
                 P);
}

/* A stop signal ended the run: where its metrics are and how to continue it. */
static void log_stopped(const log_ctx *lg, const cfg_job *job, const wk_local_ckpt *ck, int sig)
{
    if (job->checkpoint.enabled && wk_local_ckpt_last(ck) >= 0)
        log_warn(lg, "stopped by signal %d; metrics so far are in %s; continue with --resume %s",
                 sig, job->output.dir, wk_local_ckpt_dir(ck));
    else
        log_warn(lg, "stopped by signal %d; metrics so far are in %s", sig, job->output.dir);
}

/* The epochs still to train, from `at` on a resumed run (NULL: from the start), with this
 * process's checkpoints at the cadence of checkpoint.*. */
static int train_epochs(const cfg_job *job, const wk_data *data, wk_trainer *tr, wk_local_ckpt *ck,
                        wk_report *rep, const wk_resume *at, const log_ctx *lg,
                        const volatile sig_atomic_t *stop, pst_err *err)
{
    pst_test_hooks hooks_buf;
    wk_cadence cadence;
    wk_cadence_init(&cadence, &job->checkpoint, 1);
    train_ctx tc = {.tr = tr, .ck = ck};
    const wk_loop_ops ops = {.checkpoint = job->checkpoint.enabled ? train_checkpoint : NULL};
    wk_loop_options lo = {.tr = tr,
                          .train = data->train,
                          .val = data->val,
                          .first_epoch = at ? at->epoch : 1,
                          .last_epoch = job->train.epochs,
                          .first_step = at ? at->done : 0,
                          .resume = at,
                          .clock = wk_trainer_step(tr),
                          .rep = rep,
                          .log_every = job->train.log_every,
                          .on_divergence = job->train.on_divergence,
                          .report_interrupted = 1,
                          .lg = lg,
                          .stop = stop,
                          .hooks = cli_test_hooks(&hooks_buf, -1),
                          .cadence = &cadence,
                          .ops = &ops,
                          .ctx = &tc};
    wk_loop_result res;
    return wk_loop_run(&lo, &res, err);
}

int cmd_train(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    int print_config = 0;
    const cli_opt opts[] = {{.name = "print-config",
                             .kind = CLI_FLAG,
                             .dest = &print_config,
                             .help = "print the effective job (file + overrides) as YAML and exit"},
                            {0}};
    const cli_spec spec = {
        .cmd = "train", .synopsis = train_synopsis, .opts = opts, .job = 1, .max_pos = 1};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    const char *path = args.npos ? args.pos[0] : NULL;

    log_ctx lg;
    log_init(&lg, "train", -1, stderr);
    pst_err err = {0};
    cfg_job *job = NULL;
    wk_data data = {0};
    wk_trainer *tr = NULL;
    wk_report *rep = NULL;
    wk_local_ckpt *ck = NULL;
    fs_lock lock = {-1};
    int rc = cli_load_job(&job, path, args.ov, args.nov, &err);
    if (rc) {
        fprintf(stderr, "pstrain train: %s\n", err.msg);
        cli_args_fini(&args);
        return cli_exit_code(rc);
    }
    if (print_config) {
        /* Absolute: the job file's own paths would be read relative to its folder. */
        if (!(rc = cli_job_absolute(job, &err)))
            rc = cfg_job_print(job, stdout, &err);
        goto done;
    }
    if ((rc = fs_lock_dir(&lock, job->output.dir, "pstrain train", &err)) ||
        (rc = cli_run_claim(job, 0, &lg, &err)))
        goto done;
    openblas_threads(job->train.threads);
    log_info(&lg, "job '%s' from %s", job->name, path ? path : "the built-in default");

    if ((rc = wk_data_load_log(job, 1, 0, &lg, &data, &err)))
        goto done;
    log_info(&lg, "data: %lld training, %lld validation, %lld test samples of %d features",
             (long long)ds_count(data.train), data.val ? (long long)ds_count(data.val) : 0LL,
             data.test ? (long long)ds_count(data.test) : 0LL, ds_dim(data.train));
    tr = wk_trainer_create(job, data.train, 0, &err);
    if (!tr) {
        rc = err.code;
        goto done;
    }
    log_model(&lg, job, tr);
    if (!(ck = wk_local_ckpt_create(job, &data, &lg, &err))) {
        rc = err.code;
        goto done;
    }
    wk_resume at = {.epoch = 1};
    const char *from = job->checkpoint.resume;
    if (from && (rc = wk_local_ckpt_resume(ck, from, tr, &at, &err)))
        goto done;
    if (job->checkpoint.enabled && (rc = wk_local_ckpt_clear_newer(ck, &err)))
        goto done;
    rep = (from ? wk_report_resume : wk_report_create)(job->output.dir, &lg, stderr,
                                                       isatty(STDERR_FILENO), job->train.log_every,
                                                       job->train.epochs, &err);
    if (!rep) {
        rc = err.code;
        goto done;
    }
    if ((rc = wk_report_write_job(job->output.dir, job, &err)))
        goto done;
    if ((rc = train_epochs(job, &data, tr, ck, rep, from ? &at : NULL, &lg, stop, &err)))
        goto done;
    if (*stop) {
        log_stopped(&lg, job, ck, (int)*stop);
        goto done;
    }
    wk_eval final;
    if ((rc = final_eval(tr, &data, rep, &final, &err)))
        goto done;
    char model_path[4096];
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", job->output.dir);
    if ((rc = ckpt_save_model(model_path, wk_trainer_model(tr), &job->model.spec, data.train,
                              &data.scaler, &err)))
        goto done;
    char note[1024], tables_path[4200];
    snprintf(tables_path, sizeof tables_path, "%s/" WK_TABLES_FILE, job->output.dir);
    if (wk_trainer_tables_note(tr, note, sizeof note)) {
        if ((rc = wk_trainer_save_tables(tr, tables_path, &err)))
            goto done;
        log_info(&lg, "%s; written to %s", note, tables_path);
    }
    /* The model is kept either way: a run that learned nothing is worth a look. */
    if ((rc = wk_trainer_judge(tr, data.test ? data.test : data.val, &final, &err))) {
        pst_err_prefix(&err, "model in %s", model_path);
        goto done;
    }
    log_info(&lg, "done; model in %s, metrics in %s", model_path, job->output.dir);

done:
    if (rc)
        fprintf(stderr, "pstrain train: %s\n", err.msg);
    wk_local_ckpt_destroy(ck);
    wk_report_destroy(rep);
    fs_unlock(&lock);
    wk_trainer_destroy(tr);
    wk_data_fini(&data);
    cfg_job_free(job);
    cli_args_fini(&args);
    if (rc)
        return cli_exit_code(rc);
    return *stop ? cli_stop_exit_code(*stop) : EXIT_OK;
}
