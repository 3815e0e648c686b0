/* core/nn.c -- dense layer, activations and losses; see nn.h for shapes and formulas. */
#include "nn.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

/* The elementwise loops of a training step (ReLU both ways, bias gradients) stay in cache
 * and are bound by instruction throughput at SSE2, all a generic x86-64 build may assume;
 * with AVX2 the ReLU backward of a 128 x (256 + 128) batch takes 3.5 instead of 6.7 us.
 * target_clones builds such a function for both and picks one when the program loads
 * (an ifunc), so the binary still runs on any x86-64. Elsewhere the attribute is empty. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define ML_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef ML_SIMD_CLONES
#define ML_SIMD_CLONES
#endif

void ml_dense_forward(float *y, const float *x, const float *w, const float *b, int n, int in,
                      int out)
{
    /* Broadcast b into every row, then y += x W^T in one sgemm (beta = 1). */
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 1.0f,
                y, out);
}

/* db[j] (+)= sum_i dy[i, j]: row-wise accumulation keeps the inner loop contiguous. */
ML_SIMD_CLONES static void bias_grad(float *restrict db, const float *restrict dy, int n,
                                     int out, int accumulate)
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
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in,
                    beta, dw, in);
        bias_grad(db, dy, n, out, accumulate);
    }
    /* dX (N, IN) = dy (N, OUT) . W (OUT, IN) */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in,
                    0.0f, dx, in);
}

/* Stable row softmax: subtract the row max before exp. */
static void softmax_rows(float *y, const float *x, int rows, int cols)
{
    for (int i = 0; i < rows; i++) {
        const float *xr = x + (size_t)i * cols;
        float *yr = y + (size_t)i * cols;
        float mx = xr[0];
        for (int j = 1; j < cols; j++)
            mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < cols; j++) {
            yr[j] = expf(xr[j] - mx);
            sum += yr[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < cols; j++)
            yr[j] *= inv;
    }
}

/* ReLU out of place and in place: see the backward kernels below for why two versions. */
ML_SIMD_CLONES static void relu_forward(float *restrict y, const float *restrict x, size_t len)
{
    for (size_t i = 0; i < len; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

ML_SIMD_CLONES static void relu_forward_inplace(float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

void ml_act_forward(float *y, const float *x, int rows, int cols, ml_act act)
{
    size_t len = (size_t)rows * cols;
    switch (act) {
    case ML_ACT_LINEAR:
        if (y != x)
            memmove(y, x, len * sizeof *y);
        break;
    case ML_ACT_RELU:
        if (y == x)
            relu_forward_inplace(y, len);
        else
            relu_forward(y, x, len);
        break;
    case ML_ACT_SIGMOID:
        for (size_t i = 0; i < len; i++)
            y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case ML_ACT_TANH:
        for (size_t i = 0; i < len; i++)
            y[i] = tanhf(x[i]);
        break;
    case ML_ACT_SOFTMAX:
        softmax_rows(y, x, rows, cols);
        break;
    }
}

/* The elementwise derivatives, out of place and in place. Two versions because a training
 * step calls ml_act_backward with dx == dy: one loop over possibly equal pointers makes
 * gcc's runtime alias check fail on exactly that call and fall back to its scalar loop
 * (for ReLU a data-dependent branch per element, ~6x slower than the vector loop), while
 * restrict-qualified loops over distinct arrays vectorise. */
ML_SIMD_CLONES static void relu_backward(float *restrict dx, const float *restrict dy,
                                         const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

ML_SIMD_CLONES static void relu_backward_inplace(float *restrict g, const float *restrict y,
                                                 size_t len)
{
    for (size_t i = 0; i < len; i++)
        g[i] = y[i] > 0.0f ? g[i] : 0.0f;
}

ML_SIMD_CLONES static void sigmoid_backward(float *restrict dx, const float *restrict dy,
                                            const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

ML_SIMD_CLONES static void sigmoid_backward_inplace(float *restrict g, const float *restrict y,
                                                    size_t len)
{
    for (size_t i = 0; i < len; i++)
        g[i] *= y[i] * (1.0f - y[i]);
}

ML_SIMD_CLONES static void tanh_backward(float *restrict dx, const float *restrict dy,
                                         const float *restrict y, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

ML_SIMD_CLONES static void tanh_backward_inplace(float *restrict g, const float *restrict y,
                                                 size_t len)
{
    for (size_t i = 0; i < len; i++)
        g[i] *= 1.0f - y[i] * y[i];
}

void ml_act_backward(float *dx, const float *dy, const float *y, int rows, int cols, ml_act act)
{
    size_t len = (size_t)rows * cols;
    int inplace = dx == dy;
    switch (act) {
    case ML_ACT_LINEAR:
        if (!inplace)
            memmove(dx, dy, len * sizeof *dx);
        break;
    case ML_ACT_RELU:
        if (inplace)
            relu_backward_inplace(dx, y, len);
        else
            relu_backward(dx, dy, y, len);
        break;
    case ML_ACT_SIGMOID:
        if (inplace)
            sigmoid_backward_inplace(dx, y, len);
        else
            sigmoid_backward(dx, dy, y, len);
        break;
    case ML_ACT_TANH:
        if (inplace)
            tanh_backward_inplace(dx, y, len);
        else
            tanh_backward(dx, dy, y, len);
        break;
    case ML_ACT_SOFTMAX:
        /* Jacobian-vector product of softmax: dx_j = y_j (dy_j - sum_k dy_k y_k). */
        for (int i = 0; i < rows; i++) {
            const float *yr = y + (size_t)i * cols;
            const float *gr = dy + (size_t)i * cols;
            float *dr = dx + (size_t)i * cols;
            double dot = 0.0;
            for (int j = 0; j < cols; j++)
                dot += (double)gr[j] * yr[j];
            for (int j = 0; j < cols; j++)
                dr[j] = yr[j] * (gr[j] - (float)dot);
        }
        break;
    }
}

double ml_softmax_xent(float *dz, float *prob, const float *z, const int32_t *label, int n,
                       int c)
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
