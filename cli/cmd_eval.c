/* cli/cmd_eval.c -- `pstrain eval` and `pstrain predict`: a checkpoint applied to a data file.
 *
 * Both rebuild the model from the checkpoint alone (ckpt/ckpt.h), load the data with the
 * training loaders, give string class labels the checkpoint's class ids by name, apply the
 * scaler fitted at training time, and run the model's forward pass in batches. eval prints
 * the figures; predict writes one CSV row per sample. A model with embedding tables reads
 * its data and rows as its run did (cli/eval_sparse.c) and then goes the same way. */
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
#include "ckpt/ckpt.h"
#include "core/metrics.h"
#include "worker/dataprep.h"

typedef struct {
    const char *ckpt;
    cli_data_src src; /* DATA and how to read it */
    int format_given; /* --format or --labels: a sparse model's job says it otherwise */
    int batch;
    const char *output;  /* predict: NULL = stdout */
    int no_label;        /* predict: the CSV has no label column */
    const char *compare; /* eval: a reference checkpoint (the fp32 original of an export) */
} eval_args;

static const char eval_synopsis[] =
    "usage: pstrain eval CKPT DATA [options]\n"
    "\n"
    "Evaluates the model on the labelled data DATA and prints the loss,\n"
    "accuracy, per-class and macro precision/recall/F1 and the confusion\n"
    "matrix (regression: MSE, MAE, R^2).\n"
    "The model, its classes and the preprocessing fitted at training time all come\n"
    "from the checkpoint CKPT (a model.safetensors written by pstrain train/local).\n"
    "A model with embedding tables reads DATA as its run's job (job.yaml) did, with\n"
    "the rows of the tables.safetensors beside CKPT (beside another NAME.safetensors,\n"
    "NAME.tables.safetensors: pstrain consolidate's).\n"
    "\n"
    "A language model (sequence_crossentropy: model.gpt2) is evaluated on the text file\n"
    "DATA instead: its mean token loss and perplexity (exp of it) over windows of the\n"
    "model's context. CKPT is then its run folder, a checkpoint folder of the run, its\n"
    "model file, or the job file; the tokenizer is the job's (--tokenizer DIR: another).\n";
static const char predict_synopsis[] =
    "usage: pstrain predict CKPT DATA [options]\n"
    "\n"
    "Writes the model's prediction for every sample of DATA as CSV:\n"
    "index,predicted,p_<class>... for classification, index,prediction for\n"
    "regression. A label column, if DATA has one, is not used; name it with\n"
    "--label/--label-index, or say --no-label when every column is a feature.\n"
    "The model, its classes and the preprocessing fitted at training time all come\n"
    "from the checkpoint CKPT (a model.safetensors written by pstrain train/local).\n"
    "A model with embedding tables reads DATA as its run's job (job.yaml) did, with\n"
    "the rows of the tables.safetensors beside CKPT (beside another NAME.safetensors,\n"
    "NAME.tables.safetensors: pstrain consolidate's).\n";

/* Returns -1 to go on, else the exit code (help printed, or a usage error). */
static int parse_args(const char *cmd, int argc, char **argv, eval_args *a)
{
    const int predict = strcmp(cmd, "predict") == 0;
    *a = (eval_args){.batch = 256};
    cli_data_opts dopt;
    cli_opt opts[CLI_DATA_NOPTS + 5] = {
        [CLI_DATA_NOPTS] = {.name = "batch-size",
                            .kind = CLI_INT,
                            .dest = &a->batch,
                            .meta = "N",
                            .lo = 1,
                            .hi = 1 << 20,
                            .help = "rows per forward pass (default 256)"},
        {.name = "compare",
         .kind = CLI_STR,
         .dest = &a->compare,
         .meta = "CKPT",
         .help = "also evaluate CKPT (e.g. the fp32 original of an fp16/int8\n"
                 "export) and print its figures and the difference"},
        /* predict only, from here on */
        {.name = "output",
         .kind = CLI_STR,
         .dest = &a->output,
         .meta = "FILE",
         .help = "write the CSV to FILE (atomically) instead of stdout"},
        {.name = "no-label",
         .kind = CLI_FLAG,
         .dest = &a->no_label,
         .help = "CSV without a label column"},
        {0}};
    cli_data_opts_init(&dopt, &a->src, "idx|csv|libsvm", opts);
    if (!predict)
        opts[sizeof opts / sizeof opts[0] - 3] = (cli_opt){0};
    else
        memmove(&opts[CLI_DATA_NOPTS + 1], &opts[CLI_DATA_NOPTS + 2],
                3 * sizeof opts[0]); /* no --compare */
    const cli_spec spec = {.cmd = cmd,
                           .synopsis = predict ? predict_synopsis : eval_synopsis,
                           .opts = opts,
                           .max_pos = 2};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    a->ckpt = args.npos > 0 ? args.pos[0] : NULL;
    a->src.data = args.npos > 1 ? args.pos[1] : NULL;
    int npos = args.npos;
    cli_args_fini(&args); /* the positionals point into argv */
    if (npos != 2) {
        fprintf(stderr, "pstrain %s: needs a checkpoint and a data file (see --help)\n", cmd);
        return EXIT_USAGE;
    }
    a->format_given = dopt.format >= 0 || a->src.labels;
    return cli_data_opts_finish(&dopt, a->no_label, cmd);
}

/* Loads DATA as the checkpoint's task, with its classes numbered as the checkpoint's. */
static ds_dataset *load_data(const cli_data_src *src, int no_label, const ckpt_model *ck,
                             pst_err *err)
{
    char delim[2] = {src->delimiter, '\0'};
    ml_model *net = ckpt_model_net((ckpt_model *)ck);
    int classify = ckpt_model_task(ck) == DS_TASK_CLASSIFY;
    /* num_classes 0: the loaders take the data's own classes, checked below against the
     * model's, so an out-of-range label is reported as such. */
    cfg_data dc = {
        .format = (cfg_format)src->format,
        .task = classify ? DS_TASK_CLASSIFY : DS_TASK_REGRESS,
        .label = (char *)src->label,
        .label_index = src->label_index,
        .header = src->header,
        .delimiter = delim,
        .dim = src->format == CFG_FMT_LIBSVM ? ml_model_in_dim(net) : 0,
    };
    ds_dataset *ds = wk_data_load_file(&dc, src->data, src->labels, err);
    if (!ds)
        return NULL;
    if (cli_eval_fit(ds, src->data, no_label, ck, err)) {
        ds_destroy(ds);
        return NULL;
    }
    return ds;
}

int cli_eval_fit(ds_dataset *ds, const char *path, int no_label, const ckpt_model *ck, pst_err *err)
{
    ml_model *net = ckpt_model_net((ckpt_model *)ck);
    int classify = ckpt_model_task(ck) == DS_TASK_CLASSIFY;
    if (ds_dim(ds) != ml_model_in_dim(net))
        return pst_err_set(err, PST_ERR_DATA, "%s: %d features, but the model takes %d", path,
                           ds_dim(ds), ml_model_in_dim(net));
    if (no_label)
        return PST_OK; /* placeholder labels: nothing to check or renumber */
    if (!classify) {
        if (ds_target_dim(ds) != ml_model_out_dim(net))
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: %d targets per sample, but the model predicts %d", path,
                               ds_target_dim(ds), ml_model_out_dim(net));
        return PST_OK;
    }
    /* String labels are numbered in order of first appearance in each file, so a class
     * keeps its id only through its name (as ds_align_classes does for a test file). */
    int K = ckpt_model_nclasses(ck), nd = ds_nclasses(ds);
    int ck_named = 0, ds_named = 0;
    for (int k = 0; k < K; k++)
        ck_named |= ckpt_model_class_name(ck, k) != NULL;
    for (int c = 0; c < nd; c++)
        ds_named |= ds_class_name(ds, c) != NULL;
    if (ck_named != ds_named)
        return pst_err_set(err, PST_ERR_DATA,
                           "%s: class labels are %s, but the model's classes are %s", path,
                           ds_named ? "names" : "numbers", ck_named ? "names" : "numbers");
    int32_t *lab = ds_labels(ds);
    int64_t n = ds_count(ds);
    if (ck_named) {
        int *map = malloc((size_t)nd * sizeof *map);
        if (!map)
            return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        for (int c = 0; c < nd; c++) {
            const char *nm = ds_class_name(ds, c);
            map[c] = -1;
            for (int k = 0; nm && k < K; k++)
                if (ckpt_model_class_name(ck, k) && strcmp(nm, ckpt_model_class_name(ck, k)) == 0)
                    map[c] = k;
            if (map[c] < 0) {
                free(map);
                return pst_err_set(err, PST_ERR_DATA, "%s: class '%s' is not a class of the model",
                                   path, nm ? nm : "?");
            }
        }
        for (int64_t i = 0; i < n; i++)
            lab[i] = map[lab[i]];
        free(map);
    }
    for (int64_t i = 0; i < n; i++)
        if (lab[i] < 0 || lab[i] >= K)
            return pst_err_set(err, PST_ERR_DATA,
                               "%s: record %lld: label %d is not a class of the "
                               "model (it has %d)",
                               path, (long long)i, (int)lab[i], K);
    return PST_OK;
}

/* The forward pass of a checkpoint's own model (ctx) on rows [lo, lo + n) of ds. */
static const float *dense_forward(void *ctx, const ds_dataset *ds, int64_t lo, int n, pst_err *err)
{
    (void)err;
    ml_model *net = ctx;
    return ml_model_forward(net, ds_x_const(ds) + (size_t)lo * ml_model_in_dim(net), n);
}

/* Classification figures or regression figures of the model on ds, printed to stdout. */
typedef struct {
    double loss, accuracy; /* accuracy: classification only */
} eval_figures;

/* The model of ck run by fw. quiet: compute *fig alone (the --compare reference), print
 * nothing. */
static int evaluate(ckpt_model *ck, const cli_forward *fw, const ds_dataset *ds, int batch,
                    int quiet, eval_figures *fig, const volatile sig_atomic_t *stop, pst_err *err)
{
    ml_model *net = fw->net;
    int classify = ckpt_model_task(ck) == DS_TASK_CLASSIFY;
    int K = ckpt_model_nclasses(ck), out = ml_model_out_dim(net);
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
    double loss_sum = 0.0;
    for (int64_t lo = 0; lo < n && !*stop; lo += batch) {
        int b = (int)(n - lo < batch ? n - lo : batch);
        const float *y = fw->forward(fw->ctx, ds, lo, b, err);
        if (!y) {
            rc = err->code;
            goto cleanup;
        }
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
    fig->loss = loss_sum / (double)n;
    fig->accuracy = 0.0;
    if (classify) {
        met_summary s0;
        met_confusion_summary(cm, &s0);
        fig->accuracy = s0.accuracy;
    }
    if (quiet)
        goto cleanup;
    if (strcmp(ckpt_model_dtype(ck), "fp32") != 0)
        printf("weights: %s (dequantised to fp32 on load)\n", ckpt_model_dtype(ck));
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
static int write_predictions(ckpt_model *ck, const cli_forward *fw, const ds_dataset *ds, int batch,
                             FILE *f, const volatile sig_atomic_t *stop, pst_err *err)
{
    int classify = ckpt_model_task(ck) == DS_TASK_CLASSIFY;
    int K = ckpt_model_nclasses(ck), out = ml_model_out_dim(fw->net);
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
    for (int64_t lo = 0; lo < n && !*stop; lo += batch) {
        int b = (int)(n - lo < batch ? n - lo : batch);
        const float *y = fw->forward(fw->ctx, ds, lo, b, err);
        if (!y) {
            free(pred);
            return err->code;
        }
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

/* eval --compare REF: REF evaluated on the same (already scaled) data -- an export and
 * its original share the preprocessing -- and the differences printed after CKPT's
 * figures. REF must be the same model: same input width, outputs and task. */
static int compare(const eval_args *a, ckpt_model *ck, const ds_dataset *ds,
                   const eval_figures *fig, eval_figures *ref, const volatile sig_atomic_t *stop,
                   pst_err *err)
{
    ckpt_model *rk = NULL;
    int rc = ckpt_load(a->compare, a->batch, &rk, err);
    if (rc)
        return rc;
    ml_model *n1 = ckpt_model_net(ck), *n2 = ckpt_model_net(rk);
    if (ml_model_in_dim(n1) != ml_model_in_dim(n2) ||
        ml_model_out_dim(n1) != ml_model_out_dim(n2) ||
        ckpt_model_task(ck) != ckpt_model_task(rk)) {
        rc = pst_err_set(err, PST_ERR_DATA, "--compare %s: not a model of the same task and shape",
                         a->compare);
        goto cleanup;
    }
    const cli_forward fw = {ckpt_model_net(rk), dense_forward, ckpt_model_net(rk)};
    if ((rc = evaluate(rk, &fw, ds, a->batch, 1, ref, stop, err)) || *stop)
        goto cleanup;
    printf("\ncompared with %s (%s):\n", a->compare, ckpt_model_dtype(rk));
    printf("loss: %.6f (%+.6f)\n", ref->loss, fig->loss - ref->loss);
    if (ckpt_model_task(ck) == DS_TASK_CLASSIFY)
        printf("accuracy: %.6f\naccuracy drop: %.6f\n", ref->accuracy,
               ref->accuracy - fig->accuracy);
cleanup:
    ckpt_model_destroy(rk);
    return rc;
}

/* ck: CKPT already loaded (cmd_eval), run's to destroy; NULL: loaded here. */
static int run(const char *cmd, int argc, char **argv, ckpt_model *ck,
               const volatile sig_atomic_t *stop)
{
    eval_args a;
    int ec = parse_args(cmd, argc, argv, &a);
    if (ec >= 0) {
        ckpt_model_destroy(ck);
        return ec;
    }
    int predict = strcmp(cmd, "predict") == 0;
    pst_err err = {0};
    cli_sparse *sp = NULL;
    ds_dataset *ds = NULL;
    fs_atomic out = {0}; /* out.f set while --output is being written */
    int rc =
        ck ? ckpt_model_set_max_batch(ck, a.batch, &err) : ckpt_load(a.ckpt, a.batch, &ck, &err);
    if (rc)
        goto done;
    cli_forward fw = {ckpt_model_net(ck), dense_forward, ckpt_model_net(ck)};
    if (ml_model_ntables(ckpt_model_net(ck)) > 0) {
        /* The data as the run's job reads it, the rows from the run's tables. */
        if (a.compare) {
            rc = pst_err_set(&err, PST_ERR_ARG, "--compare: not for a model with embedding tables");
            goto done;
        }
        cli_data_src src = a.src;
        if (!a.format_given)
            src.format = -1;
        if ((rc = cli_sparse_open(&sp, a.ckpt, ck, &src, a.batch, &ds, &err)))
            goto done;
        fw = (cli_forward){cli_sparse_model(sp), cli_sparse_forward, sp};
    } else if (!(ds = load_data(&a.src, a.no_label, ck, &err))) {
        rc = err.code ? err.code : PST_ERR_DATA;
        goto done;
    } else if ((rc = ds_scaler_apply(ckpt_model_scaler(ck), ds, &err))) {
        goto done;
    }
    if (!predict) {
        eval_figures fig, ref;
        rc = evaluate(ck, &fw, ds, a.batch, 0, &fig, stop, &err);
        if (!rc && a.compare && !*stop)
            rc = compare(&a, ck, ds, &fig, &ref, stop, &err);
        if (!rc && fflush(stdout) != 0)
            rc = pst_err_set(&err, PST_ERR_IO, "stdout: cannot write: %s", strerror(errno));
        goto done;
    }
    /* --output is written as FILE.tmp.PID, synced and renamed over FILE only when
     * complete (base/fs.h). */
    if (a.output && (rc = fs_atomic_open(&out, a.output, 0644, &err)))
        goto done;
    if ((rc = write_predictions(ck, &fw, ds, a.batch, out.f ? out.f : stdout, stop, &err)))
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
    cli_sparse_close(sp);
    ckpt_model_destroy(ck);
    if (rc)
        return cli_exit_code(rc);
    return *stop ? cli_stop_exit_code(*stop) : EXIT_OK;
}

/* `pstrain eval CKPT TEXT` of a language model; ck as run's. */
static int eval_text(int argc, char **argv, ckpt_model *ck, const volatile sig_atomic_t *stop)
{
    const char *tokenizer = NULL;
    int batch = 16;
    const cli_opt opts[] = {{.name = "tokenizer",
                             .kind = CLI_STR,
                             .dest = &tokenizer,
                             .meta = "DIR",
                             .help = "tokenizer files (default: the job's data.tokenizer)"},
                            {.name = "batch",
                             .kind = CLI_INT,
                             .dest = &batch,
                             .meta = "N",
                             .lo = 1,
                             .hi = 1 << 16,
                             .help = "windows per forward pass (default 16)"},
                            {0}};
    const cli_spec spec = {.cmd = "eval", .synopsis = eval_synopsis, .opts = opts, .max_pos = 2};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec < 0 && args.npos != 2) {
        cli_args_fini(&args);
        fprintf(stderr, "pstrain eval: needs a checkpoint and a text file (see --help)\n");
        ec = EXIT_USAGE;
    }
    if (ec >= 0) {
        ckpt_model_destroy(ck);
        return ec;
    }
    pst_err err = {0};
    cli_lm lm;
    cli_lm_figures f;
    int rc = cli_lm_open_loaded(&lm, args.pos[0], ck, tokenizer, batch, &err);
    if (!rc && !(rc = cli_lm_eval(&lm, args.pos[1], batch, stop, &f, &err)) && !*stop)
        printf("windows: %lld\ntokens: %lld\nloss: %.6f\nperplexity: %.4f\n", (long long)f.windows,
               (long long)f.tokens, f.loss, f.perplexity);
    cli_lm_close(&lm);
    cli_args_fini(&args);
    if (rc) {
        fprintf(stderr, "pstrain eval: %s\n", err.msg);
        return cli_exit_code(rc);
    }
    return *stop ? cli_stop_exit_code(*stop) : EXIT_OK;
}

int cmd_eval(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    /* CKPT comes first; a language model's DATA is text. The checkpoint that tells
     * which is loaded once, here, and rebuilt for the batch the options give. */
    ckpt_model *ck = NULL;
    if (argc > 0 && argv[0][0] != '-' && cli_lm_is_model(argv[0], &ck))
        return eval_text(argc, argv, ck, stop);
    return run("eval", argc, argv, ck, stop);
}

int cmd_predict(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    return run("predict", argc, argv, NULL, stop);
}

ds_dataset *cli_eval_data(const cli_data_src *src, const ckpt_model *ck, pst_err *err)
{
    return load_data(src, 0, ck, err);
}
