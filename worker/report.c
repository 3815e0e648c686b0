/* worker/report.c -- see report.h. */
#define _DEFAULT_SOURCE /* realpath */
#include "report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "base/clock.h"
#include "base/fs.h"

struct wk_report {
    const log_ctx *lg;
    char dir[4096]; /* the run folder: errors name their file's whole path */
    FILE *csv, *jsonl;
    FILE *steps_csv, *steps_jsonl;
    double win_t0; /* start of the interval of the next step record */
    FILE *progress;
    int tty, log_every, epochs;
    int bar_drawn;
    double last_draw;
    double epoch_t0; /* when the epoch's first step reported */
    int t0_epoch;    /* the epoch epoch_t0 belongs to (0: none yet) */
    int64_t t0_step; /* steps of it done before epoch_t0 (a resumed epoch starts late) */
};

static FILE *open_in(const char *dir, const char *name, const char *mode, pst_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, mode);
    if (!f)
        pst_err_set(err, PST_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    return f;
}

static wk_report *report_open(const char *dir, const log_ctx *lg, FILE *progress_out, int tty,
                              int log_every, int epochs, int append, pst_err *err)
{
    wk_report *r = calloc(1, sizeof *r);
    if (!r) {
        pst_err_set(err, PST_ERR_NOMEM, "report: out of memory");
        return NULL;
    }
    r->lg = lg;
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    r->progress = progress_out;
    r->tty = tty;
    r->log_every = log_every;
    r->epochs = epochs;
    if (fs_mkdirs(dir, err))
        goto fail;
    const char *mode = append ? "a" : "w";
    r->csv = open_in(dir, "metrics.csv", mode, err);
    if (!r->csv)
        goto fail;
    r->jsonl = open_in(dir, "metrics.jsonl", mode, err);
    if (!r->jsonl)
        goto fail;
    r->steps_csv = open_in(dir, "steps.csv", mode, err);
    if (!r->steps_csv)
        goto fail;
    r->steps_jsonl = open_in(dir, "steps.jsonl", mode, err);
    if (!r->steps_jsonl)
        goto fail;
    if (ftell(r->csv) == 0) /* "a" starts at the end: 0 only for a new or empty file */
        fputs("epoch,train_loss,train_acc,val_loss,val_acc,val_precision,val_recall,val_f1,"
              "val_mse,val_mae,val_r2,seconds,samples_per_s," WK_REPORT_COMM_COLUMNS "\n",
              r->csv);
    if (ftell(r->steps_csv) == 0)
        fputs("epoch,step,steps,loss,seconds,samples_per_s," WK_REPORT_COMM_COLUMNS "\n",
              r->steps_csv);
    fflush(r->csv);
    fflush(r->steps_csv);
    r->win_t0 = pst_mono_s();
    return r;
fail:
    wk_report_destroy(r);
    return NULL;
}

wk_report *wk_report_create(const char *dir, const log_ctx *lg, FILE *progress_out, int tty,
                            int log_every, int epochs, pst_err *err)
{
    return report_open(dir, lg, progress_out, tty, log_every, epochs, 0, err);
}

wk_report *wk_report_resume(const char *dir, const log_ctx *lg, FILE *progress_out, int tty,
                            int log_every, int epochs, pst_err *err)
{
    return report_open(dir, lg, progress_out, tty, log_every, epochs, 1, err);
}

void wk_report_destroy(wk_report *r)
{
    if (!r)
        return;
    if (r->csv)
        fclose(r->csv);
    if (r->jsonl)
        fclose(r->jsonl);
    if (r->steps_csv)
        fclose(r->steps_csv);
    if (r->steps_jsonl)
        fclose(r->steps_jsonl);
    free(r);
}

void wk_report_progress(void *ctx, int epoch, int64_t step, int64_t nsteps, double loss,
                        double samples_per_s)
{
    wk_report *r = ctx;
    double now = pst_mono_s();
    if (step == 1 || epoch != r->t0_epoch) {
        r->epoch_t0 = now;
        r->t0_epoch = epoch;
        r->t0_step = step - 1;
    }
    if (r->tty) {
        /* Redraw at most 10 times a second, and always on the last step. */
        if (step != nsteps && now - r->last_draw < 0.1)
            return;
        r->last_draw = now;
        enum { W = 30 };
        int fill = (int)(W * step / (nsteps ? nsteps : 1));
        char bar[W + 1];
        for (int i = 0; i < W; i++)
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[W] = '\0';
        double eta = (now - r->epoch_t0) / (double)(step - r->t0_step) * (double)(nsteps - step);
        fprintf(r->progress,
                "\r\033[Kepoch %d/%d [%s] %lld/%lld loss %.4f %.0f samples/s ETA %.0fs", epoch,
                r->epochs, bar, (long long)step, (long long)nsteps, loss, samples_per_s, eta);
        fflush(r->progress);
        r->bar_drawn = 1;
    } else if (r->log_every > 0 && step % r->log_every == 0) {
        log_info(r->lg, "epoch %d/%d step %lld/%lld loss %.4f %.0f samples/s", epoch, r->epochs,
                 (long long)step, (long long)nsteps, loss, samples_per_s);
    }
}

static void clear_bar(wk_report *r)
{
    if (r->bar_drawn) {
        fputs("\r\033[K", r->progress);
        fflush(r->progress);
        r->bar_drawn = 0;
    }
}

/* CSV cell: the value, or nothing when it was not measured (NaN). */
static void csv_num(FILE *f, double v, int last)
{
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    fputc(last ? '\n' : ',', f);
}

static void json_num(cJSON *o, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static int write_json(wk_report *r, cJSON *o, pst_err *err)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return pst_err_set(err, PST_ERR_NOMEM, "report: out of memory");
    fprintf(r->jsonl, "%s\n", s);
    cJSON_free(s);
    if (fflush(r->jsonl) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s/metrics.jsonl: write failed: %s", r->dir,
                           strerror(errno));
    return PST_OK;
}

/* The WK_REPORT_COMM_COLUMNS cells of an interval of `seconds`, in that order. */
enum { NCOMM = 12 };
static void comm_cells(const wk_comm_stats *c, double seconds, double out[NCOMM])
{
    if (!c) {
        double local[NCOMM] = {0, 0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, 0, seconds};
        memcpy(out, local, sizeof local);
        return;
    }
    double cells[NCOMM] = {(double)c->bytes_pushed,
                           (double)c->bytes_pulled,
                           1e3 * c->push_p50,
                           1e3 * c->push_p90,
                           1e3 * c->push_p99,
                           1e3 * c->pull_p50,
                           1e3 * c->pull_p90,
                           1e3 * c->pull_p99,
                           c->gap_mean,
                           c->gap_max,
                           c->wait_s,
                           seconds - c->wait_s > 0 ? seconds - c->wait_s : 0};
    memcpy(out, cells, sizeof cells);
}

static void json_comm(cJSON *o, const double cells[NCOMM])
{
    static const char names[] = WK_REPORT_COMM_COLUMNS;
    const char *p = names;
    for (int i = 0; i < NCOMM; i++) {
        size_t len = strcspn(p, ",");
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)len, p);
        json_num(o, key, cells[i]);
        p += len + (p[len] == ',');
    }
}

int wk_report_steps(wk_report *r, int epoch, int64_t step, int64_t nsteps, double loss,
                    double samples_per_s, const wk_comm_stats *comm, pst_err *err)
{
    double now = pst_mono_s(), seconds = now - r->win_t0;
    r->win_t0 = now;
    double cells[NCOMM];
    comm_cells(comm, seconds, cells);
    fprintf(r->steps_csv, "%d,%lld,%lld,", epoch, (long long)step, (long long)nsteps);
    csv_num(r->steps_csv, loss, 0);
    csv_num(r->steps_csv, seconds, 0);
    csv_num(r->steps_csv, samples_per_s, 0);
    for (int i = 0; i < NCOMM; i++)
        csv_num(r->steps_csv, cells[i], i == NCOMM - 1);
    if (fflush(r->steps_csv) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s/steps.csv: write failed: %s", r->dir,
                           strerror(errno));
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return pst_err_set(err, PST_ERR_NOMEM, "report: out of memory");
    cJSON_AddNumberToObject(o, "epoch", epoch);
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddNumberToObject(o, "steps", (double)nsteps);
    json_num(o, "loss", loss);
    json_num(o, "seconds", seconds);
    json_num(o, "samples_per_s", samples_per_s);
    json_comm(o, cells);
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!js)
        return pst_err_set(err, PST_ERR_NOMEM, "report: out of memory");
    fprintf(r->steps_jsonl, "%s\n", js);
    cJSON_free(js);
    if (fflush(r->steps_jsonl) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s/steps.jsonl: write failed: %s", r->dir,
                           strerror(errno));
    return PST_OK;
}

int wk_report_epoch(wk_report *r, int epoch, const wk_epoch_stats *st, const wk_eval *val,
                    const wk_comm_stats *comm, pst_err *err)
{
    clear_bar(r);
    double sps = st->seconds > 0 ? (double)st->samples / st->seconds : NAN;
    double vl = NAN, va = NAN, vp = NAN, vr = NAN, vf = NAN, vm = NAN, vae = NAN, vr2 = NAN;
    if (val && val->classify) {
        vl = val->loss, va = val->cls.accuracy, vp = val->cls.precision_macro;
        vr = val->cls.recall_macro, vf = val->cls.f1_macro;
    } else if (val) {
        vl = val->loss, vm = val->mse, vae = val->mae, vr2 = val->r2;
    }
    char line[512];
    int n = snprintf(line, sizeof line, "epoch %d/%d loss %.4f", epoch, r->epochs, st->loss);
    if (isfinite(st->accuracy))
        n += snprintf(line + n, sizeof line - n, " acc %.4f", st->accuracy);
    if (st->lm && isfinite(st->loss))
        n += snprintf(line + n, sizeof line - n, " ppl %.2f", exp(st->loss));
    if (val && val->lm)
        n += snprintf(line + n, sizeof line - n, " | val_loss %.4f val_ppl %.2f", vl,
                      val->perplexity);
    else if (val && val->classify)
        n += snprintf(line + n, sizeof line - n,
                      " | val_loss %.4f val_acc %.4f val_precision %.4f val_recall %.4f "
                      "val_f1 %.4f",
                      vl, va, vp, vr, vf);
    else if (val)
        n += snprintf(line + n, sizeof line - n,
                      " | val_loss %.4f val_mse %.4f val_mae %.4f val_r2 %.4f", vl, vm, vae, vr2);
    snprintf(line + n, sizeof line - n, " | %.2fs %.0f samples/s%s", st->seconds, sps,
             st->interrupted ? " (interrupted)" : "");
    log_info(r->lg, "%s", line);

    fprintf(r->csv, "%d,", epoch);
    csv_num(r->csv, st->loss, 0);
    csv_num(r->csv, st->accuracy, 0);
    double cells[] = {vl, va, vp, vr, vf, vm, vae, vr2, st->seconds};
    for (size_t i = 0; i < sizeof cells / sizeof cells[0]; i++)
        csv_num(r->csv, cells[i], 0);
    csv_num(r->csv, sps, 0);
    double cc[NCOMM];
    comm_cells(comm, st->seconds, cc);
    for (int i = 0; i < NCOMM; i++)
        csv_num(r->csv, cc[i], i == NCOMM - 1);
    r->win_t0 = pst_mono_s(); /* the next step record starts after this epoch's evaluation */
    if (fflush(r->csv) != 0)
        return pst_err_set(err, PST_ERR_IO, "%s/metrics.csv: write failed: %s", r->dir,
                           strerror(errno));

    cJSON *o = cJSON_CreateObject();
    if (!o)
        return pst_err_set(err, PST_ERR_NOMEM, "report: out of memory");
    cJSON_AddStringToObject(o, "split", "train");
    cJSON_AddNumberToObject(o, "epoch", epoch);
    cJSON_AddNumberToObject(o, "samples", (double)st->samples);
    json_num(o, "train_loss", st->loss);
    json_num(o, "train_acc", st->accuracy);
    if (st->lm)
        json_num(o, "train_ppl", exp(st->loss));
    if (val && val->lm) {
        json_num(o, "val_loss", vl);
        json_num(o, "val_ppl", val->perplexity);
    } else if (val && val->classify) {
        json_num(o, "val_loss", vl);
        json_num(o, "val_acc", va);
        json_num(o, "val_precision", vp);
        json_num(o, "val_recall", vr);
        json_num(o, "val_f1", vf);
    } else if (val) {
        json_num(o, "val_loss", vl);
        json_num(o, "val_mse", vm);
        json_num(o, "val_mae", vae);
        json_num(o, "val_r2", vr2);
    }
    json_num(o, "seconds", st->seconds);
    json_num(o, "samples_per_s", sps);
    json_comm(o, cc);
    if (st->interrupted)
        cJSON_AddBoolToObject(o, "interrupted", 1);
    return write_json(r, o, err);
}

int wk_report_final(wk_report *r, const char *split, const wk_eval *ev, pst_err *err)
{
    clear_bar(r);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return pst_err_set(err, PST_ERR_NOMEM, "report: out of memory");
    cJSON_AddStringToObject(o, "split", split);
    cJSON_AddNumberToObject(o, "samples", (double)ev->n);
    json_num(o, "loss", ev->loss);
    if (ev->lm) {
        log_info(r->lg, "%s: loss %.4f perplexity %.2f (%lld windows)", split, ev->loss,
                 ev->perplexity, (long long)ev->n);
        json_num(o, "perplexity", ev->perplexity);
    } else if (ev->classify) {
        log_info(r->lg,
                 "%s: loss %.4f accuracy %.4f precision %.4f recall %.4f f1 %.4f (%lld samples)",
                 split, ev->loss, ev->cls.accuracy, ev->cls.precision_macro, ev->cls.recall_macro,
                 ev->cls.f1_macro, (long long)ev->n);
        json_num(o, "accuracy", ev->cls.accuracy);
        json_num(o, "precision", ev->cls.precision_macro);
        json_num(o, "recall", ev->cls.recall_macro);
        json_num(o, "f1", ev->cls.f1_macro);
    } else {
        log_info(r->lg, "%s: loss %.4f mse %.4f mae %.4f r2 %.4f (%lld samples)", split, ev->loss,
                 ev->mse, ev->mae, ev->r2, (long long)ev->n);
        json_num(o, "mse", ev->mse);
        json_num(o, "mae", ev->mae);
        json_num(o, "r2", ev->r2);
    }
    return write_json(r, o, err);
}

int wk_report_write_job(const char *dir, const cfg_job *job, pst_err *err)
{
    /* A copy to change: the printed job loaded back (cfg_job_print round-trips). */
    char *text = NULL, path[4200];
    size_t len = 0;
    cfg_job *copy = NULL;
    FILE *f = open_memstream(&text, &len);
    int rc;
    if (!f)
        return pst_err_set(err, PST_ERR_NOMEM, "job.yaml: out of memory");
    rc = cfg_job_print(job, f, err);
    if (fclose(f) != 0 && !rc)
        rc = pst_err_set(err, PST_ERR_NOMEM, "job.yaml: out of memory");
    if (rc || (rc = cfg_job_load_string(&copy, text, len, "job.yaml", err)))
        goto cleanup;
    static const char *const keys[] = {"data.train", "data.train_labels", "data.test",
                                       "data.test_labels", "data.tokenizer"};
    const char *vals[] = {copy->data.train, copy->data.train_labels, copy->data.test,
                          copy->data.test_labels, copy->data.tokenizer};
    for (int i = 0; i < 5; i++) {
        char abs[PATH_MAX];
        /* A path that does not resolve stays as it was: the job ran without reading it. */
        if (vals[i] && vals[i][0] && realpath(vals[i], abs) &&
            (rc = cfg_override(copy, keys[i], abs, err)))
            goto cleanup;
    }
    snprintf(path, sizeof path, "%s/job.yaml", dir);
    fs_atomic out;
    if ((rc = fs_atomic_open(&out, path, 0644, err)))
        goto cleanup;
    if ((rc = cfg_job_print(copy, out.f, err)))
        fs_atomic_abort(&out);
    else
        rc = fs_atomic_commit(&out, FS_REPLACE, err);
cleanup:
    cfg_job_free(copy);
    free(text);
    return rc;
}
