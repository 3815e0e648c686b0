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

/* ---- Checkpoints: DIR/ckpt-<step>/{model,optimizer}.safetensors -------------------------- */

typedef struct {
    const cfg_job *job;
    const wk_data *data;
    const log_ctx *lg;
    char dir[4096];
    uint64_t hash;
    int64_t last_step; /* global step of the newest checkpoint, -1: none yet */
    double last_s;     /* when it was written (monotonic seconds) */
} ckpt_ctx;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A periodic checkpoint is due after this step. */
static int ckpt_due(const ckpt_ctx *k, int64_t step)
{
    const cfg_checkpoint *c = &k->job->checkpoint;
    return (c->every_steps > 0 && step % c->every_steps == 0) ||
           (c->every_seconds > 0 && mono_s() - k->last_s >= c->every_seconds);
}

/* Writes the checkpoint of the trainer's current step as one folder, atomically, and keeps
 * the newest checkpoint.keep. Nothing when that step has one already. */
static int ckpt_write(ckpt_ctx *k, wk_trainer *tr, int epoch_done, const char *why, pst_err *err)
{
    int64_t step = wk_trainer_step(tr);
    if (step == k->last_step)
        return PST_OK;
    char path[4200], tmp[4300], file[4400];
    snprintf(path, sizeof path, "%s/ckpt-%lld", k->dir, (long long)step);
    int rc;
    if ((rc = fs_mkdirs(k->dir, err)) || (rc = ckpt_dir_begin(path, tmp, sizeof tmp, err)))
        return rc;
    snprintf(file, sizeof file, "%s/model.safetensors", tmp);
    if (!(rc = ckpt_save_model(file, wk_trainer_model(tr), &k->job->model.spec, k->data->train,
                               &k->data->scaler, err))) {
        snprintf(file, sizeof file, "%s/optimizer.safetensors", tmp);
        rc = wk_trainer_save_state(tr, file, epoch_done, k->hash, err);
    }
    if (!rc)
        rc = ckpt_dir_commit(tmp, path, err);
    if (rc) {
        ckpt_dir_abort(tmp);
        return rc;
    }
    k->last_step = step;
    k->last_s = mono_s();
    pst_err e2 = {0};
    if (ckpt_prune(k->dir, "ckpt-", "", k->job->checkpoint.keep, &e2))
        log_warn(k->lg, "removing old checkpoints: %s", e2.msg);
    if (why)
        log_info(k->lg, "checkpoint (%s) at step %lld: %s", why, (long long)step, path);
    else
        log_debug(k->lg, "checkpoint at step %lld: %s", (long long)step, path);
    return PST_OK;
}

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Restores the newest checkpoint of `from` that loads whole: a folder written by ckpt_write,
 * or a folder of them (checkpoint.dir, or an output.dir holding checkpoints/). A damaged
 * newest one is skipped with a warning naming it; a checkpoint of another job stops. */
static int ckpt_resume(ckpt_ctx *k, const char *from, wk_trainer *tr, wk_resume *at,
                       pst_err *err)
{
    char dir[4200], one[4300], opt_path[4400], model_path[4400];
    int64_t tags[64];
    int n = 0, rc;
    snprintf(one, sizeof one, "%s/optimizer.safetensors", from);
    const int single = is_file(one); /* `from` is itself one checkpoint */
    if (single) {
        n = 1;
    } else {
        snprintf(dir, sizeof dir, "%s", from);
        if ((rc = ckpt_list(dir, "ckpt-", "", tags, 64, &n, err)))
            return rc;
        if (n == 0) {
            snprintf(dir, sizeof dir, "%s/checkpoints", from);
            if ((rc = ckpt_list(dir, "ckpt-", "", tags, 64, &n, err)))
                return rc;
        }
        if (n == 0)
            return pst_err_set(err, PST_ERR_IO, "--resume %s: no checkpoint there (folders "
                               "ckpt-<step> holding model.safetensors and optimizer.safetensors)",
                               from);
    }
    pst_err first = {0};
    for (int i = 0; i < n; i++) {
        char cp[4300];
        if (single)
            snprintf(cp, sizeof cp, "%s", from);
        else
            snprintf(cp, sizeof cp, "%s/ckpt-%lld", dir, (long long)tags[i]);
        snprintf(model_path, sizeof model_path, "%s/model.safetensors", cp);
        snprintf(opt_path, sizeof opt_path, "%s/optimizer.safetensors", cp);
        pst_err e = {0};
        rc = wk_trainer_restore(tr, model_path, opt_path, k->hash, at, &e);
        if (rc == PST_OK) {
            if (i > 0)
                log_warn(k->lg, "resuming from the older checkpoint %s", cp);
            log_info(k->lg, "resuming from %s: epoch %d, %lld of its steps done, update %lld",
                     cp, at->epoch, (long long)at->done, (long long)wk_trainer_step(tr));
            k->last_step = wk_trainer_step(tr);
            return PST_OK;
        }
        if (rc == PST_ERR_CONFIG || rc == PST_ERR_NOMEM) /* another job's: older ones too */
            return pst_err_set(err, rc, "%s", e.msg);
        log_warn(k->lg, "checkpoint %s is not usable: %s", cp, e.msg);
        if (i == 0)
            first = e;
    }
    return pst_err_set(err, PST_ERR_DATA, "--resume %s: no complete checkpoint (%d damaged; the "
                       "newest: %.300s)", from, n, first.msg);
}

int cmd_train(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    int print_config = 0;
    const cli_opt opts[] = {
        {.name = "print-config", .kind = CLI_FLAG, .dest = &print_config,
         .help = "print the effective job (file + overrides) as YAML and exit"},
        {0}};
    const cli_spec spec = {.cmd = "train", .synopsis = train_synopsis, .opts = opts,
                           .job = 1, .max_pos = 1};
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
    met_confusion *cm = NULL;
    int rc = cli_load_job(&job, path, args.ov, args.nov, &err);
    if (rc) {
        fprintf(stderr, "pstrain train: %s\n", err.msg);
        cli_args_fini(&args);
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
    char note[1024];
    if (wk_trainer_finetune_note(tr, note, sizeof note))
        log_info(&lg, "%s", note);
    if (wk_trainer_frozen_params(tr))
        log_info(&lg, "frozen: %zu of %zu parameters are not trained",
                 wk_trainer_frozen_params(tr), ml_model_nparams(wk_trainer_model(tr)));
    ckpt_ctx ck = {.job = job, .data = &data, .lg = &lg, .hash = cfg_job_hash(job),
                   .last_step = -1, .last_s = mono_s()};
    if (job->checkpoint.dir)
        snprintf(ck.dir, sizeof ck.dir, "%s", job->checkpoint.dir);
    else
        snprintf(ck.dir, sizeof ck.dir, "%s/checkpoints", job->output.dir);
    wk_resume at = {.epoch = 1};
    const char *from = job->checkpoint.resume;
    if (from && (rc = ckpt_resume(&ck, from, tr, &at, &err)))
        goto done;
    /* "The newest checkpoint" must be this run's: an earlier run's go (as its metrics do),
     * and on resume those after the resume point (damaged ones). */
    if (job->checkpoint.enabled &&
        (rc = ckpt_remove_newer(ck.dir, "ckpt-", "", from ? ck.last_step : -1, &err)))
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
    const int save = job->checkpoint.enabled;
    /* Test hook: SIGTERM right after update k, as a stop arriving then would. */
    pst_test_hooks hooks_buf;
    const pst_test_hooks *hooks = cli_test_hooks(&hooks_buf, -1);
    const long long stop_after = hooks ? hooks->stop_after_clock : 0;
    for (int e = at.epoch; e <= job->train.epochs; e++) {
        wk_epoch_stats st;
        wk_eval val;
        int64_t nsteps = wk_trainer_begin_epoch(tr, data.train, e, &err);
        if (nsteps < 0) {
            rc = err.code;
            goto done;
        }
        int64_t s = 0;
        if (from && e == at.epoch) {
            if ((rc = wk_trainer_resume_epoch(tr, data.train, &at, &err)))
                goto done;
            s = at.done;
        }
        int interrupted = 0;
        for (; s < nsteps; s++) {
            if (*stop) {
                interrupted = 1;
                break;
            }
            double loss;
            if ((rc = wk_trainer_compute(tr, data.train, s, &loss, &err)))
                goto done;
            wk_trainer_apply_local(tr);
            wk_report_progress(rep, e, s + 1, nsteps, loss, wk_trainer_samples_per_s(tr));
            if (job->train.log_every > 0 && (s + 1) % job->train.log_every == 0 &&
                (rc = wk_report_steps(rep, e, s + 1, nsteps, loss, wk_trainer_samples_per_s(tr),
                                      NULL, &err)))
                goto done;
            int64_t step = wk_trainer_step(tr);
            if (stop_after > 0 && step == stop_after)
                raise(SIGTERM);
            /* The epoch's last step is covered by the epoch-end checkpoint. */
            if (save && s + 1 < nsteps && ckpt_due(&ck, step) &&
                (rc = ckpt_write(&ck, tr, 0, "periodic", &err)))
                goto done;
        }
        wk_trainer_end_epoch(tr, interrupted, &st);
        if (data.val && (rc = wk_trainer_evaluate(tr, data.val, &val, NULL, &err)))
            goto done;
        if ((rc = wk_report_epoch(rep, e, &st, data.val ? &val : NULL, NULL, &err)))
            goto done;
        if (save && (rc = ckpt_write(&ck, tr, !interrupted, interrupted ? "stopped" : NULL,
                                     &err)))
            goto done;
        if (interrupted)
            break;
    }
    if (*stop) {
        if (save && ck.last_step >= 0)
            log_warn(&lg, "stopped by signal %d; metrics so far are in %s; continue with "
                     "--resume %s", (int)*stop, job->output.dir, ck.dir);
        else
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
    if ((rc = ckpt_save_model(model_path, wk_trainer_model(tr), &job->model.spec, data.train,
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
    cli_args_fini(&args);
    if (rc)
        return cli_exit_code(rc);
    return *stop ? cli_stop_exit_code(*stop) : EXIT_OK;
}
