/* cli/cmd_explain.c -- `pstrain explain`: what a classifier looks at, drawn by gnuplot.
 *
 * The checkpoint and the data are loaded as `pstrain eval` loads them (cli_eval_data,
 * then the checkpoint's scaler); every figure is also printed (text, or one JSON object
 * with --json) so scripts and tests can check it. The figures:
 *   confusion   the confusion matrix (rows: true class, columns: predicted) as a heatmap;
 *   importance  permutation feature importance (core/explain.h) per input column, named
 *               from the CSV header, as a bar chart (tabular models);
 *   weights     the first layer's weights as images (image models): a dense first
 *               layer's (OUT, C*H*W) rows each reshaped to (C*H, W) -- channels stacked --
 *               or a conv2d first layer's (F, C*K*K) kernels as (C*K, K); each tile scaled
 *               by its own largest |w|, on a blue-white-red scale;
 *   saliency    for the chosen test images, |dL/dx| with L = -log p(predicted class | x)
 *               (the gradient of the predicted class's log-score; ml_model_set_input_grad),
 *               the largest over channels, drawn beside the image.
 * Everything is checked before anything is written: a model that does not fit the data,
 * an image index out of range, weights or saliency for a model without image input,
 * importance for image data. The output folder and the PNGs in it are the only files
 * written; user text reaches the gnuplot script only sanitised (cli/gnuplot.h). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "cli/cli.h"
#include "cli/gnuplot.h"
#include "core/explain.h"
#include "core/metrics.h"

enum { W_CONFUSION = 1, W_IMPORTANCE = 2, W_WEIGHTS = 4, W_SALIENCY = 8 };
enum { MAX_IMAGES = 16, MAX_UNITS = 64, NAME_LEN = 40 };

typedef struct {
    cli_data_src src;
    const char *ckpt, *out, *what, *images;
    int batch, repeats, json, units;
    long long seed;
} explain_args;

/* What is drawn, gathered before gnuplot runs. */
typedef struct {
    const char *outdir;
    int what;
    int K;                 /* classes */
    char (*cls)[NAME_LEN]; /* (K) class names, sanitised */
    const int64_t *cm;     /* (K, K) counts */
    int D;
    char (*col)[NAME_LEN]; /* (D) column names, sanitised */
    const double *drop;    /* (D) */
    int C, H, W;           /* the input image */
    int tiles, th, tw;     /* weights: tiles of (th, tw) */
    const float *tile;     /* (tiles, th, tw) scaled to [-1, 1] */
    int nimg;
    const int *img; /* (nimg) indices */
    const int32_t *label, *pred;
    const float *pix; /* (nimg, H, W) the images, channel mean, raw values */
    const float *sal; /* (nimg, H, W) saliency scaled to [0, 1] */
} figures;

static const char explain_synopsis[] =
    "usage: pstrain explain CKPT DATA [options]\n"
    "\n"
    "Shows what the classifier CKPT (a model.safetensors written by pstrain train/local)\n"
    "looks at on the labelled data DATA, read as pstrain eval reads it. PNGs drawn with\n"
    "gnuplot go to the --out folder; the numbers are printed (--json: as JSON):\n"
    "  confusion   confusion.png: the confusion matrix (true class by row)\n"
    "  importance  importance.png: permutation feature importance, the accuracy drop when\n"
    "              one column is shuffled (tabular data; columns named by the CSV header)\n"
    "  weights     weights.png: the first layer's weights (dense units or conv2d kernels)\n"
    "              as images (image models)\n"
    "  saliency    saliency.png: |d log p(predicted class) / d input| beside each image\n"
    "              of --images (image models)\n";

static int parse_args(int argc, char **argv, explain_args *a)
{
    *a = (explain_args){.out = "explain", .batch = 256, .repeats = 3, .seed = 1, .units = 36};
    cli_data_opts dopt;
    enum { NOWN = 7 }; /* the options before the data options */
    cli_opt opts[NOWN + CLI_DATA_NOPTS + 2] = {
        {.name = "out",
         .kind = CLI_STR,
         .dest = &a->out,
         .meta = "DIR",
         .help = "folder of the PNGs (default explain; made if missing)"},
        {.name = "what",
         .kind = CLI_STR,
         .dest = &a->what,
         .meta = "LIST",
         .help = "comma-separated: confusion,importance,weights,saliency (default: those\n"
                 "that apply: confusion, and importance or weights,saliency)"},
        {.name = "images",
         .kind = CLI_STR,
         .dest = &a->images,
         .meta = "I,J,...",
         .help = "saliency: indices of the images of DATA (default 0; at most 16)"},
        {.name = "units",
         .kind = CLI_INT,
         .dest = &a->units,
         .meta = "N",
         .lo = 1,
         .hi = MAX_UNITS,
         .help = "weights: the first N units or kernels (default 36)"},
        {.name = "repeats",
         .kind = CLI_INT,
         .dest = &a->repeats,
         .meta = "R",
         .lo = 1,
         .hi = 100,
         .help = "importance: permutations per column (default 3)"},
        {.name = "seed",
         .kind = CLI_I64,
         .dest = &a->seed,
         .meta = "N",
         .lo = 0,
         .hi = 9e18,
         .help = "importance: seed of the permutations (default 1)"},
        {.name = "json",
         .kind = CLI_FLAG,
         .dest = &a->json,
         .help = "print the numbers as one JSON object"},
        [NOWN + CLI_DATA_NOPTS] = {.name = "batch-size",
                                   .kind = CLI_INT,
                                   .dest = &a->batch,
                                   .meta = "N",
                                   .lo = 1,
                                   .hi = 1 << 16,
                                   .help = "rows per forward pass (default 256)"},
        {0}};
    cli_data_opts_init(&dopt, &a->src, "idx|csv", opts + NOWN);
    const cli_spec spec = {
        .cmd = "explain", .synopsis = explain_synopsis, .opts = opts, .max_pos = 2};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    a->ckpt = args.npos > 0 ? args.pos[0] : NULL;
    a->src.data = args.npos > 1 ? args.pos[1] : NULL;
    int npos = args.npos;
    cli_args_fini(&args);
    if (npos != 2) {
        fprintf(stderr, "pstrain explain: needs a checkpoint and a data file (see --help)\n");
        return EXIT_USAGE;
    }
    if ((ec = cli_data_opts_finish(&dopt, 0, "explain")) >= 0)
        return ec;
    if (strpbrk(a->out, "'\n\r")) {
        fprintf(stderr, "pstrain explain: --out: a quote or line break in the folder name, "
                        "which gnuplot cannot take\n");
        return EXIT_USAGE;
    }
    return -1;
}

/* The --what list as W_* bits; 0 and a message for an unknown word. */
static int parse_what(const char *s)
{
    static const char *const words[] = {"confusion", "importance", "weights", "saliency"};
    int bits = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        int found = 0;
        for (int i = 0; i < 4; i++)
            if (len == strlen(words[i]) && strncmp(s, words[i], len) == 0)
                found = 1 << i;
        if (!found) {
            fprintf(stderr,
                    "pstrain explain: --what: '%.*s' is not one of confusion, "
                    "importance, weights, saliency\n",
                    (int)len, s);
            return 0;
        }
        bits |= found;
        s += len + (s[len] == ',');
    }
    if (!bits)
        fprintf(stderr, "pstrain explain: --what: empty list\n");
    return bits;
}

/* --images as indices into [0, n); -1 and a message for a bad list. */
static int parse_images(const char *s, int64_t n, int *img)
{
    int k = 0;
    while (*s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || (*end && *end != ',') || k == MAX_IMAGES) {
            fprintf(stderr,
                    "pstrain explain: --images: '%s' is not a list of at most %d "
                    "indices\n",
                    s, MAX_IMAGES);
            return -1;
        }
        if (v < 0 || v >= n) {
            fprintf(stderr,
                    "pstrain explain: --images: image %lld is out of range (DATA has "
                    "%lld)\n",
                    v, (long long)n);
            return -1;
        }
        img[k++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return k;
}

/* Column names of the features: the CSV header's, less the label column; "x<j>" when
 * there is no header or its fields do not match the features one for one. */
static void column_names(const cli_data_src *src, int D, char (*col)[NAME_LEN])
{
    for (int j = 0; j < D; j++)
        snprintf(col[j], NAME_LEN, "x%d", j);
    if (src->format != CFG_FMT_CSV || src->header == CFG_HEADER_NO)
        return;
    FILE *f = fopen(src->data, "r");
    char line[8192];
    int ok = f && fgets(line, sizeof line, f);
    if (f)
        fclose(f);
    if (!ok)
        return;
    line[strcspn(line, "\r\n")] = '\0';
    char *field[1024];
    int nf = 0;
    for (char *p = line; nf < 1024;) {
        field[nf++] = p;
        char *d = strchr(p, src->delimiter);
        if (!d)
            break;
        *d = '\0';
        p = d + 1;
    }
    int lab = src->label_index < 0 ? nf - 1 : src->label_index;
    for (int i = 0; src->label && i < nf; i++)
        if (strcmp(field[i], src->label) == 0)
            lab = i;
    if (nf - 1 != D)
        return; /* no header line, or categorical columns expanded: keep x<j> */
    for (int i = 0, j = 0; i < nf; i++) {
        if (i == lab)
            continue;
        const char *nm = field[i];
        if (*nm == '"') /* a quoted name: its inside */
            nm++;
        char tmp[NAME_LEN];
        snprintf(tmp, sizeof tmp, "%s", nm);
        tmp[strcspn(tmp, "\"")] = '\0';
        if (*tmp >= '0' && *tmp <= '9' && strspn(tmp, "0123456789.-+eE") == strlen(tmp))
            return; /* a number: the first line is data */
        cli_gp_sanitise(col[j++], NAME_LEN, tmp);
    }
}

/* ---- gnuplot -------------------------------------------------------------------------- */

static void datablock(FILE *s, const char *name, const float *v, int rows, int cols)
{
    fprintf(s, "%s << EOD\n", name);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            fprintf(s, "%.5g%c", (double)v[(size_t)r * cols + c], c + 1 < cols ? ' ' : '\n');
    fputs("EOD\n", s);
}

static void script_confusion(FILE *s, const figures *f)
{
    fprintf(s, "$cm << EOD\n");
    for (int t = 0; t < f->K; t++)
        for (int p = 0; p < f->K; p++)
            fprintf(s, "%lld%c", (long long)f->cm[t * f->K + p], p + 1 < f->K ? ' ' : '\n');
    fprintf(s,
            "EOD\nset output '%s/confusion.png'\nset terminal pngcairo size 640,600 noenhanced\n"
            "set title 'confusion matrix'\nset xlabel 'predicted'\nset ylabel 'true'\n"
            "set palette defined (0 '#ffffff', 1 '#08519c')\nset size ratio -1\n"
            "set xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n",
            f->outdir, f->K - 1, f->K - 1);
    fputs("set xtics (", s);
    for (int k = 0; k < f->K; k++)
        fprintf(s, "%s'%s' %d", k ? ", " : "", f->cls[k], k);
    fputs(")\nset ytics (", s);
    for (int k = 0; k < f->K; k++)
        fprintf(s, "%s'%s' %d", k ? ", " : "", f->cls[k], k);
    fputs(")\nplot $cm matrix with image notitle, $cm matrix using 1:2:(sprintf('%d', $3)) "
          "with labels notitle\nreset\n",
          s);
}

static void script_importance(FILE *s, const figures *f)
{
    int *order = malloc((size_t)f->D * sizeof *order);
    if (!order)
        return;
    for (int j = 0; j < f->D; j++)
        order[j] = j;
    for (int i = 1; i < f->D; i++) /* by drop, largest first (insertion sort: D is small) */
        for (int j = i; j > 0 && f->drop[order[j]] > f->drop[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    double lo = 0.0, hi = 0.0; /* bars from 0: a small drop must look small */
    for (int j = 0; j < f->D; j++)
        lo = fmin(lo, f->drop[j]), hi = fmax(hi, f->drop[j]);
    hi = hi > 0.0 ? hi * 1.1 : 0.01;
    lo = lo < 0.0 ? lo * 1.1 : 0.0;
    fputs("$imp << EOD\n", s);
    for (int i = 0; i < f->D; i++)
        fprintf(s, "\"%s\" %.6f\n", f->col[order[i]], f->drop[order[i]]);
    fprintf(s,
            "EOD\nset output '%s/importance.png'\nset terminal pngcairo size %d,480 noenhanced\n"
            "set title 'permutation feature importance'\nset ylabel 'accuracy drop'\n"
            "set style fill solid 0.8\nset boxwidth 0.7\nset grid ytics\n"
            "set xtics rotate by 40 right\nset xrange [-0.6:%d.6]\nset yrange [%.6g:%.6g]\n"
            "plot $imp using 0:2:xtic(1) with boxes lc rgb '#d95f02' notitle\nreset\n",
            f->outdir, f->D > 12 ? 60 * f->D : 720, f->D - 1, lo, hi);
    free(order);
}

static void script_weights(FILE *s, const figures *f)
{
    int cols = (int)ceil(sqrt((double)f->tiles)), rows = (f->tiles + cols - 1) / cols;
    fprintf(s,
            "set output '%s/weights.png'\nset terminal pngcairo size %d,%d noenhanced\n"
            "set multiplot layout %d,%d title 'first-layer weights'\n"
            "unset xtics\nunset ytics\nunset colorbox\nunset key\n"
            "set size ratio -1\nset palette defined (-1 '#2166ac', 0 '#ffffff', 1 "
            "'#b2182b')\nset cbrange [-1:1]\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n"
            "set margins 0.5,0.5,0.5,0.5\n",
            f->outdir, cols < 4 ? 440 : 110 * cols, 110 * rows + 40, rows, cols, f->tw - 1,
            f->th - 1);
    for (int t = 0; t < f->tiles; t++) {
        datablock(s, "$w", f->tile + (size_t)t * f->th * f->tw, f->th, f->tw);
        fputs("plot $w matrix with image\n", s);
    }
    fputs("unset multiplot\nreset\n", s);
}

static void script_saliency(FILE *s, const figures *f)
{
    fprintf(s,
            "set output '%s/saliency.png'\nset terminal pngcairo size 520,%d noenhanced\n"
            "set multiplot layout %d,2\nunset xtics\nunset ytics\nunset key\n"
            "set size ratio -1\nset xrange [-0.5:%d.5]\nset yrange [%d.5:-0.5]\n",
            f->outdir, 250 * f->nimg, f->nimg, f->W - 1, f->H - 1);
    size_t hw = (size_t)f->H * f->W;
    for (int i = 0; i < f->nimg; i++) {
        datablock(s, "$x", f->pix + i * hw, f->H, f->W);
        datablock(s, "$g", f->sal + i * hw, f->H, f->W);
        fprintf(s,
                "set title 'image %d: true %s, predicted %s'\nset palette gray\n"
                "set autoscale cb\nunset colorbox\nplot $x matrix with image\n"
                "set title 'saliency |dlog p/dx|'\nset palette defined (0 '#000000', "
                "0.5 '#d62728', 1 '#ffff66')\nset cbrange [0:1]\nset colorbox\n"
                "plot $g matrix with image\n",
                f->img[i], f->cls[f->label[i]], f->cls[f->pred[i]]);
    }
    fputs("unset multiplot\nreset\n", s);
}

static void write_script(FILE *s, const void *ctx)
{
    const figures *f = ctx;
    fputs("set termoption noenhanced\n", s);
    if (f->what & W_CONFUSION)
        script_confusion(s, f);
    if (f->what & W_IMPORTANCE)
        script_importance(s, f);
    if (f->what & W_WEIGHTS)
        script_weights(s, f);
    if (f->what & W_SALIENCY)
        script_saliency(s, f);
    fputs("unset output\n", s);
}

/* ---- The figures ---------------------------------------------------------------------- */

/* The first layer's weights as tiles (f->tile, allocated here), or PST_ERR_DATA when the
 * first layer with weights is not a dense or conv2d layer reading the image. */
static int weight_tiles(ml_model *net, int units, figures *f, pst_err *err)
{
    if (ml_model_nsegments(net) == 0)
        return pst_err_set(err, PST_ERR_DATA, "weights: the model has no weights");
    const ml_segment *sg = ml_model_segment(net, 0);
    const ml_model_spec *spec = ml_model_get_spec(net);
    const ml_layer_spec *ls = &spec->layers[sg->layer];
    for (int l = 0; l < sg->layer; l++) /* only shape layers (flatten, dropout) before it */
        if (spec->layers[l].ops != &ml_layer_flatten && spec->layers[l].ops != &ml_layer_dropout)
            return pst_err_set(err, PST_ERR_DATA,
                               "weights: layer %d (%s) comes before the "
                               "first weights",
                               l, spec->layers[l].ops->name);
    int chw = f->C * f->H * f->W;
    if (ls->ops == &ml_layer_dense && sg->cols == chw) {
        f->th = f->C * f->H, f->tw = f->W; /* (OUT, C*H*W): a row per unit */
    } else if (ls->ops == &ml_layer_conv2d && sg->cols % f->C == 0) {
        int k = (int)lround(sqrt((double)(sg->cols / f->C)));
        if (k * k * f->C != sg->cols)
            return pst_err_set(err, PST_ERR_DATA,
                               "weights: conv2d weight (%d, %d) is not "
                               "(F, C*K*K) for C = %d",
                               sg->rows, sg->cols, f->C);
        f->th = f->C * k, f->tw = k; /* (F, C*K*K): a kernel per filter */
    } else {
        return pst_err_set(err, PST_ERR_DATA,
                           "weights: the first layer (%s, weight %d x %d) "
                           "is not a dense or conv2d layer on the %dx%dx%d image",
                           ls->ops->name, sg->rows, sg->cols, f->C, f->H, f->W);
    }
    f->tiles = sg->rows < units ? sg->rows : units;
    size_t len = (size_t)f->th * f->tw;
    float *t = malloc((size_t)f->tiles * len * sizeof *t);
    if (!t)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    const float *w = ml_model_params(net) + sg->offset;
    for (int u = 0; u < f->tiles; u++) {
        float big = 0.0f;
        for (size_t i = 0; i < len; i++)
            big = fmaxf(big, fabsf(w[u * len + i]));
        for (size_t i = 0; i < len; i++)
            t[u * len + i] = big > 0.0f ? w[u * len + i] / big : 0.0f;
    }
    f->tile = t;
    return PST_OK;
}

/* Saliency of each chosen image: label, predicted class, |dL/dx| max over channels,
 * scaled to [0, 1] (f->sal, f->pred allocated by the caller). */
static int saliency(ml_model *net, const ds_dataset *ds, figures *f, float *sal, int32_t *pred,
                    pst_err *err)
{
    int D = ml_model_in_dim(net), K = ml_model_out_dim(net);
    size_t hw = (size_t)f->H * f->W;
    float *dx = malloc((size_t)ml_model_max_batch(net) * D * sizeof *dx);
    if (!dx)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    int rc = ml_model_set_input_grad(net, dx, err);
    for (int i = 0; !rc && i < f->nimg; i++) {
        const float *x = ds_x_const(ds) + (size_t)f->img[i] * D;
        met_predict_classes(&pred[i], ml_model_forward(net, x, 1), 1, K);
        ml_model_loss(net, &pred[i], NULL, 1); /* L = -log p(pred | x) */
        ml_model_backward(net, x, 1);
        float big = 0.0f, *g = sal + i * hw;
        for (size_t p = 0; p < hw; p++) {
            g[p] = 0.0f;
            for (int c = 0; c < f->C; c++)
                g[p] = fmaxf(g[p], fabsf(dx[c * hw + p]));
            big = fmaxf(big, g[p]);
        }
        for (size_t p = 0; big > 0.0f && p < hw; p++)
            g[p] /= big;
    }
    ml_model_set_input_grad(net, NULL, err);
    free(dx);
    return rc;
}

static void print_figures(const figures *f, const met_confusion *cm, double acc, double base,
                          int64_t n, const char *layer, int json)
{
    static const char *const files[] = {"confusion.png", "importance.png", "weights.png",
                                        "saliency.png"};
    if (!json) {
        printf("samples: %lld\naccuracy: %.6f\n\n", (long long)n, acc);
        const char **names = malloc((size_t)f->K * sizeof *names);
        for (int k = 0; names && k < f->K; k++)
            names[k] = f->cls[k];
        met_confusion_print(cm, names, stdout);
        free(names);
        if (f->what & W_IMPORTANCE) {
            printf("\npermutation importance (accuracy %.6f as given):\n%-*s %12s\n", base,
                   NAME_LEN, "column", "drop");
            for (int j = 0; j < f->D; j++)
                printf("%-*s %12.6f\n", NAME_LEN, f->col[j], f->drop[j]);
        }
        if (f->what & W_WEIGHTS)
            printf("\nweights: %s, %d tiles of %dx%d\n", layer, f->tiles, f->th, f->tw);
        for (int i = 0; (f->what & W_SALIENCY) && i < f->nimg; i++)
            printf("%ssaliency: image %d true %s predicted %s\n", i ? "" : "\n", f->img[i],
                   f->cls[f->label[i]], f->cls[f->pred[i]]);
        for (int b = 0; b < 4; b++)
            if (f->what & (1 << b))
                printf("wrote %s/%s\n", f->outdir, files[b]);
        return;
    }
    printf("{\"samples\": %lld, \"accuracy\": %.9g, \"classes\": [", (long long)n, acc);
    for (int k = 0; k < f->K; k++)
        printf("%s\"%s\"", k ? ", " : "", f->cls[k]);
    printf("], \"confusion\": [");
    for (int t = 0; t < f->K; t++) {
        printf("%s[", t ? ", " : "");
        for (int p = 0; p < f->K; p++)
            printf("%s%lld", p ? ", " : "", (long long)f->cm[t * f->K + p]);
        printf("]");
    }
    printf("]");
    if (f->what & W_IMPORTANCE) {
        printf(", \"importance\": {\"accuracy\": %.9g, \"columns\": [", base);
        for (int j = 0; j < f->D; j++)
            printf("%s{\"name\": \"%s\", \"drop\": %.9g}", j ? ", " : "", f->col[j], f->drop[j]);
        printf("]}");
    }
    if (f->what & W_WEIGHTS)
        printf(", \"weights\": {\"layer\": \"%s\", \"tiles\": %d, \"shape\": [%d, %d]}", layer,
               f->tiles, f->th, f->tw);
    if (f->what & W_SALIENCY) {
        printf(", \"saliency\": [");
        for (int i = 0; i < f->nimg; i++)
            printf("%s{\"image\": %d, \"label\": %d, \"predicted\": %d}", i ? ", " : "", f->img[i],
                   (int)f->label[i], (int)f->pred[i]);
        printf("]");
    }
    printf(", \"files\": [");
    for (int b = 0, first = 1; b < 4; b++)
        if (f->what & (1 << b)) {
            printf("%s\"%s/%s\"", first ? "" : ", ", f->outdir, files[b]);
            first = 0;
        }
    printf("]}\n");
}

/* The confusion matrix of the model on all of ds. */
static int confusion(ml_model *net, const ds_dataset *ds, int batch, met_confusion *cm,
                     pst_err *err)
{
    int D = ml_model_in_dim(net), K = ml_model_out_dim(net);
    int32_t *pred = malloc((size_t)batch * sizeof *pred);
    if (!pred)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    int64_t n = ds_count(ds);
    for (int64_t lo = 0; lo < n; lo += batch) {
        int b = (int)(n - lo < batch ? n - lo : batch);
        met_predict_classes(pred, ml_model_forward(net, ds_x_const(ds) + (size_t)lo * D, b), b, K);
        met_confusion_add(cm, ds_labels_const(ds) + lo, pred, b);
    }
    free(pred);
    return PST_OK;
}

/* Which figures apply to this model and data, checked: EXIT_OK or a usage/data code. */
static int choose(const explain_args *a, int image, int64_t n, figures *f, int *img)
{
    f->what = a->what ? parse_what(a->what)
                      : W_CONFUSION | (image ? W_WEIGHTS | W_SALIENCY : W_IMPORTANCE);
    if (!f->what)
        return EXIT_USAGE;
    if ((f->what & (W_WEIGHTS | W_SALIENCY)) && !image) {
        fprintf(stderr,
                "pstrain explain: %s: the model does not take images (no channels, "
                "height and width); weights and saliency are for image models\n",
                a->ckpt);
        return EXIT_DATA;
    }
    if ((f->what & W_IMPORTANCE) && image) {
        fprintf(stderr,
                "pstrain explain: %s: importance is for tabular models (a column "
                "per feature); this one takes images\n",
                a->ckpt);
        return EXIT_DATA;
    }
    if (a->images && !(f->what & W_SALIENCY)) {
        fprintf(stderr, "pstrain explain: --images is for saliency\n");
        return EXIT_USAGE;
    }
    f->nimg = 0;
    if (f->what & W_SALIENCY) {
        f->nimg = parse_images(a->images ? a->images : "0", n, img);
        if (f->nimg < 0)
            return EXIT_USAGE;
        if (f->nimg == 0) {
            fprintf(stderr, "pstrain explain: --images: no image given\n");
            return EXIT_USAGE;
        }
    }
    return EXIT_OK;
}

/* Every figure computed, then drawn into a->out; rc a pst status, *ec an exit code. */
static int explain(const explain_args *a, ckpt_model *ck, ds_dataset *ds, const char *gnuplot,
                   figures *f, int *ec, pst_err *err)
{
    ml_model *net = ckpt_model_net(ck);
    int64_t n = ds_count(ds);
    int D = ml_model_in_dim(net);
    size_t hw = (size_t)f->H * f->W;
    met_confusion *cm = met_confusion_create(f->K, err);
    int64_t *counts = calloc((size_t)f->K * f->K, sizeof *counts);
    float *pix = calloc((size_t)f->nimg * hw + 1, sizeof *pix);
    float *sal = calloc((size_t)f->nimg * hw + 1, sizeof *sal);
    int32_t lab[MAX_IMAGES], pred[MAX_IMAGES];
    double *drop = calloc((size_t)D, sizeof *drop), base = 0.0;
    char(*col)[NAME_LEN] = calloc((size_t)D, sizeof *col);
    int rc = PST_OK;
    if (!cm || !counts || !pix || !sal || !drop || !col) {
        rc = err->code ? err->code : pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    /* the chosen images as given (channel mean), before the scaler */
    for (int i = 0; i < f->nimg; i++) {
        lab[i] = ds_labels_const(ds)[f->img[i]];
        for (int c = 0; c < f->C; c++)
            for (size_t p = 0; p < hw; p++)
                pix[i * hw + p] += ds_x_const(ds)[(size_t)f->img[i] * D + c * hw + p] / f->C;
    }
    if ((rc = ds_scaler_apply(ckpt_model_scaler(ck), ds, err)) ||
        (rc = confusion(net, ds, a->batch, cm, err)))
        goto cleanup;
    for (int t = 0; t < f->K; t++)
        for (int p = 0; p < f->K; p++)
            counts[t * f->K + p] = met_confusion_count(cm, t, p);
    f->cm = counts, f->label = lab, f->pred = pred, f->pix = pix, f->sal = sal;
    f->D = D, f->drop = drop, f->col = col;
    if (f->what & W_IMPORTANCE) {
        column_names(&a->src, D, col);
        if ((rc = ml_permutation_importance(net, ds_x_const(ds), ds_labels_const(ds), n, a->repeats,
                                            (uint64_t)a->seed, &base, drop, err)))
            goto cleanup;
    }
    if ((f->what & W_WEIGHTS) && (rc = weight_tiles(net, a->units, f, err)))
        goto cleanup;
    if ((f->what & W_SALIENCY) && (rc = saliency(net, ds, f, sal, pred, err)))
        goto cleanup;
    if ((rc = fs_mkdirs(a->out, err)))
        goto cleanup;
    if ((*ec = cli_gp_run("explain", gnuplot, write_script, f)) != EXIT_OK)
        goto cleanup;
    met_summary s;
    met_confusion_summary(cm, &s);
    const char *layer = f->what & W_WEIGHTS ? ml_model_segment(net, 0)->name : "";
    char lname[48];
    cli_gp_sanitise(lname, sizeof lname, layer);
    print_figures(f, cm, s.accuracy, base, n, lname, a->json);
cleanup:
    free((void *)f->tile);
    met_confusion_destroy(cm);
    free(counts), free(pix), free(sal), free(drop), free(col);
    return rc;
}

int cmd_explain(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop; /* every step is short; Ctrl-C ends it as any program */
    explain_args a;
    int ec = parse_args(argc, argv, &a);
    if (ec >= 0)
        return ec;
    pst_err err = {0};
    ckpt_model *ck = NULL;
    ds_dataset *ds = NULL;
    char(*cls)[NAME_LEN] = NULL;
    int img[MAX_IMAGES];
    figures f = {.outdir = a.out, .img = img};
    char gnuplot[4096];
    int rc = ckpt_load(a.ckpt, a.batch, &ck, &err);
    if (rc)
        goto done;
    if (ckpt_model_task(ck) != DS_TASK_CLASSIFY) {
        rc = pst_err_set(&err, PST_ERR_DATA,
                         "%s: explain is for classifiers; this model's "
                         "task is %s",
                         a.ckpt, ds_task_name(ckpt_model_task(ck)));
        goto done;
    }
    if (!(ds = cli_eval_data(&a.src, ck, &err))) {
        rc = err.code ? err.code : PST_ERR_DATA;
        goto done;
    }
    ml_shape in = ml_model_in_shape(ckpt_model_net(ck));
    int chw[3] = {0, 0, 0};
    int image = in.rank == 3 ? (chw[0] = in.d[0], chw[1] = in.d[1], chw[2] = in.d[2], 1)
                             : ds_image_shape(ds, chw);
    f.C = chw[0], f.H = chw[1], f.W = chw[2];
    if ((ec = choose(&a, image, ds_count(ds), &f, img)) != EXIT_OK)
        goto done;
    if (!cli_gp_find("gnuplot", gnuplot, sizeof gnuplot)) {
        fputs("pstrain explain: gnuplot is not on PATH; install it (Debian: apt-get install "
              "gnuplot-nox)\n",
              stderr);
        ec = EXIT_IO; /* as pstrain plot */
        goto done;
    }
    f.K = ckpt_model_nclasses(ck);
    if (!(cls = calloc((size_t)f.K, sizeof *cls))) {
        rc = pst_err_set(&err, PST_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < f.K; k++) {
        const char *nm = ckpt_model_class_name(ck, k);
        if (nm)
            cli_gp_sanitise(cls[k], NAME_LEN, nm);
        else
            snprintf(cls[k], NAME_LEN, "%d", k);
    }
    f.cls = cls;
    rc = explain(&a, ck, ds, gnuplot, &f, &ec, &err);
    if (!rc && ec == EXIT_OK && fflush(stdout) != 0)
        rc = pst_err_set(&err, PST_ERR_IO, "stdout: cannot write: %s", strerror(errno));
done:
    if (rc)
        fprintf(stderr, "pstrain explain: %s\n", err.msg);
    free(cls);
    ds_destroy(ds);
    ckpt_model_destroy(ck);
    return rc ? cli_exit_code(rc) : ec;
}
