/* cli/cmd_plot.c -- `pstrain plot`: the curves of a run's metrics.csv, drawn by gnuplot.
 *
 * The metrics are parsed here (so a bad file is reported by name and line) and handed to
 * gnuplot inline, as a datablock of the script; the script goes to gnuplot's stdin from an
 * unlinked temp file, and gnuplot is started with posix_spawn, no shell. The only user text
 * in the script is the output folder, inside a single-quoted gnuplot string, where gnuplot
 * substitutes nothing; a path holding a quote or a line break is refused, since it could end
 * that string. gnuplot is an optional dependency (Debian gnuplot-nox). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "worker/report.h"

extern char **environ;

/* The first columns of the header worker/report.c writes (the traffic columns after them
 * are not plotted, and files from before they existed have none); the columns are
 * numbered from 1 as in gnuplot. */
static const char metrics_header[] =
    "epoch,train_loss,train_acc,val_loss,val_acc,val_precision,val_recall,val_f1,"
    "val_mse,val_mae,val_r2,seconds,samples_per_s";
enum { NCOL = 13, COL_TRAIN_LOSS = 2, COL_TRAIN_ACC = 3, COL_VAL_LOSS = 4, COL_VAL_ACC = 5,
       COL_VAL_MSE = 9, COL_VAL_R2 = 11, COL_SPS = 13 };

typedef struct {
    double (*rows)[NCOL]; /* (nrows, NCOL); NAN = empty cell */
    size_t nrows, cap;
} metrics;

static void usage(FILE *f)
{
    fputs("usage: pstrain plot RUN_DIR [--out DIR] [--ascii]\n"
          "\n"
          "Plots RUN_DIR/metrics.csv with gnuplot (Debian package gnuplot-nox):\n"
          "  loss.png        train_loss and val_loss per epoch\n"
          "  accuracy.png    train_acc and val_acc (classification runs)\n"
          "  regression.png  val_mse and val_r2 (regression runs, instead of accuracy.png)\n"
          "  throughput.png  samples/s per epoch\n"
          "\n"
          "options:\n"
          "  --out DIR   folder for the PNG files, created if missing (default: RUN_DIR)\n"
          "  --ascii     print the same plots as text to stdout instead (for logs)\n",
          f);
}

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
                    fprintf(stderr, "pstrain plot: %s line %ld: %d columns, expected %d\n",
                            path, lineno, c + 1, NCOL);
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

static int has_values(const metrics *m, int col)
{
    for (size_t i = 0; i < m->nrows; i++)
        if (isfinite(m->rows[i][col - 1]))
            return 1;
    return 0;
}

/* The directory holding an executable named name on PATH, copied into buf; 0 if none. */
static int find_on_path(const char *name, char *buf, size_t size)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        return 0;
    for (const char *p = path;;) {
        size_t len = strcspn(p, ":");
        /* An empty PATH entry means the current folder (POSIX execvp). */
        int n = len ? snprintf(buf, size, "%.*s/%s", (int)len, p, name)
                    : snprintf(buf, size, "./%s", name);
        struct stat st;
        if (n > 0 && (size_t)n < size && stat(buf, &st) == 0 && S_ISREG(st.st_mode) &&
            access(buf, X_OK) == 0)
            return 1;
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

/* One plot: series are (column, title) pairs; those without any value are left out. */
static void plot_one(FILE *s, const metrics *m, const char *outdir, int ascii,
                     const char *file, const char *title, const char *ylabel,
                     const int *cols, const char *const *names, int ncols)
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
    plot_one(s, m, outdir, ascii, "loss.png", "loss", "loss", loss_cols, loss_names, 2);

    /* A regression run leaves the accuracy columns empty (worker/report.c). */
    if (has_values(m, COL_TRAIN_ACC) || has_values(m, COL_VAL_ACC)) {
        static const int acc_cols[] = {COL_TRAIN_ACC, COL_VAL_ACC};
        static const char *const acc_names[] = {"train_acc", "val_acc"};
        plot_one(s, m, outdir, ascii, "accuracy.png", "accuracy", "accuracy", acc_cols,
                 acc_names, 2);
    } else {
        fputs("pstrain plot: accuracy.png skipped: a regression run (no accuracy); "
              "plotting val_mse and val_r2 in regression.png\n",
              stderr);
        static const int reg_cols[] = {COL_VAL_MSE, COL_VAL_R2};
        static const char *const reg_names[] = {"val_mse", "val_r2"};
        plot_one(s, m, outdir, ascii, "regression.png", "validation MSE and R^2",
                 "val_mse / val_r2", reg_cols, reg_names, 2);
    }

    static const int sps_cols[] = {COL_SPS};
    static const char *const sps_names[] = {"samples_per_s"};
    fputs("set yrange [0:*]\n", s);
    plot_one(s, m, outdir, ascii, "throughput.png", "throughput", "samples/s", sps_cols,
             sps_names, 1);
    if (!ascii)
        fputs("unset output\n", s);
}

/* Runs gnuplot on the script, fed on stdin from an unlinked temp file (nothing is left
 * behind if we are killed). gnuplot's stdout and stderr are ours. Returns an EXIT_* code. */
static int run_gnuplot(const char *gnuplot, const metrics *m, const char *outdir, int ascii)
{
    const char *tmpdir = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/pstrain-plot.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        fprintf(stderr, "pstrain plot: %s: cannot create the gnuplot script: %s\n", tmpl,
                strerror(errno));
        return EXIT_IO;
    }
    unlink(tmpl);
    int rc = EXIT_IO;
    posix_spawn_file_actions_t fa;
    int fa_ready = 0;
    FILE *s = fdopen(fd, "w+");
    if (!s) {
        fprintf(stderr, "pstrain plot: cannot write the gnuplot script: %s\n", strerror(errno));
        close(fd);
        return EXIT_IO;
    }
    write_script(s, m, outdir, ascii);
    if (fflush(s) != 0 || ferror(s) || lseek(fd, 0, SEEK_SET) != 0) {
        fprintf(stderr, "pstrain plot: cannot write the gnuplot script: %s\n", strerror(errno));
        goto cleanup;
    }
    if (posix_spawn_file_actions_init(&fa) != 0)
        goto cleanup;
    fa_ready = 1;
    posix_spawn_file_actions_adddup2(&fa, fd, STDIN_FILENO);
    /* The child must not outlive its reader of stdout: flush ours before it writes. */
    fflush(stdout);
    char *argv[] = {"gnuplot", NULL};
    pid_t pid;
    int e = posix_spawn(&pid, gnuplot, &fa, NULL, argv, environ);
    if (e != 0) {
        fprintf(stderr, "pstrain plot: cannot run %s: %s\n", gnuplot, strerror(e));
        goto cleanup;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "pstrain plot: waiting for gnuplot: %s\n", strerror(errno));
            goto cleanup;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "pstrain plot: gnuplot failed (%s %d; its messages are above)\n",
                WIFEXITED(status) ? "exit code" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        rc = EXIT_FAILURE_RUNTIME;
        goto cleanup;
    }
    rc = EXIT_OK;
cleanup:
    if (fa_ready)
        posix_spawn_file_actions_destroy(&fa);
    fclose(s);
    return rc;
}

int cmd_plot(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    const char *run_dir = NULL, *out = NULL;
    int ascii = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--ascii") == 0) {
            ascii = 1;
        } else if (strcmp(a, "--out") == 0) {
            if (i + 1 >= argc) {
                fputs("pstrain plot: --out needs a value\n", stderr);
                return EXIT_USAGE;
            }
            out = argv[++i];
        } else if (strncmp(a, "--out=", 6) == 0) {
            out = a + 6;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "pstrain plot: unknown option '%s' (see --help)\n", a);
            return EXIT_USAGE;
        } else if (!run_dir) {
            run_dir = a;
        } else {
            fprintf(stderr, "pstrain plot: unexpected argument '%s' (see --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (!run_dir) {
        fputs("pstrain plot: needs a run folder (see --help)\n", stderr);
        return EXIT_USAGE;
    }
    if (ascii && out) {
        fputs("pstrain plot: --ascii prints to stdout and writes no files; drop --out\n", stderr);
        return EXIT_USAGE;
    }
    if (!out)
        out = run_dir;
    if (!ascii && (*out == '\0' || strpbrk(out, "'\n\r"))) {
        fprintf(stderr, "pstrain plot: output folder '%s' is empty or holds a quote or line "
                        "break, which gnuplot cannot take; choose another with --out\n", out);
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
    if (!find_on_path("gnuplot", gnuplot, sizeof gnuplot)) {
        fputs("pstrain plot: gnuplot is not on PATH; install it (Debian: apt-get install "
              "gnuplot-nox)\n", stderr);
        rc = EXIT_IO;
        goto cleanup;
    }
    if (!ascii) {
        pst_err err = {0};
        if (wk_mkdirs(out, &err) != PST_OK) {
            fprintf(stderr, "pstrain plot: %s\n", err.msg);
            rc = EXIT_IO;
            goto cleanup;
        }
    }
    time_t start = time(NULL);
    rc = run_gnuplot(gnuplot, &m, out, ascii);
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
cleanup:
    free(m.rows);
    return rc;
}
