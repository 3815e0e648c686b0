/* core/nn.c -- dense kernels and losses; see nn.h for shapes and formulas. */
#include "nn.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "simd.h"

void ml_dense_forward(float *y, const float *x, const float *w, const float *b, int n, int in,
                      int out)
{
    /* Broadcast b into every row, then y += x W^T in one sgemm (beta = 1). */
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 1.0f, y,
                out);
}

/* db[j] (+)= sum_i dy[i, j]: row-wise accumulation keeps the inner loop contiguous. */
ML_SIMD_CLONES static void bias_grad(float *restrict db, const float *restrict dy, int n, int out,
                                     int accumulate)
{
    if (!accumulate)
        memset(db, 0, (size_t)out * sizeof *db);
    for (int i = 0; i < n; i++) {
        const float *restrict row = dy + (size_t)i * out;
        for (int j = 0; j < out; j++)
            db[j] += row[j];
    }
}

void ml_dense_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                       const float *w, int n, int in, int out, int accumulate)
{
    float beta = accumulate ? 1.0f : 0.0f;
    /* dW (OUT, IN) = dy^T (OUT, N) . x (N, IN); none for a frozen layer */
    if (dw) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, beta,
                    dw, in);
        bias_grad(db, dy, n, out, accumulate);
    }
    /* dX (N, IN) = dy (N, OUT) . W (OUT, IN) */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in,
                    0.0f, dx, in);
}

void ml_linear_forward(float *y, const float *x, const float *w, const float *b, int m, int in,
                       int out)
{
    for (int i = 0; i < m; i++)
        memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, out, in, 1.0f, x, in, w, out, 1.0f, y,
                out);
}

void ml_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int m, int in, int out)
{
    /* dW (IN, OUT) = x^T (IN, M) . dy (M, OUT) */
    if (dw) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, in, out, m, 1.0f, x, in, dy, out, 0.0f,
                    dw, out);
        bias_grad(db, dy, m, out, 0);
    }
    /* dX (M, IN) = dy (M, OUT) . W^T (OUT, IN) */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, in, out, 1.0f, dy, out, w, out,
                    0.0f, dx, in);
}

double ml_softmax_xent(float *dz, float *prob, const float *z, const int32_t *label, int n, int c)
{
    double loss = 0.0;
    float scale = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        const float *zr = z + (size_t)i * c;
        float *pr = prob ? prob + (size_t)i * c : NULL;
        float *dr = dz ? dz + (size_t)i * c : NULL;
        int y = label[i];
        assert(y >= 0 && y < c);
        float mx = zr[0];
        for (int j = 1; j < c; j++)
            mx = zr[j] > mx ? zr[j] : mx;
        /* e_j = exp(z_j - max) <= 1, computed once and kept in whichever output row exists
         * (p_j = e_j / sum e); the sum is accumulated in double. */
        float *e = dr ? dr : pr;
        double sum = 0.0;
        if (e) {
            for (int j = 0; j < c; j++) {
                e[j] = expf(zr[j] - mx);
                sum += e[j];
            }
        } else {
            for (int j = 0; j < c; j++)
                sum += expf(zr[j] - mx);
        }
        /* -log p_y = -(z_y - max - log sum exp(z - max)) */
        loss += log(sum) - ((double)zr[y] - mx);
        float inv = (float)(1.0 / sum);
        if (pr)
            for (int j = 0; j < c; j++)
                pr[j] = e[j] * inv;
        if (dr) {
            /* dz = (p - onehot) / N; e and dr may be the same row, read before written. */
            float s = inv * scale;
            for (int j = 0; j < c; j++)
                dr[j] = e[j] * s;
            dr[y] -= scale;
        }
    }
    return loss / n;
}

#define ML_PROB_EPS 1e-7f

double ml_xent(float *dp, const float *p, const int32_t *label, int n, int c)
{
    double loss = 0.0;
    if (dp)
        memset(dp, 0, (size_t)n * c * sizeof *dp);
    for (int i = 0; i < n; i++) {
        int y = label[i];
        assert(y >= 0 && y < c);
        float py = p[(size_t)i * c + y];
        float pc = py > ML_PROB_EPS ? py : ML_PROB_EPS;
        loss -= log((double)pc);
        /* The clamp is constant below eps, so the gradient is 0 there. */
        if (dp && py > ML_PROB_EPS)
            dp[(size_t)i * c + y] = -1.0f / ((float)n * py);
    }
    return loss / n;
}

double ml_sigmoid_bce(float *dz, float *prob, const float *z, const float *t, int n, int k)
{
    size_t len = (size_t)n * k;
    double loss = 0.0;
    float scale = 1.0f / (float)len;
    for (size_t i = 0; i < len; i++) {
        double zi = z[i];
        /* softplus(z) - t z, with softplus(z) = max(z, 0) + log1p(exp(-|z|)) */
        double sp = (zi > 0 ? zi : 0.0) + log1p(exp(-fabs(zi)));
        loss += sp - t[i] * zi;
        float s = 1.0f / (1.0f + expf(-z[i]));
        if (prob)
            prob[i] = s;
        if (dz)
            dz[i] = (s - t[i]) * scale;
    }
    return loss / (double)len;
}

double ml_bce(float *dp, const float *p, const float *t, int n, int k)
{
    size_t len = (size_t)n * k;
    double loss = 0.0;
    for (size_t i = 0; i < len; i++) {
        float pi = p[i];
        int clamped = pi < ML_PROB_EPS || pi > 1.0f - ML_PROB_EPS;
        if (pi < ML_PROB_EPS)
            pi = ML_PROB_EPS;
        if (pi > 1.0f - ML_PROB_EPS)
            pi = 1.0f - ML_PROB_EPS;
        loss -= t[i] * log((double)pi) + (1.0 - t[i]) * log(1.0 - (double)pi);
        /* dL/dp = (p - t) / (p (1 - p)) / (N K); zero where the clamp is active. */
        if (dp)
            dp[i] = clamped ? 0.0f : (pi - t[i]) / (pi * (1.0f - pi) * (float)len);
    }
    return loss / (double)len;
}

double ml_mse(float *dy, const float *y, const float *t, int n, int k)
{
    size_t len = (size_t)n * k;
    double loss = 0.0;
    float scale = 2.0f / (float)len;
    for (size_t i = 0; i < len; i++) {
        float d = y[i] - t[i];
        loss += (double)d * d;
        if (dy)
            dy[i] = d * scale;
    }
    return loss / (double)len;
}
