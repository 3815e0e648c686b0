/* cli/cmd_plot.c -- `pstrain plot`: the curves of a run's metrics.csv, drawn by gnuplot.
 *
 * The metrics are parsed here (so a bad file is reported by name and line) and handed to
 * gnuplot inline, as a datablock of the script; the script goes to gnuplot's stdin from an
 * unlinked temp file, and gnuplot is started with posix_spawn, no shell. The only user text
 * in the script is the output folder, inside a single-quoted gnuplot string, where gnuplot
 * substitutes nothing; a path holding a quote or a line break is refused, since it could end
 * that string. gnuplot is an optional dependency (Debian gnuplot-nox).
 *
 * predictions.png: for a model of 1 or 2 input features, the model against the training
 * data it learned (RUN_DIR/job.yaml names it, RUN_DIR/model.safetensors is the model; the
 * predictions are cli_predict_rows of cli/predict.c, i.e. exactly `pstrain predict`'s). One
 * feature: the data points and the model's curve over the feature's range; two: the data
 * coloured by class over the model's decision regions (regression: by value over the
 * predicted surface), predicted on a grid. Class names and the job name reach the script
 * only with characters outside [A-Za-z0-9 _.+-] replaced. */
#include <errno.h>
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
#include "cli/gnuplot.h"
#include "core/metrics.h"
#include "worker/dataprep.h"
#include "worker/report.h"

/* The first columns of the header worker/report.c writes (the traffic columns after them
 * are not plotted, and files from before they existed have none); the columns are
 * numbered from 1 as in gnuplot. */
static const char metrics_header[] =
    "epoch,train_loss,train_acc,val_loss,val_acc,val_precision,val_recall,val_f1,"
    "val_mse,val_mae,val_r2,seconds,samples_per_s";
enum {
    NCOL = 13,
    COL_TRAIN_LOSS = 2,
    COL_TRAIN_ACC = 3,
    COL_VAL_LOSS = 4,
    COL_VAL_ACC = 5,
    COL_VAL_MSE = 9,
    COL_VAL_R2 = 11,
    COL_SPS = 13
};

typedef struct {
    double (*rows)[NCOL]; /* (nrows, NCOL); NAN = empty cell */
    size_t nrows, cap;
    /* From metrics.jsonl (read_facts): the final test accuracy (NAN: no test set), and
     * whether the records are a distributed run's worker 0's (traffic moved). */
    double test_acc;
    int distributed;
} metrics;

static const char plot_synopsis[] =
    "usage: pstrain plot RUN_DIR [--output DIR] [--ascii]\n"
    "\n"
    "Plots RUN_DIR/metrics.csv with gnuplot (Debian package gnuplot-nox):\n"
    "  loss.png        train_loss and val_loss per epoch\n"
    "  accuracy.png    train_acc and val_acc (classification runs), and the final\n"
    "                  test accuracy when the job has a test set\n"
    "  regression.png  val_mse and val_r2 (regression runs, instead of accuracy.png)\n"
    "  throughput.png  samples/s per epoch (distributed: worker 0's, so titled)\n"
    "  predictions.png the model against its training data, for 1 or 2 input features:\n"
    "                  the prediction curve (1), or the decision regions or predicted\n"
    "                  surface under the data points (2); needs RUN_DIR/job.yaml and\n"
    "                  RUN_DIR/model.safetensors\n";

/* Reads RUN_DIR/metrics.csv. An epoch recorded twice (cut short by a stop, then whole
 * after --resume; worker/report.h) keeps its last row. Returns an EXIT_* code. */
static int read_metrics(const char *path, metrics *m)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "pstrain plot: %s: %s\n", path, strerror(errno));
        return EXIT_IO;
    }
    int rc = EXIT_DATA;
    char line[4096];
    long lineno = 1;
    if (!fgets(line, sizeof line, f)) {
        fprintf(stderr, "pstrain plot: %s: empty file, expected the metrics header\n", path);
        goto cleanup;
    }
    line[strcspn(line, "\r\n")] = '\0';
    size_t hlen = strlen(metrics_header);
    if (strncmp(line, metrics_header, hlen) != 0 || (line[hlen] != '\0' && line[hlen] != ',')) {
        fprintf(stderr, "pstrain plot: %s line 1: not a pstrain metrics header (expected '%s')\n",
                path, metrics_header);
        goto cleanup;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        double row[NCOL];
        const char *p = line;
        for (int c = 0; c < NCOL; c++) {
            size_t len = strcspn(p, ",");
            if (len == 0) {
                row[c] = NAN;
            } else {
                char *end;
                errno = 0;
                row[c] = strtod(p, &end);
                if (end != p + len || errno == ERANGE) {
                    fprintf(stderr, "pstrain plot: %s line %ld: column %d: bad number '%.*s'\n",
                            path, lineno, c + 1, (int)len, p);
                    goto cleanup;
                }
            }
            p += len;
            if (c < NCOL - 1) {
                if (*p != ',') {
                    fprintf(stderr, "pstrain plot: %s line %ld: %d columns, expected %d\n", path,
                            lineno, c + 1, NCOL);
                    goto cleanup;
                }
                p++;
            }
        }
        /* Columns after the plotted ones (traffic figures) are not read here. */
        if (*p != '\0' && *p != ',') {
            fprintf(stderr, "pstrain plot: %s line %ld: more than %d columns\n", path, lineno,
                    NCOL);
            goto cleanup;
        }
        if (!isfinite(row[0])) {
            fprintf(stderr, "pstrain plot: %s line %ld: no epoch number\n", path, lineno);
            goto cleanup;
        }
        if (m->nrows > 0 && m->rows[m->nrows - 1][0] == row[0]) {
            memcpy(m->rows[m->nrows - 1], row, sizeof row);
            continue;
        }
        if (m->nrows == m->cap) {
            size_t cap = m->cap ? 2 * m->cap : 64;
            void *grown = realloc(m->rows, cap * sizeof *m->rows);
            if (!grown) {
                fprintf(stderr, "pstrain plot: %s: out of memory\n", path);
                rc = EXIT_FAILURE_RUNTIME;
                goto cleanup;
            }
            m->rows = grown;
            m->cap = cap;
        }
        memcpy(m->rows[m->nrows++], row, sizeof row);
    }
    if (ferror(f)) {
        fprintf(stderr, "pstrain plot: %s: read failed: %s\n", path, strerror(errno));
        rc = EXIT_IO;
        goto cleanup;
    }
    if (m->nrows == 0) {
        fprintf(stderr, "pstrain plot: %s: no epochs recorded yet\n", path);
        goto cleanup;
    }
    rc = EXIT_OK;
cleanup:
    fclose(f);
    return rc;
}

/* The number after "key": in a JSON line (NAN when absent or null). */
static double json_number(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p)
        return NAN;
    char *end;
    double v = strtod(p + strlen(pat), &end);
    return end == p + strlen(pat) ? NAN : v;
}

/* m's test accuracy and whether the run was distributed, from RUN_DIR/metrics.jsonl (one
 * object a line, as worker/report.c writes it); a missing file leaves both unknown. */
static void read_facts(const char *run_dir, metrics *m)
{
    char path[4200], line[8192];
    m->test_acc = NAN;
    m->distributed = 0;
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "\"split\":\"test\""))
            m->test_acc = json_number(line, "accuracy");
        else if (strstr(line, "\"split\":\"train\"") && json_number(line, "bytes_pushed") > 0)
            m->distributed = 1;
    }
    fclose(f);
}

static int has_values(const metrics *m, int col)
{
    for (size_t i = 0; i < m->nrows; i++)
        if (isfinite(m->rows[i][col - 1]))
            return 1;
    return 0;
}

/* The directory holding an executable named name on PATH, copied into buf; 0 if none. */
/* One plot: series are (column, title) pairs; those without any value are left out. */
/* extra: one more series appended to the plot command (NULL: none). */
static void plot_one(FILE *s, const metrics *m, const char *outdir, int ascii, const char *file,
                     const char *title, const char *ylabel, const int *cols,
                     const char *const *names, int ncols, const char *extra)
{
    int any = 0;
    for (int i = 0; i < ncols; i++)
        any |= has_values(m, cols[i]);
    if (!any) {
        fprintf(stderr, "pstrain plot: %s skipped: metrics.csv has no %s values\n", file, ylabel);
        return;
    }
    if (!ascii)
        fprintf(s, "set output '%s/%s'\n", outdir, file);
    fprintf(s, "set title '%s'\nset ylabel '%s'\nplot", title, ylabel);
    const char *sep = " ";
    for (int i = 0; i < ncols; i++) {
        if (!has_values(m, cols[i]))
            continue;
        fprintf(s, "%s$metrics using 1:%d with linespoints title '%s'", sep, cols[i], names[i]);
        sep = ", ";
    }
    if (extra)
        fprintf(s, "%s%s", sep, extra);
    fputs("\n", s);
}

/* Writes the gnuplot script to s. */
static void write_script(FILE *s, const metrics *m, const char *outdir, int ascii)
{
    fputs("set datafile missing '?'\n$metrics << EOD\n", s);
    for (size_t i = 0; i < m->nrows; i++) {
        for (int c = 0; c < NCOL; c++) {
            double v = m->rows[i][c];
            if (isfinite(v))
                fprintf(s, "%s%.9g", c ? " " : "", v);
            else
                fprintf(s, "%s?", c ? " " : "");
        }
        fputs("\n", s);
    }
    fputs("EOD\n", s);
    if (ascii)
        fputs("set terminal dumb size 100,28\n", s);
    else
        fputs("set terminal pngcairo size 900,560\n", s);
    /* Metric names hold underscores, which enhanced text would read as subscripts. */
    fputs("set termoption noenhanced\nset xlabel 'epoch'\nset grid\nset key outside right top\n",
          s);

    static const int loss_cols[] = {COL_TRAIN_LOSS, COL_VAL_LOSS};
    static const char *const loss_names[] = {"train_loss", "val_loss"};
    plot_one(s, m, outdir, ascii, "loss.png", "loss", "loss", loss_cols, loss_names, 2, NULL);

    /* A regression run leaves the accuracy columns empty (worker/report.c). */
    if (has_values(m, COL_TRAIN_ACC) || has_values(m, COL_VAL_ACC)) {
        static const int acc_cols[] = {COL_TRAIN_ACC, COL_VAL_ACC};
        static const char *const acc_names[] = {"train_acc", "val_acc"};
        /* The test set's accuracy, measured once at the end: one point at the last epoch. */
        const char *test = NULL;
        if (isfinite(m->test_acc)) {
            fprintf(s, "$test << EOD\n%.9g %.9g\nEOD\n", m->rows[m->nrows - 1][0], m->test_acc);
            test = "$test using 1:2 with points pointtype 7 pointsize 1.5 title 'test_acc (end)'";
        }
        plot_one(s, m, outdir, ascii, "accuracy.png", "accuracy", "accuracy", acc_cols, acc_names,
                 2, test);
    } else {
        fputs("pstrain plot: accuracy.png skipped: a regression run (no accuracy); "
              "plotting val_mse and val_r2 in regression.png\n",
              stderr);
        static const int reg_cols[] = {COL_VAL_MSE, COL_VAL_R2};
        static const char *const reg_names[] = {"val_mse", "val_r2"};
        plot_one(s, m, outdir, ascii, "regression.png", "validation MSE and R^2",
                 "val_mse / val_r2", reg_cols, reg_names, 2, NULL);
    }

    static const int sps_cols[] = {COL_SPS};
    static const char *const sps_names[] = {"samples_per_s"};
    fputs("set yrange [0:*]\n", s);
    /* A distributed run's metrics are worker 0's: its own partition's samples/s. */
    plot_one(s, m, outdir, ascii, "throughput.png",
             m->distributed ? "throughput of worker 0 (its partition only)" : "throughput",
             "samples/s", sps_cols, sps_names, 1, NULL);
    if (!ascii)
        fputs("unset output\n", s);
}

typedef struct {
    const metrics *m;
    const char *outdir;
    int ascii;
} curves;

static void write_curves(FILE *s, const void *ctx)
{
    const curves *c = ctx;
    write_script(s, c->m, c->outdir, c->ascii);
}

/* ---- predictions.png ----------------------------------------------------------------- */

enum {
    MAX_POINTS = 2000,
    MAX_POINTS_ASCII = 300,
    GRID = 120,
    GRID_ASCII_X = 70,
    GRID_ASCII_Y = 30,
    CURVE = 300
};

typedef struct {
    const char *outdir, *title;
    int ascii, dims, classify, nclasses, sigmoid;
    char names[8][32]; /* class names for the key, sanitised (classes past 8 unnamed) */
    int64_t n;         /* data points drawn */
    const float *x;    /* (n, dims) raw features */
    const float *t;    /* (n) label (as a float) or target */
    int64_t ng;        /* grid points */
    int gx, gy;        /* grid shape (2-D) */
    const float *g;    /* (ng, dims) */
    const float *p;    /* (ng) predicted class, probability of class 1, or value */
} pred_plot;

/* Point colours by class, and the lighter tints of the decision regions. */
static const char *const dark[8] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a",
                                    "#66a61e", "#e6ab02", "#a6761d", "#666666"};
static const char *const light[8] = {"#b3e2cd", "#fdcdac", "#cbd5e8", "#f4cae4",
                                     "#e6f5c9", "#fff2ae", "#f1e2cc", "#cccccc"};

static void write_predictions_script(FILE *s, const void *ctx)
{
    const pred_plot *pp = ctx;
    /* The data, one block per class for a classifier (each gets its colour and key). */
    int nblocks = pp->classify ? pp->nclasses : 1;
    for (int k = 0; k < nblocks; k++) {
        fprintf(s, "$data%d << EOD\n", k);
        for (int64_t i = 0; i < pp->n; i++) {
            if (pp->classify && (int)pp->t[i] != k)
                continue;
            if (pp->dims == 1)
                fprintf(s, "%.7g %.7g\n", pp->x[i], pp->t[i]);
            else
                fprintf(s, "%.7g %.7g %.7g\n", pp->x[2 * i], pp->x[2 * i + 1], pp->t[i]);
        }
        fputs("EOD\n", s);
    }
    if (pp->dims == 2 && pp->ascii && pp->classify) {
        /* A text terminal has no image: each predicted region is a block of its own char. */
        for (int k = 0; k < pp->nclasses; k++) {
            fprintf(s, "$region%d << EOD\n", k);
            for (int64_t i = 0; i < pp->ng; i++)
                if ((int)pp->p[i] == k)
                    fprintf(s, "%.7g %.7g\n", pp->g[2 * i], pp->g[2 * i + 1]);
            fputs("EOD\n", s);
        }
    } else {
        fputs("$model << EOD\n", s);
        for (int64_t i = 0; i < pp->ng; i++) {
            if (pp->dims == 1)
                fprintf(s, "%.7g %.7g\n", pp->g[i], pp->p[i]);
            else
                fprintf(s, "%.7g %.7g %.7g\n", pp->g[2 * i], pp->g[2 * i + 1], pp->p[i]);
            if (pp->dims == 2 && (i + 1) % pp->gx == 0)
                fputs("\n", s); /* a scan line of the grid ends */
        }
        fputs("EOD\n", s);
    }
    if (pp->ascii)
        fputs("set terminal dumb size 100,36\n", s);
    else
        fprintf(s, "set terminal pngcairo size 800,640\nset output '%s/predictions.png'\n",
                pp->outdir);
    /* Axes end at the grid; a text grid's dots would read as a region. */
    fprintf(s,
            "set termoption noenhanced\n%sset autoscale fix\nset key outside right top\n"
            "set title '%s'\nset xlabel 'x1'\n",
            pp->ascii ? "" : "set grid\n", pp->title);
    const char *ylabel = pp->dims == 2   ? "x2"
                         : !pp->classify ? "y"
                         : pp->sigmoid   ? "class / p(class 1)"
                                         : "class";
    fprintf(s, "set ylabel '%s'\n", ylabel);
    const char *sep = "plot ";
    if (pp->dims == 1) {
        fprintf(s, "%s$model using 1:2 with lines lw 2 lc rgb '#000000' title '%s'", sep,
                pp->classify ? (pp->sigmoid ? "model p(class 1)" : "model class")
                             : "model prediction");
        sep = ", ";
    } else if (pp->classify && pp->ascii) {
        static const char chars[] = ".:-=+*#%";
        for (int k = 0; k < pp->nclasses; k++, sep = ", ")
            fprintf(s, "%s$region%d using 1:2 with points pt '%c' title 'predicted %s'", sep, k,
                    chars[k % 8], pp->names[k % 8]);
    } else if (pp->classify) {
        fputs("set palette defined (", s);
        for (int k = 0; k < pp->nclasses; k++)
            fprintf(s, "%s%d '%s'", k ? ", " : "", k, light[k % 8]);
        fprintf(s, ")\nset cbrange [0:%d]\nunset colorbox\n",
                pp->nclasses > 1 ? pp->nclasses - 1 : 1);
        fprintf(s, "%s$model using 1:2:3 with image notitle", sep);
        sep = ", ";
    } else {
        /* Regression over two features: the predicted surface as a map, and the data points
         * in the same colours by their target. */
        if (pp->ascii) {
            fputs("set view map\nset contour base\nunset surface\nset cntrparam levels 6\n", s);
            fprintf(s, "splot $model using 1:2:3 with lines title 'model contours', "
                       "$data0 using 1:2:(0) with points pt 'o' title 'data'\n");
            return;
        }
        fprintf(s, "set cblabel 'y'\n%s$model using 1:2:3 with image notitle", sep);
        sep = ", ";
    }
    if (pp->classify) {
        for (int k = 0; k < pp->nclasses; k++, sep = ", ") {
            if (pp->ascii)
                fprintf(s, "%s$data%d using 1:2 with points pt '%d' title 'class %s'", sep, k,
                        k % 10, pp->names[k % 8]);
            else
                fprintf(s,
                        "%s$data%d using 1:2 with points pt 7 ps 0.6 lc rgb '%s' "
                        "title 'class %s'",
                        sep, k, dark[k % 8], pp->names[k % 8]);
        }
    } else if (pp->dims == 1) {
        fprintf(s, "%s$data0 using 1:2 with points pt %s title 'data'", sep,
                pp->ascii ? "'o'" : "7 ps 0.5 lc rgb '#1b9e77'");
    } else {
        /* Ringed in black: a point is the colour of the surface where the model fits. */
        fprintf(s,
                "%s$data0 using 1:2 with points pt 7 ps 1.0 lc rgb '#000000' notitle, "
                "$data0 using 1:2:3 with points pt 7 ps 0.6 lc palette title 'data (colour: "
                "y)'",
                sep);
    }
    fputs("\n", s);
    if (!pp->ascii)
        fputs("unset output\n", s);
}

/* The data points to draw, every stride-th row of ds: x (n, D) raw features, t (n) label or
 * first target; and the grid g (gx * gy, D) spanning the data's range plus 5% each side. */
static void sample_points(const pred_plot *pp, const ds_dataset *ds, int64_t stride, float *x,
                          float *t, float *g)
{
    const int D = pp->dims;
    const int64_t N = ds_count(ds);
    const float *X = ds_x_const(ds);
    float lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int64_t i = 0; i < N; i++)
        for (int j = 0; j < D; j++) {
            float v = X[i * D + j];
            lo[j] = v < lo[j] ? v : lo[j];
            hi[j] = v > hi[j] ? v : hi[j];
        }
    for (int64_t i = 0, k = 0; i < N; i += stride, k++) {
        memcpy(x + k * D, X + i * D, (size_t)D * sizeof *x);
        t[k] = pp->classify ? (float)ds_labels_const(ds)[i]
                            : ds_targets_const(ds)[i * ds_target_dim(ds)];
    }
    for (int j = 0; j < D; j++) {
        float pad = 0.05f * (hi[j] - lo[j] > 0 ? hi[j] - lo[j] : 1.0f);
        lo[j] -= pad;
        hi[j] += pad;
    }
    for (int iy = 0; iy < pp->gy; iy++)
        for (int ix = 0; ix < pp->gx; ix++) {
            float *gi = g + ((int64_t)iy * pp->gx + ix) * D;
            gi[0] = lo[0] + (hi[0] - lo[0]) * (float)ix / (float)(pp->gx - 1);
            if (D == 2)
                gi[1] = lo[1] + (hi[1] - lo[1]) * (float)iy / (float)(pp->gy - 1);
        }
}

/* predictions.png (or its text form) when RUN_DIR has the model and job of a 1- or 2-feature
 * task; says on stderr why not otherwise. Returns an EXIT_* code. */
static int plot_predictions(const char *gnuplot, const char *run_dir, const char *outdir, int ascii)
{
    char model_path[4200], job_path[4200];
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", run_dir);
    snprintf(job_path, sizeof job_path, "%s/job.yaml", run_dir);
    struct stat st;
    if (stat(model_path, &st) != 0 || stat(job_path, &st) != 0) {
        fprintf(stderr,
                "pstrain plot: predictions.png skipped: %s has no model.safetensors "
                "and job.yaml (the run has not finished, or predates job.yaml)\n",
                run_dir);
        return EXIT_OK;
    }
    pst_err err = {0};
    ckpt_model *ck = NULL;
    cfg_job *job = NULL;
    ds_dataset *ds = NULL;
    float *x = NULL, *t = NULL, *g = NULL, *y = NULL, *p = NULL;
    int32_t *cls = NULL;
    int ec = EXIT_OK; /* gnuplot's outcome; rc: ours (a pst status) */
    int rc = ckpt_load(model_path, 512, &ck, &err);
    if (rc)
        goto done;
    ml_model *net = ckpt_model_net(ck);
    const int D = ml_model_in_dim(net), out = ml_model_out_dim(net);
    if (D > 2) {
        fprintf(stderr,
                "pstrain plot: predictions.png skipped: the model takes %d features "
                "(prediction plots are drawn for 1 or 2)\n",
                D);
        goto done;
    }
    if ((rc = cfg_job_load_file(&job, job_path, &err)))
        goto done;
    if (!(ds = wk_data_load_file(&job->data, job->data.train, job->data.train_labels, &err))) {
        rc = err.code;
        goto done;
    }
    if (ds_dim(ds) != D) {
        rc = pst_err_set(&err, PST_ERR_DATA, "%s: %d features, but the model takes %d",
                         job->data.train, ds_dim(ds), D);
        goto done;
    }
    pred_plot pp = {.outdir = outdir,
                    .ascii = ascii,
                    .dims = D,
                    .classify = ckpt_model_task(ck) == DS_TASK_CLASSIFY};
    char title[200];
    cli_gp_sanitise(title, sizeof title, job->name ? job->name : "model");
    strncat(title,
            pp.classify ? (D == 2 ? ": decision regions and training data"
                                  : ": predicted class and training data")
                        : ": model prediction and training data",
            sizeof title - strlen(title) - 1);
    pp.title = title;
    pp.nclasses = pp.classify ? ckpt_model_nclasses(ck) : 0;
    pp.sigmoid = pp.classify && out == 1;
    for (int k = 0; k < pp.nclasses && k < 8; k++) {
        const char *nm = ckpt_model_class_name(ck, k);
        if (nm)
            cli_gp_sanitise(pp.names[k], sizeof pp.names[k], nm);
        else
            snprintf(pp.names[k], sizeof pp.names[k], "%d", k);
    }
    /* The data points, every stride-th row (a scatter of more is a blot). */
    int64_t N = ds_count(ds), cap = ascii ? MAX_POINTS_ASCII : MAX_POINTS;
    int64_t stride = N > cap ? (N + cap - 1) / cap : 1;
    pp.n = (N + stride - 1) / stride;
    x = malloc((size_t)pp.n * (size_t)D * sizeof *x);
    t = malloc((size_t)pp.n * sizeof *t);
    /* The grid over the data's range plus 5% each side. */
    pp.gx = D == 1 ? CURVE : ascii ? GRID_ASCII_X : GRID;
    pp.gy = D == 1 ? 1 : ascii ? GRID_ASCII_Y : GRID;
    pp.ng = (int64_t)pp.gx * pp.gy;
    g = malloc((size_t)pp.ng * (size_t)D * sizeof *g);
    y = malloc((size_t)pp.ng * (size_t)out * sizeof *y);
    p = malloc((size_t)pp.ng * sizeof *p);
    cls = malloc((size_t)pp.ng * sizeof *cls);
    if (!x || !t || !g || !y || !p || !cls) {
        rc = pst_err_set(&err, PST_ERR_NOMEM, "out of memory for the prediction plot");
        goto done;
    }
    sample_points(&pp, ds, stride, x, t, g);
    if ((rc = cli_predict_rows(ck, g, pp.ng, 512, y, &err)))
        goto done;
    if (pp.classify)
        met_predict_classes(cls, y, pp.ng, out);
    for (int64_t i = 0; i < pp.ng; i++)
        p[i] = pp.sigmoid && D == 1 ? y[i] : pp.classify ? (float)cls[i] : y[i * out];
    pp.x = x;
    pp.t = t;
    pp.g = g;
    pp.p = p;
    ec = cli_gp_run("plot", gnuplot, write_predictions_script, &pp);
    if (ec == EXIT_OK && !ascii)
        printf("wrote %s/predictions.png\n", outdir);
done:
    if (rc) {
        fprintf(stderr, "pstrain plot: predictions.png: %s\n", err.msg);
        ec = cli_exit_code(rc);
    }
    free(x), free(t), free(g), free(y), free(p), free(cls);
    ds_destroy(ds);
    cfg_job_free(job);
    ckpt_model_destroy(ck);
    return ec;
}

int cmd_plot(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    const char *out = NULL;
    int ascii = 0;
    const cli_opt opts[] = {
        {.name = "output",
         .kind = CLI_STR,
         .dest = &out,
         .meta = "DIR",
         .help = "folder for the PNG files, created if missing (default: RUN_DIR)"},
        {.name = "out",
         .kind = CLI_STR,
         .dest = &out,
         .meta = "DIR",
         .help = "the same as --output"},
        {.name = "ascii",
         .kind = CLI_FLAG,
         .dest = &ascii,
         .help = "print the same plots as text to stdout instead (for logs)"},
        {0}};
    const cli_spec spec = {.cmd = "plot", .synopsis = plot_synopsis, .opts = opts, .max_pos = 1};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    const char *run_dir = args.npos ? args.pos[0] : NULL;
    cli_args_fini(&args); /* run_dir points into argv */
    if (!run_dir) {
        fputs("pstrain plot: needs a run folder (see --help)\n", stderr);
        return EXIT_USAGE;
    }
    if (ascii && out) {
        fputs("pstrain plot: --ascii prints to stdout and writes no files; drop --output\n",
              stderr);
        return EXIT_USAGE;
    }
    if (!out)
        out = run_dir;
    if (!ascii && (*out == '\0' || strpbrk(out, "'\n\r"))) {
        fprintf(stderr,
                "pstrain plot: output folder '%s' is empty or holds a quote or line "
                "break, which gnuplot cannot take; choose another with --output\n",
                out);
        return EXIT_USAGE;
    }

    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/metrics.csv", run_dir) >= sizeof path) {
        fprintf(stderr, "pstrain plot: %s: path too long\n", run_dir);
        return EXIT_USAGE;
    }
    metrics m = {0};
    char gnuplot[4096];
    int rc = read_metrics(path, &m);
    if (rc != EXIT_OK)
        goto cleanup;
    read_facts(run_dir, &m);
    if (!cli_gp_find("gnuplot", gnuplot, sizeof gnuplot)) {
        fputs("pstrain plot: gnuplot is not on PATH; install it (Debian: apt-get install "
              "gnuplot-nox)\n",
              stderr);
        rc = EXIT_IO;
        goto cleanup;
    }
    if (!ascii) {
        pst_err err = {0};
        if (fs_mkdirs(out, &err) != PST_OK) {
            fprintf(stderr, "pstrain plot: %s\n", err.msg);
            rc = EXIT_IO;
            goto cleanup;
        }
    }
    time_t start = time(NULL);
    curves c = {&m, out, ascii};
    rc = cli_gp_run("plot", gnuplot, write_curves, &c);
    if (rc == EXIT_OK && !ascii) {
        /* gnuplot reports a file it cannot open but carries on; check what it wrote. */
        static const char *const files[] = {"loss.png", "accuracy.png", "regression.png",
                                            "throughput.png"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char f[4200];
            struct stat st;
            snprintf(f, sizeof f, "%s/%s", out, files[i]);
            if (stat(f, &st) == 0 && st.st_size > 0 && st.st_mtime >= start - 1)
                printf("wrote %s\n", f);
        }
    }
    if (rc == EXIT_OK)
        rc = plot_predictions(gnuplot, run_dir, out, ascii);
cleanup:
    free(m.rows);
    return rc;
}
