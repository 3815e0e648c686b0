/* core/explain.c -- permutation feature importance (core/explain.h). */
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "explain.h"
#include "metrics.h"

double ml_accuracy(ml_model *m, const float *x, const int32_t *label, int64_t n)
{
    int D = ml_model_in_dim(m), K = ml_model_out_dim(m), B = ml_model_max_batch(m);
    int32_t pred[256];
    int64_t right = 0;
    if (B > 256)
        B = 256; /* pred's size: a forward of fewer rows than max_batch is fine */
    for (int64_t lo = 0; lo < n; lo += B) {
        int b = (int)(n - lo < B ? n - lo : B);
        const float *y = ml_model_forward(m, x + (size_t)lo * D, b);
        met_predict_classes(pred, y, b, K);
        for (int i = 0; i < b; i++)
            right += pred[i] == label[lo + i];
    }
    return n ? (double)right / (double)n : 0.0;
}

int ml_permutation_importance(ml_model *m, const float *x, const int32_t *label, int64_t n,
                              int repeats, uint64_t seed, double *base, double *drop, pst_err *err)
{
    int D = ml_model_in_dim(m);
    if (n < 1 || n > UINT32_MAX || repeats < 1)
        return pst_err_set(err, PST_ERR_ARG, "permutation importance: %lld rows, %d repeats",
                           (long long)n, repeats);
    float *xs = malloc((size_t)n * D * sizeof *xs);
    uint32_t *perm = malloc((size_t)n * sizeof *perm);
    int rc = PST_OK;
    if (!xs || !perm) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    memcpy(xs, x, (size_t)n * D * sizeof *xs);
    *base = ml_accuracy(m, x, label, n);
    for (int j = 0; j < D; j++) {
        rng_state r;
        rng_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)j);
        double sum = 0.0;
        for (int rep = 0; rep < repeats; rep++) {
            for (int64_t i = 0; i < n; i++)
                perm[i] = (uint32_t)i;
            rng_shuffle_u32(&r, perm, (size_t)n);
            /* xs[i][j] = x[perm[i]][j]: column j shuffled, the others as given */
            for (int64_t i = 0; i < n; i++)
                xs[(size_t)i * D + j] = x[(size_t)perm[i] * D + j];
            sum += ml_accuracy(m, xs, label, n);
        }
        for (int64_t i = 0; i < n; i++)
            xs[(size_t)i * D + j] = x[(size_t)i * D + j];
        drop[j] = *base - sum / repeats;
    }
cleanup:
    free(xs);
    free(perm);
    return rc;
}
