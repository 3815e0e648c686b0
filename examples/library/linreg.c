/* examples/library/linreg.c -- a worker with its own tiny model, through libpstrain.
 *
 * Linear regression y = x W^T + b  (x: (N, D), W: (1, D), b: (1)) on synthetic data,
 * loss = mean over the batch of (y - t)^2 / 2, so dW = (1/N) sum (y - t) x, db = (1/N)
 * sum (y - t). Each worker draws its own batches (seeded by its rank); the servers apply
 * the job's optimizer to the gradients. With one worker, bsp and optimizer sgd the
 * servers' weights must equal plain SGD run here: --check compares them and exits 1 if
 * they differ by more than float rounding.
 *
 * Build:  cc linreg.c $(pkg-config --cflags --libs pstrain) -lm -o linreg
 * Run:    PSTRAIN_RANK=R PSTRAIN_COORDINATOR=tcp://HOST:PORT ./linreg JOB.yaml [--check]
 *                  [--KEY VALUE ...]     (job overrides, as pstrain's --cluster.consistency asp)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pstrain/pstrain.h>

#define D 8
#define N 16
#define STEPS 50

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}
static float uniform(uint64_t *s) { return (float)(next(s) >> 40) / (float)(1 << 24) - 0.5f; }

/* One batch: x (N, D), targets t = x . true_w + 0.3. */
static void batch(uint64_t *s, float *x, float *t)
{
    for (int i = 0; i < N; i++) {
        t[i] = 0.3f;
        for (int d = 0; d < D; d++) {
            x[i * D + d] = uniform(s);
            t[i] += x[i * D + d] * (float)(d + 1) * 0.25f;
        }
    }
}

/* Gradients of the batch loss at (w, b) into dw (D), db (1); returns the loss. */
static float grad(const float *x, const float *t, const float *w, const float *b, float *dw,
                  float *db)
{
    float loss = 0;
    memset(dw, 0, D * sizeof *dw);
    *db = 0;
    for (int i = 0; i < N; i++) {
        float y = *b;
        for (int d = 0; d < D; d++)
            y += x[i * D + d] * w[d];
        float e = y - t[i];
        loss += 0.5f * e * e / N;
        for (int d = 0; d < D; d++)
            dw[d] += e * x[i * D + d] / N;
        *db += e / N;
    }
    return loss;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: linreg JOB.yaml [--check] [--KEY VALUE ...]\n");
        return 2;
    }
    int check = 0, nov = 0;
    const char *keys[16], *values[16];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strncmp(argv[i], "--", 2) == 0 && i + 1 < argc && nov < 16) {
            keys[nov] = argv[i] + 2;
            values[nov++] = argv[++i];
        } else {
            fprintf(stderr, "linreg: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    pst_err err = {0};
    pst_worker *w = NULL;
    pst_options o = PST_OPTIONS_INIT;
    o.job_path = argv[1];
    o.keys = keys;
    o.values = values;
    o.noverrides = nov;
    o.steps = STEPS;
    const int64_t wshape[2] = {1, D}, bshape[1] = {1};
    float w0[D], x[N * D], t[N], ref_w[D], ref_b = 0, dw[D], db;
    for (int d = 0; d < D; d++)
        w0[d] = 0.01f * (float)d;
    if (pst_worker_create(&w, &o, &err) || pst_tensor_declare(w, "fc.weight", 2, wshape, &err) ||
        pst_tensor_declare(w, "fc.bias", 1, bshape, &err) ||
        pst_tensor_set(w, "fc.weight", w0, D, &err) || pst_join(w, &err))
        goto fail;
    int rank = pst_rank(w);
    float *W = pst_tensor_weights(w, "fc.weight"), *B = pst_tensor_weights(w, "fc.bias");
    float *dW = pst_tensor_grad(w, "fc.weight"), *dB = pst_tensor_grad(w, "fc.bias");
    memcpy(ref_w, w0, sizeof ref_w);
    uint64_t seed = 0x9e3779b97f4a7c15ULL + (uint64_t)rank;
    float loss = 0;
    for (int step = 0; step < STEPS; step++) {
        batch(&seed, x, t);
        loss = grad(x, t, W, B, dW, dB);
        if (check) { /* plain SGD, lr 0.1, the job's optimizer */
            grad(x, t, ref_w, &ref_b, dw, &db);
            for (int d = 0; d < D; d++)
                ref_w[d] -= 0.1f * dw[d];
            ref_b -= 0.1f * db;
        }
        pst_progress(w, 1, step, loss);
        pst_req push, pull;
        if (pst_push(w, &push, &err) || pst_pull(w, &pull, &err) || pst_wait(w, pull, &err))
            goto fail;
    }
    if (pst_finish(w, &err))
        goto fail;
    printf("rank %d: %d steps, last loss %.6f, b %.6f, w[%d] %.6f (true %.2f)\n", rank, STEPS, loss,
           B[0], D - 1, W[D - 1], D * 0.25);
    if (check) {
        double diff = fabs(B[0] - ref_b);
        for (int d = 0; d < D; d++)
            diff = fmax(diff, fabs(W[d] - ref_w[d]));
        printf("largest difference to plain SGD: %g\n", diff);
        if (diff > 1e-6) {
            pst_worker_destroy(w);
            return 1;
        }
    }
    pst_worker_destroy(w);
    return 0;
fail:
    fprintf(stderr, "linreg: %s (%s)\n", err.msg, pst_status_str(err.code));
    pst_worker_destroy(w);
    return 1;
}
