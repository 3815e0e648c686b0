/* core/layers/lora.c -- see lora.h. Every product is one sgemm over the M = N*T rows. */
#include "core/layers/lora.h"

#include <cblas.h>

int ml_lora_shape(ml_layer *l, const char *name_a, const char *name_b, int in, int out, int r,
                  pst_err *err)
{
    int lim = in < out ? in : out;
    if (r < 1 || r > lim)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "lora_rank: %d is out of range for a projection (%d, %d): must be 1 "
                           "to min(in, out) = %d",
                           r, in, out, lim);
    if (l->ntensors + 2 > ML_MAX_TENSORS)
        return pst_err_set(err, PST_ERR_CONFIG, "lora_rank: too many tensors in one layer");
    l->adapter_mask |= 3u << l->ntensors;
    l->tensor[l->ntensors++] = (ml_tensor){name_a, in, r};
    l->tensor[l->ntensors++] = (ml_tensor){name_b, r, out};
    return PST_OK;
}

void ml_lora_forward(float *y, float *xa, const float *x, const float *a, const float *b, int m,
                     int in, int r, int out, float s)
{
    /* xa = x A (M, r);  y += s xa B */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, r, in, 1.0f, x, in, a, r, 0.0f, xa,
                r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, out, r, s, xa, r, b, out, 1.0f, y,
                out);
}

void ml_lora_backward(float *dx, float *da, float *db, float *dxa, const float *dy, const float *x,
                      const float *xa, const float *a, const float *b, int m, int in, int r,
                      int out, float s)
{
    /* dB = s xa^T dy (r, OUT) */
    if (db)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, out, m, s, xa, r, dy, out, 0.0f, db,
                    out);
    if (!da && !dx)
        return;
    /* dxa = s dy B^T (M, r);  dA = x^T dxa (IN, r);  dx += dxa A^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r, out, s, dy, out, b, out, 0.0f, dxa,
                r);
    if (da)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, r, m, 1.0f, x, in, dxa, r, 0.0f,
                    da, r);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, in, r, 1.0f, dxa, r, a, r, 1.0f, dx,
                    in);
}

void ml_lora_merge(float *w, const float *a, const float *b, int in, int r, int out, float s)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, out, r, s, a, r, b, out, 1.0f, w,
                out);
}
