/* cli/cmd_eval.c -- `pstrain eval` and `pstrain predict`: a checkpoint applied to a data file.
 *
 * Both rebuild the model from the checkpoint alone (core/ckpt.h), load the data with the
 * training loaders, give string class labels the checkpoint's class ids by name, apply the
 * scaler fitted at training time, and run the model's forward pass in batches. eval prints
 * the figures; predict writes one CSV row per sample. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "cli/cli.h"
#include "core/ckpt.h"
#include "core/metrics.h"
#include "worker/dataprep.h"

typedef struct {
    const char *ckpt, *data;
    const char *labels;      /* IDX labels file */
    const char *label;       /* CSV label column by name */
    int label_index;         /* CSV label column by index, -1 = last */
    cfg_header header;
    char delimiter;
    int format;              /* a cfg_format, or -1: idx when labels is given, else csv */
    int batch;
    const char *output;      /* predict: NULL = stdout */
    int no_label;            /* predict: the CSV has no label column */
} eval_args;

static void usage(const char *cmd, FILE *f)
{
    int predict = strcmp(cmd, "predict") == 0;
    fprintf(f,
            "usage: pstrain %s CKPT DATA [options]\n"
            "\n"
            "%s\n"
            "The model, its classes and the preprocessing fitted at training time all come\n"
            "from the checkpoint CKPT (a model.safetensors written by pstrain train/local).\n"
            "\n"
            "options:\n"
            "  --format idx|csv|libsvm   format of DATA (default: idx with --labels, else csv)\n"
            "  --labels FILE             IDX labels file (DATA is then the images file)\n"
            "  --label NAME              CSV label column by header name\n"
            "  --label-index N           CSV label column by index (default -1: the last)\n"
            "  --header yes|no|auto      CSV header line (default auto)\n"
            "  --delimiter C             CSV field separator (default ,)\n"
            "  --batch-size N            rows per forward pass (default 256)\n"
            "%s"
            "  -h, --help                this text\n",
            cmd,
            predict ? "Writes the model's prediction for every sample of DATA as CSV:\n"
                      "index,predicted,p_<class>... for classification, index,prediction for\n"
                      "regression. A label column, if DATA has one, is not used; name it with\n"
                      "--label/--label-index, or say --no-label when every column is a feature."
                    : "Evaluates the model on the labelled data DATA and prints the loss,\n"
                      "accuracy, per-class and macro precision/recall/F1 and the confusion\n"
                      "matrix (regression: MSE, MAE, R^2).",
            predict ? "  --output FILE             write the CSV to FILE (atomically) instead of "
                      "stdout\n"
                      "  --no-label                CSV without a label column\n"
                    : "");
}

/* Parses a whole decimal int; -1 when s is not one. */
static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -2147483647L || v > 2147483647L)
        return -1;
    *out = (int)v;
    return 0;
}

/* Returns -1 to go on, else the exit code (help printed, or a usage error). */
static int parse_args(const char *cmd, int argc, char **argv, eval_args *a)
{
    int predict = strcmp(cmd, "predict") == 0, npos = 0;
    *a = (eval_args){.label_index = -1, .header = CFG_HEADER_AUTO, .delimiter = ',',
                     .format = -1, .batch = 256};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(cmd, stdout);
            return EXIT_OK;
        }
        if (arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (npos == 0)
                a->ckpt = arg;
            else if (npos == 1)
                a->data = arg;
            else {
                fprintf(stderr, "pstrain %s: unexpected argument '%s' (see --help)\n", cmd, arg);
                return EXIT_USAGE;
            }
            npos++;
            continue;
        }
        if (predict && strcmp(arg, "--no-label") == 0) {
            a->no_label = 1;
            a->label_index = DS_CSV_NO_LABEL;
            continue;
        }
        /* --flag value or --flag=value */
        char flag[64];
        const char *val = NULL, *eq = strchr(arg, '=');
        size_t flen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (flen >= sizeof flag)
            flen = sizeof flag - 1;
        memcpy(flag, arg, flen);
        flag[flen] = '\0';
        static const char *const known[] = {"--format", "--labels", "--label", "--label-index",
                                            "--header", "--delimiter", "--batch-size",
                                            "--output"};
        int k = -1;
        for (int j = 0; j < (int)(sizeof known / sizeof known[0]); j++)
            if (strcmp(flag, known[j]) == 0)
                k = j;
        if (k < 0 || (k == 7 && !predict)) {
            fprintf(stderr, "pstrain %s: unknown option '%s' (see --help)\n", cmd, flag);
            return EXIT_USAGE;
        }
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(stderr, "pstrain %s: %s needs a value\n", cmd, flag);
            return EXIT_USAGE;
        }
        int bad = 0;
        switch (k) {
        case 0:
            if (strcmp(val, "idx") == 0)
                a->format = CFG_FMT_IDX;
            else if (strcmp(val, "csv") == 0)
                a->format = CFG_FMT_CSV;
            else if (strcmp(val, "libsvm") == 0)
                a->format = CFG_FMT_LIBSVM;
            else
                bad = 1;
            break;
        case 1: a->labels = val; break;
        case 2: a->label = val; break;
        case 3: bad = parse_int(val, &a->label_index) || a->label_index < -1; break;
        case 4:
            if (strcmp(val, "yes") == 0)
                a->header = CFG_HEADER_YES;
            else if (strcmp(val, "no") == 0)
                a->header = CFG_HEADER_NO;
            else if (strcmp(val, "auto") == 0)
                a->header = CFG_HEADER_AUTO;
            else
                bad = 1;
            break;
        case 5:
            bad = strlen(val) != 1;
            a->delimiter = val[0];
            break;
        case 6: bad = parse_int(val, &a->batch) || a->batch < 1 || a->batch > (1 << 20); break;
        case 7: a->output = val; break;
        }
        if (bad) {
            fprintf(stderr, "pstrain %s: %s: bad value '%s' (see --help)\n", cmd, flag, val);
            return EXIT_USAGE;
        }
    }
    if (npos != 2) {
        fprintf(stderr, "pstrain %s: needs a checkpoint and a data file (see --help)\n", cmd);
        return EXIT_USAGE;
    }
    if (a->format < 0)
        a->format = a->labels ? CFG_FMT_IDX : CFG_FMT_CSV;
    if (a->format == CFG_FMT_IDX && !a->labels) {
        fprintf(stderr, "pstrain %s: --format idx needs --labels FILE\n", cmd);
        return EXIT_USAGE;
    }
    if (a->no_label &&
        (a->format != CFG_FMT_CSV || a->label || a->label_index != DS_CSV_NO_LABEL)) {
        fprintf(stderr,
                "pstrain %s: --no-label is for CSV data, without --label or --label-index\n",
                cmd);
        return EXIT_USAGE;
    }
    return -1;
}

/* Loads DATA as the checkpoint's task, with its classes numbered as the checkpoint's. */
static ds_dataset *load_data(const eval_args *a, const ckpt_model *ck, pst_err *err)
{
    char delim[2] = {a->delimiter, '\0'};
    ml_model *net = ckpt_model_net((ckpt_model *)ck);
    int classify = ckpt_model_task(ck) == DS_TASK_CLASSIFY;
    /* num_classes 0: the loaders take the data's own classes, checked below against the
     * model's, so an out-of-range label is reported as such. */
    cfg_data dc = {
        .format = (cfg_format)a->format,
        .task = classify ? CFG_TASK_CLASSIFY : CFG_TASK_REGRESS,
        .label = (char *)a->label,
        .label_index = a->label_index,
        .header = a->header,
        .delimiter = delim,
        .dim = a->format == CFG_FMT_LIBSVM ? ml_model_in_dim(net) : 0,
    };
    ds_dataset *ds = wk_data_load_file(&dc, a->data, a->labels, err);
    if (!ds)
        return NULL;
    if (ds_dim(ds) != ml_model_in_dim(net)) {
        pst_err_set(err, PST_ERR_DATA, "%s: %d features, but the model takes %d", a->data,
                    ds_dim(ds), ml_model_in_dim(net));
        goto fail;
    }
    if (a->no_label)
        return ds; /* placeholder labels: nothing to check or renumber */
    if (!classify) {
        if (ds_target_dim(ds) != ml_model_out_dim(net)) {
            pst_err_set(err, PST_ERR_DATA, "%s: %d targets per sample, but the model predicts %d",
                        a->data, ds_target_dim(ds), ml_model_out_dim(net));
            goto fail;
        }
        return ds;
    }
    /* String labels are numbered in order of first appearance in each file, so a class
     * keeps its id only through its name (as ds_align_classes does for a test file). */
    int K = ckpt_model_nclasses(ck), nd = ds_nclasses(ds);
    int ck_named = 0, ds_named = 0;
    for (int k = 0; k < K; k++)
        ck_named |= ckpt_model_class_name(ck, k) != NULL;
    for (int c = 0; c < nd; c++)
        ds_named |= ds_class_name(ds, c) != NULL;
    if (ck_named != ds_named) {
        pst_err_set(err, PST_ERR_DATA, "%s: class labels are %s, but the model's classes are %s",
                    a->data, ds_named ? "names" : "numbers", ck_named ? "names" : "numbers");
        goto fail;
    }
    int32_t *lab = ds_labels(ds);
    int64_t n = ds_count(ds);
    if (ck_named) {
        int *map = malloc((size_t)nd * sizeof *map);
        if (!map) {
            pst_err_set(err, PST_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int c = 0; c < nd; c++) {
            const char *nm = ds_class_name(ds, c);
            map[c] = -1;
            for (int k = 0; nm && k < K; k++)
                if (ckpt_model_class_name(ck, k) && strcmp(nm, ckpt_model_class_name(ck, k)) == 0)
                    map[c] = k;
            if (map[c] < 0) {
                pst_err_set(err, PST_ERR_DATA, "%s: class '%s' is not a class of the model",
                            a->data, nm ? nm : "?");
                free(map);
                goto fail;
            }
        }
        for (int64_t i = 0; i < n; i++)
            lab[i] = map[lab[i]];
        free(map);
    }
    for (int64_t i = 0; i < n; i++)
        if (lab[i] < 0 || lab[i] >= K) {
            pst_err_set(err, PST_ERR_DATA, "%s: record %lld: label %d is not a class of the "
                        "model (it has %d)", a->data, (long long)i, (int)lab[i], K);
            goto fail;
        }
    return ds;
fail:
    ds_destroy(ds);
    return NULL;
}

/* Classification figures or regression figures of the model on ds, printed to stdout. */
static int evaluate(ckpt_model *ck, const ds_dataset *ds, int batch,
                    const volatile sig_atomic_t *stop, pst_err *err)
{
    ml_model *net = ckpt_model_net(ck);
    int classify = ckpt_model_task(ck) == DS_TASK_CLASSIFY;
    int K = ckpt_model_nclasses(ck), D = ml_model_in_dim(net), out = ml_model_out_dim(net);
    met_confusion *cm = NULL;
    int32_t *pred = NULL;
    int rc = PST_OK;
    if (classify) {
        cm = met_confusion_create(K, err);
        pred = malloc((size_t)batch * sizeof *pred);
        if (!cm || !pred) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
    }
    met_regression reg;
    met_regression_reset(&reg);
    int64_t n = ds_count(ds);
    const float *x = ds_x_const(ds);
    double loss_sum = 0.0;
    for (int64_t lo = 0; lo < n && !*stop; lo += batch) {
        int b = (int)(n - lo < batch ? n - lo : batch);
        const float *y = ml_model_forward(net, x + (size_t)lo * D, b);
        if (classify) {
            const int32_t *lab = ds_labels_const(ds) + lo;
            loss_sum += ml_model_loss(net, lab, NULL, b) * b;
            met_predict_classes(pred, y, b, out);
            met_confusion_add(cm, lab, pred, b);
        } else {
            const float *t = ds_targets_const(ds) + (size_t)lo * out;
            loss_sum += ml_model_loss(net, NULL, t, b) * b;
            met_regression_add(&reg, y, t, (int64_t)b * out);
        }
    }
    if (*stop)
        goto cleanup;
    printf("samples: %lld\nloss: %.6f\n", (long long)n, loss_sum / (double)n);
    if (classify) {
        met_summary s;
        met_confusion_summary(cm, &s);
        printf("accuracy: %.6f\nprecision (macro): %.6f\nrecall (macro): %.6f\n"
               "f1 (macro): %.6f\n\n",
               s.accuracy, s.precision_macro, s.recall_macro, s.f1_macro);
        const char **names = calloc((size_t)K, sizeof *names);
        if (!names) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        int named = 0;
        for (int k = 0; k < K; k++)
            named |= (names[k] = ckpt_model_class_name(ck, k)) != NULL;
        met_confusion_print(cm, named ? names : NULL, stdout);
        free(names);
    } else {
        printf("mse: %.6g\nmae: %.6g\nr2: %.6f\n", met_regression_mse(&reg),
               met_regression_mae(&reg), met_regression_r2(&reg));
    }
cleanup:
    met_confusion_destroy(cm);
    free(pred);
    return rc;
}

/* A CSV field: quoted (RFC 4180) when it holds a separator, a quote or a line break. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* index,predicted,p_<class>... (classification) or index,prediction... (regression). */
static int write_predictions(ckpt_model *ck, const ds_dataset *ds, int batch, FILE *f,
                             const volatile sig_atomic_t *stop, pst_err *err)
{
    ml_model *net = ckpt_model_net(ck);
    int classify = ckpt_model_task(ck) == DS_TASK_CLASSIFY;
    int K = ckpt_model_nclasses(ck), D = ml_model_in_dim(net), out = ml_model_out_dim(net);
    int32_t *pred = malloc((size_t)batch * sizeof *pred);
    if (!pred)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    char buf[32];
    if (classify) {
        fputs("index,predicted", f);
        for (int k = 0; k < K; k++) {
            const char *nm = ckpt_model_class_name(ck, k);
            char col[512];
            if (nm)
                snprintf(col, sizeof col, "p_%s", nm);
            else
                snprintf(col, sizeof col, "p_%d", k);
            fputc(',', f);
            csv_field(f, col);
        }
    } else if (out == 1) {
        fputs("index,prediction", f);
    } else {
        fputs("index", f);
        for (int j = 0; j < out; j++)
            fprintf(f, ",prediction_%d", j);
    }
    fputc('\n', f);
    int64_t n = ds_count(ds);
    const float *x = ds_x_const(ds);
    for (int64_t lo = 0; lo < n && !*stop; lo += batch) {
        int b = (int)(n - lo < batch ? n - lo : batch);
        const float *y = ml_model_forward(net, x + (size_t)lo * D, b);
        if (classify)
            met_predict_classes(pred, y, b, out);
        for (int i = 0; i < b; i++) {
            const float *yi = y + (size_t)i * out;
            fprintf(f, "%lld", (long long)(lo + i));
            if (classify) {
                const char *nm = ckpt_model_class_name(ck, pred[i]);
                snprintf(buf, sizeof buf, "%d", (int)pred[i]);
                fputc(',', f);
                csv_field(f, nm ? nm : buf);
                /* One sigmoid unit gives p(class 1); class 0 has the rest. */
                if (out == 1)
                    fprintf(f, ",%.9g,%.9g", (double)(1.0f - yi[0]), (double)yi[0]);
                else
                    for (int k = 0; k < out; k++)
                        fprintf(f, ",%.9g", (double)yi[k]);
            } else {
                for (int j = 0; j < out; j++)
                    fprintf(f, ",%.9g", (double)yi[j]);
            }
            fputc('\n', f);
        }
    }
    free(pred);
    return PST_OK;
}

static int run(const char *cmd, int argc, char **argv, const volatile sig_atomic_t *stop)
{
    eval_args a;
    int ec = parse_args(cmd, argc, argv, &a);
    if (ec >= 0)
        return ec;
    int predict = strcmp(cmd, "predict") == 0;
    pst_err err = {0};
    ckpt_model *ck = NULL;
    ds_dataset *ds = NULL;
    fs_atomic out = {0}; /* out.f set while --output is being written */
    int rc = ckpt_load(a.ckpt, a.batch, &ck, &err);
    if (rc)
        goto done;
    if (!(ds = load_data(&a, ck, &err))) {
        rc = err.code ? err.code : PST_ERR_DATA;
        goto done;
    }
    if ((rc = ds_scaler_apply(ckpt_model_scaler(ck), ds, &err)))
        goto done;
    if (!predict) {
        rc = evaluate(ck, ds, a.batch, stop, &err);
        if (!rc && fflush(stdout) != 0)
            rc = pst_err_set(&err, PST_ERR_IO, "stdout: cannot write: %s", strerror(errno));
        goto done;
    }
    /* --output is written as FILE.tmp.PID, synced and renamed over FILE only when
     * complete (base/fs.h). */
    if (a.output && (rc = fs_atomic_open(&out, a.output, 0644, &err)))
        goto done;
    if ((rc = write_predictions(ck, ds, a.batch, out.f ? out.f : stdout, stop, &err)))
        goto done;
    if (*stop)
        goto done;
    if (out.f) {
        rc = fs_atomic_commit(&out, FS_REPLACE, &err);
    } else if (fflush(stdout) != 0 || ferror(stdout)) {
        rc = pst_err_set(&err, PST_ERR_IO, "stdout: cannot write: %s", strerror(errno));
    }

done:
    if (out.f) /* failed or stopped before the rename: the old FILE stays */
        fs_atomic_abort(&out);
    if (rc)
        fprintf(stderr, "pstrain %s: %s\n", cmd, err.msg);
    ds_destroy(ds);
    ckpt_model_destroy(ck);
    if (rc)
        return cli_exit_code(rc);
    return *stop ? cli_stop_exit_code(*stop) : EXIT_OK;
}

int cmd_eval(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    return run("eval", argc, argv, stop);
}

int cmd_predict(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    return run("predict", argc, argv, stop);
}
