/* ps/async.c -- see async.h for the formulas and their sources. */
#include "async.h"

#include <math.h>

float srv_async_lr(float lr, int64_t tau) { return tau > 0 ? lr / (1.0f + (float)tau) : lr; }

void srv_async_dc(float *restrict out, const float *restrict g, const float *restrict w,
                  const float *restrict bak, float *restrict ms, size_t n, float lambda0)
{
    const float m = SRV_DC_DECAY;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        ms[i] = m * ms[i] + (1.0f - m) * gi * gi;
        out[i] = gi + lambda0 / sqrtf(ms[i] + SRV_DC_EPS) * gi * gi * (w[i] - bak[i]);
    }
}

float srv_async_momentum(float mu, int nworkers)
{
    if (nworkers <= 1)
        return mu;
    float e = 1.0f - (float)nworkers * (1.0f - mu);
    return e > 0.0f ? e : 0.0f;
}
