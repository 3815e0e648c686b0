/* bench/bench_sptable.c -- the sparse table (core/sptable.c) on one thread.
 *
 *   bench_sptable [--opt sgd|adagrad|adam|ftrl] [--dim D] [--batch B] [--batches N]
 *                 [--ids U] [--rows R] [--smoke]
 *
 * throughput: N batches of B unique keys drawn Zipf-like (density ~ 1/rank, s = 1, over U
 * ids, each rank hashed to a 64-bit key), pull + push + tick per batch, d = D. The baseline
 * in the same run is the same pulls and updates (core/optim's rule, row by row) on a flat
 * array whose row indices were computed beforehand: what is left of the table's cost is
 * the key index, admission and stamps. Figures: keys per CPU second of this thread (one
 * pull + one push each; the machines are shared, wall time is printed beside), ns per
 * key, ratio table / flat.
 *
 * memory: R distinct keys pulled into a fresh table (so R rows exist), then RSS (VmRSS of
 * /proc/self/status, less the RSS before the table) against what R rows need, R * (8 key
 * + 4 * d * (1 + state buffers)) bytes: the ratio the issue bounds by 1.2, and the bytes
 * per row beyond the need. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/rng.h"
#include "core/sptable.h"

/* VmRSS or VmHWM of this process in bytes; -1 if unreadable. */
static double proc_status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    double v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = atof(line + n + 1) * 1024.0;
            break;
        }
    fclose(f);
    return v;
}

/* CPU seconds of this thread: the machine is shared, so rates are given per CPU second
 * (wall seconds beside them). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* batches (nb, b) of unique ranks in [0, u), density ~ 1/(rank+1): rank = floor(u^x) - 1
 * with x uniform in [0, 1). Duplicates within a batch are drawn again. */
static int draw_batches(uint32_t *ranks, int nb, int b, uint64_t u, uint64_t seed)
{
    uint64_t cap = 1;
    while (cap < 4 * (uint64_t)b)
        cap <<= 1;
    uint32_t *seen = malloc(cap * sizeof *seen);
    if (!seen)
        return -1;
    rng_state r;
    rng_seed(&r, seed);
    const double lu = log((double)u);
    for (int i = 0; i < nb; i++) {
        memset(seen, 0xFF, cap * sizeof *seen);
        for (int j = 0; j < b;) {
            uint64_t rank = (uint64_t)exp(lu * ((double)(rng_next(&r) >> 11) * 0x1p-53)) - 1;
            if (rank >= u)
                rank = u - 1;
            uint64_t h = rng_mix64(rank) & (cap - 1);
            while (seen[h] != UINT32_MAX && seen[h] != (uint32_t)rank)
                h = (h + 1) & (cap - 1);
            if (seen[h] == (uint32_t)rank)
                continue;
            seen[h] = (uint32_t)rank;
            ranks[(size_t)i * (size_t)b + (size_t)j++] = (uint32_t)rank;
        }
    }
    free(seen);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The flat baseline: rows of the distinct ranks, indexed by their position in the sorted
 * list of distinct ranks (computed before timing). Returns seconds. */
static double run_flat(const spt_config *c, const uint32_t *idx, int nb, int b, size_t distinct,
                       float *rows, const float *g)
{
    const size_t d = (size_t)c->dim;
    const int nbuf = opt_kind_nbuf(c->opt.kind);
    const size_t stride = d * (size_t)(1 + nbuf);
    float *flat = calloc(distinct * stride, sizeof *flat);
    if (!flat)
        return -1;
    double t0 = cpu_s();
    for (int i = 0; i < nb; i++) {
        const uint32_t *ix = idx + (size_t)i * (size_t)b;
        for (int j = 0; j < b; j++)
            memcpy(rows + (size_t)j * d, flat + ix[j] * stride, d * sizeof *rows);
        opt_rule rule;
        opt_rule_init(&rule, &c->opt, i + 1, c->opt.lr);
        for (int j = 0; j < b; j++) {
            float *w = flat + ix[j] * stride;
            opt_rule_apply(&rule, w, g + (size_t)j * d, nbuf > 0 ? w + d : NULL,
                           nbuf > 1 ? w + 2 * d : NULL, d);
        }
    }
    double s = cpu_s() - t0;
    free(flat);
    return s;
}

static int throughput(const spt_config *c, int nb, int b, uint64_t u)
{
    const size_t d = (size_t)c->dim, n = (size_t)nb * (size_t)b;
    uint32_t *ranks = malloc(n * sizeof *ranks), *idx = malloc(n * sizeof *idx);
    uint32_t *sorted = malloc(n * sizeof *sorted);
    uint64_t *keys = malloc(n * sizeof *keys);
    float *rows = malloc((size_t)b * d * sizeof *rows), *g = malloc((size_t)b * d * sizeof *g);
    pst_err err = {0};
    spt_table *t = NULL;
    int rc = 1;
    if (!ranks || !idx || !sorted || !keys || !rows || !g || draw_batches(ranks, nb, b, u, 7))
        goto cleanup;
    for (size_t i = 0; i < n; i++)
        keys[i] = rng_mix64(ranks[i] + 0x5851F42D4C957F2DULL);
    memcpy(sorted, ranks, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_u32);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || sorted[i] != sorted[i - 1])
            sorted[distinct++] = sorted[i];
    for (size_t i = 0; i < n; i++) {
        uint32_t *p = bsearch(&ranks[i], sorted, distinct, sizeof *sorted, cmp_u32);
        idx[i] = (uint32_t)(p - sorted);
    }
    rng_state r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < (size_t)b * d; i++)
        g[i] = 0.01f * (2.0f * rng_uniform(&r) - 1.0f);
    if (!(t = spt_create(c, &err)))
        goto cleanup;
    double t0 = cpu_s(), w0 = pst_mono_s();
    for (int i = 0; i < nb; i++) {
        const uint64_t *k = keys + (size_t)i * (size_t)b;
        if (spt_pull(t, k, (size_t)b, rows, &err) || spt_push(t, k, (size_t)b, g, c->opt.lr, &err))
            goto cleanup;
        spt_tick(t);
    }
    double ts = cpu_s() - t0, ws = pst_mono_s() - w0;
    double fs = run_flat(c, idx, nb, b, distinct, rows, g);
    if (fs < 0)
        goto cleanup;
    spt_stats st;
    spt_stats_get(t, &st);
    printf("throughput opt=%s dim=%zu batch=%d batches=%d ids=%llu distinct=%zu rows=%llu "
           "cpu_s=%.3f wall_s=%.3f\n",
           opt_kind_name(c->opt.kind), d, b, nb, (unsigned long long)u, distinct,
           (unsigned long long)st.rows, ts, ws);
    printf("summary table: %.0f keys/s (pull+push), %.1f ns/key, flat array: %.0f keys/s, "
           "%.1f ns/key, table/flat time %.2f\n",
           (double)n / ts, ts * 1e9 / (double)n, (double)n / fs, fs * 1e9 / (double)n, ts / fs);
    rc = 0;
cleanup:
    if (rc && err.msg[0])
        fprintf(stderr, "bench_sptable: %s\n", err.msg);
    spt_destroy(t);
    free(ranks), free(idx), free(sorted), free(keys), free(rows), free(g);
    return rc;
}

static int memory(const spt_config *c, uint64_t nrows)
{
    enum { B = 65536 };
    const size_t d = (size_t)c->dim;
    uint64_t *keys = malloc(B * sizeof *keys);
    float *rows = malloc(B * d * sizeof *rows);
    pst_err err = {0};
    int rc = 1;
    double rss0 = proc_status_bytes("VmRSS");
    spt_table *t = spt_create(c, &err);
    if (!keys || !rows || !t)
        goto cleanup;
    double t0 = cpu_s();
    for (uint64_t at = 0; at < nrows; at += B) {
        size_t n = nrows - at < B ? (size_t)(nrows - at) : B;
        for (size_t i = 0; i < n; i++)
            keys[i] =
                rng_mix64(at + i + 0x2545F4914F6CDD1DULL); /* distinct: mix64 is a bijection */
        if (spt_pull(t, keys, n, rows, &err))
            goto cleanup;
    }
    double secs = cpu_s() - t0;
    double rss = proc_status_bytes("VmRSS"), hwm = proc_status_bytes("VmHWM");
    spt_stats st;
    spt_stats_get(t, &st);
    const double nbuf = (double)spt_nbuf(t);
    const double need = (double)nrows * (8.0 + 4.0 * (double)d * (1.0 + nbuf));
    const double used = rss - rss0;
    printf("memory opt=%s dim=%zu rows=%llu need_mib=%.1f rss_mib=%.1f peak_rss_mib=%.1f "
           "table_bytes_mib=%.1f insert_cpu_s=%.2f\n",
           opt_kind_name(c->opt.kind), d, (unsigned long long)st.rows, need / 1048576.0,
           used / 1048576.0, hwm / 1048576.0, (double)st.bytes / 1048576.0, secs);
    printf("summary memory: rss/need %.3f, peak/need %.3f, %.1f bytes/row of which %.1f "
           "beyond key + row + state\n",
           used / need, (hwm - rss0) / need, used / (double)nrows, (used - need) / (double)nrows);
    rc = 0;
cleanup:
    if (rc && err.msg[0])
        fprintf(stderr, "bench_sptable: %s\n", err.msg);
    spt_destroy(t);
    free(keys), free(rows);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_sptable [--opt sgd|adagrad|adam|ftrl] [--dim D] [--batch B]\n"
               "                     [--batches N] [--ids U] [--rows R] [--smoke]\n"
               "  throughput of N batches of B unique Zipf keys over U ids (default adam, d 16,\n"
               "  B 4096, N 2000, U 1e8), then memory of a table of R rows (default 1e6;\n"
               "  0 skips it). --smoke: tiny sizes (ctest -L bench).\n");
}

int main(int argc, char **argv)
{
    spt_config c;
    spt_config_default(&c, 16);
    int batch = 4096, batches = 2000;
    double ids = 1e8, nrows = 1e6;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--smoke") == 0) {
            batch = 512, batches = 20, ids = 1e6, nrows = 2e5;
        } else if (strcmp(a, "--opt") == 0 && v) {
            opt_kind k = strcmp(v, "sgd") == 0       ? OPT_SGD
                         : strcmp(v, "adagrad") == 0 ? OPT_ADAGRAD
                         : strcmp(v, "ftrl") == 0    ? OPT_FTRL
                                                     : OPT_ADAM;
            opt_config_default(&c.opt, k);
            i++;
        } else if (strcmp(a, "--dim") == 0 && v) {
            c.dim = atoi(v), i++;
        } else if (strcmp(a, "--batch") == 0 && v) {
            batch = atoi(v), i++;
        } else if (strcmp(a, "--batches") == 0 && v) {
            batches = atoi(v), i++;
        } else if (strcmp(a, "--ids") == 0 && v) {
            ids = atof(v), i++;
        } else if (strcmp(a, "--rows") == 0 && v) {
            nrows = atof(v), i++;
        } else {
            usage(strcmp(a, "--help") == 0 ? stdout : stderr);
            return strcmp(a, "--help") == 0 ? 0 : 2;
        }
    }
    pst_err err = {0};
    if (spt_config_check(&c, &err) || batch < 1 || batches < 0 || !(ids >= batch) || ids > 4e9 ||
        !(nrows >= 0)) {
        fprintf(stderr, "bench_sptable: %s\n", err.msg[0] ? err.msg : "bad sizes");
        return 2;
    }
    if (batches > 0 && throughput(&c, batches, batch, (uint64_t)ids))
        return 1;
    if (nrows > 0 && memory(&c, (uint64_t)nrows))
        return 1;
    return 0;
}
