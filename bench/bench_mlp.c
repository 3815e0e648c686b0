/* bench/bench_mlp.c -- one-thread training throughput of pstrain next to the sgemm bound.
 *
 * Trains the MLP 784-256-128-10 (ReLU, softmax + categorical cross-entropy, batch 128,
 * plain SGD lr 0.01, shuffled) for one epoch on Fashion-MNIST's 60000 training images
 * through the product's own loop (wk_loop_run, worker/loop.h), and in the same process
 * times the eight cblas_sgemm calls such a step cannot avoid, on the same shapes and for
 * the same 469 batches (the last one 96 rows):
 *
 *   forward   Y1 = X W1^T (B,256,k=784)   Y2 = H1 W2^T (B,128,k=256)   Z = H2 W3^T (B,10,k=128)
 *   dW        dW3 = dZ^T H2 (10,128,k=B)  dW2 = dH2^T H1 (128,256,k=B) dW1 = dH1^T X (256,784,k=B)
 *   dX        dH2 = dZ W3 (B,128,k=10)    dH1 = dH2 W2 (B,256,k=128)
 *
 * with exactly the transposes, leading dimensions and beta that core/nn.c passes. The
 * sgemm-only rate (60000 / time of those calls) is the bound a one-thread C trainer
 * built on this OpenBLAS can approach; everything else a step does (gathering the
 * shuffled rows, bias, ReLU, softmax, the update) is what separates pstrain from it.
 * About 1.007 MFLOP per sample: 2 (784*256 + 256*128 + 128*10) for each of forward and dW,
 * plus 2 (256*128 + 128*10) for the two dX products.
 *
 * Rates are samples per wall-clock second, and also per CPU second (*_cpu_sps) for
 * shared machines. Output: one "round" line per round with key=value figures, a "memory"
 * line and an "info" line, parsed by bench/run_mlp.sh (which interleaves these rounds
 * with PyTorch's). This is a benchmark: it prints figures and never judges them. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "job/job.h"
#include "data/data.h"
#include "base/err.h"
#include "core/model.h"
#include "core/optim.h"
#include "base/rng.h"
#include "worker/dataprep.h"
#include "worker/loop.h"
#include "worker/trainer.h"

#define IN 784
#define H1 256
#define H2 128
#define OUT 10
#define BATCH 128

/* The job, as a user would write it. Only the data directory varies (--data). */
static const char job_fmt[] = "name: bench-mlp\n"
                              "seed: 42\n"
                              "data:\n"
                              "  format: idx\n"
                              "  train: %s/train-images-idx3-ubyte.gz\n"
                              "  train_labels: %s/train-labels-idx1-ubyte.gz\n"
                              "  test: %s/t10k-images-idx3-ubyte.gz\n"
                              "  test_labels: %s/t10k-labels-idx1-ubyte.gz\n"
                              "  num_classes: 10\n"
                              "  validation_split: 0\n"
                              "  scale: minmax\n"
                              "model:\n"
                              "  layers:\n"
                              "    - {units: 256, activation: relu}\n"
                              "    - {units: 128, activation: relu}\n"
                              "    - {units: 10, activation: softmax}\n"
                              "  loss: categorical_crossentropy\n"
                              "optimizer:\n"
                              "  name: sgd\n"
                              "  lr: 0.01\n"
                              "train:\n"
                              "  batch_size: 128\n"
                              "  epochs: 1\n"
                              "  threads: 1\n"
                              "  shuffle: true\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the process (one thread here): unlike wall time it does not grow while
 * another job on a shared machine holds the core, so it shows what the code costs even
 * when the wall-clock figures of a round are spoiled. On a quiet machine both agree. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Resident set size now, from /proc/self/status (VmRSS, kB); -1 if unreadable. */
static long rss_now_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static long rss_peak_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss; /* kB on Linux */
}

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

/* Buffers of the sgemm-only loop; shapes as in the header comment. */
typedef struct {
    float *x;               /* (B, IN) */
    float *w1, *w2, *w3;    /* (H1, IN) (H2, H1) (OUT, H2) */
    float *h1, *h2, *z;     /* (B, H1) (B, H2) (B, OUT) */
    float *dz, *dh2, *dh1;  /* (B, OUT) (B, H2) (B, H1) */
    float *dw1, *dw2, *dw3; /* like w1, w2, w3 */
} sgemm_bufs;

static float *rand_floats(rng_state *r, size_t n, float scale)
{
    float *p = malloc(n * sizeof *p);
    if (p)
        for (size_t i = 0; i < n; i++)
            p[i] = scale * (2.0f * rng_uniform(r) - 1.0f);
    return p;
}

static void sgemm_bufs_fini(sgemm_bufs *s)
{
    float *all[] = {s->x,  s->w1,  s->w2,  s->w3,  s->h1,  s->h2, s->z,
                    s->dz, s->dh2, s->dh1, s->dw1, s->dw2, s->dw3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    memset(s, 0, sizeof *s);
}

/* Real pixels for X (the first B training rows), random values elsewhere: sgemm's speed
 * does not depend on the values, only on their being ordinary finite floats. */
static int sgemm_bufs_init(sgemm_bufs *s, const ds_dataset *train)
{
    memset(s, 0, sizeof *s);
    rng_state r;
    rng_seed(&r, 7);
    s->x = malloc(sizeof(float) * BATCH * IN);
    s->w1 = rand_floats(&r, (size_t)H1 * IN, 0.05f);
    s->w2 = rand_floats(&r, (size_t)H2 * H1, 0.1f);
    s->w3 = rand_floats(&r, (size_t)OUT * H2, 0.1f);
    s->h1 = rand_floats(&r, (size_t)BATCH * H1, 1.0f);
    s->h2 = rand_floats(&r, (size_t)BATCH * H2, 1.0f);
    s->z = rand_floats(&r, (size_t)BATCH * OUT, 1.0f);
    s->dz = rand_floats(&r, (size_t)BATCH * OUT, 0.01f);
    s->dh2 = rand_floats(&r, (size_t)BATCH * H2, 0.01f);
    s->dh1 = rand_floats(&r, (size_t)BATCH * H1, 0.01f);
    s->dw1 = calloc((size_t)H1 * IN, sizeof(float));
    s->dw2 = calloc((size_t)H2 * H1, sizeof(float));
    s->dw3 = calloc((size_t)OUT * H2, sizeof(float));
    if (!s->x || !s->w1 || !s->w2 || !s->w3 || !s->h1 || !s->h2 || !s->z || !s->dz || !s->dh2 ||
        !s->dh1 || !s->dw1 || !s->dw2 || !s->dw3) {
        sgemm_bufs_fini(s);
        return -1;
    }
    memcpy(s->x, ds_x_const(train), sizeof(float) * BATCH * IN);
    return 0;
}

/* The eight products of one training step on n rows, with core/nn.c's arguments:
 * forward beta 1 (y holds the broadcast bias), dW and dX beta 0. */
static void sgemm_step(sgemm_bufs *s, int n)
{
    const CBLAS_LAYOUT R = CblasRowMajor;
    const CBLAS_TRANSPOSE N = CblasNoTrans, T = CblasTrans;
    cblas_sgemm(R, N, T, n, H1, IN, 1.0f, s->x, IN, s->w1, IN, 1.0f, s->h1, H1);
    cblas_sgemm(R, N, T, n, H2, H1, 1.0f, s->h1, H1, s->w2, H1, 1.0f, s->h2, H2);
    cblas_sgemm(R, N, T, n, OUT, H2, 1.0f, s->h2, H2, s->w3, H2, 1.0f, s->z, OUT);
    cblas_sgemm(R, T, N, OUT, H2, n, 1.0f, s->dz, OUT, s->h2, H2, 0.0f, s->dw3, H2);
    cblas_sgemm(R, N, N, n, H2, OUT, 1.0f, s->dz, OUT, s->w3, H2, 0.0f, s->dh2, H2);
    cblas_sgemm(R, T, N, H2, H1, n, 1.0f, s->dh2, H2, s->h1, H1, 0.0f, s->dw2, H1);
    cblas_sgemm(R, N, N, n, H1, H2, 1.0f, s->dh2, H2, s->w2, H1, 0.0f, s->dh1, H1);
    cblas_sgemm(R, T, N, H1, IN, n, 1.0f, s->dh1, H1, s->x, IN, 0.0f, s->dw1, IN);
}

/* Wall seconds for the products of one epoch of nsamples in batches of BATCH, and CPU
 * seconds in *cpu. The forward outputs accumulate (beta 1) across steps; 469 steps keep
 * them far from overflow. */
static double sgemm_epoch(sgemm_bufs *s, int64_t nsamples, double *cpu)
{
    double c0 = cpu_s(), t0 = now_s();
    for (int64_t lo = 0; lo < nsamples; lo += BATCH)
        sgemm_step(s, (int)(nsamples - lo < BATCH ? nsamples - lo : BATCH));
    double t = now_s() - t0;
    *cpu = cpu_s() - c0;
    return t;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_mlp [--rounds N] [--data DIR] [--smoke]\n"
               "  One-thread throughput of one training epoch of the MLP 784-256-128-10 on\n"
               "  Fashion-MNIST, next to the rate of its sgemm calls alone. Each round times one\n"
               "  sgemm-only epoch, then one pstrain epoch (wk_loop_local_epochs).\n"
               "  --rounds N  rounds in this process (default 1; bench/run_mlp.sh runs 1 per\n"
               "              process and interleaves PyTorch between them)\n"
               "  --data DIR  Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)\n"
               "  --smoke     tiny sizes, to check that the benchmark runs (ctest -L bench): the\n"
               "              first 2048 training images, 5 warm-up batches\n"
               "Set OPENBLAS_NUM_THREADS=1 as well: OpenBLAS starts its threads when loaded.\n");
}

int main(int argc, char **argv)
{
    int rounds = 1, smoke = 0;
    const char *dir = "/usr/share/datasets/fashion-mnist";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "bench_mlp: --rounds: expected 1..1000, got '%s'\n", argv[i]);
                return 2;
            }
            rounds = (int)v;
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_mlp: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    openblas_set_num_threads(1);
    long rss_start_kb = rss_now_kb();

    int rc = 1;
    pst_err err = {0};
    cfg_job *job = NULL;
    wk_data data = {0};
    wk_trainer *tr = NULL;
    ds_dataset *warm = NULL, *smoke_train = NULL;
    int64_t *warm_rows = NULL;
    sgemm_bufs sb = {0};

    size_t ylen = sizeof job_fmt + 4 * strlen(dir);
    char *yaml = malloc(ylen);
    if (!yaml) {
        fprintf(stderr, "bench_mlp: out of memory\n");
        return 1;
    }
    snprintf(yaml, ylen, job_fmt, dir, dir, dir, dir);
    if (cfg_job_load_string(&job, yaml, strlen(yaml), "<bench_mlp job>", &err))
        goto fail;
    double tl0 = now_s();
    if (wk_data_load(job, 1, 0, &data, &err))
        goto fail;
    double load_s = now_s() - tl0;
    long rss_data_kb = rss_now_kb(), peak_load_kb = rss_peak_kb();
    const ds_dataset *train = data.train;
    /* --smoke: an epoch of the first 16 batches (2048 images) only. */
    const int64_t smoke_rows = 16 * BATCH;
    if (smoke && ds_count(train) > smoke_rows) {
        int64_t *rows = malloc(sizeof *rows * (size_t)smoke_rows);
        if (!rows) {
            fprintf(stderr, "bench_mlp: out of memory\n");
            goto cleanup;
        }
        for (int64_t i = 0; i < smoke_rows; i++)
            rows[i] = i;
        smoke_train = ds_subset(train, rows, smoke_rows, &err);
        free(rows);
        if (!smoke_train)
            goto fail;
        train = smoke_train;
    }
    int64_t n = ds_count(train);
    if (ds_dim(train) != IN || n < BATCH) {
        fprintf(stderr, "bench_mlp: expected (N >= %d, %d) training images, got (%lld, %d)\n",
                BATCH, IN, (long long)n, ds_dim(train));
        goto cleanup;
    }
    if (sgemm_bufs_init(&sb, train)) {
        fprintf(stderr, "bench_mlp: out of memory for the sgemm buffers\n");
        goto cleanup;
    }

    /* Warm-up, untimed: OpenBLAS allocates its work buffer on the first call, and the first
     * touch of every page of the trainer's buffers faults (slow on these VMs). 50 batches
     * of each loop are enough for both. The sgemm-only warm-up goes first, so that the RSS
     * growth over the trainer's creation and warm-up is the trainer's own memory: model,
     * gradients, optimizer state, activations and batch buffers, as touched. */
    const int64_t nwarm = (smoke ? 5 : 50) * BATCH;
    warm_rows = malloc(sizeof *warm_rows * (size_t)nwarm);
    if (!warm_rows) {
        fprintf(stderr, "bench_mlp: out of memory\n");
        goto cleanup;
    }
    for (int64_t i = 0; i < nwarm; i++)
        warm_rows[i] = i;
    if (!(warm = ds_subset(train, warm_rows, nwarm, &err)))
        goto fail;
    double sg_cpu;
    sgemm_epoch(&sb, nwarm, &sg_cpu);
    long rss_pre_trainer_kb = rss_now_kb();
    if (!(tr = wk_trainer_create(job, train, 0, &err)))
        goto fail;
    wk_epoch_stats st;
    if (wk_loop_local_epochs(tr, warm, 1, 1, &st, &err))
        goto fail;
    long trainer_kb = rss_now_kb() - rss_pre_trainer_kb;
    ds_destroy(warm);
    warm = NULL;

    const double flop_per_sample =
        2.0 * (2.0 * (IN * H1 + H1 * H2 + H2 * OUT) + (H1 * H2 + H2 * OUT));
    printf("info openblas_core=%s openblas_threads=%d openblas_config=\"%s\" samples=%lld "
           "batch=%d steps=%lld params=%zu load_s=%.2f\n",
           openblas_get_corename(), openblas_get_num_threads(), openblas_get_config(), (long long)n,
           BATCH, (long long)((n + BATCH - 1) / BATCH), ml_model_nparams(wk_trainer_model(tr)),
           load_s);
    fflush(stdout);

    for (int r = 1; r <= rounds; r++) {
        double sg_s = sgemm_epoch(&sb, n, &sg_cpu);
        double c0 = cpu_s(), t0 = now_s();
        /* Epoch numbers 1, 2, ...: each round reshuffles as a multi-epoch run would. */
        if (wk_loop_local_epochs(tr, train, r, r, &st, &err))
            goto fail;
        double ps_s = now_s() - t0, ps_cpu = cpu_s() - c0;
        wk_eval ev;
        if (wk_trainer_evaluate(tr, data.test, &ev, NULL, &err))
            goto fail;
        printf("round %d sgemm_s=%.4f sgemm_sps=%.0f sgemm_gflops=%.1f pstrain_s=%.4f "
               "pstrain_sps=%.0f ratio_sgemm=%.3f sgemm_cpu_sps=%.0f pstrain_cpu_sps=%.0f "
               "train_loss=%.4f train_acc=%.4f test_acc=%.4f\n",
               r, sg_s, (double)n / sg_s, flop_per_sample * (double)n / sg_s * 1e-9, ps_s,
               (double)n / ps_s, sg_s / ps_s, (double)n / sg_cpu, (double)n / ps_cpu, st.loss,
               st.accuracy, ev.cls.accuracy);
        fflush(stdout);
    }

    /* What training needs at least: parameters, their gradients, the optimizer's state,
     * one batch of inputs and labels, and one batch of every layer's output (pre- and
     * post-activation) and of its gradient. */
    ml_model *m = wk_trainer_model(tr);
    size_t P = ml_model_nparams(m);
    opt_state *os = opt_state_create(&job->optimizer, 1, &err);
    if (!os)
        goto fail;
    int nbuf = opt_state_nbuf(os);
    opt_state_destroy(os);
    double params_b = 4.0 * (double)P;
    double opt_b = 4.0 * (double)P * nbuf;
    double acts_b = 4.0 * BATCH * 2.0 * (H1 + H1 + H2 + H2 + OUT + OUT);
    double batch_b = 4.0 * BATCH * (IN + 1);
    double need_b = 2.0 * params_b + opt_b + acts_b + batch_b;
    double data_b = 0.0;
    const ds_dataset *sets[] = {data.train, data.test};
    for (int i = 0; i < 2; i++)
        if (sets[i])
            data_b += 4.0 * (double)ds_count(sets[i]) * (ds_dim(sets[i]) + 1);
    long peak_kb = rss_peak_kb();
    printf("memory peak_rss_mib=%.1f peak_load_mib=%.1f need_mib=%.2f params_mib=%.2f "
           "grads_mib=%.2f optstate_mib=%.2f acts_mib=%.2f batch_mib=%.2f trainer_rss_mib=%.2f "
           "dataset_mib=%.1f rss_start_mib=%.1f rss_after_data_mib=%.1f rss_end_mib=%.1f\n",
           peak_kb / 1024.0, peak_load_kb / 1024.0, mib(need_b), mib(params_b), mib(params_b),
           mib(opt_b), mib(acts_b), mib(batch_b), trainer_kb / 1024.0, mib(data_b),
           rss_start_kb / 1024.0, rss_data_kb / 1024.0, rss_now_kb() / 1024.0);
    rc = 0;
    goto cleanup;

fail:
    fprintf(stderr, "bench_mlp: %s\n", err.msg);
cleanup:
    sgemm_bufs_fini(&sb);
    free(warm_rows);
    ds_destroy(warm);
    ds_destroy(smoke_train);
    wk_trainer_destroy(tr);
    wk_data_fini(&data);
    cfg_job_free(job);
    free(yaml);
    return rc;
}
