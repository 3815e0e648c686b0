/* bench/bench_gpt.c -- one-thread training throughput of a small GPT-2 in pstrain's layers,
 * next to the single-thread sgemm rate of this OpenBLAS.
 *
 * The model is core/gpt2.h's expansion of (n_layer L, n_head H, n_embd C, n_positions =
 * context T, vocab V); default L 4, H 4, C 256, T 256, V 256 (byte-level), batch N 4, as
 * issue 13 asks. One step = forward over N windows of T token ids, the mean next-token
 * cross-entropy, backward, and one Adam update (lr 3e-4, betas 0.9/0.999, as
 * bench/torch_gpt.py) of the flat vector -- what `pstrain train` does per step, without
 * data loading. Token ids and labels are drawn once from a seeded generator.
 *
 * FLOPs per step are the model's own count (ml_model_flops: every layer's forward + both
 * backward products; ~ 6 x params x tokens + 12 L T C x tokens for attention, the usual
 * estimate). The bound: one thread's sgemm rate on a (N T) x C x 4C product, the shape of
 * the MLP's first projection, timed in the same process. model GFLOP/s over that rate is
 * the fraction of sgemm speed the whole step reaches.
 *
 * Output ("round" lines are read by bench/run_gpt.sh, which interleaves them with
 * PyTorch's):
 * One untimed forward/backward comes first.
 *   info params=P tokens_per_step=NT flop_per_step=F
 *   round R tokens_per_s=X cpu_tokens_per_s=Y step_s=S loss=L gflop_per_s=G
 *   sgemm gflop_per_s=B
 *   summary tokens_per_s=X gflop_per_s=G of_sgemm=G/B
 * Run with OPENBLAS_NUM_THREADS=1. A benchmark: it prints figures and never judges them. */
#include <cblas.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/rng.h"
#include "core/gpt2.h"
#include "core/model.h"
#include "core/optim.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    ml_gpt2_config c;
    int batch, steps, rounds;
} bench_opts;

static int parse(int argc, char **argv, bench_opts *o)
{
    static const struct option longs[] = {{"layers", required_argument, NULL, 'l'},
                                          {"heads", required_argument, NULL, 'H'},
                                          {"embd", required_argument, NULL, 'c'},
                                          {"context", required_argument, NULL, 't'},
                                          {"vocab", required_argument, NULL, 'v'},
                                          {"batch", required_argument, NULL, 'n'},
                                          {"steps", required_argument, NULL, 's'},
                                          {"rounds", required_argument, NULL, 'r'},
                                          {"smoke", no_argument, NULL, 'S'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    *o = (bench_opts){
        .c = {.n_layer = 4, .n_head = 4, .n_embd = 256, .n_positions = 256, .vocab_size = 256},
        .batch = 4,
        .steps = 10,
        .rounds = 3};
    int ch, li = 0;
    while ((ch = getopt_long(argc, argv, "", longs, &li)) != -1) {
        int *field = ch == 'l'   ? &o->c.n_layer
                     : ch == 'H' ? &o->c.n_head
                     : ch == 'c' ? &o->c.n_embd
                     : ch == 't' ? &o->c.n_positions
                     : ch == 'v' ? &o->c.vocab_size
                     : ch == 'n' ? &o->batch
                     : ch == 's' ? &o->steps
                     : ch == 'r' ? &o->rounds
                                 : NULL;
        if (field) {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 1 << 20) {
                fprintf(stderr, "bench_gpt: --%s: expected a positive integer, got '%s'\n",
                        longs[li].name, optarg);
                return 2;
            }
            *field = (int)v;
        } else if (ch == 'S') {
            o->c = (ml_gpt2_config){
                .n_layer = 2, .n_head = 2, .n_embd = 64, .n_positions = 32, .vocab_size = 256};
            o->batch = 2;
            o->steps = 3;
            o->rounds = 1;
        } else if (ch == 'h') {
            printf("usage: bench_gpt [--layers L] [--heads H] [--embd C] [--context T] "
                   "[--vocab V]\n                 [--batch N] [--steps S] [--rounds R] "
                   "[--smoke]\n(defaults 4 4 256 256 256, batch 4, 10 steps, 3 rounds; "
                   "see the head of bench/bench_gpt.c)\n");
            exit(0);
        } else {
            fprintf(stderr, "bench_gpt: try --help\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_gpt: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }
    return 0;
}

/* One thread's sgemm rate on the (N T) x C x 4C product of the MLP's first projection. */
static double sgemm_gflops(int m, int k, int n)
{
    float *a = calloc((size_t)m * k, sizeof *a), *b = calloc((size_t)k * n, sizeof *b),
          *c = calloc((size_t)m * n, sizeof *c);
    double best = 0.0;
    if (!a || !b || !c)
        goto cleanup;
    for (size_t i = 0; i < (size_t)m * k; i++)
        a[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)k * n; i++)
        b[i] = (float)(i % 5) * 0.01f;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c,
                    n);
        double g = 2.0 * m * k * n / (now_s() - t0) * 1e-9;
        best = g > best ? g : best;
    }
cleanup:
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv)
{
    bench_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    ml_model_spec spec = {0};
    ml_model *m = NULL;
    opt_state *st = NULL;
    float *ids = NULL;
    int32_t *labels = NULL;
    pst_err err = {0};
    int T = o.c.n_positions, N = o.batch;
    o.c.context = T;
    rc = 1;
    if (ml_gpt2_spec(&spec, &o.c, &err) || !(m = ml_model_create(&spec, T, N, &err)))
        goto cleanup;
    ml_model_init(m, 1);
    size_t P = ml_model_nparams(m);
    opt_config oc;
    opt_config_default(&oc, OPT_ADAM);
    oc.lr = 3e-4f;
    if (!(st = opt_state_create(&oc, P, &err)))
        goto cleanup;
    ids = malloc(sizeof *ids * (size_t)N * T);
    labels = malloc(sizeof *labels * (size_t)N * T);
    if (!ids || !labels) {
        pst_err_set(&err, PST_ERR_NOMEM, "out of memory for a batch");
        goto cleanup;
    }
    rng_state r;
    rng_seed(&r, 7);
    for (int i = 0; i < N * T; i++) {
        ids[i] = (float)(rng_next(&r) % (uint64_t)o.c.vocab_size);
        labels[i] = (int32_t)(rng_next(&r) % (uint64_t)o.c.vocab_size);
    }
    double flop = ml_model_flops(m, N);
    printf("info params=%zu tokens_per_step=%d flop_per_step=%.4g\n", P, N * T, flop);
    /* One untimed step first (allocations, first-touch pages), as torch_gpt.py does. */
    ml_model_forward(m, ids, N);
    ml_model_loss(m, labels, NULL, N);
    ml_model_backward(m, ids, N);
    double sum_tps = 0.0, sum_gf = 0.0;
    for (int round = 1; round <= o.rounds; round++) {
        double loss = 0.0, t0 = now_s(), c0 = cpu_s();
        for (int s = 0; s < o.steps; s++) {
            ml_model_forward(m, ids, N);
            loss = ml_model_loss(m, labels, NULL, N);
            ml_model_backward(m, ids, N);
            opt_tick(st);
            opt_apply(&oc, st, ml_model_params(m), ml_model_grads(m), 0, P, oc.lr);
        }
        double wall = now_s() - t0, cpu = cpu_s() - c0;
        double tps = (double)N * T * o.steps / wall, gf = flop * o.steps / wall * 1e-9;
        printf("round %d tokens_per_s=%.1f cpu_tokens_per_s=%.1f step_s=%.4f loss=%.4f "
               "gflop_per_s=%.2f\n",
               round, tps, (double)N * T * o.steps / cpu, wall / o.steps, loss, gf);
        fflush(stdout);
        sum_tps += tps;
        sum_gf += gf;
    }
    double bound = sgemm_gflops(N * T, o.c.n_embd, 4 * o.c.n_embd);
    printf("sgemm gflop_per_s=%.2f\n", bound);
    printf("summary tokens_per_s=%.1f gflop_per_s=%.2f of_sgemm=%.3f\n", sum_tps / o.rounds,
           sum_gf / o.rounds, bound > 0 ? sum_gf / o.rounds / bound : 0.0);
    rc = 0;
cleanup:
    if (rc)
        fprintf(stderr, "bench_gpt: %s\n", err.msg[0] ? err.msg : "failed");
    free(ids);
    free(labels);
    opt_state_destroy(st);
    ml_model_destroy(m);
    ml_model_spec_fini(&spec);
    return rc;
}
